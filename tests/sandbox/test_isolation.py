"""limits.isolation: per-call gives every call a fresh instance; pooled keeps one serving.

The fixture (fixtures/keeps_state.wat) changes every place an instance keeps state — a
mutable global, a memory byte, a table slot, the memory's size — and reports what it found.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import (
    ConfigError,
    DeadlineExceeded,
    FuelExhausted,
    MemoryLimitExceeded,
    PluginLoadError,
    Trap,
)
from omnicore.extism import ExtismRuntime
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from tests.component_fixtures import wat_component
from tests.extism.extism_fixtures import wat_plugin
from tests.sandbox_fixtures import DEADLINE_ALLOWANCE_S, compile_wat
from tests.waiting import fastest

Make = Callable[..., PluginRuntime]
PER_CALL = Limits(isolation="per-call")
#: What `bump` reports on an instance no call has used.
FRESH = [1, 1, 0, 3, 1]


@pytest.fixture(scope="module", params=["default", "pooling"])
def engine(request: pytest.FixtureRequest) -> Iterator[SandboxEngine]:
    """Both allocators: the pooling one reuses memory slots (the first 64 KiB kept resident
    and reset), which is where a fresh instance could inherit a byte if reuse were wrong."""
    with SandboxEngine(epoch_tick_ms=5, pooling=request.param == "pooling") as eng:
        yield eng


def bump(rt: PluginRuntime) -> list[int]:
    """[global, memory byte, table slot was set, pages, byte past 64 KiB] as the call left
    them."""
    return list(rt.call("bump", b""))


def test_pooled_keeps_state_between_calls(make: Make) -> None:
    rt = make("keeps_state", limits=Limits(pool_size=1))
    assert [bump(rt) for _ in range(3)] == [[1, 1, 0, 3, 1], [2, 2, 1, 4, 2],
                                                  [3, 3, 1, 5, 3]]


def test_per_call_starts_every_call_from_the_module(make: Make) -> None:
    rt = make("keeps_state", limits=PER_CALL)
    # Global, memory byte, table slot and memory size: each as the module declares it.
    assert [bump(rt) for _ in range(3)] == [FRESH] * 3
    stats = rt.stats()
    assert stats["live"] == 0 and stats["idle"] == 0  # nothing kept between calls
    assert stats["created"] == 4 and stats["discarded"] == 0  # the load's check + 3 calls


def test_per_call_a_trap_carries_nothing_either(make: Make) -> None:
    rt = make("keeps_state", limits=PER_CALL)
    with pytest.raises(Trap):
        rt.call("bump_then_trap", b"")
    assert bump(rt) == FRESH


def test_per_call_parallel_calls_each_get_their_own_instance(make: Make) -> None:
    rt = make("keeps_state", limits=Limits(isolation="per-call", pool_size=4))
    results: list[list[int]] = []
    gate = threading.Barrier(4)

    def worker() -> None:
        gate.wait()
        for _ in range(25):
            results.append(bump(rt))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [FRESH] * 100
    assert rt.stats()["live"] == 0


def test_per_call_limits_still_apply_to_each_call(make: Make) -> None:
    rt = make("keeps_state", limits=Limits(isolation="per-call", timeout_ms=200,
                                           max_memory_bytes=4 * 65536))

    def spin() -> None:
        with pytest.raises(DeadlineExceeded):
            rt.call("spin", b"")

    assert fastest(spin) < 0.2 + DEADLINE_ALLOWANCE_S + 1.5
    with pytest.raises(MemoryLimitExceeded):
        rt.call("grow_all", b"")
    # The memory limit holds per instance: a fresh one may grow up to it again, no further.
    assert bump(rt) == FRESH
    with pytest.raises(MemoryLimitExceeded):
        rt.call("grow_all", b"")
    assert rt.stats()["discarded"] == 5  # the three spins', the two grows'


def test_per_call_fuel_applies_to_each_call() -> None:
    with SandboxEngine(fuel=True, epoch_tick_ms=5) as engine:
        module = PluginModule.load(engine, compile_wat("keeps_state"), "keeps_state")
        rt = PluginRuntime(engine, module, builtin_registry(),
                           limits=Limits(isolation="per-call", fuel=100_000))
        try:
            for _ in range(2):  # a fresh instance gets the budget again, not more
                with pytest.raises(FuelExhausted):
                    rt.call("spin", b"")
                assert bump(rt) == FRESH
        finally:
            rt.close()


def test_per_call_plugin_that_cannot_start_still_fails_at_load(make: Make) -> None:
    with pytest.raises(PluginLoadError, match="failed to start"):
        make("init_trap", limits=PER_CALL)


def test_extism_per_call_keeps_no_global_memory_or_var() -> None:
    with SandboxEngine(epoch_tick_ms=5) as engine:
        wasm = wat_plugin("keeps_state")
        runtimes = {
            iso: ExtismRuntime(engine, PluginModule.load(engine, wasm, f"state-{i}"),
                               builtin_registry(), limits=Limits(isolation=iso))
            for i, iso in enumerate(("pooled", "per-call"))}
        try:
            pooled, fresh = runtimes["pooled"], runtimes["per-call"]
            assert [list(pooled.call("bump", b"")) for _ in range(2)] == [[1, 1, 1], [2, 2, 2]]
            assert [list(fresh.call("bump", b"")) for _ in range(2)] == [[1, 1, 1]] * 2
            # Extism carries vars to the instance after a trap; per-call carries nothing.
            for rt in (pooled, fresh):
                with pytest.raises(Trap):
                    rt.call("fail", b"")
            assert list(pooled.call("bump", b"")) == [1, 1, 3]
            assert list(fresh.call("bump", b"")) == [1, 1, 1]
            assert fresh.stats()["live"] == 0
        finally:
            for rt in runtimes.values():
                rt.close()


@pytest.mark.parametrize("value", ["per_call", "fresh", "", 1, None])
def test_isolation_must_be_a_known_mode(value: object) -> None:
    with pytest.raises(ConfigError, match=r"limits\.isolation must be one of pooled, per-call"):
        Limits().merged({"isolation": value})


def test_isolation_is_set_like_every_limit(tmp_path: Path) -> None:
    """omnicore.yaml limits, a plugin's section and its sidecar all take it."""
    from omnicore.config.schema import LimitsConfig, PluginConfig
    from omnicore.plugins.sidecar import read_sidecar

    assert LimitsConfig(isolation="per-call").isolation == "per-call"
    with pytest.raises(ValueError, match="isolation"):
        LimitsConfig(isolation="fresh")  # type: ignore[arg-type]
    section = PluginConfig(limits={"isolation": "per-call", "timeout_ms": "250"})
    assert Limits().merged(section.limits) == Limits(isolation="per-call", timeout_ms=250)
    wasm = tmp_path / "p.wasm"
    wasm.write_bytes(compile_wat("keeps_state"))
    (tmp_path / "p.toml").write_text('[limits]\nisolation = "per-call"\n')
    assert read_sidecar(wasm).limits == {"isolation": "per-call"}
    (tmp_path / "p.toml").write_text('[limits]\nisolation = "each"\n')
    with pytest.raises(ConfigError, match=r"limits\.isolation"):
        read_sidecar(wasm)


