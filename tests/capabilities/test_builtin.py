"""The built-ins' table, and capabilities deferred until a plugin needs them.

Every line of ``BUILTINS`` declares what the registry knows before importing the module; these
tests hold each line to its module, and the registry to loading nothing it does not need.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from omnicore.capabilities.builtin import BUILTINS, builtin_capabilities, deferred_capabilities
from omnicore.errors import ConfigError, PluginLoadError
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import wasmbin
from omnicore.sandbox.capability import (
    Capability,
    CapabilityRegistry,
    DeferredCapability,
    PluginContext,
)
from omnicore.sandbox.pluginlog import PluginLog

ECHO = r"""
(module
  (memory (export "memory") 4)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "run") (param i32 i32) (result i64) (i64.const 0))
)
"""


def _plugin(manifest: dict[str, Any]) -> bytes:
    return wasmbin.set_custom_section(wasmtime.wat2wasm(ECHO), "omnicore.manifest",
                                      json.dumps(manifest).encode())


@pytest.mark.parametrize("line", BUILTINS, ids=lambda b: b.module.rpartition(".")[2])
def test_each_line_declares_what_its_module_is(line: Any) -> None:
    [deferred] = [d for d in deferred_capabilities() if d.name == line.module.rpartition(".")[2]]
    cap = deferred.load()
    assert cap.name == deferred.name and cap.default_grant == line.default_grant
    assert (cap.check_manifest is not None) == bool(line.manifest_keys)
    # app_state: without an app or a data dir, the grant cannot be served: binding it is
    # refused, or (secrets, whose store opens on first use) opening its store is.
    ctx = PluginContext(plugin="p", grant={}, config={}, log=PluginLog("p"))
    if line.app_state:
        with pytest.raises(ConfigError):
            state = cap.bind(ctx)
            getattr(state, "store", lambda: None)()
    else:
        cap.bind(ctx)


def test_the_app_has_every_service_the_built_ins_read() -> None:
    # for_app(app) is reached through getattr; mypy holds OmniApp to AppServices only where
    # the app hands itself to Workflows (WorkflowsApp extends it), so say it here too. The
    # rest of AppServices is the HostApp every extension is handed.
    from omnicore.app import OmniApp
    from omnicore.capabilities.types import AppServices

    services = [name for name, value in vars(AppServices).items() if isinstance(value, property)]
    assert len(services) == 8
    # Each a read-only descriptor of the class: a property, or a part of app.data.
    assert all(hasattr(getattr(OmniApp, name, None), "__get__") for name in services)


def test_the_eager_list_and_the_deferred_one_agree() -> None:
    eager = builtin_capabilities()
    assert [c.name for c in eager] == [d.name for d in deferred_capabilities()]


def _counting(name: str, loads: list[str], **declared: Any) -> DeferredCapability:
    def load() -> Capability:
        loads.append(name)
        return Capability(name, (), default_grant=declared.get("default_grant", False),
                          check_manifest=declared.pop("check", None))

    keys = declared.pop("manifest_keys", ())
    return DeferredCapability(name, load, default_grant=declared.get("default_grant", False),
                              manifest_keys=keys)


def test_the_registry_loads_a_capability_only_when_asked_and_once() -> None:
    loads: list[str] = []
    registry = CapabilityRegistry([_counting("a", loads, default_grant=True),
                                   _counting("b", loads)])
    assert registry.names() == ("a", "b") and "b" in registry and len(registry) == 2
    assert registry.defaults() == frozenset({"a"})
    assert registry.manifest_checks({"name": "x"}) == []
    assert loads == []
    cap = registry.get("b")
    assert cap is not None and cap.name == "b" and registry.get("b") is cap
    assert loads == ["b"]
    assert [c.name for c in registry] == ["a", "b"] and loads == ["b", "a"]


def test_a_manifest_check_runs_only_for_a_manifest_with_its_keys() -> None:
    loads: list[str] = []
    seen: list[str] = []

    def check(plugin: str, manifest: Any, handlers: Any) -> None:
        seen.append(plugin)

    registry = CapabilityRegistry([_counting("t", loads, manifest_keys=("schedules",),
                                             check=check)])
    assert registry.manifest_checks({"name": "p"}) == [] and loads == []
    [found] = registry.manifest_checks({"name": "p", "schedules": []})
    found("p", {}, ())
    assert loads == ["t"] and seen == ["p"]


@pytest.mark.parametrize("declared", [
    {"default_grant": True},                  # says granted by default; the module is not
    {"manifest_keys": ()},                    # hides a manifest check it has
])
def test_a_capability_unlike_its_declaration_is_refused(declared: dict[str, Any]) -> None:
    real = Capability("c", (), check_manifest=lambda *_: None)
    deferred = DeferredCapability("c", lambda: real, **declared)
    registry = CapabilityRegistry([deferred])
    with pytest.raises(ConfigError, match="not what its DeferredCapability declared"):
        registry.get("c")


def test_a_name_other_than_declared_is_refused() -> None:
    registry = CapabilityRegistry([DeferredCapability("c", lambda: Capability("d", ()))])
    with pytest.raises(ConfigError, match="declared"):
        registry.get("c")


@pytest.mark.parametrize(("key", "entry"), [
    ("schedules", {"handler": "run", "cron": "not a cron at all"}),
    ("schedules", {"handler": "missing", "every": "30s"}),
    ("subscriptions", {"topic": "x.*", "handler": "missing"}),
])
def test_a_bad_manifest_entry_still_fails_the_load_through_the_deferred_built_ins(
        key: str, entry: dict[str, Any]) -> None:
    # The checks of tasks and events run though no plugin imports either capability.
    with PluginHost() as host, pytest.raises(PluginLoadError, match=key):
        host.load(_plugin({"name": "bad", "handlers": ["run"], key: [entry]}))


def test_a_plugin_host_of_log_only_plugins_imports_no_store(tmp_path: Path) -> None:
    code = (
        "import sys, json\n"
        "from omnicore.plugins.host import PluginHost\n"
        "with PluginHost() as host:\n"
        f"    host.load(bytes.fromhex({_plugin({'name': 'p', 'handlers': ['run']}).hex()!r}))\n"
        "    host.call('p', 'run', b'')\n"
        "print(json.dumps(sorted(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    modules = json.loads(out)
    for heavy in ("omnicore.storage", "sqlite_utils", "numpy", "omnicore.egress",
                  "omnicore.jobs", "omnicore.capabilities.kv", "omnicore.extism"):
        assert heavy not in modules
    assert "omnicore.capabilities.log" in modules  # the default grant is bound
