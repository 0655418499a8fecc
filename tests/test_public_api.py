"""Pin the public names of the core layers so the API cannot drift by accident."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

EXPECTED = {
    "omnicore": [
        "BuildError", "Capability", "CircuitOpen", "ConfigError", "DeadlineExceeded",
        "DuplicatePlugin", "FuelExhausted", "GuestError", "GuestMemory", "HandlerNotFound",
        "HealthStatus", "HostFunction", "InputTooLarge", "InvalidInput", "InvalidModule",
        "LifecycleError",
        "LimitExceeded", "Limits", "MemoryLimitExceeded", "ModuleError", "NeedsGrant",
        "OmniApp", "OmniError", "OutputTooLarge", "PluginCallError", "PluginCompiling",
        "PluginContext",
        "PluginError", "PluginHost", "PluginInfo", "PluginLoadError", "PluginNotFound",
        "PluginState", "Refused", "Status", "Trap", "UnsupportedAbiVersion", "__version__"],
    "omnicore.plugins": ["PluginHost", "PluginInfo", "PluginState"],
    "omnicore.sandbox.grants": ["DEFAULT_GRANTS", "GrantLayer", "Grants", "check_requested",
                                "merge", "normalize", "of_plugin",
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
    "omnicore.runtime.tasks": ["TaskEngine", "TaskHandle"],  # omnicore.core.tasks, its seed path
    "omnicore.extensions": ["DEPRECATED_ENTRY_POINT_GROUP", "ENTRY_POINT_GROUP", "HOOK_NAMES",
                         "ExtensionManager", "hookimpl", "hookspec"],
    "omnicore.modules": ["CheckResult", "ComponentHealth", "HealthModule", "HealthReport",
                         "MetricsModule", "HealthStatus"],
    "omnicore.adapters": ["KINDS", "Environment", "cpu_quota", "detect"],
    "omnicore.logging": ["BoundLogger", "JsonFormatter", "TextFormatter", "configure",
                         "get_logger", "set_level"],
    "omnicore.telemetry": ["ON", "Settings", "configure", "count", "db_operation", "export_metrics",
                           "flush", "ids",
                           "log_ids", "outbound_http", "reset", "resolve", "span", "start",
                           "traced_call", "traceparent"],
}


@pytest.mark.parametrize("module", sorted(EXPECTED))
def test_all_is_pinned_and_resolvable(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(EXPECTED[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_seed_import_paths() -> None:
    from omnicore.runtime.tasks import TaskEngine

    from omnicore.core import tasks
    from omnicore.core.app import OmniApp
    from omnicore.modules.health import HealthModule

    assert OmniApp and HealthModule and TaskEngine is tasks.TaskEngine
    # The seed's path is the engine's module under its old name, no copy and no folder.
    assert importlib.import_module("omnicore.runtime.tasks") is tasks
    assert not (Path(tasks.__file__).parents[1] / "runtime").exists()


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


# -- the error tree ----------------------------------------------------------------------------

def _drawn(block: str) -> list[tuple[int, type[BaseException]]]:
    """The classes a drawing in errors.py's docstring names, each with its column (its depth);
    a dotted name is imported from that module under ``omnicore``."""
    from omnicore import errors

    nodes = []
    for line in block.splitlines():
        if "── " in line:
            col = line.index("── ") + 3
        elif line.strip() and not line.strip().startswith("│") and line.startswith("    ") \
                and not line[4].isspace():
            col = 4  # the root, or an entry of the flat list of internal signals
        else:
            continue  # a description running on below its node
        name = line[col:].split()[0]
        module, _, attr = name.rpartition(".")
        home = importlib.import_module(f"omnicore.{module}") if module else errors
        cls = getattr(home, attr)
        assert isinstance(cls, type) and issubclass(cls, BaseException), name
        assert cls.__name__ == attr, f"{name} is drawn under an alias of {cls.__name__}"
        nodes.append((col, cls))
    return nodes


def _sections() -> tuple[str, str]:
    from omnicore import errors

    doc = errors.__doc__ or ""
    tree = doc[doc.index("    OmniError\n"):doc.index("\n\n", doc.index("    OmniError\n"))]
    internal = doc[doc.index("Internal signals"):]
    internal = internal[internal.index("::\n\n") + 4:]
    return tree, internal


def _every_exception_class() -> set[type[BaseException]]:
    """Every exception class a module of omnicore defines (importing them all)."""
    import pkgutil

    import omnicore

    found: set[type[BaseException]] = set()
    for info in pkgutil.walk_packages(omnicore.__path__, "omnicore."):
        if info.name.rpartition(".")[2] == "__main__":
            continue  # running it is running the CLI
        mod = importlib.import_module(info.name)
        for obj in vars(mod).values():
            if isinstance(obj, type) and issubclass(obj, BaseException) \
                    and obj.__module__ == mod.__name__:
                found.add(obj)
    return found


def test_the_drawn_tree_is_the_class_tree() -> None:
    from omnicore.errors import OmniError

    tree, _ = _sections()
    nodes = _drawn(tree)
    assert nodes[0] == (4, OmniError)
    for i, (col, cls) in enumerate(nodes[1:], 1):
        parent = next(p for c, p in reversed(nodes[:i]) if c < col)
        assert issubclass(cls, parent), f"{cls.__qualname__} is drawn under {parent.__name__}"


def test_every_exception_a_user_can_see_is_in_the_tree() -> None:
    from omnicore.errors import OmniError

    tree, internal = _sections()
    drawn = {cls for _, cls in _drawn(tree)}
    signals = {cls for _, cls in _drawn(internal)}
    assert signals and not any(issubclass(cls, OmniError) for cls in signals)
    everything = _every_exception_class()
    assert drawn | signals <= everything
    outside = sorted(f"{cls.__module__}.{cls.__qualname__}" for cls in everything
                     if not cls.__name__.startswith("_") and cls not in signals
                     and not (issubclass(cls, OmniError) and cls in drawn))
    assert outside == [], ("public exception classes outside the tree drawn in "
                           "omnicore/errors.py (draw them under the right node, or make them "
                           "private and list them as internal signals)")


def test_one_refused_is_the_base_of_every_refusal() -> None:
    from omnicore import egress, errors, storage
    from omnicore.egress import refused
    from omnicore.sandbox import HostTrap
    from omnicore.storage import base, memory_rows, vector_rows
    from omnicore.storage import errors as storage_errors

    named = [cls for cls in _every_exception_class() if cls.__name__ == "Refused"]
    assert named == [errors.Refused]
    refusals = [cls for cls in _every_exception_class()
                if "Refus" in cls.__name__ or cls.__name__.endswith("Missing")]
    refusals += [storage.QuotaExceeded, storage.ValueTooLarge, storage.NotAnInteger,
                 memory_rows.BadMemory, vector_rows.BadVector, vector_rows.UnknownCollection,
                 HostTrap]
    for cls in refusals:
        assert issubclass(cls, errors.Refused), cls
    # The names users have keep working, each the subsystem's own refusal.
    assert egress.Refused is refused.Refused is refused.EgressRefused
    assert storage.Refused is base.Refused is storage_errors.Refused \
        is storage_errors.StorageRefused
    assert issubclass(storage.Refused, storage.StorageError)
    assert not issubclass(egress.Refused, storage.StorageError)
