"""plugins/door.py under attack: the CallDoor (``acall``'s way onto a plugin's worker threads,
answers handed back to the loop in batches) against what callers and guests can do to it:
a call whose failure cannot be set on a future in the middle of a batch, loops made and thrown
away, thousands of calls against a narrow door, answers after their deadline or after their
loop closed, callers with no loop, and a real plugin trapping, failing and being cancelled."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from omnicore.errors import GuestError, Trap
from omnicore.plugins import door as door_mod
from omnicore.plugins.door import CallDoor
from omnicore.plugins.host import PluginHost
from tests.host_fixtures import echo_wasm


@pytest.fixture
def door() -> Iterator[CallDoor]:
    made = CallDoor("attacked", 4)
    yield made
    made.shutdown(wait=True)


def _queued(loop: asyncio.AbstractEventLoop) -> int:
    return len(door_mod._answers_for(loop)._done)


def _until(predicate: Callable[[], bool]) -> None:
    """Block (the loop too, on purpose) until ``predicate``: a gate, not a sleep."""
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, "the workers never answered"
        time.sleep(0.001)


async def test_a_failure_no_future_takes_does_not_strand_its_batch(door: CallDoor) -> None:
    # asyncio refuses StopIteration on a future (TypeError). Before: raised out of the batch's
    # hand-over, so that answer's caller and every answer queued behind it in the batch waited
    # forever (until some later answer woke the loop again).
    loop = asyncio.get_running_loop()
    gates = [threading.Event(), threading.Event()]

    def stops() -> None:
        assert gates[0].wait(30)
        raise StopIteration

    def answers() -> str:
        assert gates[1].wait(30)
        return "answered"

    first, second = door.submit(stops), door.submit(answers)
    # Both answers queued before the loop runs again: one batch, the bad one first.
    gates[0].set()
    _until(lambda: _queued(loop) == 1)
    gates[1].set()
    _until(lambda: _queued(loop) == 2)
    assert await asyncio.wait_for(second, 30) == "answered"
    with pytest.raises(RuntimeError, match="StopIteration") as raised:
        await asyncio.wait_for(first, 30)
    assert isinstance(raised.value.__cause__, StopIteration)


def test_loops_thrown_away_are_not_kept(door: CallDoor) -> None:
    # asyncio.run per request (a CLI, a sync wrapper) makes a loop each time. Before: each
    # one's hand-back held its loop, the weak dictionary keyed by it never dropped it, and
    # every closed loop stayed in memory for the process's life.
    seen: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one(n: int) -> int:
        seen.append(weakref.ref(asyncio.get_running_loop()))
        out: int = await door.submit(lambda: n)
        return out

    assert [asyncio.run(one(n)) for n in range(6)] == list(range(6))
    gc.collect()
    assert [r() for r in seen] == [None] * 6


async def test_thousands_of_calls_against_a_narrow_door_are_each_answered_once(
        door: CallDoor) -> None:
    # 4 wide, 5000 at once: the rest queue; every answer reaches its own caller (answers put
    # by four threads racing to wake the loop are all taken), and no thread beyond the width.
    calls = [door.submit(lambda n=n: n * 2) for n in range(5000)]
    assert await asyncio.wait_for(asyncio.gather(*calls), 120) == [n * 2 for n in range(5000)]
    assert len(door._threads) <= 4


async def test_an_answer_after_its_deadline_goes_nowhere_and_the_door_serves_on(
        door: CallDoor) -> None:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    gate, ran = threading.Event(), threading.Event()

    def late() -> str:
        assert gate.wait(30)
        ran.set()
        return "too late"

    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(door.submit(late), 0.05)
        gate.set()
        assert await asyncio.to_thread(ran.wait, 30)
        assert [await door.submit(lambda n=n: n) for n in range(10)] == list(range(10))
    finally:
        loop.set_exception_handler(None)
    assert errors == []


def test_a_call_from_a_thread_with_no_loop_is_refused_and_queues_nothing(
        door: CallDoor) -> None:
    ran: list[int] = []
    with pytest.raises(RuntimeError, match="no running event loop"):
        door.submit(ran.append, 1)
    assert door._threads == [] and not door._waiting and ran == []


def test_an_answer_for_a_closed_loop_is_dropped_and_the_worker_serves_on() -> None:
    narrow = CallDoor("narrow", 1)
    gate = threading.Event()
    try:
        loop = asyncio.new_event_loop()

        async def submit() -> asyncio.Future[Any]:
            return narrow.submit(gate.wait, 30)

        pending = loop.run_until_complete(submit())
        loop.close()  # its caller gone, the call still running
        gate.set()

        async def after() -> list[int]:
            return [await narrow.submit(lambda n=n: n) for n in range(5)]

        assert asyncio.run(after()) == list(range(5))  # (behind the call: it has answered)
        assert len(narrow._threads) == 1 and narrow._threads[0].is_alive()
        assert not pending.done()  # nobody is left to hand it to
        # Nor is its answer kept (it would keep the closed loop, as its future does).
        closed = weakref.ref(loop)
        del loop, pending
        gc.collect()
        assert closed() is None
    finally:
        narrow.shutdown(wait=True)


async def test_each_call_runs_in_its_callers_context_and_leaks_none_back(
        door: CallDoor) -> None:
    who: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")

    def read_and_set(tag: str) -> str:
        seen = who.get()
        who.set(f"set by {tag}")  # on the worker, in the call's own copy
        return seen

    who.set("caller")
    assert await door.submit(read_and_set, "first") == "caller"
    assert who.get() == "caller"
    who.set("again")
    seen = await asyncio.gather(*(door.submit(read_and_set, str(n)) for n in range(20)))
    assert seen == ["again"] * 20


async def test_a_real_plugin_trapping_failing_and_cancelled_keeps_its_door() -> None:
    with PluginHost() as host:
        host.load(echo_wasm(), limits={"pool_size": 2})
        kinds = ["trap", "fail", "echo"] * 40
        outs = await asyncio.gather(*(host.acall("echo", k, b"x") for k in kinds),
                                    return_exceptions=True)
        for kind, out in zip(kinds, outs, strict=True):
            if kind == "trap":
                assert isinstance(out, Trap), out
            elif kind == "fail":
                assert isinstance(out, GuestError), out
            else:
                assert out == b"x"
        # Calls cancelled while they run (a slow handler past its caller's deadline) and
        # while queued behind them: the door answers the next ones on the same threads.
        slow = [host.submit("echo", "slow", bytes([50])) for _ in range(6)]
        for fut in slow:
            fut.cancel()
        assert await asyncio.gather(*(host.acall("echo", "echo", b"%d" % n)
                                      for n in range(10))) == [b"%d" % n for n in range(10)]
        door = host._entries.require("echo").door
        assert door is not None and len(door._threads) <= 2
