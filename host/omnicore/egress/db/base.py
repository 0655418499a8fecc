"""What every database kind shares: the bounded connection pool, the client-side deadline
(the watchdog), the caps on a result, and the one-line failures.

A failure is an :class:`~omnicore.egress.refused.Refused` whose message starts with the
connector's name and never holds a password or a URL's credentials: the driver's text goes
through the connector's :class:`~omnicore.egress.redact.Redactor` first.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["CLIENT_GRACE_S", "MIN_STATEMENT_MS", "TIMEOUT_STEP_MS", "WATCHDOG", "Connection",
           "Pool", "Watchdog", "first_line", "over_cap", "server_timeout_ms", "statement_ms",
           "timed_out"]

#: A statement is not started with less of the call left than this: it could not finish.
MIN_STATEMENT_MS = 5
#: After the server's timeout should have ended a statement, how long the client waits
#: before it cancels the statement itself (a server that does not answer its own timeout).
CLIENT_GRACE_S = 0.25


class Connection(Protocol):
    """A pooled connection of one kind."""

    broken: bool

    def close(self) -> None: ...


def over_cap(connector: str, rows: int, size: int, max_rows: int, max_bytes: int) -> Refused:
    """The TOO_LARGE refusal of a result that has read ``rows`` rows of ``size`` bytes (its
    JSON) past a cap. A result counts its rows and bytes as it is read and calls this only
    past one (a per-row call would cost a one-row query more than the check)."""
    if rows > max_rows:
        return Refused("TOO_LARGE", f"the result has more than {max_rows} rows "
                                    f"(connector {connector}, max_rows)")
    return Refused("TOO_LARGE", f"the result is larger than {max_bytes} bytes "
                                f"(connector {connector}, max_result_bytes)")


def first_line(text: str, redactor: Redactor, limit: int = 300) -> str:
    """A driver's message as one short line with every credential cut out."""
    line = " ".join(redactor.cut_text(str(text)).split())
    return line[:limit]


def statement_ms(deadline: float) -> int:
    """A statement's time in ms: what is left of the call, less a margin (a tenth, at most
    50 ms) so the plugin hears of the timeout before its own deadline ends the call."""
    left = int((deadline - time.monotonic()) * 1000)
    # Conditionals rather than max() and min(): each builtin call costs more than the rest
    # of this function, which runs before every statement.
    margin = left // 10
    ms = left - (margin if margin < 50 else 50)
    return ms if ms > 1 else 1


#: A statement's server timeout is rounded down to this many ms, so consecutive calls of a
#: plugin (each with a little less time left) mostly find the value already set: setting it
#: costs a round trip.
TIMEOUT_STEP_MS = 50


def server_timeout_ms(limit_ms: int, deadline: float) -> int:
    """The server's timeout for a statement: the connector's limit, or what is left of the
    call (:func:`statement_ms`) rounded down to :data:`TIMEOUT_STEP_MS`."""
    left_ms = statement_ms(deadline)
    if limit_ms <= left_ms:
        return limit_ms
    return left_ms // TIMEOUT_STEP_MS * TIMEOUT_STEP_MS or left_ms  # (left_ms is at least 1)


def timed_out(connector: str) -> Refused:
    return Refused("UNAVAILABLE", f"connector {connector}: statement timed out")


#: The heap's size at which :meth:`Watchdog.arm` first drops the disarmed entries.
_COMPACT_MIN = 64


