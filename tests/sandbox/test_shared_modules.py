"""One compiled module per distinct wasm in an engine: copies share code, never state."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import InvalidModule
from omnicore.extism import ExtismRuntime
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
from tests.extism.extism_fixtures import wat_plugin
from tests.sandbox_fixtures import compile_wat


@pytest.mark.parametrize("cached", [False, True], ids=["compiled", "from-cache"])
def test_copies_of_the_same_bytes_share_one_compiled_module(tmp_path: Path,
                                                            cached: bool) -> None:
    wasm = compile_wat("keeps_state")
    with SandboxEngine(cache_dir=tmp_path / "cache" if cached else None) as engine:
        if cached:  # fill the cache, then let that module go: the copies load from disk
            PluginModule.load(engine, wasm, "warm")
            gc.collect()
        a = PluginModule.load(engine, wasm, "a")
        b = PluginModule.load(engine, wasm, "b")
        other = PluginModule.load(engine, compile_wat("echo"), "echo")
        assert a.wasmtime_module is b.wasmtime_module
        assert other.wasmtime_module is not a.wasmtime_module
        assert (a.name, b.name) == ("a", "b") and a.handlers == b.handlers
        # Code is shared, instance state is not: each copy counts on its own.
        runtimes = [PluginRuntime(engine, m, builtin_registry(), limits=Limits(pool_size=1))
                    for m in (a, b)]
        try:
            assert [runtimes[0].call("bump", b"")[0] for _ in range(2)] == [1, 2]
            assert runtimes[1].call("bump", b"")[0] == 1
        finally:
            for rt in runtimes:
                rt.close()


def test_a_module_no_plugin_uses_is_freed(tmp_path: Path) -> None:
    with SandboxEngine() as engine:
        module = PluginModule.load(engine, compile_wat("keeps_state"), "a")
        sha = module.sha256
        assert sha in engine._modules
        del module
        gc.collect()
        assert sha not in engine._modules


def test_engines_do_not_share_modules() -> None:
    wasm = compile_wat("keeps_state")
    with SandboxEngine() as one, SandboxEngine(fuel=True) as two:
        assert (PluginModule.load(one, wasm, "a").wasmtime_module
                is not PluginModule.load(two, wasm, "a").wasmtime_module)


def test_extism_plugins_share_the_kernel_and_their_code() -> None:
    wasm = wat_plugin("keeps_state")
    with SandboxEngine() as engine:
        runtimes = [ExtismRuntime(engine, PluginModule.load(engine, wasm, f"s{i}"),
                                  builtin_registry()) for i in range(2)]
        try:
            assert runtimes[0].kernel is runtimes[1].kernel
            assert runtimes[0].module.wasmtime_module is runtimes[1].module.wasmtime_module
        finally:
            for rt in runtimes:
                rt.close()


# Neither an omnicore plugin nor (without a manifest beside it) an Extism one.
_SHAPELESS = """(module (memory (export "memory") 1)
  (func (export "f") (param i32) (result i32) (local.get 0)))"""


@pytest.mark.parametrize("first_beside", [True, False])
def test_an_extism_manifest_beside_a_copy_is_never_taken_from_another(
        tmp_path: Path, first_beside: bool) -> None:
    """The same bytes are an Extism plugin beside a ``NAME.json`` and no plugin without one,
    in either order: what one copy was decided to be never decides for the other."""
    wasm = wasmtime.wat2wasm(_SHAPELESS)
    beside, alone = tmp_path / "with" / "x.wasm", tmp_path / "without" / "x.wasm"
    for path in (beside, alone):
        path.parent.mkdir()
        path.write_bytes(wasm)
    beside.with_suffix(".json").write_text("{}")
    with SandboxEngine() as engine:
        kept = []
        for path in ((beside, alone) if first_beside else (alone, beside)):
            if path == beside:
                kept.append(PluginModule.load(engine, path))
                assert kept[-1].abi == "extism"
            else:
                with pytest.raises(InvalidModule, match="missing required export"):
                    PluginModule.load(engine, path)


def test_a_copy_gets_its_own_name_and_path(tmp_path: Path) -> None:
    wasm = compile_wat("keeps_state")
    for name in ("one", "two"):
        (tmp_path / f"{name}.wasm").write_bytes(wasm)
    with SandboxEngine() as engine:
        one = PluginModule.load(engine, tmp_path / "one.wasm")
        two = PluginModule.load(engine, tmp_path / "two.wasm")
        assert (one.name, one.path, two.name, two.path) == (
            "one", tmp_path / "one.wasm", "two", tmp_path / "two.wasm")
        assert one.wasmtime_module is two.wasmtime_module


def test_copies_share_what_is_immutable_and_validate_their_own_config(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 63: one more copy built its host function types and its config schema's
    validator again (8-25x a bare instantiation): both are made once, and every copy's
    config is still checked against the schema."""
    import json

    from omnicore.errors import ConfigError
    from omnicore.sandbox import configschema, hostfunc, wasmbin

    built: list[object] = []
    real = configschema._validator

    def counted(schema: Any) -> Any:
        built.append(schema)
        return real(schema)

    monkeypatch.setattr(configschema, "_validator", counted)
    # multipleOf: a keyword the host leaves to jsonschema (a plain schema's accepted config
    # is judged without a validator: sandbox.configschema._plain).
    schema = {"type": "object", "required": ["n"],
              "properties": {"n": {"type": "integer", "minimum": 1, "multipleOf": 1}}}
    wasm = wasmbin.set_custom_section(
        compile_wat("config"), "omnicore.manifest",
        json.dumps({"name": "cfg", "config": schema}).encode())
    with SandboxEngine() as engine:
        runtimes, first = [], 0
        try:
            for i in range(3):
                module = PluginModule.load(engine, wasm, f"copy-{i}")
                runtimes.append(PluginRuntime(engine, module, builtin_registry(),
                                              grants=["config"], config={"n": i + 1}))
                types = dict(hostfunc._FUNC_TYPES[engine.wasmtime])
                first = first if i else len(built)  # the manifest's check builds one too
            assert len(built) == first  # no validator for the later copies
            assert hostfunc._FUNC_TYPES[engine.wasmtime] == types  # none new for later copies
            assert [rt.call("get", b"n") for rt in runtimes] == [b"1", b"2", b"3"]
            with pytest.raises(ConfigError, match="less than the minimum of 1"):
                PluginRuntime(engine, PluginModule.load(engine, wasm, "bad"),
                              builtin_registry(), grants=["config"], config={"n": 0})
            with pytest.raises(ConfigError, match="'n' is a required property"):
                PluginRuntime(engine, PluginModule.load(engine, wasm, "none"),
                              builtin_registry(), grants=["config"], config={})
            assert len(built) == first
        finally:
            for rt in runtimes:
                rt.close()
