"""The hand-over of plugin calls to their worker threads (plugins/door.py CallDoor, since
2cfc8495 and a5a7f6de: a call that comes while a worker is awake is queued for it, and the
loop adds a worker for queued calls only once every awake worker has been in its call for
UNSTICK_S) under attack: guests spinning to their deadline ahead of short calls, every worker
stuck, calls cancelled or their loop closed while queued, a door shut down with calls queued,
a loop per request, two loops at once (one closed or blocked while the other's calls queue),
and a route's concurrency cap and deadline over a plugin whose one worker spins. Gates
(threading events, ``PluginHost.interrupt`` ending a spinning guest), never sleeps."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from omnicore.errors import PluginError
from omnicore.plugins.door import UNSTICK_S, CallDoor
from omnicore.plugins.host import PluginHost
from tests.host_fixtures import echo_wasm, in_flight
from tests.routes.conftest import RouteHost
from tests.waiting import eventually

#: Long past anything a loaded machine needs: it only catches "never".
NEVER_S = 30
#: The same for a worker's start, in the cases that wait for one that never started (before
#: each loop kept a check of its own).
START_S = 10


@pytest.fixture
def door() -> Iterator[CallDoor]:
    made = CallDoor("handover-attacked", 3)
    yield made
    made.shutdown(wait=True)


class Held:
    """Calls that hold their worker until :attr:`gate` is set (a guest spinning to its
    deadline, without the deadline); :meth:`entered` waits until one more has begun."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self._entered = threading.Semaphore(0)
        self.ran: list[str] = []

    def __call__(self, tag: str) -> str:
        self._entered.release()
        try:  # (held past every wait of the test's: the test's own wait fails first)
            assert self.gate.wait(3 * NEVER_S)
        finally:
            self.ran.append(tag)  # (gone for any reason: a case asserting it held sees it)
        return tag

    async def entered(self, timeout: float = NEVER_S) -> bool:
        return await asyncio.to_thread(self._entered.acquire, True, timeout)


@pytest.fixture
def spinner() -> Iterator[PluginHost]:
    """A real host with the echo plugin 3 wide: its ``spin`` runs until its (long) deadline
    or until ``interrupt``."""
    with PluginHost() as host:
        host.load(echo_wasm(), limits={"pool_size": 3, "timeout_ms": 120_000})
        yield host


async def _ended(host: PluginHost, calls: list[asyncio.Future[Any]]) -> list[Any]:
    """Interrupt the host's running guests until every call in ``calls`` has ended (a guest
    queued behind a spinning one begins to spin once that one ends)."""
    while True:
        done, _ = await asyncio.wait(calls, timeout=0.05)
        if len(done) == len(calls):
            return [c.exception() or c.result() for c in calls]
        host.interrupt()


async def test_short_calls_queued_behind_spinning_guests_are_answered_while_they_spin(
        spinner: PluginHost) -> None:
    # Two guests spin on two of the three workers; the short calls that come meanwhile queue
    # behind an awake worker that never takes them. They must be answered on the third
    # worker, not after the spinning guests' deadline.
    spins = [spinner.submit("echo", "spin", b"") for _ in range(2)]
    await asyncio.to_thread(eventually, lambda: in_flight(spinner, "echo") == 2,
                            "both guests spinning")
    short = [spinner.submit("echo", "echo", b"%d" % n) for n in range(8)]
    assert await asyncio.wait_for(asyncio.gather(*short), NEVER_S) == \
        [b"%d" % n for n in range(8)]
    assert not any(s.done() for s in spins) and in_flight(spinner, "echo") == 2
    outs = await _ended(spinner, spins)
    assert all(isinstance(o, PluginError) for o in outs), outs
    door = spinner._entries.require("echo").door
    assert door is not None and len(door._threads) <= 3