class Watchdog:
    """The client side of a statement's deadline: one thread calls ``fn`` at ``when``
    (``time.monotonic()``) unless the entry was disarmed first. Arming and disarming cost a
    heap push and a flag; the thread wakes only for the earliest entry.

    A disarmed entry stays in the heap until it is dropped: the thread drops those it finds
    first, but it sleeps until the earliest entry's time (the statement timeout, seconds
    away), so the heap would hold every statement armed that long (250,000 entries after five
    seconds of one-row queries; each push then climbs 18 levels of it and the collector walks
    it). :meth:`arm` drops them once the heap has doubled since the last time: at most twice
    the live entries (statements running now), and one pass per entry armed, amortised."""

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._compact_at = _COMPACT_MIN
        # When the thread wakes next by itself (inf: when notified): an entry due later is
        # seen then, so only an earlier one costs a notify (a switch to the thread and back).
        self._wake = math.inf

    def arm(self, when: float, fn: Callable[[], None]) -> list[Any]:
        """Call ``fn`` at ``when``; set ``entry[3] = False`` (:meth:`disarm`) to call it off."""
        entry = [when, next(self._seq), fn, True]
        with self._lock:  # the condition's (its own __enter__ is a Python call more)
            heap = self._heap
            if len(heap) >= self._compact_at:
                # Dropping entries never makes the earliest one earlier: the thread, asleep
                # until the old earliest, at worst wakes early once and sleeps again.
                heap[:] = [e for e in heap if e[3]]
                heapq.heapify(heap)
                self._compact_at = max(_COMPACT_MIN, 2 * len(heap))
            heapq.heappush(heap, entry)
            if when < self._wake:
                self._wake = when
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="omnicore-db-watchdog")
                    self._thread.start()
                else:
                    self._cond.notify()
        return entry

    @staticmethod
    def disarm(entry: list[Any]) -> None:
        entry[3] = False

    @property
    def queued(self) -> int:
        """Entries in the heap: the armed ones and the disarmed not dropped yet."""
        return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._heap and not self._heap[0][3]:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._wake = math.inf
                    self._cond.wait()
                    continue
                self._wake = self._heap[0][0]
                wait = self._wake - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                entry = heapq.heappop(self._heap)
            if entry[3]:
                try:
                    entry[2]()
                except Exception:
                    pass


#: The process's one watchdog.
WATCHDOG = Watchdog()


class Pool:
    """At most ``size`` connections of one connector, shared by every plugin and instance
    granted it. Waiting for one counts against the caller's deadline; a broken connection
    is closed, not returned (the next caller connects afresh: a restarted server is found
    again)."""

    def __init__(self, name: str, size: int, connect: Callable[[float], Any]) -> None:
        self.name = name
        self.size = size
        self._connect = connect
        self._lock = threading.Lock()
        # Signalled when a connection is given back and someone waits (a lock and a counter
        # cost a third of a Semaphore's acquire and release when nobody waits, the usual case).
        self._freed = threading.Condition(self._lock)
        self._waiting = 0
        self._idle: list[Any] = []
        self.in_use = 0
        self.closed = False

    @property
    def idle(self) -> int:
        return len(self._idle)

    def acquire(self, deadline: float) -> tuple[Any, bool]:
        """A connection and whether it was reused (idle in the pool); Refused UNAVAILABLE
        when none is free before ``deadline``."""
        with self._lock:
            if self.in_use >= self.size:
                self._waiting += 1
                try:
                    while self.in_use >= self.size:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise Refused("UNAVAILABLE", f"connector {self.name}: no free "
                                          "connection in the pool before the call's deadline")
                        self._freed.wait(left)
                finally:
                    self._waiting -= 1
            self.in_use += 1
            if self._idle:
                return self._idle.pop(), True
        try:
            return self._connect(deadline), False
        except BaseException:
            self._put(None)
            raise

    def release(self, conn: Any) -> None:
        """Give ``conn`` back (closed instead when it is broken or the pool is closed)."""
        if conn.broken or self.closed:
            conn.close()  # before its place is free: the pool never holds more than size
            conn = None
        self._put(conn)

    def _put(self, conn: Any) -> None:
        with self._lock:
            self.in_use -= 1
            if conn is not None and not self.closed:
                self._idle.append(conn)
                conn = None
            if self._waiting:
                self._freed.notify()
        if conn is not None:
            conn.close()  # the pool closed while it was in use

    def discard_idle(self) -> None:
        """Close the idle connections (one was found dead: a restarted server ended them all)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def close(self) -> None:
        """Close the idle connections; those in use are closed when given back."""
        with self._lock:
            self.closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
