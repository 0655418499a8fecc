"""What every database kind shares: where a new connection goes, the bounded connection pool,
the client-side deadline (the watchdog), the caps on a result, and the one-line failures.

A failure is an :class:`~omnicore.egress.refused.Refused` whose message starts with the
connector's name and never holds a password or a URL's credentials: the driver's text goes
through the connector's :class:`~omnicore.egress.redact.Redactor` first.
"""

from __future__ import annotations

import heapq
import itertools
import math
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Protocol

from omnicore.egress.db.config import DbConnector, Target
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused
from omnicore.errors import ConfigError

__all__ = ["CLIENT_GRACE_S", "HARD_GRACE_S", "HOST_TIMES", "MAPPED_FROM", "MIN_STATEMENT_MS",
           "SMALL_MESSAGE", "TIMEOUT_STEP_MS", "WATCHDOG", "Connection", "Pool", "Watchdog",
           "connection_target", "first_line", "map_large_allocations", "on_side", "open_socket",
           "over_cap", "row_over_cap", "server_timeout_ms", "shut", "statement_ms", "timed_out"]

#: A statement is not started with less of the call left than this: it could not finish.
MIN_STATEMENT_MS = 5
#: After the server's timeout should have ended a statement, how long the client waits
#: before it cancels the statement itself (a server that does not answer its own timeout).
CLIENT_GRACE_S = 0.25
#: After the client's cancel, how long a statement has to end before its connection is cut
#: (the socket shut down here, the server's session ended from a side connection): a
#: statement that catches the cancel (a PL/pgSQL handler of query_canceled, a MariaDB
#: procedure's handler) or a server that answers nothing cannot hold the call longer.
HARD_GRACE_S = 0.25
#: Side connections (a cancel, a KILL) are opened and answered within this (their own bound:
#: a wedged server costs a side thread this long, never the watchdog).
SIDE_TIMEOUT_S = 2.0


class Connection(Protocol):
    """A pooled connection of one kind: whether it broke, and the plugin it last served
    (``owner``; a connection passes to another plugin only through the pool's ``reset``)."""

    broken: bool
    owner: str | None

    def close(self) -> None: ...


#: The threads that do what a deadline needs done over the network (a cancel request, a
#: KILL from a side connection): the watchdog's own thread never waits on a server.
_SIDE = ThreadPoolExecutor(max_workers=8, thread_name_prefix="omnicore-db-side")


def _quietly(fn: Callable[[], object]) -> None:
    try:
        fn()
    except Exception:
        pass  # the hard stop after it ends the statement whatever this did


def on_side(fn: Callable[[], object]) -> Callable[[], None]:
    """``fn`` as a watchdog action run on a side thread (it may block on a server for up to
    :data:`SIDE_TIMEOUT_S`, which it must bound itself)."""
    def submit() -> None:
        _SIDE.submit(_quietly, fn)

    return submit


def open_socket(target: Target, deadline: float,
                opened: list[socket.socket] | None = None) -> socket.socket:
    """A socket connected to ``target`` (its local socket, else TCP without Nagle's delay)
    within what is left of ``deadline``, put in ``opened`` as soon as it exists (what a cut
    at the deadline shuts down); OSError when it cannot connect."""
    timeout = max(0.001, deadline - time.monotonic())
    if target.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if opened is not None:
            opened.append(sock)
        try:
            sock.settimeout(timeout)
            sock.connect(target.socket)
        except BaseException:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((target.host, target.port), timeout)
    if opened is not None:
        opened.append(sock)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def shut(sock: socket.socket | None) -> None:
    """Shut ``sock`` down (a cut at the deadline): a read or write blocked on it returns at
    once, with an error; its owner still closes it. Never raises."""
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def over_cap(connector: str, rows: int, size: int, max_rows: int, max_bytes: int) -> Refused:
    """The TOO_LARGE refusal of a result that has read ``rows`` rows of ``size`` bytes (its
    JSON) past a cap. A result counts its rows and bytes as it is read and calls this only
    past one (a per-row call would cost a one-row query more than the check)."""
    if rows > max_rows:
        return Refused("TOO_LARGE", f"the result has more than {max_rows} rows "
                                    f"(connector {connector}, max_rows)")
    return Refused("TOO_LARGE", f"the result is larger than {max_bytes} bytes "
                                f"(connector {connector}, max_result_bytes)")


