"""Pin the public names of the core layers so the API cannot drift by accident."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "omnicore": ["OmniApp", "__version__"],
    "omnicore.core": ["Event", "EventBus", "Lifecycle", "Module", "OmniApp", "State",
                      "Subscription"],
    "omnicore.core.app": ["DEFAULT_MODULES", "OmniApp"],
    "omnicore.core.events": [
        "AppStarted", "AppStateChanged", "AppStopped", "ErrorOccurred", "Event", "EventBus",
        "ExtensionFailed", "ExtensionLoaded", "HealthChanged", "ModuleStateChanged",
        "PluginFailed", "PluginLoaded", "PluginStateChanged", "PluginUnloaded",
        "Subscription", "TaskFailed", "TaskFinished", "TaskStarted", "event_types"],
    "omnicore.config": ["ENV_PREFIX", "CircuitConfig", "ConsoleConfig", "LimitsConfig",
                        "LogConfig", "OmniConfig", "PluginConfig", "SandboxConfig",
                        "load_config", "render_config"],
    "omnicore.runtime": ["TaskEngine", "TaskHandle"],
    "omnicore.plugins": ["BUILTIN_EXTENSIONS", "ENTRY_POINT_GROUP", "HOOK_NAMES",
                         "ExtensionManager", "hookimpl", "hookspec"],
    "omnicore.modules": ["CheckResult", "ComponentHealth", "HealthModule", "HealthReport",
                         "MetricsModule", "Status"],
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
    from omnicore.plugins import HOOK_NAMES, hookspecs

    assert HOOK_NAMES == ("register", "startup", "shutdown", "capabilities")
    for name in HOOK_NAMES:
        assert callable(getattr(hookspecs, name)) and getattr(hookspecs, name).__doc__
