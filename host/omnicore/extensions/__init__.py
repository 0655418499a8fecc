"""Python host extensions: pluggy hookspecs and the manager behind ``app.extensions``."""

from omnicore.extensions.hookspecs import HOOK_NAMES, hookimpl, hookspec
from omnicore.extensions.manager import (
    DEPRECATED_ENTRY_POINT_GROUP,
    ENTRY_POINT_GROUP,
    ExtensionManager,
)

__all__ = [
    "DEPRECATED_ENTRY_POINT_GROUP",
    "ENTRY_POINT_GROUP",
    "HOOK_NAMES",
    "ExtensionManager",
    "hookimpl",
    "hookspec",
]
