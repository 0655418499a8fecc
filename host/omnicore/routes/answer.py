"""What every kind of route answers with besides its handler's answer: a status the host
answers at once (:class:`Answer`), the route's counters (:class:`RouteStats`), the wait for a
call within the route's deadline (:func:`within`) and the log line of what went wrong
(:func:`warn`). server.py serves handler routes with them, proxy.py proxy components."""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from omnicore.routes.table import Route

if TYPE_CHECKING:
    from omnicore.routes.bodyfeed import BodyFeed

__all__ = ["Answer", "RouteStats", "release", "warn", "within"]

log = logging.getLogger("omnicore.routes")


@dataclass
class RouteStats:
    """One route's counters on this host (the metrics, ``/api/v1/routes``)."""

    codes: dict[int, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    in_flight: int = 0
    #: The token bucket: tokens left and when they were counted.
    tokens: float = 0.0
    counted: float = 0.0
    rate: tuple[float, int] | None = None
    logged: float = -1.0
    warned: float = -1.0
    suppressed: int = 0



class Answer(Exception):
    """Answer this status now (the host's own JSON error)."""

    def __init__(self, status: int, message: str, reason: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = headers or []



class _Deadlines:
    """The deadlines of every :func:`within` wait on one loop, under one loop timer armed
    for the earliest: a wait is a heap entry, pushed and marked done (then popped from the
    top), where a timer of its own was a ``TimerHandle`` made, pushed, cancelled and later
    popped by the loop, each in Python, on every request (issue 65, deliverable 6). The
    timer never fires late: a wait due sooner arms another (the one it replaces wakes for
    nothing: its generation is old); a wait done early may leave it armed for a time nothing
    is due, and it wakes, then arms for the earliest wait left. Nothing here holds the loop
    (a key of ``_deadlines``, held weakly): a timer is not kept, only its generation."""

    __slots__ = ("__weakref__", "_at", "_gen", "_heap", "_seq")

    def __init__(self) -> None:
        #: [when (loop time), sequence, wake or None once done]
        self._heap: list[list[Any]] = []
        self._at = float("inf")
        self._gen = 0
        self._seq = 0

    def add(self, loop: asyncio.AbstractEventLoop, when: float,
            wake: Callable[[], None]) -> list[Any]:
        self._seq += 1
        entry = [when, self._seq, wake]
        heapq.heappush(self._heap, entry)
        if when < self._at:
            self._at = when
            self._gen += 1
            loop.call_at(when, self._fire, self._gen)
        return entry

    def done(self, entry: list[Any]) -> None:
        entry[2] = None
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)

    def _fire(self, gen: int) -> None:
        if gen != self._gen:
            return  # replaced by a timer for a sooner wait
        loop = asyncio.get_running_loop()
        heap, now = self._heap, loop.time()
        while heap and (heap[0][2] is None or heap[0][0] <= now):
            wake = heapq.heappop(heap)[2]
            if wake is not None:
                wake()
        self._gen += 1
        self._at = heap[0][0] if heap else float("inf")
        if heap:
            loop.call_at(self._at, self._fire, self._gen)


#: One :class:`_Deadlines` per loop (weakly: a loop ``asyncio.run`` made and closed goes).
_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = \
    weakref.WeakKeyDictionary()
_last: list[Any] = [None, None]  # the loop (weakly) and its deadlines, looked up last


def _deadlines_of(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    ref, found = _last
    if ref is not None and ref() is loop:
        return found  # type: ignore[no-any-return]
    found = _deadlines.get(loop)
    if found is None:
        found = _deadlines[loop] = _Deadlines()
    _last[0], _last[1] = weakref.ref(loop), found
    return found


async def within(call: asyncio.Future[Any], deadline: float,
                 feed: BodyFeed | None = None) -> bool:
    """Whether ``call`` is done by ``deadline`` (``time.monotonic``); it is never cancelled
    (a running call ends by its own deadline). With ``feed`` (a proxy's request body), the
    wait ends too when the body fails (over the cap...): False then, the call running on.
    One waiter, its deadline on the loop's shared timer (:class:`_Deadlines`): ``asyncio.wait``
    on a task of the call made three futures, a set and a task per request."""
    if call.done():
        return True
    if feed is not None and feed.failure is not None:
        return False
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    deadlines = _deadlines_of(loop)
    entry = deadlines.add(loop, loop.time() + max(0.0, deadline - time.monotonic()), wake)
    call.add_done_callback(wake)
    if feed is not None:
        feed.watch(wake)
    try:
        await waiter
    finally:
        deadlines.done(entry)
        call.remove_done_callback(wake)
        if feed is not None:
            feed.unwatch(wake)
    return call.done()



def release(fut: asyncio.Future[Any], st: RouteStats) -> None:
    """A call that outlived its answer ended: its slot of ``st.in_flight`` is free."""
    st.in_flight -= 1
    if not fut.cancelled():
        fut.exception()  # retrieved: a late failure is no "never retrieved" warning



def warn(route: Route, st: RouteStats, what: str) -> None:
    """Log what went wrong with a request of ``route``: a line a second at most, with how many
    were held back."""
    now = time.monotonic()
    if now - st.warned < 1.0:  # a flood of failing requests is one line a second
        st.suppressed += 1
        return
    more = f" ({st.suppressed} more since the last line)" if st.suppressed else ""
    st.warned, st.suppressed = now, 0
    log.warning("route '%s' (plugin %s, handler %s): %s%s", route.name, route.plugin,
                route.handler, what, more)