#: What a result may cost the host in memory, as a multiple of its max_result_bytes: its
#: JSON, and what the driver holds while it reads the next row (specs/abi.md §4.10, Memory).
HOST_TIMES = 1.25
#: A message (PostgreSQL) or packet (MariaDB) up to this long is bounded by the JSON's count
#: alone: its copies are within the buffers a connection keeps anyway (libpq's is 16 KiB).
SMALL_MESSAGE = 16 << 10


#: Allocations from this size on are mapped apart and unmapped when freed (glibc's
#: M_MMAP_THRESHOLD, fixed by :func:`map_large_allocations`).
MAPPED_FROM = 1 << 20
_M_MMAP_THRESHOLD = -3  # (malloc.h)
_mapped: list[bool] = []


def map_large_allocations() -> None:
    """Fix glibc's mmap threshold at :data:`MAPPED_FROM` (once; nothing off glibc).

    glibc maps an allocation apart from 128 KiB on, until a mapped one is freed: from then
    on allocations up to that size (up to 32 MiB) come from the heap. A result's large
    pieces (rows, their values and JSON, the buffer its JSON is written into) then came from
    the heap, where a buffer that grows is copied (its old and new whole at once) and what
    is freed stays resident between what is not: 28 rows of 1 MiB under a 32 MiB cap cost
    the host 1.78 x the cap on PostgreSQL, 1.55 x on MariaDB; 0.94 x with the threshold
    fixed (tests/egress/db/test_result_memory.py). Fixed, an allocation of 1 MiB or more is
    its own mapping: a buffer grows by remapping, and is given back whole when freed. The
    cost is time: each such block's pages are fresh, faulted in as they are written, where
    the heap's were resident (28 rows of 1 MiB through the connector: 84 ms at best from the
    heap, 195 ms mapped, on a loaded 2-core VM), and the setting is the process's: whatever
    else allocates a MiB or more at a time pays the same."""
    if _mapped:
        return
    _mapped.append(True)
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # (off glibc)
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(_M_MMAP_THRESHOLD, MAPPED_FROM)


def row_over_cap(connector: str, length: int, copies: int, max_bytes: int,
                 at_least: bool = False) -> Refused:
    """The TOO_LARGE refusal of a result whose next row, ``length`` bytes on the wire (or
    more, ``at_least``) and not read yet, would take what the result costs the host past
    :data:`HOST_TIMES` its ``max_bytes``: the driver holds ``copies`` of a row at once while
    it reads it."""
    twice = {2: "twice", 3: "three times"}.get(copies, f"{copies} times")
    return Refused("TOO_LARGE", f"the result is larger than {max_bytes} bytes (connector "
                                f"{connector}, max_result_bytes): its next row is "
                                f"{'at least ' if at_least else ''}{length} "
                                f"bytes, and a row costs the host about {twice} its size "
                                "while it is read; a result may cost at most "
                                f"{HOST_TIMES} x max_result_bytes")


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


def connection_target(connector: DbConnector, read_secret: Any,
                      plugin: str | None = None) -> Target:
    """Where a new connection of ``connector`` goes (for ``plugin``: its own role, if it has
    one), its secrets read; a secret not set, or not holding a valid URL, is UNAVAILABLE
    naming the secret."""
    try:
        return connector.target_for(read_secret, plugin)
    except LookupError as exc:
        raise Refused("UNAVAILABLE", f"connector {connector.name}: {exc}") from None
    except ConfigError:
        # (Its message is the URL's fault, never the URL: the secret holds a password.)
        raise Refused("UNAVAILABLE", f"connector {connector.name}: secret "
                                     f"{connector.url_secret} does not hold a valid "
                                     f"{connector.kind} URL") from None


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

    def arm(self, when: float, fn: Callable[[], None],
            then: tuple[float, Callable[[], None]] | None = None) -> list[Any]:
        """Call ``fn`` at ``when`` and, with ``then = (delay, fn2)``, ``fn2`` ``delay``
        seconds after (the escalation of a deadline: a cancel, then the cut); set
        ``entry[3] = False`` (:meth:`disarm`) to call off both. Both run on the watchdog's
        thread and must not block (:func:`on_side` for what waits on a server)."""
        entry = [when, next(self._seq), fn, True, then]
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

    @contextmanager
    def cut_at(self, when: float, cut: Callable[[], None]) -> Iterator[None]:
        """The block's round trips bounded as a statement is: ``cut`` (a connection's sever)
        called at ``when`` unless the block has ended by then, however it ends."""
        entry = self.arm(when, cut)
        try:
            yield
        finally:
            self.disarm(entry)

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
                fn, then = entry[2], entry[4]
                if then is not None:
                    # The same entry again, later: disarm() still reaches it.
                    entry[0] = time.monotonic() + then[0]
                    entry[1], entry[2], entry[4] = next(self._seq), then[1], None
                    heapq.heappush(self._heap, entry)
            if entry[3]:
                try:
                    fn()
                except Exception:
                    pass


