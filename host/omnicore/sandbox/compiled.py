"""What every kind of compiled plugin shares: the record the host keeps of it, its imports
and exports, and how a refusal by the engine reads.

The kinds build on it: core modules (omnicore ABI v1 and Extism) in :mod:`.module`,
components in :mod:`.component.compiled`. ``PluginModule.load`` reads the bytes and picks
the kind, so only it imports a kind; the kinds import this module and nothing of each other.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnicore.sandbox.capability import CapabilityRegistry

__all__ = ["CompiledPlugin", "Export", "Import", "Signature", "engine_cause", "signature_text",
           "winch_lacks"]

#: A function's (parameter types, result types), as wasmtime names them.
Signature = tuple[tuple[str, ...], tuple[str, ...]]


def signature_text(sig: Signature) -> str:
    """``(i32, i32) -> i64``: a signature as messages and ``omnicore inspect`` print it."""
    params, results = sig
    res = results[0] if len(results) == 1 else f"({', '.join(results)})"
    return f"({', '.join(params)}) -> {res}"


def engine_cause(text: str) -> str:
    """The informative part of a wasmtime error: header plus its "Caused by" line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "invalid"
    if "Caused by:" in lines and lines.index("Caused by:") + 1 < len(lines):
        # Every cause: the last one holds the reason ("SIMD support is not enabled").
        causes = [re.sub(r"^\d+: ", "", ln) for ln in lines[lines.index("Caused by:") + 1:]]
        return f"{lines[0]}: {': '.join(causes)}"
    return lines[0]


#: What a Winch engine (wasmtime's baseline compiler; GC off) says refusing a module for Wasm
#: GC or typed function references, which its Cranelift sibling has on (wasmtime's texts:
#: the validator's, then Winch's own).
_WINCH_LACKS = ("gc types are disallowed", "gc support is not enabled",
                "gc proposal not enabled", "function references support is not enabled",
                "function references required")


def winch_lacks(text: str) -> bool:
    """Whether a Winch engine's compile or validation error refuses Wasm GC or typed function
    references, which its Cranelift sibling compiles (:attr:`SandboxEngine.gc`)."""
    return any(lack in text for lack in _WINCH_LACKS)


@dataclass(frozen=True, slots=True)
class Import:
    """One import of the module: ``module.name`` of ``kind`` (func signature if a function)."""

    module: str
    name: str
    kind: str
    signature: Signature | None = None


@dataclass(frozen=True, slots=True)
class Export:
    """One export: ``name`` of ``kind`` (func signature if a function)."""

    name: str
    kind: str
    signature: Signature | None = None


@dataclass(frozen=True, eq=False, kw_only=True)
class CompiledPlugin(abc.ABC):
    """A compiled plugin of any kind, ready to instantiate (``PluginModule.load`` builds one).

    Each kind adds what it compiled to: a core module or a component.
    """

    name: str
    manifest: Mapping[str, Any]
    handlers: tuple[str, ...]
    requested: frozenset[str]
    #: 1 (omnicore ABI v1), "extism" (an Extism plugin, specs/extism.md) or "component"
    #: (a Component Model component, specs/components.md).
    abi: int | str
    sha256: str
    size: int
    imports: tuple[Import, ...]
    exports: tuple[Export, ...]
    uses_wasi: bool
    path: Path | None = None
    #: Why ``abi`` was assumed (``omnicore inspect`` says it): what in the module decided.
    abi_reason: str = "no Extism import or shape: omnicore ABI v1"

    @abc.abstractmethod
    def check_imports(self, registry: CapabilityRegistry) -> None:
        """Raise InvalidModule for an import ``registry`` cannot satisfy."""

    def imports_by_capability(self) -> dict[str, list[str]]:
        """Imported function names grouped by namespace (for ``omnicore inspect``)."""
        out: dict[str, list[str]] = {}
        for imp in self.imports:
            out.setdefault(imp.module, []).append(imp.name)
        return out

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``omnicore inspect`` prints)."""
        return {
            "name": self.name,
            "abi": self.abi,
            "abi_reason": self.abi_reason,
            "sha256": self.sha256,
            "size": self.size,
            "handlers": list(self.handlers),
            "requested": sorted(self.requested),
            "wasi": self.uses_wasi,
            "imports": self.imports_by_capability(),
            "exports": [{"name": e.name, "kind": e.kind,
                         **({"type": signature_text(e.signature)} if e.signature else {})}
                        for e in self.exports],
            "manifest": dict(self.manifest),
        }
