"""Limits: validation, merging, and enforcement of each limit."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from omnicore.errors import (
    ConfigError,
    DeadlineExceeded,
    FuelExhausted,
    InputTooLarge,
    MemoryLimitExceeded,
    PluginLoadError,
)
from omnicore.sandbox import (
    CapabilityRegistry,
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
)
from tests.sandbox_fixtures import assert_deadlines_kept

Make = Callable[..., PluginRuntime]


def test_defaults_match_spec() -> None:
    lim = Limits()
    assert lim.as_dict() == {"max_memory_bytes": 64 * 2**20, "timeout_ms": 1000, "fuel": None,
                             "max_input_bytes": 16 * 2**20, "max_output_bytes": 16 * 2**20,
                             "pool_size": 4, "max_table_elements": 100_000, "max_tables": 4,
                             "max_log_bytes_per_s": 2**20, "max_log_lines_per_s": 500,
                             "isolation": "pooled", "idle_timeout_ms": 60_000}


def test_merged_applies_overrides_and_keeps_original() -> None:
    base = Limits()
    new = base.merged({"timeout_ms": 50, "pool_size": 2})
    assert (new.timeout_ms, new.pool_size) == (50, 2)
    assert base.timeout_ms == 1000
    assert base.merged({}) is base and base.merged(None) is base


@pytest.mark.parametrize(("overrides", "match"), [
    ({"timeout": 5}, "unknown limit.*timeout; known limits: fuel, idle_timeout_ms, isolation, max"),
    ({"timeout_ms": 0}, "timeout_ms must be a positive integer, got 0"),
    ({"timeout_ms": -5}, "positive integer"),
    ({"timeout_ms": "1s"}, "positive integer, got '1s'"),
    ({"timeout_ms": True}, "positive integer, got True"),
    ({"pool_size": 1.5}, "positive integer"),
    ({"fuel": 0}, "fuel must be a positive integer"),
    ({"max_memory_bytes": 1000}, "at least 65536"),
])
def test_bad_overrides_are_config_errors(overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        Limits().merged(overrides)
    assert info.value.key is not None and info.value.key.startswith("limits.")


def test_merged_rejects_non_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        Limits().merged([("timeout_ms", 5)])  # type: ignore[arg-type]


def test_limits_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Limits().timeout_ms = 5  # type: ignore[misc]


def test_input_too_large_checked_before_guest(make: Make) -> None:
    rt = make("echo", limits=Limits(max_input_bytes=100))
    assert rt.call("echo", b"x" * 100) == b"x" * 100
    with pytest.raises(InputTooLarge, match=r"input of 101 bytes exceeds "
                                            r"limits.max_input_bytes \(100\)") as info:
        rt.call("echo", b"x" * 101)
    assert info.value.limit == "max_input_bytes" and info.value.value == 100
    assert rt.stats()["discarded"] == 0


def test_deadline_is_per_call_not_cumulative(make: Make) -> None:
    rt = make("echo", limits=Limits(timeout_ms=20))
    for _ in range(50):  # 50 calls spanning far more than 20 ms in total
        assert rt.call("echo", b"x") == b"x"
        time.sleep(0.001)


@pytest.mark.parametrize("timeout_ms", [200, 500])
def test_deadline_precision(make: Make, timeout_ms: int) -> None:
    rt = make("loop", limits=Limits(timeout_ms=timeout_ms))
    overshoots = []
    for _ in range(3):
        t = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            rt.call("spin", b"")
        overshoots.append(time.monotonic() - t - timeout_ms / 1000)
    assert_deadlines_kept(overshoots)


def test_input_buffer_growth_respects_memory_limit(make: Make) -> None:
    rt = make("echo", limits=Limits(max_memory_bytes=1 * 2**20))
    assert rt.call("echo", b"a" * 200_000) == b"a" * 200_000
    with pytest.raises(MemoryLimitExceeded, match="could not grow the input buffer"):
        rt.call("echo", b"a" * 900_000)
    assert rt.call("echo", b"still here") == b"still here"


def test_initial_memory_over_limit_fails_to_start(engine: SandboxEngine,
                                                  registry: CapabilityRegistry,
                                                  wat: Callable[[str], bytes]) -> None:
    module = PluginModule.load(engine, wat("echo"))
    with pytest.raises(PluginLoadError, match="failed to start"):
        # the echo module needs 64 KiB + its input buffer: 64 KiB of memory cannot hold both
        PluginRuntime(engine, module, registry, {}, {}, Limits(max_memory_bytes=65536))


def test_fuel(wat: Callable[[str], bytes], registry: CapabilityRegistry) -> None:
    with SandboxEngine(fuel=True, epoch_tick_ms=5) as eng:
        loop = PluginRuntime(eng, PluginModule.load(eng, wat("loop")), registry,
                             limits=Limits(fuel=100_000, timeout_ms=10_000))
        t = time.monotonic()
        with pytest.raises(FuelExhausted, match=r"used all of its fuel \(100000, limits.fuel\)"):
            loop.call("spin", b"")
        assert time.monotonic() - t < 2  # fuel, not the 10 s deadline, stopped it
        assert loop.call("ok", b"") == b""
        echo = PluginRuntime(eng, PluginModule.load(eng, wat("echo")), registry,
                             limits=Limits(fuel=100_000))
        for _ in range(100):
            assert echo.call("echo", b"hi") == b"hi"
        loop.close()
        echo.close()


BURN = """(module
  (memory (export "memory") 4)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  ;; About 60% of a 100,000 fuel budget per call.
  (func (export "burn") (param i32 i32) (result i64) (local $i i32)
    (local.set $i (i32.const 15000))
    (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1)))
             (br_if $l (local.get $i)))
    (i64.const 0)))"""


def test_fuel_is_refilled_for_every_call_on_the_same_instance(
        registry: CapabilityRegistry) -> None:
    import wasmtime

    with SandboxEngine(fuel=True, epoch_tick_ms=5) as eng:
        mod = PluginModule.load(eng, wasmtime.wat2wasm(BURN), "burn")
        with PluginRuntime(eng, mod, registry, limits=Limits(fuel=100_000, pool_size=1)) as rt:
            for _ in range(20):  # one instance: without a refill the second call runs dry
                assert rt.call("burn", b"") == b""
            assert rt.stats()["created"] == 1


def test_fuel_limit_without_fuel_engine_is_ignored(make: Make) -> None:
    # Documented: Limits.fuel applies only when the engine meters fuel.
    rt = make("echo", limits=Limits(fuel=10))
    assert rt.fuel_enabled is False
    assert rt.call("echo", b"x") == b"x"


def test_start_function_loop_hits_deadline(engine: SandboxEngine,
                                           registry: CapabilityRegistry) -> None:
    import wasmtime

    wasm = wasmtime.wat2wasm("""(module
      (memory (export "memory") 2)
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "omni_free") (param i32 i32))
      (func $forever (loop $l (br $l)))
      (start $forever))""")
    module = PluginModule.load(engine, wasm, "starter")
    with pytest.raises(PluginLoadError, match=r"handler '\(start\)' exceeded its deadline of 30"):
        PluginRuntime(engine, module, registry, limits=Limits(timeout_ms=30))


def test_initial_memory_above_limit_is_named(engine: SandboxEngine,
                                            registry: CapabilityRegistry) -> None:
    import wasmtime

    wasm = wasmtime.wat2wasm("""(module
      (memory (export "memory") 100)
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "omni_free") (param i32 i32)))""")
    module = PluginModule.load(engine, wasm, "fat")
    with pytest.raises(PluginLoadError, match="declares more initial memory than "
                                              r"limits.max_memory_bytes \(1048576\)"):
        PluginRuntime(engine, module, registry, limits=Limits(max_memory_bytes=2**20))


def test_size_errors_name_the_limit_and_its_value() -> None:
    lim = Limits(max_input_bytes=10, max_output_bytes=20)
    err = lim.input_too_large(11, "plugin 'p' handler 'h'", "p", "h")
    assert str(err) == ("plugin 'p' handler 'h': input of 11 bytes exceeds "
                        "limits.max_input_bytes (10)")
    assert (err.plugin, err.handler, err.limit, err.value) == ("p", "h", "max_input_bytes", 10)
    out = lim.output_too_large(21, "plugin 'p' export 'e'", "p", "e")
    assert str(out) == ("plugin 'p' export 'e': output of 21 bytes exceeds "
                        "limits.max_output_bytes (20)")
    assert (out.limit, out.value) == ("max_output_bytes", 20)
