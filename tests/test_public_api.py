"""Pin the public names of the core layers so the API cannot drift by accident."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "omnicore": [
        "BuildError", "Capability", "CircuitOpen", "ConfigError", "DeadlineExceeded",
        "DuplicatePlugin", "FuelExhausted", "GuestError", "GuestMemory", "HandlerNotFound",
        "HealthStatus", "HostFunction", "InputTooLarge", "InvalidInput", "InvalidModule",
        "LifecycleError",
        "LimitExceeded", "Limits", "MemoryLimitExceeded", "ModuleError", "NeedsGrant",
        "OmniApp", "OmniError", "OutputTooLarge", "PluginCallError", "PluginContext",
        "PluginError", "PluginHost", "PluginInfo", "PluginLoadError", "PluginNotFound",
        "PluginState", "Status", "Trap", "UnsupportedAbiVersion", "__version__"],
    "omnicore.plugins": ["PluginHost", "PluginInfo", "PluginState"],
    "omnicore.sandbox.grants": ["DEFAULT_GRANTS", "GrantLayer", "Grants", "check_requested",
                                "merge", "normalize",
                                "parse_flag", "validate"],
    "omnicore.types": ["Extensions", "HealthChecks", "HostApp", "PluginCaller", "PluginView"],
    "omnicore.core": ["Event", "EventBus", "Lifecycle", "Module", "State", "Subscription"],
    "omnicore.app": ["BUILTIN_EXTENSIONS", "DEFAULT_MODULES", "OmniApp"],
    "omnicore.core.app": ["OmniApp"],
    "omnicore.core.events": [
        "AppStarted", "AppStateChanged", "AppStopped", "ErrorOccurred", "Event", "EventBus",
        "ExtensionFailed", "ExtensionLoaded", "HealthChanged", "ModuleStateChanged",
        "Subscription", "TaskFailed", "TaskFinished", "TaskStarted", "event_types"],
    "omnicore.config": ["ENV_PREFIX", "CircuitConfig",
                        "LimitsConfig",
                        "LogConfig", "OmniConfig", "PluginConfig", "SandboxConfig",
                        "load_config", "render_config"],
    "omnicore.runtime": [],
    "omnicore.runtime.tasks": ["TaskEngine"],
    "omnicore.extensions": ["DEPRECATED_ENTRY_POINT_GROUP", "ENTRY_POINT_GROUP", "HOOK_NAMES",
                         "ExtensionManager", "hookimpl", "hookspec"],
    "omnicore.modules": ["CheckResult", "ComponentHealth", "HealthModule", "HealthReport",
                         "MetricsModule", "HealthStatus"],
    "omnicore.adapters": ["KINDS", "Environment", "cpu_quota", "detect"],
    "omnicore.logging": ["BoundLogger", "JsonFormatter", "TextFormatter", "configure",
                         "get_logger"],
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_all_is_pinned_and_resolvable(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPECTED[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_seed_import_paths() -> None:
    from omnicore.core.app import OmniApp
    from omnicore.modules.health import HealthModule
    from omnicore.runtime.tasks import TaskEngine

    assert OmniApp and HealthModule and TaskEngine


def test_hook_names() -> None:
    from omnicore.extensions import HOOK_NAMES, hookspecs

    assert HOOK_NAMES == ("register", "startup", "shutdown", "capabilities")
    for name in HOOK_NAMES:
        assert callable(getattr(hookspecs, name)) and getattr(hookspecs, name).__doc__


def test_the_package_face_reexports_the_defining_objects() -> None:
    import omnicore
    from omnicore import errors
    from omnicore.plugins.host import PluginHost
    from omnicore.sandbox.limits import Limits

    assert omnicore.PluginHost is PluginHost and omnicore.Limits is Limits
    assert all(getattr(omnicore, n) is getattr(errors, n) for n in errors.__all__)
    assert set(errors.__all__) <= set(omnicore.__all__)