async def test_every_worker_spinning_each_queued_call_still_ends_and_a_cancelled_one_never_runs(
        spinner: PluginHost) -> None:
    # All three workers spin; more spinning guests and short calls queue behind them, one
    # cancelled (its client went). Each queued call ends (answered, or failing typed at its
    # deadline), none hangs, the cancelled one never runs, and the door stays 3 wide.
    door = spinner._entries.require("echo").door
    assert door is None or not door._threads
    spins = [spinner.submit("echo", "spin", b"") for _ in range(3)]
    await asyncio.to_thread(eventually, lambda: in_flight(spinner, "echo") == 3,
                            "all three workers spinning")
    door = spinner._entries.require("echo").door
    assert door is not None
    ran: list[str] = []
    queued: list[asyncio.Future[Any]] = []
    for n in range(3):
        queued.append(spinner.submit("echo", "spin", b""))
        queued.append(spinner.submit("echo", "echo", b"%d" % n))
    dropped = door.submit(ran.append, "the cancelled call ran")
    dropped.cancel()
    after = door.submit(ran.append, "after")
    assert len(door._threads) == 3 and not any(q.done() for q in queued)
    outs = await _ended(spinner, spins + queued)
    for n, out in enumerate(outs[3:]):
        if n % 2:
            assert out == b"%d" % (n // 2)
        else:
            assert isinstance(out, PluginError), out
    assert all(isinstance(o, PluginError) for o in outs[:3]), outs
    await asyncio.wait_for(after, NEVER_S)
    assert ran == ["after"]
    assert len(door._threads) == 3


async def test_tasks_of_a_closed_loop_queued_never_run_and_the_door_serves_the_next_loop(
        door: CallDoor) -> None:
    # asyncio.run ends (a request done, its client gone) while its tasks wait on calls queued
    # behind a held one: asyncio.run cancels them, so the queued calls never run; the held
    # one finishes on its worker, its answer dropped; the next loop's calls are answered and
    # the door's threads all end at shutdown.
    held = Held()
    ran: list[str] = []

    async def request() -> None:
        async def call(fn: Callable[..., Any], arg: str) -> Any:  # (as acall awaits it)
            return await door.submit(fn, arg)

        tasks = [asyncio.ensure_future(call(held, "held"))]
        assert await held.entered()
        tasks += [asyncio.ensure_future(call(ran.append, f"queued {n}")) for n in range(5)]
        await asyncio.sleep(0)  # (each task now awaits its call: asyncio.run cancels it)

    await asyncio.to_thread(asyncio.run, request())
    held.gate.set()
    assert await asyncio.wait_for(door.submit(lambda: "next"), NEVER_S) == "next"
    threads = list(door._threads)
    door.shutdown(wait=True)  # (every call taken has ended: the held one's end is racy before)
    assert not any(t.is_alive() for t in threads)
    assert held.ran == ["held"] and ran == []
    with pytest.raises(RuntimeError, match="takes no more calls"):
        door.submit(lambda: None)


async def test_a_door_shut_down_with_calls_queued_answers_them_and_its_threads_end(
        door: CallDoor) -> None:
    # shutdown(wait=False) while every worker is held and calls are queued: the queued calls
    # still run (as documented) once a worker is free, each answered once, and every thread
    # ends; a call after the shutdown is refused at once.
    held = Held()
    first = [door.submit(held, f"held {n}") for n in range(3)]
    for _ in range(3):
        assert await held.entered()
    queued = [door.submit(lambda n=n: n) for n in range(10)]
    door.shutdown(wait=False)
    with pytest.raises(RuntimeError, match="takes no more calls"):
        door.submit(lambda: None)
    assert not any(q.done() for q in queued)
    held.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*first, *queued), NEVER_S) == \
        [f"held {n}" for n in range(3)] + list(range(10))
    threads = list(door._threads)
    await asyncio.to_thread(lambda: [t.join(NEVER_S) for t in threads])
    assert not any(t.is_alive() for t in threads)


def test_a_loop_per_request_each_gets_a_worker_past_a_held_call(door: CallDoor) -> None:
    # A sync caller making a loop per request (asyncio.run each time) while one call of the
    # door is held: each loop's checks of the queue are its own (the previous loop's timer
    # died with it), so each request's call is answered while the held one still runs.
    held = Held()

    async def hold() -> None:
        door.submit(held, "held")  # (not awaited: it outlives its loop, answer dropped)
        assert await held.entered()

    asyncio.run(hold())
    for n in range(10):
        async def request(n: int = n) -> int:
            return await asyncio.wait_for(door.submit(lambda: n), NEVER_S)

        assert asyncio.run(request()) == n
    assert held.ran == [] and len(door._threads) <= 3
    held.gate.set()

    async def after() -> str:
        return await asyncio.wait_for(door.submit(lambda: "after"), NEVER_S)

    assert asyncio.run(after()) == "after"


