"""limits.idle_timeout_ms: an idle plugin's instances are released; the next call starts one.

Time is the reaper's clock, moved by the test: nothing here sleeps and hopes. The reaper's
own thread may sweep at any moment too, on the same clock, so its sweeps change nothing the
test did not already decide.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from omnicore.capabilities.builtin import builtin_registry
from omnicore.extism import ExtismRuntime
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
from tests.extism.extism_fixtures import wat_plugin
from tests.sandbox_fixtures import compile_wat


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clocked() -> Iterator[tuple[SandboxEngine, Clock]]:
    clock = Clock()
    with SandboxEngine(epoch_tick_ms=5) as engine:
        engine.reaper.clock = clock
        yield engine, clock


def runtime(engine: SandboxEngine, limits: Limits, name: str = "keeps") -> PluginRuntime:
    module = PluginModule.load(engine, compile_wat("keeps_state"), name)
    return PluginRuntime(engine, module, builtin_registry(), limits=limits)


def test_an_idle_plugin_has_no_instance_after_the_idle_time(
        clocked: tuple[SandboxEngine, Clock]) -> None:
    engine, clock = clocked
    rt = runtime(engine, Limits(idle_timeout_ms=30_000))
    try:
        assert rt.call("bump", b"")[0] == 1
        engine.reaper.sweep()
        clock.now += 29.5
        engine.reaper.sweep()
        assert rt.stats()["live"] == 1  # not idle long enough yet
        clock.now += 0.5  # (binary fractions: the sum is exact)
        engine.reaper.sweep()  # (the reaper's thread may have done it first: same clock)
        assert rt.stats() | {"created": 0} == {
            "live": 0, "idle": 0, "busy": 0, "created": 0, "discarded": 0, "released": 1}
        # The next call starts a fresh instance: the released one's state is gone.
        assert rt.call("bump", b"")[0] == 1
        assert rt.stats()["live"] == 1
    finally:
        rt.close()


def test_a_call_in_between_keeps_the_instance(clocked: tuple[SandboxEngine, Clock]) -> None:
    engine, clock = clocked
    rt = runtime(engine, Limits(idle_timeout_ms=30_000, pool_size=1))
    try:
        rt.call("bump", b"")
        engine.reaper.sweep()  # set aside as idle ...
        clock.now += 20
        assert rt.call("bump", b"")[0] == 2  # ... and taken back by this call
        engine.reaper.sweep()
        clock.now += 20
        engine.reaper.sweep()  # idle 20 s since that call, not 30
        assert rt.call("bump", b"")[0] == 3
        assert rt.stats()["created"] == 1 and rt.stats()["released"] == 0
    finally:
        rt.close()


def test_a_busy_instance_is_never_released(clocked: tuple[SandboxEngine, Clock]) -> None:
    engine, clock = clocked
    rt = runtime(engine, Limits(idle_timeout_ms=1000, pool_size=2))
    pool = rt._pool
    try:
        busy = pool.acquire("bump")  # a call in progress holds it
        engine.reaper.sweep()
        clock.now += 3600
        engine.reaper.sweep()
        assert rt.stats()["live"] == 1 and rt.stats()["busy"] == 1
        pool.release(busy, True)
        engine.reaper.sweep()
        clock.now += 1
        engine.reaper.sweep()
        assert rt.stats()["live"] == 0
    finally:
        rt.close()


def test_an_instance_held_past_the_idle_time_still_answers(
        clocked: tuple[SandboxEngine, Clock]) -> None:
    # What bench/bench_sandbox.py does for its raw column: take an instance and call it
    # directly for longer than the idle time. Taken from the pool (not peeked at in its idle
    # list), it is the holder's until given back, however often the reaper runs.
    engine, clock = clocked
    rt = runtime(engine, Limits(idle_timeout_ms=1000, pool_size=1))
    held = rt._pool.acquire("bump")
    try:
        for _ in range(4):
            engine.reaper.sweep()
            clock.now += 3600
        assert rt.stats()["released"] == 0 and rt.stats()["busy"] == 1
        ticks, bump = engine.deadline_ticks(1000), held.func("bump")
        assert bump is not None
        if held.slot is not None:  # the C call path, as PluginRuntime.call drives it
            got = held.slot.call(bump, b"", ticks, 0, 1 << 20)
            assert got is not None and got is not False
            out = got if isinstance(got, bytes) else held.read(got >> 32, got & 0x7FFF_FFFF)
        else:
            packed = held.call(bump, b"", ticks, engine.epoch)
            out = held.read(packed >> 32, packed & 0x7FFF_FFFF)
        assert out[0] == 1
    finally:
        rt._pool.release(held, True)
    assert rt.call("bump", b"")[0] == 2  # the same instance, back in the pool
    rt.close()


def test_none_keeps_instances_and_per_call_has_none_to_keep(
        clocked: tuple[SandboxEngine, Clock]) -> None:
    engine, clock = clocked
    kept = runtime(engine, Limits(idle_timeout_ms=None), "kept")
    fresh = runtime(engine, Limits(isolation="per-call"), "fresh")
    try:
        for rt in (kept, fresh):
            rt.call("bump", b"")
        for _ in range(3):
            engine.reaper.sweep()
            clock.now += 10**6
        assert kept.stats()["live"] == 1 and kept.stats()["released"] == 0
        assert fresh.stats()["live"] == 0
    finally:
        kept.close()
        fresh.close()


def test_extism_plugins_are_released_too(clocked: tuple[SandboxEngine, Clock]) -> None:
    engine, clock = clocked
    module = PluginModule.load(engine, wat_plugin("keeps_state"), "state")
    rt = ExtismRuntime(engine, module, builtin_registry(), limits=Limits(idle_timeout_ms=5000))
    try:
        assert list(rt.call("bump", b"")) == [1, 1, 1]
        engine.reaper.sweep()
        clock.now += 5
        engine.reaper.sweep()
        assert rt.stats()["live"] == 0
        # Instance state is gone; Extism vars belong to the instance and went with it.
        assert list(rt.call("bump", b"")) == [1, 1, 1]
    finally:
        rt.close()


def test_closed_and_collected_pools_leave_the_reaper(
        clocked: tuple[SandboxEngine, Clock]) -> None:
    engine, _ = clocked
    rt = runtime(engine, Limits(idle_timeout_ms=1000))
    rt.call("bump", b"")
    rt.close()
    engine.reaper.sweep()
    assert len(engine.reaper._pools) == 0
    del rt
    gc.collect()


def test_the_reaper_thread_sweeps_on_its_own(clocked: tuple[SandboxEngine, Clock]) -> None:
    """The thread, not the test, releases: the test only moves the clock and waits."""
    from tests.sandbox_fixtures import wait_for

    engine, clock = clocked
    engine.reaper.period_s = 0.01
    rt = runtime(engine, Limits(idle_timeout_ms=1000))
    try:
        rt.call("bump", b"")
        wait_for(lambda: rt.stats()["idle"] == 1 and not rt._pool.idle, what="parked")
        clock.now += 1
        wait_for(lambda: rt.stats()["live"] == 0, what="released")
    finally:
        rt.close()


def test_sweeps_racing_calls_lose_and_duplicate_nothing(
        clocked: tuple[SandboxEngine, Clock]) -> None:
    """Four threads calling while another sweeps with the clock racing ahead: every call
    answers, and the books balance (created = live + released + discarded)."""
    import threading

    engine, clock = clocked
    rt = runtime(engine, Limits(idle_timeout_ms=1, pool_size=3))
    stop = threading.Event()
    errors: list[BaseException] = []

    def sweeper() -> None:
        while not stop.is_set():
            clock.now += 0.001
            engine.reaper.sweep()

    def caller() -> None:
        try:
            for _ in range(300):
                assert len(rt.call("bump", b"")) == 5
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    sweeping = threading.Thread(target=sweeper)
    sweeping.start()
    callers = [threading.Thread(target=caller) for _ in range(4)]
    try:
        for t in callers:
            t.start()
        for t in callers:
            t.join(120)
    finally:
        stop.set()
        sweeping.join(30)
        stats = rt.stats()
        rt.close()
    assert not errors, errors[0]
    assert stats["busy"] == 0 and stats["live"] <= 3
    assert stats["created"] == stats["live"] + stats["released"] + stats["discarded"]
