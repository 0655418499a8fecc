"""A core module as a plugin, omnicore ABI v1 or Extism (abi.md §1, §5), and
:meth:`PluginModule.load`, which reads any plugin's bytes and picks its kind."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import wasmtime

from omnicore.errors import InvalidModule, UnsupportedAbiVersion
from omnicore.sandbox import wasmbin
from omnicore.sandbox.compiled import (
    CompiledPlugin,
    Export,
    Import,
    Signature,
    engine_cause,
    signature_text,
    winch_lacks,
)
from omnicore.sandbox.manifest import check_manifest, parse_manifest

if TYPE_CHECKING:
    from omnicore.sandbox.capability import CapabilityRegistry
    from omnicore.sandbox.engine import SandboxEngine

__all__ = ["ABI_VERSION", "EXTISM_ENV", "EXTISM_USER", "WASI_MODULE", "PluginModule"]

ABI_VERSION = 1
WASI_MODULE = "wasi_snapshot_preview1"
NAMESPACE_PREFIX = "omnicore:"
#: A module importing from this is an Extism plugin (run by omnicore.extism; specs/extism.md).
EXTISM_ENV = "extism:host/env"
EXTISM_USER = "extism:host/user"
#: Extism host functions backed by an omnicore capability (the rest need no grant). Not
#: ``config_get``: in Extism every plugin reads its manifest's config (specs/extism.md).
_EXTISM_REQUESTS = {"get_log_level": "log", "log_trace": "log", "log_debug": "log",
                    "log_info": "log", "log_warn": "log", "log_error": "log"}
#: Extism's pre-1.0 ABI: the kernel imported from ``env`` as ``extism_*`` (Extism 1.x refuses it).
_EXTISM_OLD_ENV = "env"
_EXTISM_OLD_PREFIX = "extism_"
_EXTISM_HANDLER_TYPES = (((), ("i32",)), ((), ()))
#: Exports Extism calls itself or that toolchains add: never handlers.
_EXTISM_NOT_HANDLERS = ("_initialize", "__wasm_call_ctors", "hs_init", "asyncify_")
_HANDLER_TYPE = (("i32", "i32"), ("i64",))


def _type_str(t: wasmtime.FuncType) -> Signature:
    return (tuple(str(p) for p in t.params), tuple(str(r) for r in t.results))


def _extism_reason(compiled: wasmtime.Module, plugin: str, manifest: Mapping[str, Any],
                   exports: tuple[Export, ...], path: Path | None) -> str | None:
    """Why the module is an Extism plugin, or None for an omnicore ABI v1 module.

    Imports from ``extism:host/env`` decide. So does the shape of a module with no omnicore
    marks (no ``omnicore.manifest`` section, no ``omnicore:*`` import, no ``omni_alloc``/
    ``omni_free`` export): Extism runs any module whose functions take nothing (a pure
    compute export, a WASI command, a hand-written plugin), and so does omnicore when it has
    such an export or an Extism manifest (``NAME.json``) beside it. Extism's pre-1.0 ABI
    (``env.extism_*``) is refused here, in one line, as Extism 1.x refuses it.
    """
    modules = {i.module for i in compiled.imports}
    if EXTISM_ENV in modules:
        return f"it imports {EXTISM_ENV}"
    old = next((i.name for i in compiled.imports
                if i.module == _EXTISM_OLD_ENV and (i.name or "").startswith(_EXTISM_OLD_PREFIX)),
               None)
    if old is not None:
        raise UnsupportedAbiVersion(
            f"plugin {plugin!r} uses Extism's pre-1.0 ABI (it imports env.{old}), which "
            "Extism 1.x and omnicore do not run; rebuild it with a current Extism PDK (1.0 or "
            f"later, imports from {EXTISM_ENV})", plugin=plugin, version="extism-pre-1.0")
    names = {e.name for e in exports}
    if manifest or "omni_alloc" in names or "omni_free" in names or any(
            m.startswith(NAMESPACE_PREFIX) for m in modules):
        return None
    if any(e.signature in _EXTISM_HANDLER_TYPES and not e.name.startswith(_EXTISM_NOT_HANDLERS)
           for e in exports):
        return ("no omni_alloc export, and exports that take no parameters (Extism's call "
                "shape)")
    if path is not None and path.with_suffix(".json").is_file():
        return f"an Extism manifest beside it ({path.with_suffix('.json').name})"
    return None


def _kind(t: object) -> str:
    return {wasmtime.FuncType: "func", wasmtime.MemoryType: "memory",
            wasmtime.TableType: "table", wasmtime.GlobalType: "global"}.get(type(t), "other")


#: Per engine, the modules analysed from each sha256, while a plugin holds one (weak both
#: ways: neither an engine nor a module is kept alive by being remembered here).
_Analysed = weakref.WeakValueDictionary[str, "PluginModule"]
_ANALYSED: weakref.WeakKeyDictionary[SandboxEngine, _Analysed] = weakref.WeakKeyDictionary()


_ANALYSED_LOCK = threading.Lock()  # plugins load on several threads at once


def _with_gc(mod: PluginModule, needs_gc: bool) -> PluginModule:
    """``mod`` marked as using Wasm GC when its bytes do: an omnicore ABI v1 plugin may, an
    Extism plugin may not (refused)."""
    if not needs_gc:
        return mod
    if mod.abi != ABI_VERSION:
        raise InvalidModule(f"plugin {mod.name!r}: an Extism plugin using Wasm GC is not "
                            "supported (omnicore ABI v1 plugins may use it)", plugin=mod.name)
    return dataclasses.replace(mod, needs_gc=True)


def _known(engine: SandboxEngine, sha: str) -> PluginModule | None:
    with _ANALYSED_LOCK:
        found = _ANALYSED.get(engine)
        return None if found is None else found.get(sha)


def _remember(engine: SandboxEngine, sha: str, mod: PluginModule) -> None:
    with _ANALYSED_LOCK:
        _ANALYSED.setdefault(engine, weakref.WeakValueDictionary())[sha] = mod


@dataclass(frozen=True, eq=False, kw_only=True)
class PluginModule(CompiledPlugin):
    """A compiled core module (omnicore ABI v1 or Extism). :meth:`load` builds a plugin of
    any kind: a component's bytes give a ``ComponentModule`` (specs/components.md)."""

    wasmtime_module: wasmtime.Module = field(repr=False)
    #: It uses Wasm GC (Kotlin/Wasm): on an engine compiling with Winch, which has no GC, it was
    #: compiled on the engine's Cranelift sibling (:attr:`SandboxEngine.gc`), where it runs.
    needs_gc: bool = False

    @classmethod
    def load(cls, engine: SandboxEngine, source: bytes | bytearray | Path | str,
             name: str | None = None, *,
             registry: CapabilityRegistry | None = None,
             compile: bool = True, validate: bool = True) -> CompiledPlugin:
        """Validate and compile a plugin of any kind: a :class:`PluginModule` for a core
        module, a ``ComponentModule`` for a component.

        ``compile=False`` (what is only described, never run: ``omnicore inspect``,
        ``workflows validate --app``): a core module's imports and exports are read from its
        bytes (:mod:`omnicore.sandbox.shape`), validated by wasmtime unless ``validate`` is
        false (function bodies unread: what only needs the handlers and the manifest), and
        the result has no code (``wasmtime_module`` is the shape read); a component is still
        compiled.

        ``source`` is the wasm bytes or a path. The name comes from ``name``, else the
        manifest, else the file name. With ``registry``, imports are also checked against it
        (unknown namespace/function/type -> InvalidModule). Raises InvalidModule or
        UnsupportedAbiVersion, never anything else for bad input.
        """
        path: Path | None = None
        if isinstance(source, (str, Path)):
            path = Path(source)
            try:
                wasm = path.read_bytes()
            except OSError as exc:
                raise InvalidModule(f"cannot read plugin file {path}: {exc.strerror or exc}",
                                    plugin=name or path.stem) from None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            wasm = bytes(source)
        else:
            raise TypeError(f"source must be bytes or a path, got {type(source).__name__}")
        label = name or (path.stem if path else None)
        if not wasm:
            raise InvalidModule(f"plugin {label or '<bytes>'!r}: the file is empty",
                                plugin=label)
        if wasm[4:8] != b"\x01\x00\x00\x00" and wasm[:4] == b"\0asm":
            # Not a core module: a component is ABI "component" (specs/components.md). Imported
            # here, the one arrow between the kinds: the component package refuses to import
            # on a wasmtime without its private names, and core modules must load then (and
            # `omnicore call` never loads component code).
            from omnicore.sandbox.component.compiled import is_component, load_component

            if is_component(wasm):
                return load_component(engine, wasm, label, path)
        sha = hashlib.sha256(wasm).hexdigest()
        # The same bytes loaded again (another copy, a reload) passed every check below and
        # compiled: only the name and the file differ. An Extism manifest beside the file
        # can change what the bytes are, so such a file is always analysed afresh.
        beside = path is not None and path.with_suffix(".json").is_file()
        # Looked up before the bytes are read again (the manifest, and Wasm GC: a walk of
        # every type): the same bytes hold the same manifest, and a module known to this
        # engine was compiled on it, so it needs no GC engine (issue 63: one more copy).
        known = None if beside or not compile else _known(engine, sha)
        manifest = dict(known.manifest) if known is not None else parse_manifest(wasm, label)
        needs_gc = False if known is not None else wasmbin.uses_gc(wasm)
        if needs_gc and engine.baseline:
            engine = engine.gc  # Winch has no Wasm GC: Cranelift compiles and runs it
            known = None if beside or not compile else _known(engine, sha)
        # Anonymous bytes (no name=, no manifest name, no file) get a stable content name.
        plugin = name or manifest.get("name") or (path.stem if path else f"plugin-{sha[:12]}")
        if known is None:
            check_manifest(manifest, plugin if isinstance(plugin, str) else label)
        if not isinstance(plugin, str) or not plugin:
            raise InvalidModule(f"the plugin name must be a non-empty string, got {plugin!r}",
                                plugin=None)
        if known is not None:
            mod = dataclasses.replace(known, name=plugin, path=path, manifest=manifest)
            _remember(engine, sha, mod)  # lives as long as this copy, which may outlive known
            if registry is not None:
                mod.check_imports(registry)
            return mod
        abi = manifest.get("abi", ABI_VERSION)
        if abi != ABI_VERSION or isinstance(abi, bool):
            raise UnsupportedAbiVersion(
                f"plugin {plugin!r} targets omnicore ABI {abi!r}; this host supports ABI "
                f"{ABI_VERSION}", plugin=plugin, version=abi)
        try:
            v128 = wasmbin.v128_in_signatures(wasm)
        except wasmbin.WasmFormatError as exc:
            raise InvalidModule(f"plugin {plugin!r} is not a valid WebAssembly module: {exc}",
                                plugin=plugin) from None
        if v128 is not None:
            raise InvalidModule(
                f"plugin {plugin!r} is not a valid WebAssembly module: failed to parse "
                f"WebAssembly module: {v128} uses the v128 type; SIMD is supported inside "
                "function bodies only, not in import/export signatures or globals "
                "(specs/abi.md §1.5)", plugin=plugin)
        if not compile:
            return cls._described(engine, wasm, plugin, manifest, sha, path, needs_gc,
                                  validate)
        try:
            try:
                compiled = engine.compile(wasm, sha)
            except wasmtime.WasmtimeError as exc:
                if not (engine.baseline and winch_lacks(str(exc))):
                    raise
                # GC or typed function references used outside the type section (a body's
                # ref.i31 or call_ref, an anyref global), which uses_gc does not read: what
                # Winch refuses for a proposal it lacks, its Cranelift sibling compiles.
                engine, needs_gc = engine.gc, True
                compiled = engine.compile(wasm, sha)
        except wasmtime.WasmtimeError as exc:
            first = engine_cause(str(exc))
            raise InvalidModule(f"plugin {plugin!r} is not a valid WebAssembly module: {first}",
                                plugin=plugin) from None
        mod = cls._from_compiled(compiled, plugin, manifest, sha, len(wasm), path)
        mod = _with_gc(mod, needs_gc)
        if not beside:
            _remember(engine, sha, mod)
        if registry is not None:
            mod.check_imports(registry)
        return mod

    @classmethod
    def _described(cls, engine: SandboxEngine, wasm: bytes, plugin: str,
                   manifest: dict[str, Any], sha: str, path: Path | None,
                   needs_gc: bool, validate: bool) -> PluginModule:
        """What :meth:`load` makes of ``wasm`` but compiled: the same checks over the
        imports and exports read from the bytes, after wasmtime validated them."""
        from omnicore.sandbox import shape
        from omnicore.sandbox.engine import refuse_indescribable

        try:
            refuse_indescribable(wasm)
            if validate:
                try:
                    wasmtime.Module.validate(engine.wasmtime, wasm)
                except wasmtime.WasmtimeError as exc:
                    if not (engine.baseline and winch_lacks(str(exc))):
                        raise
                    engine, needs_gc = engine.gc, True  # as load() does
                    wasmtime.Module.validate(engine.wasmtime, wasm)
            described = shape.read(wasm)
        except (wasmtime.WasmtimeError, wasmbin.WasmFormatError) as exc:
            first = engine_cause(str(exc))
            raise InvalidModule(f"plugin {plugin!r} is not a valid WebAssembly module: {first}",
                                plugin=plugin) from None
        mod = cls._from_compiled(cast(wasmtime.Module, described), plugin, manifest, sha,
                                 len(wasm), path)
        mod = _with_gc(mod, needs_gc)
        return mod

    @classmethod
    def _from_compiled(cls, compiled: wasmtime.Module, plugin: str,
                       manifest: dict[str, Any], sha: str, size: int,
                       path: Path | None) -> PluginModule:
        def err(msg: str) -> InvalidModule:
            return InvalidModule(f"plugin {plugin!r}: {msg}", plugin=plugin)

        exports = tuple(
            Export(e.name, _kind(e.type),
                   _type_str(e.type) if isinstance(e.type, wasmtime.FuncType) else None)
            for e in compiled.exports)
        by_name = {e.name: e for e in exports}
        reason = _extism_reason(compiled, plugin, manifest, exports, path)
        if reason is not None:
            return cls._extism(compiled, plugin, manifest, sha, size, path, exports, reason)
        mem = by_name.get("memory")
        if mem is None or mem.kind != "memory":
            raise err("missing required export 'memory' (a linear memory); see specs/abi.md §1.1")
        for fname, sig in (("omni_alloc", (("i32",), ("i32",))),
                           ("omni_free", (("i32", "i32"), ()))):
            e = by_name.get(fname)
            if e is None:
                raise err(f"missing required export '{fname}' {signature_text(sig)}; every plugin "
                          "exports the allocator pair (specs/abi.md §1.1)")
            if e.signature != sig:
                got = signature_text(e.signature) if e.signature else e.kind
                raise err(f"export '{fname}' has type {got}, expected {signature_text(sig)}")
        init = by_name.get("_initialize")
        if init is not None and init.signature != ((), ()):
            raise err("export '_initialize' must have type () -> ()")
        declared = manifest.get("handlers")
        if declared:
            names = [h if isinstance(h, str) else h["name"] for h in declared]
            for h in names:
                e = by_name.get(h)
                if e is None:
                    raise err(f"handler {h!r} is listed in the manifest but not exported")
                if e.signature != _HANDLER_TYPE:
                    got = signature_text(e.signature) if e.signature else e.kind
                    raise err(f"handler {h!r} has type {got}, "
                              f"expected {signature_text(_HANDLER_TYPE)}")
                if h.startswith(("omni_", "_")):
                    raise err(f"handler {h!r} uses a reserved name (omni_*, _*)")
            handlers = tuple(dict.fromkeys(names))
        else:
            handlers = tuple(e.name for e in exports if e.signature == _HANDLER_TYPE
                             and not e.name.startswith(("omni_", "_")))
        imports = tuple(
            Import(i.module, i.name or "", _kind(i.type),
                   _type_str(i.type) if isinstance(i.type, wasmtime.FuncType) else None)
            for i in compiled.imports)
        requested: set[str] = set()
        uses_wasi = False
        for imp in imports:
            if imp.module.startswith(NAMESPACE_PREFIX):
                if imp.kind != "func":
                    raise err(f"import {imp.module}.{imp.name} is a {imp.kind}; capability "
                              "namespaces only provide functions")
                requested.add(imp.module[len(NAMESPACE_PREFIX):])
            elif imp.module == WASI_MODULE:
                if imp.kind != "func":
                    raise err(f"import {imp.module}.{imp.name} is a {imp.kind}, not a function")
                uses_wasi = True
            else:
                raise err(f"unknown import {imp.module}.{imp.name}: plugins may import only "
                          f"from omnicore:<capability> and {WASI_MODULE} (specs/abi.md §3)")
        return cls(name=plugin, manifest=manifest, handlers=handlers,
                   requested=frozenset(requested), abi=ABI_VERSION, sha256=sha, size=size,
                   imports=imports, exports=exports, uses_wasi=uses_wasi,
                   wasmtime_module=compiled, path=path)

    @classmethod
    def _extism(cls, compiled: wasmtime.Module, plugin: str, manifest: dict[str, Any],
                sha: str, size: int, path: Path | None,
                exports: tuple[Export, ...], reason: str) -> PluginModule:
        """An Extism plugin: handlers are its ``() -> i32`` / ``() -> ()`` exports; the names
        it imports are checked by omnicore.extism when it is linked (specs/extism.md)."""
        handlers = tuple(e.name for e in exports
                         if e.signature in _EXTISM_HANDLER_TYPES
                         and not e.name.startswith(_EXTISM_NOT_HANDLERS))
        imports = tuple(
            Import(i.module, i.name or "", _kind(i.type),
                   _type_str(i.type) if isinstance(i.type, wasmtime.FuncType) else None)
            for i in compiled.imports)
        requested = set()
        for imp in imports:
            # Other module names are modules linked by name (the Extism manifest's wasm
            # list), checked when the plugin is linked (omnicore.extism._links).
            if imp.module.startswith(NAMESPACE_PREFIX) or (
                    imp.module in (EXTISM_ENV, EXTISM_USER, WASI_MODULE) and imp.kind != "func"):
                raise InvalidModule(
                    f"plugin {plugin!r}: unknown import {imp.module}.{imp.name} ({imp.kind}); "
                    f"Extism plugins may import functions from {EXTISM_ENV}, {EXTISM_USER}, "
                    f"{WASI_MODULE} and modules linked by name (specs/extism.md)",
                    plugin=plugin)
            if imp.module == EXTISM_ENV and imp.name in _EXTISM_REQUESTS:
                requested.add(_EXTISM_REQUESTS[imp.name])
        return cls(name=plugin, manifest=manifest, handlers=handlers,
                   requested=frozenset(requested), abi="extism", sha256=sha, size=size,
                   imports=imports, exports=exports,
                   uses_wasi=any(i.module == WASI_MODULE for i in imports),
                   wasmtime_module=compiled, path=path, abi_reason=reason)

    def check_imports(self, registry: CapabilityRegistry) -> None:
        """Raise InvalidModule for an import ``registry`` cannot satisfy (§3)."""
        for imp in self.imports:
            if not imp.module.startswith(NAMESPACE_PREFIX):
                continue
            cap = registry.get(imp.module[len(NAMESPACE_PREFIX):])
            where = f"{imp.module}.{imp.name}"
            if cap is None:
                known = ", ".join(NAMESPACE_PREFIX + n for n in registry.names())
                raise InvalidModule(f"plugin {self.name!r}: unknown import namespace "
                                    f"{imp.module} (for {where}); this host provides {known}",
                                    plugin=self.name)
            fn = cap.function(imp.name)
            if fn is None:
                have = ", ".join(f.name for f in cap.functions)
                raise InvalidModule(f"plugin {self.name!r}: unknown import {where}; "
                                    f"{imp.module} provides {have}", plugin=self.name)
            if imp.signature != fn.wasm_type:
                raise InvalidModule(
                    f"plugin {self.name!r}: import {where} has type "
                    f"{signature_text(imp.signature or ((), ()))}, "
                    f"expected {signature_text(fn.wasm_type)}",
                    plugin=self.name)

    @staticmethod
    def inspect(source: bytes | Path | str, registry: CapabilityRegistry | None = None,
                name: str | None = None, *, engine: SandboxEngine | None = None,
                compile: bool = True, validate: bool = True) -> dict[str, Any]:
        """Inspect a plugin without an app: the :meth:`describe` report plus ``ok``/``error``.

        Compiled on ``engine`` (through its module cache; the caller closes it), else on an
        engine of its own. Never raises for bad input:
        ``{"ok": False, "error": "...", "error_type": "..."}``.
        """
        from omnicore.errors import PluginLoadError
        from omnicore.sandbox.engine import SandboxEngine

        own = engine is None
        engine = SandboxEngine() if engine is None else engine
        try:
            mod = PluginModule.load(engine, source, name, compile=compile, validate=validate)
            report = mod.describe()
            try:
                if registry is not None:
                    mod.check_imports(registry)
                report.update(ok=True, error=None, error_type=None)
            except PluginLoadError as exc:
                report.update(ok=False, error=str(exc), error_type=type(exc).__name__)
            return report
        except PluginLoadError as exc:
            return {"ok": False, "error": str(exc), "error_type": type(exc).__name__}
        finally:
            if own:
                engine.close()