def test_a_loop_blocked_while_calls_queue_serves_them_once_it_runs_again(door: CallDoor) -> None:
    # The loop's thread blocked (a blocking callback) after submitting calls behind a held
    # one: no check of the queue can run meanwhile, but none is lost either: once the loop
    # runs again each queued call gets a worker up to the door's width, the held one still
    # held, and nothing hangs.
    held = Held()

    async def blocked() -> list[str]:
        first = door.submit(held, "held")
        assert await held.entered()
        more = [door.submit(held, f"queued {n}") for n in range(2)]
        short = door.submit(lambda: "short")
        # The loop's thread blocked until its check of the queue is overdue (a callback
        # that does not give the loop back): the check cannot run meanwhile.
        overdue = time.monotonic() + 2 * UNSTICK_S
        while time.monotonic() < overdue:
            pass
        assert len(door._threads) == 1 and not short.done()
        for _ in range(2):  # the loop runs again: two more workers, for the two held
            assert await held.entered()
        assert len(door._threads) == 3 and not first.done()
        held.gate.set()
        return await asyncio.wait_for(asyncio.gather(first, *more, short), NEVER_S)

    assert asyncio.run(blocked()) == ["held", "queued 0", "queued 1", "short"]


def _second_loop(door: CallDoor, then: Callable[[], None]) -> threading.Thread:
    """A loop on a thread of its own submitting one call to ``door`` (queued: a worker is
    awake), cancelled at once (its client gone); then ``then()`` on the loop's thread, and
    the loop stopped and closed after that one turn (its timers never run)."""
    loop = asyncio.new_event_loop()

    def other() -> None:
        door.submit(lambda: "other").cancel()
        then()
        loop.stop()

    def run() -> None:
        loop.call_soon(other)
        try:
            loop.run_forever()
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


async def test_calls_queued_while_another_loop_comes_and_closes_still_get_workers(
        door: CallDoor) -> None:
    held = Held()
    first = door.submit(held, "1")
    assert await held.entered()
    queued = [door.submit(held, "2"), door.submit(held, "3")]
    # Still in this turn of the loop (its check not yet run): another loop submits a call of
    # the same plugin, its caller gone, and is stopped and closed (a thread's loop ended).
    _second_loop(door, lambda: None).join(NEVER_S)
    try:
        for _ in range(2):  # the door is 3 wide: each held call its own worker
            assert await held.entered(START_S), "a queued call got no worker while width was free"
    finally:
        held.gate.set()
    assert await asyncio.wait_for(asyncio.gather(first, *queued), NEVER_S) == ["1", "2", "3"]


async def test_calls_queued_while_another_loop_comes_and_blocks_still_get_workers(
        door: CallDoor) -> None:
    held = Held()
    release = threading.Event()
    first = door.submit(held, "1")
    assert await held.entered()
    queued = [door.submit(held, "2"), door.submit(held, "3")]
    blocking = threading.Event()

    def block() -> None:
        blocking.set()
        release.wait(NEVER_S)

    other = _second_loop(door, block)
    assert blocking.wait(NEVER_S)
    try:
        for _ in range(2):
            assert await held.entered(START_S), "a queued call got no worker while width was free"
    finally:
        release.set()
        held.gate.set()
        other.join(NEVER_S)
    assert await asyncio.wait_for(asyncio.gather(first, *queued), NEVER_S) == ["1", "2", "3"]


