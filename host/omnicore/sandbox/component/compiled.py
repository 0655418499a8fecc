"""A compiled component: a :class:`CompiledPlugin` of ABI ``"component"`` with its world."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component as cm

from omnicore.errors import InvalidModule
from omnicore.sandbox import modcache, wasmbin
from omnicore.sandbox.capability import CapabilityRegistry
from omnicore.sandbox.compiled import CompiledPlugin, Export, Import, engine_cause
from omnicore.sandbox.component import canonplan, rawlift
from omnicore.sandbox.component.hostcalls import (
    PACKAGE,
    capability_of,
    handler_export,
    requested,
)
from omnicore.sandbox.component.schema import arguments_schema
from omnicore.sandbox.component.world import World, read_world, wasi_interface_supplied
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.manifest import MANIFEST_SECTION, check_manifest, parse_manifest
from omnicore.sandbox.wasmbin import is_component

__all__ = ["COMPONENT_ABI", "ComponentModule", "cache_path", "is_component", "load_component",
           "origin"]

_log = logging.getLogger("omnicore.sandbox")

COMPONENT_ABI = "component"
#: Bytes 4..8 of a component: version 0x0d and layer 1, where a core module has version 1.


@dataclass(frozen=True, eq=False, kw_only=True)
class ComponentModule(CompiledPlugin):
    """A component ready to instantiate: handlers are its callable exports."""

    component: cm.Component = field(repr=False)
    world: World = field(repr=False)
    #: The exported ``omnicore:plugin/handler`` interface (``omnicore:plugin/handler@1.0.0``)
    #: when the component is an omnicore plugin: its handlers are the manifest's, called
    #: with bytes like ABI v1's; None for any other component (exports called with JSON).
    handler_interface: str | None = None
    #: Functions with a flat face, by name: the host does their whole canonical ABI
    #: (.canonplan); any other takes wasmtime's value API.
    flat: dict[str, rawlift.RawForm] = field(default_factory=dict, repr=False)
    #: The tools its own ``producers`` section says processed it (``ComponentizeJS``,
    #: ``wit-component``, ...): read from the bytes compiled, never from a file again.
    processed_by: tuple[str, ...] = ()

    @property
    def compiled(self) -> cm.Component:
        """The compiled component."""
        return self.component

    def check_imports(self, registry: CapabilityRegistry) -> None:
        """Raise InvalidModule for an ``omnicore:plugin`` interface ``registry`` cannot link
        (the types of its functions are checked when the runtime links them)."""
        for cname in sorted(self.requested):
            cap = registry.get(cname)
            if cap is None or not cap.wit:
                have = ", ".join(f"{PACKAGE}/{c.name}" for c in registry if c.wit)
                raise InvalidModule(f"plugin {self.name!r} imports {PACKAGE}/{cname}, which "
                                    f"this host does not supply to components (it supplies "
                                    f"{have})", plugin=self.name)

    def call_path(self, name: str) -> str:
        """How export ``name`` is called: ``"flat"`` (the host's canonical ABI on its core
        function) or ``"value-api"`` (wasmtime's value API: resources, streams, futures, a
        layout the planner does not read)."""
        return "value-api" if self.flat.get(name) is None else "flat"

    def describe(self) -> dict[str, Any]:
        """The :meth:`CompiledPlugin.describe` report plus the WIT world, readable."""
        report = super().describe()
        world = self.world
        report["exports"] = [{"name": f.name, "kind": "func", "type": f.signature,
                              "path": self.call_path(f.name),
                              **({"unsupported": f.unsupported} if f.unsupported else {})}
                             for f in world.functions.values()]
        report["imports"] = {name: [_supplier(name)] for name in world.imports}
        if self.handler_interface is not None:
            report["handler_interface"] = self.handler_interface
        report["world"] = list(world.lines)
        return report


def _supplier(name: str) -> str:
    try:
        cap = capability_of(name)
    except InvalidModule:
        cap = None
    if cap is not None:
        return f"capability {cap} (omnicore:{cap})"
    if wasi_interface_supplied(name):
        # What an operator needs to know: files come with a grant, sockets never.
        if name.startswith("wasi:filesystem/"):
            return "supplied: the fs grant's directories (none without it)"
        if name.startswith("wasi:sockets/"):
            return "supplied: every address refused"
        return "supplied"
    return "imported, not granted" if name.startswith("wasi:") else "nothing supplies it"


def _with_flat_faces(engine: SandboxEngine, wasm: bytes) -> cm.Component:
    """``wasm`` compiled with the flat faces of its exports (.canonplan, .rawlift), or as
    it is when it has none, or when the faces do not compile (a layout the planner misread:
    the one case compiled twice)."""
    planned = canonplan.plan(wasm)
    if planned:
        try:
            return cm.Component(engine.components, engine.code(rawlift.rewrite(wasm, planned)))
        except wasmtime.WasmtimeError as exc:
            _log.info("component kept without flat faces (its byte lists take wasmtime's "
                      "value API): %s", engine_cause(str(exc)))
    return cm.Component(engine.components, engine.code(wasm))


def cache_path(engine: SandboxEngine, sha: str) -> Path | None:
    """Where ``engine`` keeps the compiled component with this digest (None: no cache)."""
    core_path = engine.cache_path(sha)
    # Entries made by another planner hold other faces (they would still work, slowly).
    suffix = f".faces{canonplan.FACES_VERSION}.component.cwasm"
    return core_path.with_suffix(suffix) if core_path is not None else None


def origin(engine: SandboxEngine, sha: str) -> modcache.Origin:
    """What ``engine``'s cached component with this digest is made from, as its MAC covers
    it: a component with the planner's faces, on the components' engine."""
    return engine.origin(sha, f"component/faces{canonplan.FACES_VERSION}")


def _compile(engine: SandboxEngine, wasm: bytes, sha: str) -> cm.Component:
    # Authenticated before wasmtime trusts it, like a module's entry (sandbox/modcache.py).
    path = cache_path(engine, sha)
    return engine.shared(f"component:{sha}", lambda: modcache.compiled(
        path, origin(engine, sha), engine.components, cm.Component,
        lambda: _with_flat_faces(engine, wasm), engine.module_key, engine.baked(path)))


def _flat_forms(wasm: bytes, world: World, component: cm.Component) -> dict[str, rawlift.RawForm]:
    """The flat faces ``component`` (compiled by :func:`_compile`) has, by function name:
    each one's function has the signature the planner read."""
    forms = {}
    for name, (form, _lift) in canonplan.plan(wasm).items():
        fn = world.functions.get(name)
        if fn is None or fn.unsupported is not None:
            continue
        # The planner's reading of the binary against wasmtime's reflection of the export:
        # the same types, names included, or the export keeps the value API.
        if tuple(c.canon() for _, c in fn.params) != form.types or (
                fn.result.canon() if fn.result is not None else None) != form.result_type:
            continue
        faces = (form.export, form.realloc, form.post_return)
        if all(component.get_export_index(f) is not None for f in faces if f is not None):
            forms[name] = form
    return forms