def test_omnicore_yaml_sets_isolation_for_an_apps_plugins(
        make_app: Callable[..., OmniApp]) -> None:
    """``sandbox.limits.isolation`` for every plugin, ``plugins.<name>.limits`` for one."""
    app = make_app(builtin_extensions=None, overrides={
        "sandbox": {"limits": {"isolation": "per-call"}},
        "plugins": {"kept": {"limits": {"isolation": "pooled"}}}})
    folder = Path(app.config.plugins_dir)
    folder.mkdir(parents=True)
    for name in ("fresh", "kept"):
        (folder / f"{name}.wasm").write_bytes(compile_wat("keeps_state"))
    app.start()
    plugins = app.plugins
    assert [list(plugins.call("fresh", "bump")) for _ in range(2)] == [FRESH] * 2
    assert [plugins.call("kept", "bump")[0] for _ in range(2)] == [1, 2]


def test_a_component_per_call_gets_a_fresh_instance_each_call() -> None:
    with SandboxEngine() as engine:
        module = PluginModule.load(engine, wat_component("limits"))
        assert isinstance(module, ComponentModule)
        with ComponentRuntime(engine, module, PER_CALL) as rt:
            for n in range(3):
                assert json.loads(rt.call("small", json.dumps([n]).encode())) == n + 1
            assert rt.stats()["live"] == 0 and rt.stats()["created"] == 4
        with ComponentRuntime(engine, module, Limits()) as rt:
            for n in range(3):
                rt.call("small", json.dumps([n]).encode())
            assert rt.stats()["live"] == 1 and rt.stats()["created"] == 1