def _one_spinning_worker(route_host: Callable[..., RouteHost], timeout_ms: int,
                         max_concurrent: int) -> RouteHost:
    """A host whose ``web`` plugin is one worker wide, its guest's deadline 120 s, with a
    public route ``/http/spin`` to its ``spin``."""
    return route_host(routes={"spin": {"plugin": "web", "handler": "spin", "path": "/spin",
                                       "methods": ["GET"], "auth": "public",
                                       "timeout_ms": timeout_ms,
                                       "max_concurrent": max_concurrent}},
                      sidecars={"web.yaml": "limits: {timeout_ms: 120000, pool_size: 1}\n"})


_tokens: dict[tuple[int, str], str] = {}


def _route_in_flight(host: RouteHost) -> int:
    """Calls in flight on the host's routes (the console's route list)."""
    token = _tokens.get((id(host.app), host.url))
    if token is None:
        token = _tokens[(id(host.app), host.url)] = host.token()
    listed = {"Authorization": f"Bearer {token}"}
    return sum(r["in_flight"] for r in httpx.get(
        host.url.rstrip("/") + "/api/v1/routes", headers=listed).json()["routes"])


def _drain(host: RouteHost) -> None:
    """End the spinning guests (each interrupt ends the one spinning now; a queued one then
    spins in turn) until the routes have no call in flight."""
    def drained() -> bool:
        host.app.plugins.interrupt()
        return _route_in_flight(host) == 0
    eventually(drained, "the spinning guests ended")


def test_a_call_queued_behind_a_spinning_one_is_answered_504_at_the_routes_deadline(
        route_host: Callable[..., RouteHost]) -> None:
    # The plugin is one worker wide: a second request's call queues behind a guest spinning
    # to its (120 s) deadline. The route's deadline counts from the request, the queue
    # included (docs/guides/http-routes.md: timeout_ms for the body and the call together):
    # both get 504 at the route's deadline, not the queued one 500 after the spinning
    # guest's deadline and its own.
    host = _one_spinning_worker(route_host, timeout_ms=1000, max_concurrent=4)

    async def requests() -> list[int]:
        async with httpx.AsyncClient(base_url=host.url, timeout=NEVER_S) as c:
            return [r.status_code for r in
                    await asyncio.gather(c.get("/http/spin"), c.get("/http/spin"))]

    try:
        assert asyncio.run(requests()) == [504, 504]
    finally:
        _drain(host)


def test_a_routes_cap_counts_a_call_queued_behind_a_spinning_one(
        route_host: Callable[..., RouteHost]) -> None:
    # max_concurrent 2 over a plugin one worker wide: one call spinning, one queued behind
    # it; both count, so a third request is refused 503 at once, and the two end (the
    # guests interrupted in turn) with the plugin's deadline's 500, nothing hanging.
    host = _one_spinning_worker(route_host, timeout_ms=60_000, max_concurrent=2)

    async def requests() -> tuple[int, list[int]]:
        async with httpx.AsyncClient(base_url=host.url, timeout=NEVER_S) as c:
            two = [asyncio.ensure_future(c.get("/http/spin")) for _ in range(2)]
            await asyncio.to_thread(eventually, lambda: _route_in_flight(host) == 2,
                                    "both calls in flight")
            third = (await c.get("/http/spin")).status_code
            await asyncio.to_thread(_drain, host)
            return third, [(await r).status_code for r in two]

    try:
        assert asyncio.run(requests()) == (503, [500, 500])
    finally:
        _drain(host)


def test_a_call_still_queued_when_its_route_answered_504_never_runs(
        route_host: Callable[..., RouteHost]) -> None:
    # One worker, its guest spinning; a second request's call queues behind it. Both clients
    # get 504 at the route's deadline and go. The spinning guest is then ended: the call
    # whose client was answered while it was still queued must not run after it.
    host = _one_spinning_worker(route_host, timeout_ms=1000, max_concurrent=4)
    stats = host.app.plugins._entries.require("web").stats

    async def requests() -> list[int]:
        async with httpx.AsyncClient(base_url=host.url, timeout=NEVER_S) as c:
            return [r.status_code for r in
                    await asyncio.gather(c.get("/http/spin"), c.get("/http/spin"))]

    assert asyncio.run(requests()) == [504, 504]
    _drain(host)
    ran = stats.snapshot().calls
    assert ran == 1, f"{ran} calls ran: the one queued ran after its client got 504"