def _described_exports(manifest: dict[str, Any], world: World) -> dict[str, Any]:
    """A plain component's manifest with each callable export described from its WIT: its
    signature and the JSON Schema of its arguments (an object keyed by parameter names), the
    schema MCP tools and the console's invoke form are made from. A handler the manifest
    already describes keeps the manifest's words."""
    declared = {h["name"]: h for h in manifest.get("handlers") or []
                if isinstance(h, dict) and isinstance(h.get("name"), str)}
    described = []
    for fn in world.functions.values():
        if fn.unsupported is not None:
            continue
        entry = {"name": fn.name, "description": f"{fn.name}: {fn.signature}",
                 "input_schema": arguments_schema(fn.params), "wit": fn.signature}
        described.append({**entry, **declared.get(fn.name, {})})
    return {**manifest, "handlers": described} if described else manifest


def load_component(engine: SandboxEngine, wasm: bytes, name: str | None,
                   path: Path | None) -> ComponentModule:
    """Compile the component ``wasm`` and read its world; InvalidModule if it is not valid.

    The name is ``name``, else its ``omnicore.manifest`` section's, else the file's stem.
    """
    sha = hashlib.sha256(wasm).hexdigest()
    label = name or (path.stem if path else None)
    try:
        wasmbin.custom_sections(wasm, MANIFEST_SECTION)
    except wasmbin.WasmFormatError as exc:
        raise InvalidModule(f"plugin {label or '<bytes>'!r} is not a valid WebAssembly "
                            f"component: {exc}", plugin=label) from None
    # `omnicore build` writes the same manifest section into a component as into a module.
    manifest = parse_manifest(wasm, label)
    plugin = name or manifest.get("name") or (path.stem if path else f"plugin-{sha[:12]}")
    check_manifest(manifest, plugin)
    try:
        component = _compile(engine, wasm, sha)
        world = read_world(component, engine.components)
        flat = _flat_forms(wasm, world, component)
    except wasmtime.WasmtimeError as exc:
        raise InvalidModule(f"plugin {plugin!r} is not a valid WebAssembly component: "
                            f"{engine_cause(str(exc))}", plugin=plugin) from None
    try:
        wanted = requested(world.imports)
        interface = handler_export(component, engine.components)
    except InvalidModule as exc:
        raise InvalidModule(f"plugin {plugin!r}: {exc}", plugin=plugin) from None
    handlers = tuple(world.functions)
    if interface is not None and manifest.get("handlers"):
        handlers = tuple(h if isinstance(h, str) else h["name"] for h in manifest["handlers"])
    else:
        interface = None
        manifest = _described_exports(manifest, world)
    if not handlers:
        raise InvalidModule(f"plugin {plugin!r} is not a valid plugin: a component that "
                            "exports no function (nothing could call it)", plugin=plugin)
    imports = tuple(Import(n, "", "interface") for n in world.imports)
    exports = tuple(Export(f.name, "func") for f in world.functions.values())
    return ComponentModule(
        name=plugin, manifest=manifest, handlers=handlers, requested=wanted,
        abi=COMPONENT_ABI, sha256=sha, size=len(wasm), imports=imports, exports=exports,
        uses_wasi=any(n.startswith("wasi:") for n in world.imports),
        path=path,
        component=component, world=world, handler_interface=interface, flat=flat,
        processed_by=wasmbin.processed_by(wasm))
