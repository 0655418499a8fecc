"""The wasm sandbox: engine, plugin modules, capability-scoped runtimes, limits.

Public face (specs/host.md "Sandbox API")::

    engine = SandboxEngine(cache_dir=..., epoch_tick_ms=10, fuel=False)
    module = PluginModule.load(engine, path_or_bytes)
    runtime = PluginRuntime(engine, module, CapabilityRegistry.builtin(), grants={}, config={},
                            limits=Limits())
    runtime.call("greet", b"...")
"""

from omnicore.sandbox.capability import (
    Capability,
    CapabilityRegistry,
    GuestMemory,
    HostFunction,
    HostTrap,
    PluginContext,
    Status,
)
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import ABI_VERSION, PluginModule
from omnicore.sandbox.pluginlog import LogLine, PluginLog
from omnicore.sandbox.runtime import PluginRuntime

__all__ = [
    "ABI_VERSION",
    "Capability",
    "CapabilityRegistry",
    "GuestMemory",
    "HostFunction",
    "HostTrap",
    "Limits",
    "LogLine",
    "PluginContext",
    "PluginLog",
    "PluginModule",
    "PluginRuntime",
    "SandboxEngine",
    "Status",
]
