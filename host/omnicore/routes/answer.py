"""What every kind of route answers with besides its handler's answer: a status the host
answers at once (:class:`Answer`), the route's counters (:class:`RouteStats`), the wait for a
call within the route's deadline (:func:`within`) and the log line of what went wrong
(:func:`warn`). server.py serves handler routes with them, proxy.py proxy components."""

from __future__ import annotations

import asyncio
import logging
import time
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



async def within(call: asyncio.Future[Any], deadline: float,
                  feed: BodyFeed | None = None) -> bool:
    """Whether ``call`` is done by ``deadline`` (``time.monotonic``); it is never cancelled
    (a running call ends by its own deadline). With ``feed`` (a proxy's request body), the
    wait ends too when the body fails (over the cap...): False then, the call running on.
    One waiter and one timer: ``asyncio.wait`` on a task of the call made three futures, a
    set and a task per request."""
    if call.done():
        return True
    if feed is not None and feed.failure is not None:
        return False
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), wake)
    call.add_done_callback(wake)
    if feed is not None:
        feed.watch(wake)
    try:
        await waiter
    finally:
        timer.cancel()
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
