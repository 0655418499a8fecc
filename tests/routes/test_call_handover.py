"""The hand-over of a route's plugin calls to their worker threads (plugins/door.py CallDoor):
calls that come while a worker is awake go to it, not to a parked one woken each (a futex
wake, a context switch and the GIL handed over twice per call: issue 65's route under wrk);
a call that runs long still never holds the calls queued behind it past a moment, and the
door still runs as many at once as it is wide."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from omnicore.plugins.door import CallDoor


@pytest.fixture
def door() -> Iterator[CallDoor]:
    made = CallDoor("handover", 3)
    yield made
    made.shutdown(wait=True)


async def test_calls_that_come_while_a_worker_is_awake_are_all_its_own(door: CallDoor) -> None:
    # Twenty calls submitted in one turn of the loop, which then waits (its thread blocked on
    # a gate, so that nothing of the loop's runs meanwhile) until the last has run. Before:
    # each of the first three woke or started a worker of its own, and the twenty ran on
    # three threads taking the GIL from each other.
    last = threading.Event()

    def short(n: int) -> int:
        if n == 19:
            last.set()
        return threading.get_ident()

    calls = [door.submit(short, n) for n in range(20)]
    assert last.wait(30)
    ran_on = set(await asyncio.wait_for(asyncio.gather(*calls), 30))
    assert len(ran_on) == 1
    assert len(door._threads) == 1


async def test_a_long_call_does_not_hold_the_calls_queued_behind_it(door: CallDoor) -> None:
    # Each call below waits for a gate, as a guest spinning to its deadline: the one awake
    # worker is in it, so the loop wakes another for the next call, up to the door's width.
    gate = threading.Event()
    entered = threading.Semaphore(0)

    def held(tag: str) -> str:
        entered.release()
        assert gate.wait(30)
        return tag

    try:
        held_calls = [door.submit(held, tag) for tag in "abc"]
        for _ in range(3):  # all three at once: three workers
            assert await asyncio.to_thread(entered.acquire, True, 30)
        queued = door.submit(lambda: "after")
        assert not queued.done() and len(door._threads) == 3  # as wide as it is
    finally:
        gate.set()
    assert await asyncio.wait_for(asyncio.gather(*held_calls, queued), 30) == \
        ["a", "b", "c", "after"]
    gate.clear()
    first = door.submit(held, "long")
    assert await asyncio.to_thread(entered.acquire, True, 30)
    try:  # a short call after it, its worker still in it: answered on another
        assert await asyncio.wait_for(door.submit(lambda: "short"), 30) == "short"
        assert not first.done()
    finally:
        gate.set()
    assert await asyncio.wait_for(first, 30) == "long"
