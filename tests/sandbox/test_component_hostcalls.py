"""omnicore's capabilities as WIT interfaces (sdk/wit/plugin.wit, sandbox/component/hostcalls.py):
the WIT file and the host's functions agree, and every import the host cannot honour is
refused at load, naming it (wrong type, unknown function, another major version, an
interface without a WIT face). Grants and calls are covered with a real Python plugin in
tests/sdk/test_python.py."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.capabilities.builtin import builtin_capabilities, builtin_registry
from omnicore.errors import InvalidModule, NeedsGrant
from omnicore.sandbox import PluginModule, SandboxEngine
from omnicore.sandbox.capability import CapabilityRegistry
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.sandbox.component.hostcalls import capability_of
from omnicore.sandbox.limits import Limits
from tests.component_fixtures import OUT, wat_component

ROOT = Path(__file__).resolve().parents[2]
WIT = ROOT / "sdk" / "wit"


@pytest.fixture(scope="module")
def engine() -> Iterator[SandboxEngine]:
    eng = SandboxEngine()
    yield eng
    eng.close()


def _wasm_tools() -> str:
    return shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")


def _dummy_plugin_world() -> Path:
    """A component of the whole ``plugin`` world of sdk/wit (wasm-tools' dummy guest)."""
    OUT.mkdir(parents=True, exist_ok=True)
    core, comp = OUT / "wit-dummy-core.wasm", OUT / "wit-dummy.wasm"
    for argv in ([_wasm_tools(), "component", "embed", "--dummy", str(WIT), "-w", "plugin",
                  "-o", str(core)],
                 [_wasm_tools(), "component", "new", str(core), "-o", str(comp)]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    return comp


def _runtime(engine: SandboxEngine, module: PluginModule, tmp_path: Path,
             grants: list[str]) -> ComponentRuntime:
    assert isinstance(module, ComponentModule)
    return ComponentRuntime(engine, module, Limits(), registry=builtin_registry(),
                            grants=grants, data_dir=tmp_path)


def test_the_wit_package_and_the_hosts_functions_agree(engine: SandboxEngine,
                                                       tmp_path: Path) -> None:
    module = PluginModule.load(engine, _dummy_plugin_world(), "dummy")
    assert isinstance(module, ComponentModule)
    assert module.requested == frozenset({"log", "config", "kv", "memory", "vectors",
                                          "secrets", "tasks", "events", "http", "sql",
                                          "redis", "mcp"})
    # Linking checks every imported function against the host's signature.
    app = OmniApp("wit", overrides={"data_dir": str(tmp_path / "data")}, environ={},
                  entry_points=False)
    app.start()
    try:
        grants = {"kv": {}, "config": {}, "memory": {}, "vectors": {}, "secrets": {},
                  "tasks": {}, "events": {}, "http": {}, "sql": {}, "redis": {}, "mcp": {}}
        registry = CapabilityRegistry(builtin_capabilities(app))
        with ComponentRuntime(engine, module, Limits(), registry=registry, grants=grants,
                              data_dir=tmp_path):
            pass
    finally:
        app.stop()
    registry = builtin_registry()
    ctype = module.compiled.type
    for name, ext in ctype.imports(engine.components).items():
        cap = capability_of(name)
        if cap is None:
            continue
        cap_obj = registry.get(cap)
        assert cap_obj is not None
        imported = {f for f, item in ext.ty.exports(engine.components).items()  # type: ignore[union-attr]
                    if type(item.ty).__name__ == "FuncType"}
        assert imported == {f.name for f in cap_obj.wit}, name


def test_the_dummy_world_needs_its_grants(engine: SandboxEngine, tmp_path: Path) -> None:
    module = PluginModule.load(engine, _dummy_plugin_world(), "dummy")
    with pytest.raises(NeedsGrant, match="needs grant: omnicore:config, omnicore:events, "
                       "omnicore:http, omnicore:kv, omnicore:mcp, omnicore:memory, "
                       "omnicore:redis, omnicore:secrets, omnicore:sql, omnicore:tasks, "
                       "omnicore:vectors;"):
        _runtime(engine, module, tmp_path, [])
    with pytest.raises(NeedsGrant, match="needs grant: omnicore:events, omnicore:tasks;"):
        _runtime(engine, module, tmp_path, ["config", "kv", "http", "memory", "vectors",
                                            "secrets", "sql", "redis", "mcp"])


def test_an_import_with_another_type_than_the_hosts_is_refused(engine: SandboxEngine,
                                                              tmp_path: Path) -> None:
    module = PluginModule.load(engine, wat_component("omni-wrong-type"), "wrong")
    with pytest.raises(NeedsGrant, match="omnicore:kv"):
        _runtime(engine, module, tmp_path, [])
    with pytest.raises(InvalidModule, match=r"imports omnicore:plugin/kv@1\.0\.0#get as "
                       r"func\(key: u32\) -> u32, and the host's is func\(key: string\)"):
        _runtime(engine, module, tmp_path, ["kv"])


def test_a_function_the_interface_does_not_have_is_refused(engine: SandboxEngine,
                                                          tmp_path: Path) -> None:
    module = PluginModule.load(engine, wat_component("omni-no-such-fn"), "shout")
    with pytest.raises(InvalidModule, match=r"log@1\.0\.0#shout, which the host's .* does "
                       "not have"):
        _runtime(engine, module, tmp_path, [])


def test_another_major_version_is_refused_at_load(engine: SandboxEngine) -> None:
    with pytest.raises(InvalidModule, match=r"kv@2\.0\.0 is not an interface this host "
                       r"supplies: it speaks omnicore:plugin@1\.x"):
        PluginModule.load(engine, wat_component("omni-v2"), "v2")


def test_an_interface_without_a_wit_face_is_refused_naming_it(engine: SandboxEngine,
                                                             tmp_path: Path) -> None:
    module = PluginModule.load(engine, wat_component("omni-fs"), "files")
    report = PluginModule.inspect(wat_component("omni-fs"), builtin_registry())
    assert report["ok"] is False
    assert "omnicore:plugin/fs" in report["error"]
    with pytest.raises(InvalidModule, match="imports omnicore:plugin/fs, which this host "
                       "does not supply to components"):
        _runtime(engine, module, tmp_path, ["fs"])
