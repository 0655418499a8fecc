"""The built-in capabilities, registered through the same pluggy hook extensions use.

Load this module as a pluggy extension (``omnicore.capabilities.builtin``): its
``capabilities(app)`` hook returns the built-ins. A new built-in capability is one new module
with a ``CAPABILITY`` plus one line in :data:`BUILTINS`. A capability that keeps app
state (kv, tasks, events) also has ``for_app(app)``, used when there is an app (typed by
:class:`~omnicore.capabilities.types.AppServices`); its ``CAPABILITY`` serves plugin hosts
without one.

The hook hands them over deferred (:class:`~omnicore.sandbox.capability.DeferredCapability`):
each module is imported when a plugin first needs it, so a host (or an ``omnicore call``) of
plugins that use only ``log`` and ``config`` never loads the storage backend, the job service,
the egress client or numpy. A line of :data:`BUILTINS` therefore says what the registry must
know before the import: the module's ``default_grant`` and the manifest keys its
``check_manifest`` reads (``tests/capabilities/test_builtin.py`` holds each line to its
module).
"""

from __future__ import annotations

import importlib
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from omnicore.sandbox.capability import Capability, CapabilityRegistry, DeferredCapability

if TYPE_CHECKING:
    from omnicore.types import HostApp

__all__ = ["BUILTINS", "BUILTIN_MODULES", "Builtin", "builtin_capabilities", "builtin_registry",
           "capabilities", "deferred_capabilities", "name"]

name = "omnicore-builtin-capabilities"


class Builtin(NamedTuple):
    """One built-in: its module (exposing ``CAPABILITY``) and what it declares.

    ``app_state``: it keeps the plugin's data in an app (its database, job queue or event
    bus), so a plugin host with neither an app nor a ``data_dir`` cannot serve the grant
    (``omnicore call FILE.wasm`` refuses it and says to pass ``--app DIR``).
    """

    module: str
    default_grant: bool = False
    manifest_keys: tuple[str, ...] = ()
    app_state: bool = False


#: The built-ins; order is display order.
BUILTINS = (
    Builtin("omnicore.capabilities.log", default_grant=True),
    Builtin("omnicore.capabilities.config"),
    Builtin("omnicore.capabilities.kv", app_state=True),
    Builtin("omnicore.capabilities.tasks", manifest_keys=("schedules",), app_state=True),
    Builtin("omnicore.capabilities.events", manifest_keys=("subscriptions",), app_state=True),
    Builtin("omnicore.capabilities.secrets", app_state=True),
    Builtin("omnicore.capabilities.http"),
    Builtin("omnicore.capabilities.vectors", app_state=True),
    Builtin("omnicore.capabilities.memory", app_state=True),
    Builtin("omnicore.capabilities.fs"),
    # The connectors are the app's (its config and secret store).
    Builtin("omnicore.capabilities.sql", app_state=True),
    Builtin("omnicore.capabilities.redis", app_state=True),
    # Talks to the MCP client of the running tool call (omnicore.mcp), if any.
    Builtin("omnicore.capabilities.mcp"),
)
#: The built-ins' modules.
BUILTIN_MODULES = tuple(b.module for b in BUILTINS)


def _load(module_name: str, app: HostApp | None) -> Capability:
    module = importlib.import_module(module_name)
    for_app = getattr(module, "for_app", None)
    cap = for_app(app) if app is not None and for_app is not None else module.CAPABILITY
    if not isinstance(cap, Capability):
        raise TypeError(f"{module_name}.CAPABILITY is not a Capability")
    return cap


def builtin_capabilities(app: HostApp | None = None) -> list[Capability]:
    """Fresh list of the built-in Capability objects, bound to ``app``'s state if given
    (every module imported now)."""
    return [_load(b.module, app) for b in BUILTINS]


def deferred_capabilities(app: HostApp | None = None) -> list[DeferredCapability]:
    """The built-ins, each imported (and bound to ``app``) on first need."""
    return [DeferredCapability(b.module.rpartition(".")[2], partial(_load, b.module, app),
                               default_grant=b.default_grant, manifest_keys=b.manifest_keys)
            for b in BUILTINS]


def builtin_registry() -> CapabilityRegistry:
    """A registry of just the built-ins (for a sandbox used without an app)."""
    return CapabilityRegistry(deferred_capabilities())


def capabilities(app: HostApp) -> list[DeferredCapability]:
    """pluggy hook: the built-in capabilities."""
    return deferred_capabilities(app)
