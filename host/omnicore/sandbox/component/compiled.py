"""A compiled component: a :class:`PluginModule` of ABI ``"component"`` with its world."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import wasmtime
from wasmtime import component as cm

from omnicore.errors import InvalidModule
from omnicore.sandbox import modcache
from omnicore.sandbox.component.world import World, read_world, wasi_interface_supplied
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.module import Export, Import, PluginModule, _cause

__all__ = ["COMPONENT_ABI", "ComponentModule", "is_component", "load_component"]

COMPONENT_ABI = "component"
#: Bytes 4..8 of a component: version 0x0d and layer 1, where a core module has version 1.
_COMPONENT_HEADER = b"\x0d\x00\x01\x00"


def is_component(wasm: bytes) -> bool:
    """Whether ``wasm`` is a Component Model component (not a core module)."""
    return wasm[:4] == b"\0asm" and wasm[4:8] == _COMPONENT_HEADER


@dataclass(frozen=True, eq=False)
class ComponentModule(PluginModule):
    """A component ready to instantiate: handlers are its callable exports."""

    component: cm.Component | None = field(default=None, repr=False)
    world: World | None = field(default=None, repr=False)

    @property
    def compiled(self) -> cm.Component:
        """The compiled component (always set by :func:`load_component`)."""
        assert self.component is not None
        return self.component

    def describe(self) -> dict[str, Any]:
        """The :meth:`PluginModule.describe` report plus the WIT world, readable."""
        report = super().describe()
        world = self.world
        assert world is not None
        report["exports"] = [{"name": f.name, "kind": "func", "type": f.signature,
                              **({"unsupported": f.unsupported} if f.unsupported else {})}
                             for f in world.functions.values()]
        report["imports"] = {name: ["supplied" if wasi_interface_supplied(name)
                                    else "not granted" if name.startswith("wasi:")
                                    else "nothing supplies it"]
                             for name in world.imports}
        report["world"] = list(world.lines)
        return report


def _compile(engine: SandboxEngine, wasm: bytes, sha: str) -> cm.Component:
    core_path = engine.cache_path(sha)
    path = core_path.with_suffix(".component.cwasm") if core_path is not None else None
    if path is not None:
        # Checked before wasmtime trusts it, like a module's entry (sandbox/modcache.py).
        cached = modcache.load(
            lambda file: cm.Component.deserialize_file(engine.components, file), path, sha)
        if cached is not None:
            return cached
    component = cm.Component(engine.components, wasm)
    if path is not None:
        modcache.store(path, sha, bytes(component.serialize()))
    return component


def load_component(engine: SandboxEngine, wasm: bytes, name: str | None,
                   path: Path | None) -> ComponentModule:
    """Compile the component ``wasm`` and read its world; InvalidModule if it is not valid.

    Components carry no omnicore manifest: the name is ``name``, else the file's stem.
    """
    sha = hashlib.sha256(wasm).hexdigest()
    plugin = name or (path.stem if path else f"plugin-{sha[:12]}")
    try:
        component = _compile(engine, wasm, sha)
        world = read_world(component, engine.components)
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"plugin {plugin!r} is not a valid WebAssembly component: "
                            f"{_cause(str(exc))}", plugin=plugin) from None
    if not world.functions:
        raise InvalidModule(f"plugin {plugin!r} is not a valid plugin: a component that "
                            "exports no function (nothing could call it)", plugin=plugin)
    imports = tuple(Import(n, "", "interface") for n in world.imports)
    exports = tuple(Export(f.name, "func") for f in world.functions.values())
    return ComponentModule(
        name=plugin, manifest={}, handlers=tuple(world.functions), requested=frozenset(),
        abi=COMPONENT_ABI, sha256=sha, size=len(wasm), imports=imports, exports=exports,
        uses_wasi=any(n.startswith("wasi:") for n in world.imports),
        # A component has no core module; nothing reads this for ABI "component".
        wasmtime_module=cast(wasmtime.Module, None), path=path,
        component=component, world=world)
