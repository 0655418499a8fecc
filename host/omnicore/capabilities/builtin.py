"""The built-in capabilities, registered through the same pluggy hook extensions use.

Load this module as a pluggy extension (``omnicore.capabilities.builtin``): its
``capabilities(app)`` hook returns the built-ins. A new built-in capability is one new module
with a ``CAPABILITY`` plus one line in :data:`BUILTIN_MODULES`.
"""

from __future__ import annotations

import importlib
from typing import Any

from omnicore.sandbox.capability import Capability

__all__ = ["BUILTIN_MODULES", "builtin_capabilities", "capabilities", "name"]

name = "omnicore-builtin-capabilities"

#: Modules each exposing ``CAPABILITY``; order is display order.
BUILTIN_MODULES = ("omnicore.capabilities.log", "omnicore.capabilities.config")


def builtin_capabilities() -> list[Capability]:
    """Fresh list of the built-in Capability objects."""
    caps = []
    for mod in BUILTIN_MODULES:
        cap = importlib.import_module(mod).CAPABILITY
        if not isinstance(cap, Capability):
            raise TypeError(f"{mod}.CAPABILITY is not a Capability")
        caps.append(cap)
    return caps


def capabilities(app: Any) -> list[Capability]:
    """pluggy hook: the built-in capabilities (app is unused: they need no app state)."""
    return builtin_capabilities()
