"""What a component plugin is linked to: WASI 0.2, the capabilities it was granted, and a
refusal or a trap for every other import (specs/components.md).

The grant model of core modules (sandbox/runtime.py): an ``omnicore:plugin`` import is a
request, and an ungranted request keeps the plugin from running; an import nothing supplies
keeps it from loading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wasmtime import component as cm

from omnicore.errors import InvalidModule
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox.capability import CapabilityRegistry, PluginContext
from omnicore.sandbox.component.compiled import ComponentModule
from omnicore.sandbox.component.deny import link_http_denied
from omnicore.sandbox.component.hostcalls import PACKAGE, capability_of, define
from omnicore.sandbox.component.world import wasi_interface_supplied
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.grants import check_requested

__all__ = ["Linked", "link"]


@dataclass(frozen=True, slots=True)
class Linked:
    """A component's linker, with the grants it was linked under."""

    linker: cm.Linker
    #: The plugin's grants by capability (its options).
    grants: Mapping[str, Mapping[str, Any]]
    #: The capabilities granted, the registry's defaults included.
    granted: frozenset[str]
    #: wasi:http is linked (to deny every request): its types keep their state in the store,
    #: and wasmtime aborts the process when a store without it meets them.
    http_linked: bool


def link(engine: SandboxEngine, module: ComponentModule, registry: CapabilityRegistry,
         grants: Mapping[str, Mapping[str, Any]] | Iterable[str] | None,
         context: PluginContext) -> Linked:
    """Link ``module`` for the plugin ``context`` describes (its ``grant`` is filled in per
    capability). Raises InvalidModule for an import nothing supplies and the grant errors of
    :mod:`omnicore.sandbox.grants` for an ungranted request."""
    name = context.plugin
    world = module.world
    assert world is not None
    foreign = [n for n in world.imports
               if not n.startswith("wasi:") and capability_of(n) is None]
    if foreign:
        raise InvalidModule(
            f"plugin {name!r} imports {', '.join(foreign)}, which no capability or "
            "extension supplies; components may import WASI 0.2 interfaces and "
            f"{PACKAGE} ones (sdk/wit/plugin.wit) only", plugin=name)
    grant_map = grant_rules.of_plugin(name, grants, registry)
    module.check_imports(registry)
    granted = frozenset(grant_map) | registry.defaults()
    check_requested(name, module.requested, granted)
    linker = cm.Linker(engine.components)
    linker.add_wasip2()
    states = {}
    for cname in sorted(module.requested | (registry.defaults() & set(grant_map))):
        cap = registry.get(cname)
        assert cap is not None  # check_imports and validate_grants guarantee it
        states[cname] = cap.bind(dataclasses.replace(context, grant=grant_map.get(cname, {})))
    define(linker, module.compiled, engine.components, registry, states, name)
    http_linked = False
    unsupplied = [n for n in world.imports
                  if n.startswith("wasi:") and not wasi_interface_supplied(n)]
    if unsupplied and all(n.startswith("wasi:http/") for n in unsupplied):
        # Imported by default builds whether used or not: a request is answered with
        # WASI's HTTP-request-denied (.deny), never sent.
        link_http_denied(linker, world.imports)
        http_linked = True
    elif unsupplied:
        # Another standard interface the host does not supply: linked, but every use
        # traps, so the component loads and runs without it. (wasmtime's trap
        # definitions take exact names, and would hide wasi:http linked by version
        # range: with one of these, wasi:http traps too.)
        linker.define_unknown_imports_as_traps(module.compiled)
    return Linked(linker, grant_map, granted, http_linked)
