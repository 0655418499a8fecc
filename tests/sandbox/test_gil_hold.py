"""Short calls keep the GIL on the C call path (sandbox/_epoch.c); a call that turns long must
still let other threads run, end at its deadline, and end when the engine is interrupted.

The export here answers at once for an empty input and loops forever otherwise: after enough
quick calls the slot expects it to be short and calls it holding the GIL, which is what a
hostile plugin would exploit. Every test runs on both call paths (the Python path always lets
the GIL go, so there they hold trivially); the Ticker's own refusals are C-path only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_capabilities
from omnicore.errors import DeadlineExceeded, Trap
from omnicore.sandbox import (
    Capability,
    CapabilityRegistry,
    GuestMemory,
    HostFunction,
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
    fastcall,
)
from tests.sandbox_fixtures import DEADLINE_ALLOWANCE_S, assert_deadlines_kept
from tests.waiting import eventually

Make = Callable[..., PluginRuntime]

FLIP = wasmtime.wat2wasm("""
(module
  (memory (export "memory") 2)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "flip") (param $p i32) (param $n i32) (result i64)
    (if (local.get $n) (then (loop $l (br $l))))
    (i64.const 0)))
""")

#: Quick calls before the long one: far more than the slot needs to call it short.
WARM = 200


def _warm(rt: PluginRuntime) -> None:
    for _ in range(WARM):
        assert rt.call("flip", b"") == b""


def test_a_short_export_turning_long_lets_other_threads_run(make: Make) -> None:
    rt = make(FLIP, limits=Limits(timeout_ms=5000, pool_size=1))
    _warm(rt)
    go = threading.Event()
    ran_at: list[float] = []

    def other() -> None:
        go.wait()
        ran_at.append(time.monotonic())  # needs the GIL: only if the long call let it go

    t = threading.Thread(target=other)
    t.start()
    go.set()
    with pytest.raises(DeadlineExceeded):
        rt.call("flip", b"spin")
    ended = time.monotonic()
    t.join(30)
    assert ran_at, "the other thread never ran"
    # A call holding the GIL to the end would let the other thread in only after it: this
    # one ran while the call still had seconds to go.
    assert ran_at[0] < ended - 2.0, f"ran {ended - ran_at[0]:.3f} s before the call ended"
    _warm(rt)  # the instance was replaced and the plugin still serves


def test_a_short_export_turning_long_ends_at_its_deadline(make: Make) -> None:
    rt = make(FLIP, limits=Limits(timeout_ms=300, pool_size=1))
    overshoots = []
    for _ in range(3):
        _warm(rt)
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded, match="deadline of 300 ms"):
            rt.call("flip", b"spin")
        overshoots.append(time.monotonic() - start - 0.3)
    assert_deadlines_kept(overshoots)
    _warm(rt)


def test_interrupt_ends_a_short_export_turning_long(make: Make, engine: SandboxEngine) -> None:
    rt = make(FLIP, limits=Limits(timeout_ms=120_000, pool_size=1))
    _warm(rt)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            rt.call("flip", b"spin")
        except BaseException as exc:  # recorded for the assertion below
            outcome.append(exc)

    t = threading.Thread(target=call)
    start = time.monotonic()
    t.start()
    time.sleep(0.2)  # let it run (if it has not started yet, the interrupt comes later)
    def ended() -> bool:
        engine.interrupt()
        t.join(0.5)
        return not t.is_alive()

    eventually(ended, "interrupt() ending the call", every=0)
    assert time.monotonic() - start < 60
    assert len(outcome) == 1 and isinstance(outcome[0], DeadlineExceeded), outcome
    _warm(rt)


def test_threads_calling_short_exports_all_get_answers(make: Make) -> None:
    # Several threads on one runtime, their calls holding the GIL in turn: every call answers
    # with its own data (the pool leases one instance per call).
    rt = make("echo", limits=Limits(pool_size=4))
    errors: list[str] = []

    def worker(k: int) -> None:
        for i in range(2000):
            data = f"{k}:{i}".encode()
            if rt.call("echo", data) != data:
                errors.append(f"{k}:{i}")

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert not errors and not any(t.is_alive() for t in ts)


@pytest.mark.native
def test_ticker_and_watch_refuse_misuse(make: Make, engine: SandboxEngine) -> None:
    from omnicore.sandbox import _callpath  # type: ignore[attr-defined]

    with pytest.raises(ValueError, match="period_ms must be at least 1"):
        _callpath.Ticker(0)
    ticker = _callpath.Ticker(5)
    with pytest.raises(RuntimeError, match="initialised once"):
        ticker.__init__(5)
    with pytest.raises(ValueError, match="at most 4 engines"):
        for _ in range(5):
            ticker.add(fastcall.address_of(engine.wasmtime), engine.wasmtime)
    ticker.close()
    ticker.close()  # twice is fine
    rt = make("echo", limits=Limits(pool_size=1))
    inst = rt._pool.acquire("echo")
    try:
        with pytest.raises(ValueError, match="is once"):
            inst.slot.watch(inst._store, engine.clock)  # the runtime already watched it
        with pytest.raises(TypeError, match="must be a Ticker"):
            _callpath.Slot(inst.ctx, 1, 1.0).watch(inst._store, object())
        # The re-entrant call host functions make (omni_alloc for an answer block).
        with pytest.raises(TypeError, match=r"call1\(func, arg\)"):
            inst.slot.call1(inst.func("echo"))
        with pytest.raises(ValueError, match="no function"):
            inst.slot.call1(0, 8)
        closed = _callpath.Slot(inst.ctx, 1, 1.0)
        closed.close()
        with pytest.raises(ValueError, match="the instance is closed"):
            closed.call1(inst.func("echo"), 8)
    finally:
        rt._pool.release(inst, True)
    assert rt.call("echo", b"still") == b"still"


def test_every_call_gets_a_whole_deadline_of_its_own(make: Make) -> None:
    # The C path re-arms from the ticker's clock, whatever epoch the caller passes: calls
    # spaced wider than the timeout each get the full timeout, held (after warming) or not.
    rt = make(FLIP, limits=Limits(timeout_ms=100, pool_size=1))
    for warm in (False, True):
        if warm:
            _warm(rt)
        for _ in range(3):
            time.sleep(0.25)
            assert rt.call("flip", b"") == b""


def _block(_state: object, mem: GuestMemory) -> int:
    return mem.alloc_result(b"a block from the guest's allocator")  # re-entrant omni_alloc


BLOCKS = CapabilityRegistry([*builtin_capabilities(), Capability(
    "blocks", (HostFunction("get", (), ("i64",), _block),))])

#: `h` asks the host for a block (a re-entrant omni_alloc); with an input of 1 byte that
#: omni_alloc then loops, with 2 bytes it traps.
REENTRANT = wasmtime.wat2wasm("""
(module
  (import "omnicore:blocks" "get" (func $get (result i64)))
  (memory (export "memory") 4)
  (global $mode (mut i32) (i32.const 0))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (if (i32.eq (global.get $mode) (i32.const 1)) (then (loop $l (br $l))))
    (if (i32.eq (global.get $mode) (i32.const 2)) (then unreachable))
    (i32.const 8192))
  (func (export "omni_free") (param i32 i32))
  (func (export "h") (param $p i32) (param $n i32) (result i64)
    (global.set $mode (local.get $n))
    (drop (call $get))
    (global.set $mode (i32.const 0))
    (i64.const 0)))
""")


def test_a_reentrant_guest_call_failing_or_looping_ends_the_call(engine: SandboxEngine) -> None:
    # The host's re-entrant omni_alloc (a host function's answer block, specs/abi.md §3.3) is
    # guest code like any other: its trap is the call's Trap, its loop ends at the deadline,
    # even when the handler around it had been quick enough to keep the GIL.
    mod = PluginModule.load(engine, REENTRANT, "reentrant")
    with PluginRuntime(engine, mod, BLOCKS, ["blocks"],
                       limits=Limits(timeout_ms=300, pool_size=1)) as rt:
        for data, error, match in ((b"tt", Trap, "re-entrant omni_alloc failed"),
                                   (b"s", DeadlineExceeded, "deadline of 300 ms")):
            for _ in range(WARM):  # `h` is quick: after these it runs holding the GIL
                assert rt.call("h", b"") == b""
            start = time.monotonic()
            with pytest.raises(error, match=match):
                rt.call("h", data)
            assert time.monotonic() - start < 0.3 + DEADLINE_ALLOWANCE_S + 0.5
            assert rt.call("h", b"") == b""  # a fresh instance serves
