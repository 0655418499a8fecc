"""The built-in capabilities, registered through the same pluggy hook extensions use.

Load this module as a pluggy extension (``omnicore.capabilities.builtin``): its
``capabilities(app)`` hook returns the built-ins. A new built-in capability is one new module
with a ``CAPABILITY`` plus one line in :data:`BUILTIN_MODULES`. A capability that keeps app
state (kv, tasks, events) also has ``for_app(app)``, used when there is an app; its
``CAPABILITY`` serves plugin hosts without one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from omnicore.sandbox.capability import Capability, CapabilityRegistry

if TYPE_CHECKING:
    from omnicore.types import HostApp

__all__ = ["BUILTIN_MODULES", "builtin_capabilities", "builtin_registry", "capabilities", "name"]

name = "omnicore-builtin-capabilities"

#: Modules each exposing ``CAPABILITY``; order is display order.
BUILTIN_MODULES = ("omnicore.capabilities.log", "omnicore.capabilities.config",
                   "omnicore.capabilities.kv", "omnicore.capabilities.tasks",
                   "omnicore.capabilities.events", "omnicore.capabilities.secrets",
                   "omnicore.capabilities.http", "omnicore.capabilities.vectors",
                   "omnicore.capabilities.memory", "omnicore.capabilities.fs")


def builtin_capabilities(app: HostApp | None = None) -> list[Capability]:
    """Fresh list of the built-in Capability objects, bound to ``app``'s state if given."""
    caps = []
    for mod in BUILTIN_MODULES:
        module = importlib.import_module(mod)
        for_app = getattr(module, "for_app", None)
        cap = for_app(app) if app is not None and for_app is not None else module.CAPABILITY
        if not isinstance(cap, Capability):
            raise TypeError(f"{mod}.CAPABILITY is not a Capability")
        caps.append(cap)
    return caps


def builtin_registry() -> CapabilityRegistry:
    """A registry of just the built-ins (for a sandbox used without an app)."""
    return CapabilityRegistry(builtin_capabilities())


def capabilities(app: HostApp) -> list[Capability]:
    """pluggy hook: the built-in capabilities."""
    return builtin_capabilities(app)
