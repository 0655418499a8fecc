"""Python host extensions: pluggy hookspecs and the manager behind ``app.extensions``."""

from omnicore.plugins.hookspecs import HOOK_NAMES, hookimpl, hookspec
from omnicore.plugins.manager import BUILTIN_EXTENSIONS, ENTRY_POINT_GROUP, ExtensionManager

__all__ = [
    "BUILTIN_EXTENSIONS",
    "ENTRY_POINT_GROUP",
    "HOOK_NAMES",
    "ExtensionManager",
    "hookimpl",
    "hookspec",
]
