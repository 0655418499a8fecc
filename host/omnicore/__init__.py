"""omnicore: a host runtime for WebAssembly plugins.

The public face, for embedding apps and host extensions::

    from omnicore import OmniApp, Limits, Capability, HostFunction

Names resolve on first use, so ``import omnicore.errors`` (used by every layer) does not pull
in the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "OmniApp": "omnicore.app",
    "PluginHost": "omnicore.plugins.host",
    "PluginInfo": "omnicore.plugins.info",
    "PluginState": "omnicore.plugins.info",
    "Limits": "omnicore.sandbox.limits",
    "Capability": "omnicore.sandbox.capability",
    "HostFunction": "omnicore.sandbox.capability",
    "PluginContext": "omnicore.sandbox.capability",
    "GuestMemory": "omnicore.sandbox.capability",
    "Status": "omnicore.sandbox.capability",
    "HealthStatus": "omnicore.modules.health",
    **{name: "omnicore.errors" for name in (
        "OmniError", "ConfigError", "LifecycleError", "ModuleError", "BuildError",
        "Refused", "PluginError", "PluginNotFound", "HandlerNotFound", "NeedsGrant",
        "PluginLoadError", "PluginCompiling",
        "InvalidModule", "UnsupportedAbiVersion", "DuplicatePlugin", "PluginCallError",
        "GuestError", "Trap", "InvalidInput", "CircuitOpen", "LimitExceeded", "DeadlineExceeded",
        "FuelExhausted", "MemoryLimitExceeded", "InputTooLarge", "OutputTooLarge")},
}

__all__ = [
    "BuildError",
    "Capability",
    "CircuitOpen",
    "ConfigError",
    "DeadlineExceeded",
    "DuplicatePlugin",
    "FuelExhausted",
    "GuestError",
    "GuestMemory",
    "HandlerNotFound",
    "HealthStatus",
    "HostFunction",
    "InputTooLarge",
    "InvalidInput",
    "InvalidModule",
    "LifecycleError",
    "LimitExceeded",
    "Limits",
    "MemoryLimitExceeded",
    "ModuleError",
    "NeedsGrant",
    "OmniApp",
    "OmniError",
    "OutputTooLarge",
    "PluginCallError",
    "PluginCompiling",
    "PluginContext",
    "PluginError",
    "PluginHost",
    "PluginInfo",
    "PluginLoadError",
    "PluginNotFound",
    "PluginState",
    "Refused",
    "Status",
    "Trap",
    "UnsupportedAbiVersion",
    "__version__",
]

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.errors import (
        BuildError,
        CircuitOpen,
        ConfigError,
        DeadlineExceeded,
        DuplicatePlugin,
        FuelExhausted,
        GuestError,
        HandlerNotFound,
        InputTooLarge,
        InvalidInput,
        InvalidModule,
        LifecycleError,
        LimitExceeded,
        MemoryLimitExceeded,
        ModuleError,
        NeedsGrant,
        OmniError,
        OutputTooLarge,
        PluginCallError,
        PluginError,
        PluginLoadError,
        PluginNotFound,
        Refused,
        Trap,
        UnsupportedAbiVersion,
    )
    from omnicore.modules.health import HealthStatus
    from omnicore.plugins.host import PluginHost
    from omnicore.plugins.info import PluginInfo, PluginState
    from omnicore.sandbox.capability import (
        Capability,
        GuestMemory,
        HostFunction,
        PluginContext,
        Status,
    )
    from omnicore.sandbox.limits import Limits


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'omnicore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