#: The process's one watchdog.
WATCHDOG = Watchdog()


class Pool:
    """At most ``size`` connections of one connector, shared by every plugin and instance
    granted it, without carrying one plugin's session into another's statement
    (specs/abi.md §4.10, "Sessions" and "Pool and fairness"):

    * a connection remembers the plugin it last served (``owner``); a plugin gets back an
      idle connection of its own first (no round trip: its session is its own business);
    * a connection passes to another plugin only through ``reset(conn, deadline)``, the
      dialect's reset that the server confirms, and only when the pool has no room for a new
      one; a reset that fails closes the connection and the plugin gets a new one;
    * with ``group`` (plugin -> its credentials: a role per plugin), a connection passes only
      to a plugin of the same credentials; another's idle one is closed to make room, as is
      a ``heavy`` one (its session holds what only its end clears cheaply: the leaver's
      temporary tables are dropped by the server as the session ends, never on the next
      plugin's deadline);
    * every plugin is owed one connection: one beyond a plugin's first is taken only while
      the pool keeps a free one for each plugin it knows (:meth:`reserve`, or seen before)
      that holds none, and one for a newcomer; and never past the plugin's ``share`` (half
      the pool, at least one). A plugin at its share or at the reserve waits, and is refused
      QUOTA at its deadline;
    * waiters are served in order: a plugin holding no connection first, then the earliest
      deadline (a connection given back goes to the first waiter it may serve).

    Waiting counts against the caller's deadline; a broken connection is closed, not
    returned (the next caller connects afresh: a restarted server is found again)."""

    def __init__(self, name: str, size: int, connect: Callable[..., Any],
                 reset: Callable[[Any, float], None] | None = None,
                 share: int | None = None,
                 group: Callable[[str], str | None] | None = None) -> None:
        self.name = name
        self.size = size
        self.share = share or max(1, size // 2)
        # connect(deadline), or connect(deadline, owner) with a group (its credentials).
        self._connect = connect
        self._reset = reset
        self._group = group
        self._lock = threading.Lock()
        # Signalled when a connection is given back and someone waits (a lock and a counter
        # cost a third of a Semaphore's acquire and release when nobody waits, the usual case).
        self._freed = threading.Condition(self._lock)
        self._queue: list[list[Any]] = []  # waiters: [deadline, seq, owner]
        self._seq = itertools.count()
        self._idle: list[Any] = []
        self._owners: dict[str, int] = {}  # connections in use per plugin
        self._seen: set[str] = set()       # plugins owed a connection
        self.in_use = 0
        self.resets = 0  # connections handed from one plugin to another (for tests and stats)
        self.closed = False

    @property
    def idle(self) -> int:
        return len(self._idle)

    def using(self, owner: str) -> int:
        """How many connections ``owner`` has in use."""
        return self._owners.get(owner, 0)

    def reserve(self, owner: str) -> None:
        """Owe ``owner`` a connection from now on (a plugin granted the connector)."""
        with self._lock:
            self._seen.add(owner)

    def _room(self, owner: str) -> bool:
        """Whether ``owner`` may take a connection now (the lock held)."""
        in_use = self.in_use
        if in_use >= self.size:
            return False
        held = self._owners.get(owner, 0)
        if not held:
            return True
        # Beyond its first: one free for each known plugin holding none, one for a newcomer.
        # (Every holder is known, so the known holding none are the difference.)
        return held < self.share and \
            in_use + 2 + len(self._seen) - len(self._owners) <= self.size

    def _first(self) -> list[Any] | None:
        """The waiter served next: of those the pool may serve now, one holding no
        connection first, then the earliest deadline (the lock held)."""
        owners = self._owners
        best: list[Any] | None = None
        best_key: tuple[bool, float, int] | None = None
        for entry in self._queue:
            if not self._room(entry[2]):
                continue
            key = (entry[2] in owners, entry[0], entry[1])
            if best_key is None or key < best_key:
                best, best_key = entry, key
        return best

    def acquire(self, deadline: float, owner: str = "") -> tuple[Any, bool]:
        """A connection for ``owner`` and whether it was reused as it was (idle in the pool
        after serving ``owner``); Refused UNAVAILABLE when none is free before ``deadline``,
        QUOTA when ``owner`` holds its share (or all the reserve leaves it) until then."""
        evict = None
        with self._lock:
            owners = self._owners
            self._seen.add(owner)
            # (_room's first answer without the call: a plugin holding none with room)
            if self._queue or ((self.in_use >= self.size or owner in owners)
                               and not self._room(owner)):
                entry = [deadline, next(self._seq), owner]
                self._queue.append(entry)
                try:
                    while self._first() is not entry:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise self._none_free(owner)
                        self._freed.wait(left)
                finally:
                    self._queue.remove(entry)
                    if self._queue:
                        self._freed.notify_all()  # the next in line may be served now
            self.in_use += 1
            owners[owner] = owners.get(owner, 0) + 1
            idle, conn = self._idle, None
            for i in range(len(idle) - 1, -1, -1):  # the most recently used of its own
                if idle[i].owner == owner:
                    conn = idle.pop(i)
                    break
            else:
                # Room for one more: a new connection (once) rather than a reset of another
                # plugin's on every turn when two plugins alternate. The pool full: another
                # plugin's of the same credentials, the least recently used, reset below;
                # none: the least recently used closed for a new one.
                if idle and self.in_use - 1 + len(idle) >= self.size:
                    group = self._group(owner) if self._group is not None else None
                    for i, c in enumerate(idle):
                        if getattr(c, "group", None) == group and \
                                not getattr(c, "heavy", False):
                            conn = idle.pop(i)
                            break
                    else:
                        evict = idle.pop(0)
        if evict is not None:
            evict.close()
        if conn is not None and conn.owner == owner:
            return conn, True
        try:
            if conn is not None:
                try:
                    self._hand_over(conn, deadline)
                    conn.owner = owner
                    return conn, False
                except Refused:
                    raise
                except Exception:
                    pass  # closed by _hand_over: a new connection instead
            if self._group is not None:
                conn = self._connect(deadline, owner)
                conn.group = self._group(owner)
            else:
                conn = self._connect(deadline)
            conn.owner = owner
            return conn, False
        except BaseException:
            self._put(None, owner)
            raise

    def _hand_over(self, conn: Any, deadline: float) -> None:
        """Reset ``conn`` for another plugin; closed if the reset fails."""
        self.resets += 1
        try:
            if self._reset is not None:
                self._reset(conn, deadline)
        except BaseException:
            conn.broken = True
            conn.close()
            raise

    def _none_free(self, owner: str) -> Refused:
        held = self._owners.get(owner, 0)
        if held >= self.share:
            return Refused("QUOTA", f"connector {self.name}: plugin {owner} uses its share of "
                                    f"the pool ({self.share} of {self.size} connections) "
                                    "until the call's deadline")
        if held and self.in_use < self.size:
            return Refused("QUOTA", f"connector {self.name}: plugin {owner} holds {held} of "
                                    f"{self.size} connections and the rest are owed to the "
                                    "other plugins granted it until the call's deadline "
                                    "(raise pool_size)")
        return Refused("UNAVAILABLE", f"connector {self.name}: no free connection in the "
                                      "pool before the call's deadline")

    def release(self, conn: Any) -> None:
        """Give ``conn`` back (closed instead when it is broken or the pool is closed)."""
        owner = conn.owner
        if conn.broken or self.closed:
            conn.close()  # before its place is free: the pool never holds more than size
            self._put(None, owner)
            return
        self._put(conn, owner)

    def _put(self, conn: Any, owner: str) -> None:
        with self._lock:
            self.in_use -= 1
            left = self._owners.get(owner, 1) - 1
            if left:
                self._owners[owner] = left
            else:
                self._owners.pop(owner, None)
            if conn is not None and not self.closed:
                self._idle.append(conn)
                conn = None
            if self._queue:
                # Every waiter looks again: the first the freed place may serve takes it.
                self._freed.notify_all()
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
