"""SandboxEngine: compiled-module cache, epoch ticker, pooling allocator."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from omnicore.capabilities.builtin import builtin_registry
from omnicore.sandbox import (
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
)
from tests.guest_wat import ALLOC
from tests.sandbox_fixtures import wait_for

Wat = Callable[[str], bytes]


def test_cache_roundtrip(tmp_path: Path, wat: Wat) -> None:
    wasm = wat("echo")
    with SandboxEngine(cache_dir=tmp_path) as eng:
        first = PluginModule.load(eng, wasm)
        entries = list(tmp_path.glob("*.cwasm"))
        assert len(entries) == 1 and entries[0].name.startswith(first.sha256)
        assert eng.config_key in entries[0].name
        mtime = entries[0].stat().st_mtime_ns
        second = PluginModule.load(eng, wasm)  # served from the cache file
        assert entries[0].stat().st_mtime_ns == mtime
        rt = PluginRuntime(eng, second, builtin_registry())
        assert rt.call("echo", b"cached") == b"cached"
        rt.close()
    # A new engine with the same config reuses the entry.
    with SandboxEngine(cache_dir=tmp_path) as eng2:
        assert eng2.config_key == SandboxEngine(cache_dir=tmp_path).config_key
        PluginModule.load(eng2, wasm)
        assert len(list(tmp_path.glob("*.cwasm"))) == 1


def test_cache_key_depends_on_engine_config(tmp_path: Path, wat: Wat) -> None:
    with SandboxEngine(cache_dir=tmp_path) as plain, \
            SandboxEngine(cache_dir=tmp_path, fuel=True) as fueled:
        assert plain.config_key != fueled.config_key
        PluginModule.load(plain, wat("echo"))
        m = PluginModule.load(fueled, wat("echo"))
        assert len(list(tmp_path.glob("*.cwasm"))) == 2
        # Running the fuel engine's module proves it was not the plain engine's artifact.
        rt = PluginRuntime(fueled, m, builtin_registry(), limits=Limits(fuel=10**6))
        assert rt.call("echo", b"x") == b"x"
        rt.close()


def test_the_pooling_allocator_shares_the_compiled_code(tmp_path: Path, wat: Wat) -> None:
    """An app that turns ``sandbox.pooling`` on or off loads every plugin from the cache: the
    allocator does not change what wasmtime compiles (its serialized code is the same bytes,
    and each engine runs the other's entry)."""
    import wasmtime

    wasm = wat("echo")
    with SandboxEngine(cache_dir=tmp_path) as plain, \
            SandboxEngine(cache_dir=tmp_path, pooling=True) as pooled:
        assert wasmtime.Module(plain.wasmtime, wasm).serialize() == \
            wasmtime.Module(pooled.wasmtime, wasm).serialize()
        assert plain.config_key == pooled.config_key
        PluginModule.load(pooled, wasm)
        entry = next(tmp_path.glob("*.cwasm"))
        written = entry.stat().st_mtime_ns
        module = PluginModule.load(plain, wasm)  # from the pooled engine's entry
        assert [e.name for e in tmp_path.glob("*.cwasm")] == [entry.name]
        assert entry.stat().st_mtime_ns == written
        rt = PluginRuntime(plain, module, builtin_registry())
        assert rt.call("echo", b"shared") == b"shared"
        rt.close()


def test_corrupt_cache_entry_is_recompiled(tmp_path: Path, wat: Wat) -> None:
    wasm = wat("echo")
    with SandboxEngine(cache_dir=tmp_path) as eng:
        PluginModule.load(eng, wasm)
        [entry] = tmp_path.glob("*.cwasm")
        entry.write_bytes(b"not a compiled module")
        m = PluginModule.load(eng, wasm)
        rt = PluginRuntime(eng, m, builtin_registry())
        assert rt.call("echo", b"ok") == b"ok"
        rt.close()
        assert entry.read_bytes() != b"not a compiled module"  # rewritten


def test_unwritable_cache_dir_still_loads(tmp_path: Path, wat: Wat) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with SandboxEngine(cache_dir=blocker / "sub") as eng:  # cannot mkdir under a file
        assert PluginModule.load(eng, wat("echo")).name == "echo"


def test_ticker_ticks_until_close() -> None:
    """Either ticker (the C thread, or the Python one on the Python path) moves the epoch
    while the engine is open and not after close."""
    eng = SandboxEngine(epoch_tick_ms=1)
    start = eng.epoch
    wait_for(lambda: eng.epoch >= start + 3, what="three ticks")
    eng.close()
    stopped = eng.epoch
    time.sleep(0.05)  # 50 periods: a ticker still running would have moved it
    assert eng.epoch == stopped


def test_bad_tick() -> None:
    with pytest.raises(ValueError):
        SandboxEngine(epoch_tick_ms=0)


def test_deadline_ticks() -> None:
    with SandboxEngine(epoch_tick_ms=10) as eng:
        assert eng.deadline_ticks(1000) == 102 and eng.deadline_ticks(5) == 3


def test_pooling_allocator(wat: Wat) -> None:
    with SandboxEngine(pooling=True) as eng:
        m = PluginModule.load(eng, wat("echo"))
        rt = PluginRuntime(eng, m, builtin_registry(), limits=Limits(pool_size=2))
        for i in range(200):
            assert rt.call("echo", str(i).encode()) == str(i).encode()
        rt.close()
        crash = PluginRuntime(eng, PluginModule.load(eng, wat("unreachable")),
                              builtin_registry())
        from omnicore.errors import Trap

        for _ in range(50):  # discarded instances return their slots to the pool
            with pytest.raises(Trap):
                crash.call("crash", b"")
        assert crash.call("ok", b"") == b""
        crash.close()


def test_close_waits_for_in_flight_calls(wat: Wat) -> None:
    from omnicore.errors import DeadlineExceeded

    with SandboxEngine(epoch_tick_ms=5) as eng:
        rt = PluginRuntime(eng, PluginModule.load(eng, wat("loop")),
                           builtin_registry(), limits=Limits(timeout_ms=300))
        seen: list[BaseException] = []
        started: list[float] = []

        def spin() -> None:
            started.append(time.monotonic())
            try:
                rt.call("spin", b"")
            except DeadlineExceeded as exc:
                seen.append(exc)

        t = threading.Thread(target=spin)
        t.start()
        wait_for(lambda: rt.stats()["busy"] == 1, what="the spin call to start")
        rt.close()
        # close returned only once the running call had hit its 300 ms deadline.
        assert time.monotonic() - started[0] >= 0.3
        t.join()
        assert len(seen) == 1 and rt.stats()["live"] == 0


def test_public_api_is_pinned() -> None:
    import omnicore.sandbox as sandbox

    assert sorted(sandbox.__all__) == [
        "ABI_VERSION", "Capability", "CapabilityRegistry", "GuestMemory", "HostFunction",
        "HostTrap", "Limits", "LogLine", "PluginContext", "PluginLog", "PluginModule",
        "PluginRuntime", "SandboxEngine", "Status"]
    for name in sandbox.__all__:
        obj = getattr(sandbox, name)
        assert name == "ABI_VERSION" or obj.__doc__, f"{name} has no docstring"


def test_the_epoch_keeps_time_when_the_ticker_wakes_late() -> None:
    # Hold the GIL in pure Python for 300 ms (a long switch interval keeps it from being
    # handed over): the ticker cannot run, and when it does it must add every period that
    # passed, so deadlines counted in ticks do not stretch on a loaded machine.
    import sys

    with SandboxEngine(epoch_tick_ms=5) as eng:
        wait_for(lambda: eng.epoch > 0, what="the first tick")
        old = sys.getswitchinterval()
        sys.setswitchinterval(1.0)
        try:
            before = eng.epoch
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                pass
        finally:
            sys.setswitchinterval(old)
        # The first tick after the GIL comes back adds all 60 periods at once (the Python
        # ticker). The C ticker needs no GIL but is a thread a loaded machine deschedules: its
        # epoch may lag the clock when read, by the ticks it owes, which the deadline's door
        # counts (a CI run read 54 of 60 here from the bare epoch). So the Python ticker's
        # catch-up is checked on its epoch, the C ticker's on the door's reading.
        wait_for(lambda: eng.epoch > before, what="the next tick")
        if eng.clock is None:
            assert eng.epoch - before >= 55
        else:
            assert sum(eng.epoch_and_owed()) - before >= 55


def test_a_deadline_armed_while_the_ticker_lags_is_not_cut_short(wat: Wat) -> None:
    # The GIL held as above: the Python ticker owes some 60 ticks when the call arms its
    # deadline, and adds them all once the call lets go of the GIL. Counted from the lagging
    # epoch, that deadline would already be past when the guest starts; counted with the ticks
    # owed (the deadline's door, sandbox/deadline.py) the call runs its full 100 ms. The first
    # call's deadline discards its instance, so this one makes a new instance, whose first
    # omni_alloc runs under the instance's own arm: counted from the lagging epoch too, it
    # ended the call within a millisecond, one run in eight under xdist. The C ticker needs
    # no GIL, but a loaded machine holds its thread back too: test_deadline_door.py holds
    # either ticker back while every lane arms its deadline.
    import sys

    from omnicore.errors import DeadlineExceeded

    with SandboxEngine(epoch_tick_ms=5) as eng:
        rt = PluginRuntime(eng, PluginModule.load(eng, wat("loop")),
                           builtin_registry(), limits=Limits(timeout_ms=100))
        with pytest.raises(DeadlineExceeded):
            rt.call("spin", b"")  # the instance made (and its start armed) before the hold
        old = sys.getswitchinterval()
        sys.setswitchinterval(1.0)
        try:
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                pass
            if eng.clock is None:
                assert eng.epoch_and_owed()[1] >= 55
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                rt.call("spin", b"")
            ran = time.monotonic() - start
        finally:
            sys.setswitchinterval(old)
        assert ran > 0.095, f"ended {0.1 - ran:.3f} s early"
        rt.close()


_ALLOCATOR = f"""
  (memory (export "memory") 2)
  {ALLOC}"""

@pytest.mark.native  # the C ticker's own methods
def test_a_held_ticker_does_not_tick_and_still_closes() -> None:
    # hold() (the gate of tests/sandbox/test_deadline_door.py) keeps the thread from ticking
    # until release(); an engine closed meanwhile stops it rather than waiting for release().
    eng = SandboxEngine(epoch_tick_ms=5)
    assert eng.clock is not None
    eng.clock.hold()
    epoch = eng.epoch
    wait_for(lambda: eng.epoch_and_owed()[1] >= 3, what="the held ticker 3 ticks behind")
    assert eng.epoch == epoch
    eng.close()
