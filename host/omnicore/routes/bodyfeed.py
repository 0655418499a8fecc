"""A proxy component's request body, received as the guest reads it (specs/http-routes.md
"Proxy components"): the event loop's side of the guest's ``input-stream``, which
wasihttp.py's ``wasi:io`` definitions read from on a proxy thread.

Its own seam: this runs on the loop (a pump task over the ASGI ``receive``) and hands bytes
to a thread across a condition; wasihttp.py is the guest's side of the resources, and
proxy.py the request's life, which starts and watches it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["WINDOW", "BodyFeed"]

#: The most of a request body the host takes from the server ahead of the guest's reads.
WINDOW = 64 * 1024


class BodyFeed:
    """A request body the guest reads as it arrives: its ``input-stream``'s reads (and
    pollables) pull from the ASGI ``receive`` on the event loop, while the guest runs on a
    proxy thread.

    A body of a declared length (at most the cap: a larger one is refused before the call)
    is received once the guest first asks (a guest that never reads the body never waits
    for it); then the event loop's pump (one task) receives while less than :data:`WINDOW`
    bytes wait for the guest, and pauses until the guest's reads make room. A body of no
    declared length (chunked, HTTP/2 without ``content-length``) can cross the cap however
    slow the guest is: the server starts its pump at once (:meth:`begin`), which receives
    without pausing up to the cap (the most any route holds of a body), so the cap is seen
    crossed as the bytes arrive, never when the guest gets to them.
    The pump ends the body with a failure -- ``status`` for the client and why -- past the
    route's cap (413), at the route's deadline (408), when the client goes (400) or the
    console's guards refuse (their status), and calls the :meth:`watch` callbacks (the
    server answers that status then, whether or not the guest has read a byte); the guest's
    next read gets ``stream-error.last-operation-failed`` (after the bytes that came
    before), then ``closed``. A guest blocked on the body waits on a condition, never past
    its call's deadline (then it traps, and the body's failure is 408). :meth:`close` (on
    the loop) ends the pump once the request is answered. Thread-safe: the guest's side
    under one lock, the loop's side on the loop.
    """

    def __init__(self, receive: Callable[[], Awaitable[Any]], cap: int, deadline: float,
                 declared: int | None, loop: asyncio.AbstractEventLoop) -> None:
        self._receive = receive
        self.cap = cap
        #: The route's deadline (time.monotonic()).
        self.deadline = deadline
        self.declared = declared
        self._loop = loop
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        #: Bytes received so far (what the guest read and what waits for it).
        self.received = 0
        self.ended = False
        #: (status for the client, why) once the body cannot be had whole.
        self.failure: tuple[int, str] | None = None
        #: The guest is blocked waiting for the body now.
        self.waiting = False
        self._started = False
        self._paused = False
        self._closed = False
        self._room: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        #: Called (on the loop) when the pump ends the body with a failure.
        self._watchers: list[Callable[[], None]] = []

    # -- the guest's side (a proxy thread) --

    def _demand(self) -> None:  # under the lock
        if self._closed or self.ended or self.failure is not None:
            return
        if not self._started:
            self._started = True
            self._loop.call_soon_threadsafe(self._start)
        elif self._paused and self._buffered < WINDOW:
            self._paused = False
            self._loop.call_soon_threadsafe(self._resume)

    def readable(self, *, end: bool = False) -> bool:
        """Whether a read would not block (``end``: whether the body is at its end); asks
        the loop for more when not."""
        with self._cond:
            if end:  # the trailers' wait: what is left of the body is dropped as it comes
                self._chunks.clear()
                self._buffered = 0
            elif self._chunks:
                return True
            if self.ended or self.failure is not None or self._closed:
                return True
            self._demand()
            return False

    def take(self, n: int, until: float | None) -> bytes | tuple[int, str] | None:
        """Up to ``n`` bytes; ``b""`` when none came yet and ``until`` is None (a read that
        does not block); None at the end; the failure once the bytes before it are read.
        Blocks until ``until`` (time.monotonic()) at most: raises TimeoutError then."""
        with self._cond:
            while not self._chunks:
                if self.failure is not None:
                    return self.failure
                if self.ended or self._closed:
                    return None
                self._demand()
                if until is None:
                    return b""
                if not self.wait(until):
                    self.starve()
                    raise TimeoutError
            # as much as has come, up to n (across the server's messages)
            parts: list[bytes] = []
            want = n
            while want > 0 and self._chunks:
                chunk = self._chunks[0]
                if len(chunk) <= want:
                    self._chunks.popleft()
                else:
                    chunk, self._chunks[0] = chunk[:want], chunk[want:]
                parts.append(chunk)
                want -= len(chunk)
            out = parts[0] if len(parts) == 1 else b"".join(parts)
            self._buffered -= len(out)
            self._demand()
            return out

    def wait(self, until: float) -> bool:
        """Wait (holding the lock) for the pump's next news, until ``until``
        (time.monotonic()) at most; False when ``until`` had passed."""
        left = until - time.monotonic()
        if left <= 0:
            return False
        self.waiting = True
        try:
            self._cond.wait(left)
        finally:
            self.waiting = False
        return True

    def starve(self) -> None:
        """The guest's deadline passed while it waited for the body: the body's failure is
        that (408)."""
        with self._cond:
            if not self.ended and self.failure is None:
                self.failure = (408, "the body did not arrive before the plugin's deadline")

    # -- the event loop's side --

    def begin(self) -> None:
        """Receive at once, not when the guest first asks (a body of no declared length:
        its crossing of the cap is the server's to see as it comes)."""
        with self._cond:
            if self._started:
                return
            self._started = True
        self._start()

    def watch(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the loop) when the pump ends the body with a failure; at
        once when it has."""
        if self.failure is not None:
            callback()
        else:
            self._watchers.append(callback)

    def unwatch(self, callback: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._watchers.remove(callback)

    def _start(self) -> None:
        if self._closed:
            return
        self._room = asyncio.Event()
        self._room.set()
        self._task = self._loop.create_task(self._pump())

    def _resume(self) -> None:
        if self._room is not None:
            self._room.set()

    def _fail(self, status: int, why: str) -> None:  # under the lock
        if self.failure is None:
            self.failure = (status, why)
        self._cond.notify_all()

    async def _pump(self) -> None:
        try:
            await self._pumping()
        finally:
            if self.failure is not None:
                watchers, self._watchers = self._watchers, []
                for callback in watchers:
                    callback()

    async def _pumping(self) -> None:
        assert self._room is not None
        loop = self._loop
        while True:
            await self._room.wait()
            try:
                async with asyncio.timeout_at(self.deadline - time.monotonic() + loop.time()):
                    message = await self._receive()
            except TimeoutError:
                with self._cond:
                    self._fail(408, "the body did not arrive before the route's deadline")
                return
            except Exception as exc:  # the console's BodyLimits refusing: 408 or 413
                status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
                with self._cond:
                    self._fail(int(status or 400), str(exc))
                return
            with self._cond:
                if message["type"] == "http.disconnect":
                    self._fail(400, "the client went away before its body arrived")
                    return
                chunk = bytes(message.get("body", b""))
                more = bool(message.get("more_body", False))
                self.received += len(chunk)
                if self.received > self.cap:
                    self._fail(413, f"the body is over {self.cap} bytes")
                    return
                if not more and self.declared is not None and self.received != self.declared:
                    self._fail(400, f"the body is {self.received} bytes, not its "
                                    f"Content-Length {self.declared}")
                    return
                if chunk:
                    self._chunks.append(chunk)
                    self._buffered += len(chunk)
                if not more:
                    self.ended = True
                elif self._buffered >= WINDOW and self.declared is not None:
                    # (an undeclared body is received to its end or the cap: see begin)
                    self._paused = True
                    self._room.clear()
                self._cond.notify_all()
            if not more:
                return

    def close(self) -> None:
        """The request is answered: the pump ends, a guest still reading gets the end
        (on the event loop)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._task is not None and not self._task.done():
            self._task.cancel()

    @property
    def pumping(self) -> bool:
        """Whether the pump may be waiting on ``receive`` now."""
        return self._task is not None and not self._task.done()
