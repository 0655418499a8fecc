"""PostgreSQL's wire as the PostgreSQL connector reads it (:mod:`omnicore.egress.db.postgres`):
libpq, through psycopg, bounded in bytes where libpq itself is not.

libpq reads whatever the server sends into one buffer it enlarges to the length a message
announces, then hands the message over whole: a row, a notice or an error of 1 GiB is 1 GiB of
the host's memory before any of psycopg's code sees it. This module counts what waits on the
socket before libpq reads it and reads the length of the message libpq is assembling from
libpq's own input-buffer fields (private to libpq: found once, checked field by field; when
not found, each row a result reads counts three times its size, :func:`_fetch_blind`), so
that

* a connection's opening (:func:`open_bounded`) is refused past 1 MiB and finished at once at
  its deadline or failure;
* the answer to each of the host's own statements is refused past 1 MiB;
* a plugin's result (:func:`fetch`) is refused past ``max_result_bytes`` and a little framing,
  and when its next message would cost the host more than the result may (libpq holds a
  message twice while it reads it: its buffer and the result it builds), the connection
  closed with the rest unread.

It also gives :func:`memsize` and :func:`getlength`, libpq's PQresultMemorySize and
PQgetlength, which psycopg's PGresult does not offer.
"""

from __future__ import annotations

import array
import ctypes
import fcntl
import logging
import math
import mmap
import select
import socket
import struct
import termios
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol

import psycopg
from psycopg import pq
from psycopg.waiting import Wait

from omnicore.egress.db.base import HOST_TIMES, SMALL_MESSAGE, over_cap, row_over_cap
from omnicore.egress.refused import Refused

__all__ = ["CHUNK_BYTES", "InFields", "Reading", "chunk_field", "close", "fetch", "getlength",
           "input_fields", "memsize", "open_bounded", "pending_message", "release_input"]

_WAIT_R = Wait.R
_FIONREAD = termios.FIONREAD


class Reading(Protocol):
    """What :func:`fetch` reads of a connection (postgres.py's ``_Conn``)."""

    raw: psycopg.Connection[Any]
    connector: str
    broken: bool
    #: libpq's input-buffer fields in the PGconn (None: where they are is not known).
    in_fields: InFields | None
    #: The ioctl's buffer for the bytes waiting on the socket.
    pending: array.array[int]
    #: What libpq may read for one result before the result is refused.
    wire_cap: int
    #: The connector's max_result_bytes (the refusal's message).
    max_bytes: int
    #: What the statement's result may cost the host (HOST_TIMES its max_result_bytes), and
    #: what libpq read for it in the results fetched before (its earlier chunks' rows).
    budget: int
    held: int
    #: libpq's maxChunkSize in the PGconn (None: not found), cut to one row once a result's
    #: rows are large (:func:`fetch`).
    chunk: ctypes.c_int | None


# -- libpq's input buffer ------------------------------------------------------------------
def _libpq() -> tuple[Callable[[int], int], Callable[[int, int, int], int]]:
    """libpq's PQresultMemorySize and PQgetlength, of the libpq psycopg runs on (psycopg's
    PGresult offers neither): a chunk's size, and its cells' lengths when it is large, read
    before psycopg decodes a cell."""
    if pq.__impl__ == "python":
        from psycopg.pq import _pq_ctypes
        lib: Any = ctypes.CDLL(_pq_ctypes.pq._name)  # type: ignore[attr-defined]
    else:
        with open("/proc/self/maps") as maps:  # the one psycopg's C is linked with
            path = next((line.split()[-1] for line in maps if "/libpq" in line), None)
        if path is None:
            raise ImportError("the PostgreSQL connector found no libpq loaded by psycopg")
        lib = ctypes.CDLL(path)
    size = lib.PQresultMemorySize
    size.argtypes = (ctypes.c_void_p,)
    size.restype = ctypes.c_size_t
    length = lib.PQgetlength
    length.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_int)
    length.restype = ctypes.c_int
    return size, length


memsize, getlength = _libpq()
_usable_size = ctypes.CDLL(None).malloc_usable_size
_usable_size.argtypes = (ctypes.c_void_p,)
_usable_size.restype = ctypes.c_size_t
_madvise = ctypes.CDLL(None).madvise
_madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_madvise.restype = ctypes.c_int
_MADV_DONTNEED = 4  # (Linux's; the same on every architecture it runs on)
_PAGE = mmap.PAGESIZE
# libpq's PGconn starts its input buffer's fields with these (libpq-int.h: inBuffer,
# inBufSize, inStart, inCursor, inEnd, then the output buffer's outBuffer, outBufSize,
# outCount); a fresh buffer is 16 KiB, grown by doubling or by 8 KiB.
_BUFFERS = struct.Struct("PiiiiPii")  # (native: C's layout)
_INPUT = struct.Struct("Piiii")


class InFields(ctypes.Structure):
    """libpq's input-buffer fields in a PGconn, read in place (:data:`_INPUT`'s layout): a
    field is one attribute read, where a copy of them unpacked cost a statement's every
    wake-up 2 µs (bench/bench_connectors.py)."""

    _fields_ = (("buf", ctypes.c_void_p), ("size", ctypes.c_int), ("start", ctypes.c_int),
                ("cursor", ctypes.c_int), ("end", ctypes.c_int))
    buf: int | None
    size: int
    start: int
    cursor: int
    end: int


#: Where in libpq's PGconn its input buffer's fields are (None: not found, and a result is
#: bounded by :func:`_fetch_blind`); found at the first connection.
_in_offset: list[int | None] = []


def _find_input(pgconn: Any) -> int | None:
    """The offset of libpq's input-buffer fields in ``pgconn``'s PGconn, found on a
    connection just opened, whose buffer ends with the ReadyForQuery it read last (a pattern
    checked field by field before any pointer is followed; the PGconn read within its
    allocation). libpq keeps these private: a libpq that moved them is found not to match,
    and the connector says so once and bounds results without them (:func:`_fetch_blind`)."""
    ptr = pgconn.pgconn_ptr
    raw = ctypes.string_at(ptr, _usable_size(ptr))
    for off in range(0, len(raw) - _BUFFERS.size + 1, 8):
        buf, size, start, cursor, end, out, out_size, count = _BUFFERS.unpack_from(raw, off)
        if not (buf and out and buf % 16 == 0 and out % 16 == 0 and size >= 16384
                and size % 8192 == 0 and out_size >= 16384 and out_size % 8192 == 0
                and 0 <= start <= cursor <= end <= size and 6 <= end
                and 0 <= count <= out_size):
            continue
        if ctypes.string_at(buf + end - 6, 5) == b"Z\0\0\0\x05":
            return off
    logging.getLogger("omnicore.egress").warning(
        "the PostgreSQL connector did not find libpq's input buffer (libpq %s): a row's "
        "length is not seen before libpq reads it, and libpq's copy of what it read is never "
        "released, so each row is counted three times its size against a result's budget "
        "(1.25 x max_result_bytes): a result with a row of more than about 40%% of "
        "max_result_bytes is refused TOO_LARGE (the connection closed), and a connection's "
        "largest read stays counted against its later results", pq.version())
    return None


def input_fields(pgconn: Any) -> InFields | None:
    """libpq's input-buffer fields in ``pgconn``'s PGconn, read in place for as long as the
    PGconn lives (None: where they are is not known), found on the first connection opened
    (a fresh one: its buffer ends with the ReadyForQuery it read last)."""
    if not _in_offset:
        _in_offset.append(_find_input(pgconn))
    offset = _in_offset[0]
    return None if offset is None else InFields.from_address(int(pgconn.pgconn_ptr) + offset)


def pending_message(conn: Reading) -> int:
    """The length of the message libpq is assembling (0: none begun), read from its
    buffer: a message longer than a result may be is refused before libpq reads the rest
    of it (libpq enlarges its buffer to a message's length when it parses the message's
    header, then reads until the socket is empty: a 400 MB row whole, at once)."""
    fields = conn.in_fields
    assert fields is not None
    start = fields.start
    if fields.end - start < 5:
        return 0
    return int.from_bytes(ctypes.string_at((fields.buf or 0) + start + 1, 4), "big")


def release_input(fields: InFields | None) -> None:
    """Give the pages of libpq's input buffer that hold nothing unread back to the system
    (``fields``: :func:`input_fields`'s; None does nothing).

    libpq enlarges its buffer to the length of the longest message it was sent and never
    shrinks it: after a row of 20 MiB the buffer's 20 MiB stayed resident beside the row's
    PGresult, its value and its JSON (3 copies of the row at the peak), and then for as long
    as the pooled connection lived. What lies outside the bytes libpq has not parsed yet
    (``inStart`` to ``inEnd``) is free space to libpq, overwritten before it is read: those
    whole pages are dropped (they read as zeros when next touched); the buffer keeps its
    size, so libpq's bookkeeping is untouched."""
    buf = fields.buf if fields is not None else None
    if fields is None or not buf:
        return
    size, start, end = fields.size, fields.start, fields.end
    for lo, hi in ((buf, buf + start), (buf + end, buf + size)):
        lo = -(-lo // _PAGE) * _PAGE  # whole pages inside the range only
        hi = hi // _PAGE * _PAGE
        if hi - lo >= _PAGE:
            _madvise(lo, hi - lo, _MADV_DONTNEED)


# -- libpq's chunk of rows -----------------------------------------------------------------
#: Where in libpq's PGconn its maxChunkSize is (None: not found): the rows a chunk holds
#: before libpq hands it over, which PQsetChunkedRowsMode sets before a result begins and
#: libpq reads after each row it adds (libpq-int.h, 17 on: partialResMode, singleRowMode,
#: maxChunkSize). Found once (:func:`_learn_input`).
_chunk_offset: list[int | None] = []
_PROBES = (0x2D5A3C1, 0x1C3B5A7, 2)


def _find_chunk(pgconn: Any) -> int | None:
    """The offset of maxChunkSize in ``pgconn``'s PGconn, whose query is sent and no result
    begun (when libpq lets its chunk size be set): the one int that takes each value
    PQsetChunkedRowsMode is given, and 1 from PQsetSingleRowMode, with the two flags before
    it saying which mode (a libpq that moved it is found not to match: rows then come in
    chunks of a fixed count, bounded by the refusal alone)."""
    ptr = pgconn.pgconn_ptr
    size = _usable_size(ptr) // 4 * 4

    def ints() -> memoryview:
        return memoryview(ctypes.string_at(ptr, size)).cast("i")

    found: set[int] | None = None
    try:
        for probe in _PROBES:
            pgconn.set_chunked_rows_mode(probe)
            now = ints()
            found = {i for i in (range(2, len(now)) if found is None else found)
                     if now[i] == probe}
        pgconn.set_single_row_mode()
        now = ints()
        flags = ctypes.string_at(ptr, size)
        found = {i for i in found or () if now[i] == 1
                 and flags[4 * i - 4:4 * i - 2] == b"\1\1"}
    except psycopg.Error:
        found = None
    if found is not None and len(found) == 1:
        return 4 * found.pop()
    logging.getLogger("omnicore.egress").warning(
        "the PostgreSQL connector did not find libpq's chunk size (libpq %s): a result of "
        "large rows comes in chunks of a fixed count, and may be refused sooner",
        pq.version())
    return None


def chunk_field(pgconn: Any) -> ctypes.c_int | None:
    """libpq's maxChunkSize in ``pgconn``'s PGconn, written in place for as long as the
    PGconn lives (None: where it is is not known)."""
    if not _chunk_offset:
        _learn_input()
    offset = _chunk_offset[0] if _chunk_offset else None
    return None if offset is None else ctypes.c_int.from_address(
        int(pgconn.pgconn_ptr) + offset)


def _in_buffer(pgconn: Any) -> int:
    """The size of libpq's input buffer in ``pgconn`` (0: where it is is not known)."""
    if not _in_offset:
        _learn_input()
    offset = _in_offset[0]
    if offset is None:
        return 0
    return int(_INPUT.unpack_from(ctypes.string_at(pgconn.pgconn_ptr + offset,
                                                   _INPUT.size))[1])


def _learn_input() -> None:
    """Find libpq's input buffer (:func:`_find_input`) on a connection to a server of a few
    lines here, before the first connection to a real one: that one may be hostile."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)

        def serve() -> None:
            try:
                client, _ = server.accept()
                with client:
                    client.settimeout(5)
                    client.recv(65536)  # the start-up message (a few dozen bytes)
                    client.sendall(b"R\0\0\0\x08\0\0\0\0Z\0\0\0\x05I")
                    client.recv(64)  # until the client's Terminate or close
            except OSError:
                pass

        thread = threading.Thread(target=serve, name="omnicore-db-learn", daemon=True)
        thread.start()
        # Polled, not PQconnectdb: that one holds the GIL, and the server above is Python.
        pgconn = pq.PGconn.connect_start(
            f"host=127.0.0.1 port={server.getsockname()[1]} user=omnicore dbname=omnicore "
            "sslmode=disable gssencmode=disable".encode())
        try:
            until = time.monotonic() + 5
            status: int = _POLL_W
            while status in (_POLL_R, _POLL_W) and time.monotonic() < until:
                if status == _POLL_R:
                    select.select([pgconn.socket], [], [], 0.5)
                else:
                    select.select([], [pgconn.socket], [], 0.5)
                status = pgconn.connect_poll()
            found = _find_input(pgconn) if status == _POLL_OK else None
            chunk = None
            if status == _POLL_OK:
                pgconn.send_query(b"SELECT 1")  # (its answer never read)
                chunk = _find_chunk(pgconn)
        finally:
            pgconn.finish()
            thread.join(5)
    if not _in_offset:
        _in_offset.append(found)
    if not _chunk_offset:
        _chunk_offset.append(chunk)


# -- a connection's opening and the host's own statements ----------------------------------
#: What a server may send before its session is ready (authentication, parameters, the key,
#: notices of a login): a start-up is a few KiB.
_START_CAP = 1 << 20
_starting = threading.local()
_POLL_R, _POLL_W, _POLL_OK = (pq.PollingStatus.READING, pq.PollingStatus.WRITING,
                              pq.PollingStatus.OK)


class _Bounded(psycopg.Connection[Any]):
    """psycopg's connection whose opening is bounded in bytes and finished at its end.

    libpq takes a NoticeResponse (or ErrorResponse) of any length whole once the server
    said AuthenticationOk (its buffer enlarged to the length announced, then filled as fast
    as the server sends), and keeps every ParameterStatus of a new name: a spoofed server
    sending one notice of 1 GiB grew the host by 300 MB in a 4 s connect timeout. And a
    start-up psycopg's own timeout ends leaves its PGconn (its socket, its buffer) to the
    cyclic garbage collector. Here, before each read of libpq: past :data:`_START_CAP`
    counted on the socket, or libpq's buffer enlarged past it for one message, the opening
    is refused; at that, at the deadline or at any failure the PGconn is finished at once."""

    @classmethod
    def _connect_gen(cls, conninfo: str = "") -> Generator[Any, Any, Any]:
        pgconn = yield from _bounded_start(conninfo, _starting.until)
        return cls(pgconn)

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        """psycopg's wait, bounded in bytes for the host's own statements (the privileges
        check, SET, BEGIN, COMMIT, the clean-up, DISCARD ALL): libpq reads their answer
        whole, and a spoofed server answering the privileges check with a notice of 1 GiB
        cost the host 1 GB before the deadline cut it. A plugin's result (fetch) bounds
        itself by max_result_bytes."""
        if getattr(gen, "gi_code", None) is not fetch.__code__:
            gen = _bounded_answer(self.pgconn, gen)
        return super().wait(gen, interval, timeout)


def _bounded_answer(pgconn: Any, gen: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """``gen`` (a psycopg generator yielding what it waits for), refused past
    :data:`_START_CAP` counted on the socket or in libpq's buffer for one message."""
    pending = array.array("i", [0])
    got = 0
    try:
        wait = next(gen)
        while True:
            ready = yield wait
            if ready & _WAIT_R:
                fcntl.ioctl(pgconn.socket, _FIONREAD, pending, True)
                got += pending[0]
                if got > _START_CAP or _in_buffer(pgconn) > _START_CAP:
                    pgconn.finish()  # the rest unread; the connection is not given back
                    raise psycopg.OperationalError(
                        f"the server sent more than {_START_CAP} bytes in answer to a "
                        "statement of the host")
            wait = gen.send(ready)
    except StopIteration as done:
        return done.value


def _bounded_start(conninfo: str, until: float) -> Generator[Any, Any, Any]:
    """psycopg's generators.connect, bounded (:class:`_Bounded`)."""
    pgconn = pq.PGconn.connect_start(conninfo.encode())
    pending = array.array("i", [0])
    got = 0
    done = False
    try:
        while True:
            if pgconn.status == pq.ConnStatus.BAD:
                raise psycopg.OperationalError(
                    f"connection is bad: {pgconn.get_error_message()}")
            fileno = pgconn.socket
            if fileno >= 0:
                fcntl.ioctl(fileno, _FIONREAD, pending, True)
                got += pending[0]
                if got > _START_CAP or _in_buffer(pgconn) > _START_CAP:
                    raise psycopg.OperationalError(
                        f"the server sent more than {_START_CAP} bytes before its session "
                        "was ready")
            status = pgconn.connect_poll()
            if status == _POLL_OK:
                break
            if status != _POLL_R and status != _POLL_W:
                raise psycopg.OperationalError(
                    f"connection failed: {pgconn.get_error_message()}")
            # Looked at before each yield (a poll can be long: libpq's list of parameters
            # grows with each new one), so psycopg's own timeout never ends the wait first.
            while time.monotonic() < until and \
                    not (yield pgconn.socket, _WAIT_R if status == _POLL_R else Wait.W):
                pass
            if time.monotonic() >= until:
                raise psycopg.OperationalError("connection timeout expired")
        pgconn.nonblocking = 1
        done = True
        return pgconn
    finally:
        if not done:
            pgconn.finish()  # its socket closed now, not at a garbage collection


def open_bounded(kwargs: dict[str, Any], deadline: float = math.inf) -> psycopg.Connection[Any]:
    """psycopg.connect(**kwargs), bounded by :class:`_Bounded`, and ended at ``deadline``
    (time.monotonic()) when that comes first (psycopg's wait looks every 0.1 s)."""
    timeout = float(kwargs.get("connect_timeout") or 30)
    _starting.until = min(deadline, time.monotonic() + timeout)
    return _Bounded.connect(**kwargs)


# -- a plugin's result ---------------------------------------------------------------------
#: What libpq's buffer held for one result (read for it, or read before and carried into
#: it) past which the buffer's free pages are dropped once the result is taken; and what
#: libpq moved to its buffer's start past which the pages it moved it from are dropped.
_RELEASE_AFTER = 1 << 20
#: What libpq may read for one chunk of rows before the chunk ends with the row being read
#: (and each later row of the result is its own chunk): a chunk of rows is held twice at
#: its end (its PGresult, their JSON), so its size is what a result costs past its JSON.
CHUNK_BYTES = 1 << 20


def _judge(conn: Reading, fields: InFields, before: int, beyond: int) -> None:
    """Refuse (the connection closed) the message libpq is assembling when it is longer than
    a result may be, or when it would take what the result costs the host past its budget:
    ``before`` (:func:`fetch`'s), twice the message (libpq's buffer and the result it builds
    from it, whole at the same moment; then that result and the row's value), and
    ``beyond``, what libpq read past the message (resident in its buffer meanwhile)."""
    length = pending_message(conn)
    if length <= SMALL_MESSAGE:
        return
    if (chunk := conn.chunk) is not None:
        chunk.value = 1
    if length > conn.wire_cap:
        close(conn)
        raise over_cap(conn.connector, 0, length, 1 << 62, conn.max_bytes)
    if before + 2 * length + beyond > conn.budget:
        close(conn)
        raise row_over_cap(conn.connector, length, 2, conn.max_bytes)


def _waiting(conn: Reading, fd: int, pending: array.array[int], got: int, cap: int) -> int:
    """What the result has on the wire once the socket is readable: ``got`` (read so far)
    and what waits on the socket (``pending``: the connection's FIONREAD buffer); past
    ``cap`` the result is refused and the connection closed, the rest unread."""
    fcntl.ioctl(fd, _FIONREAD, pending, True)
    ahead = got + pending[0]
    if ahead > cap:
        close(conn)
        raise over_cap(conn.connector, 0, ahead, 1 << 62, conn.max_bytes)
    if ahead > CHUNK_BYTES and (chunk := conn.chunk) is not None:
        # Large rows: the chunk ends with the row libpq is reading, and each row after it
        # is a chunk of its own (a chunk's rows are held twice while its JSON is written:
        # its PGresult and their JSON; 32 rows of 500 KiB were 16 MiB held twice). Set
        # before libpq reads on: it looks after each row.
        chunk.value = 1
    return ahead


def fetch(conn: Reading) -> Generator[Wait, Any, Any]:
    """psycopg's fetch of one result, bounded in bytes: what waits on the socket is counted
    before libpq reads it, and past :attr:`Reading.wire_cap` for one result (a row, a chunk of
    rows, notices: whatever the server sends before the result is whole) the result is
    refused and the connection closed, the rest unread. (Its time is the statement's
    deadline: the watchdog shuts the socket down.) Notifications are dropped as they come:
    no statement of a plugin listens."""
    pgconn = conn.raw.pgconn
    fields = conn.in_fields
    if fields is None:
        return (yield from _fetch_blind(conn))
    if not pgconn.is_busy():
        return pgconn.get_result()
    fd, pending, cap = pgconn.socket, conn.pending, conn.wire_cap
    got = 0
    # What libpq read before and has not parsed yet (a message begun with the result
    # before: its bytes resident in the buffer, counted there), part of this one: counted
    # in conn.held with the results before, whose rows they are not.
    carried = fields.end - fields.start
    while True:
        while not (yield _WAIT_R):
            continue
        _waiting(conn, fd, pending, got, cap)
        # The message libpq is assembling (its buffer enlarged to it, its bytes not read
        # yet) costs the host twice its length once read (_judge). Beside it, what the
        # result holds, counted as bytes on the wire: the rows of the chunks before (their
        # JSON: what libpq read for them, less what it carried into this one), and twice
        # the rows of this chunk read so far (libpq's result holds them until the chunk's
        # last row is written, beside their JSON).
        unread = fields.end - fields.start
        if unread >= 5:
            _judge(conn, fields, conn.held + carried + 2 * (got - unread), 0)
        # What libpq reads, exactly, read off its buffer: not what waited on the socket
        # when it was counted. A read leaves bytes on the socket when its buffer is full,
        # and they were counted again at the next wake-up (a 4 MB result was refused under
        # a 32 MiB cap); and it takes what came after the count too, up to its buffer's
        # size: a host descheduled between the two (a loaded machine) counted a few KiB of
        # each read of a 16 MiB row, and its buffer's copy of the row was never released
        # (3 copies of the row resident; tests/egress/db/test_result_memory.py). It first
        # moves its unread bytes to the buffer's start, then appends what it reads.
        start = fields.start
        pgconn.consume_input()
        got += fields.end - unread
        if start and unread > _RELEASE_AFTER:
            # It moved a long message begun before (the next row, read with the end of
            # the last) to its buffer's start (pqReadData): the pages it was moved from
            # still hold a second copy of it, dropped here before libpq builds the
            # result's own (else 3 copies of the row while it is read; the test's
            # "moved" case: 1.35 x the cap).
            release_input(fields)
        if (unread := fields.end - fields.start) > SMALL_MESSAGE:
            # Judged again with what the read brought: a message whose header came in it,
            # and what came past the message (the next row, read with the end of this
            # one), resident in the buffer beside this one and the result built from it.
            length = pending_message(conn)
            _judge(conn, fields, conn.held + carried + 2 * (got - unread),
                   max(0, unread - 1 - length))
        while pgconn.notifies() is not None:
            pass
        if not pgconn.is_busy():
            break
    held = conn.held
    conn.held = held + got
    res = pgconn.get_result()
    if carried + got > _RELEASE_AFTER:
        # The result is whole in its PGresult (libpq parsed it in is_busy): the copy in
        # libpq's buffer is dropped before the host reads the result, whichever read
        # brought it: this result's, or the last one's (a row read with the end of the row
        # before it, carried: the test's "carried" case was 1.37 x the cap without).
        release_input(fields)
    if (unread := fields.end - fields.start) > SMALL_MESSAGE:
        _read_ahead(conn, fields, held - carried, carried + got - unread, unread)
    return res


def _read_ahead(conn: Reading, fields: InFields, before: int, rows: int, unread: int) -> None:
    """What libpq read past the result just taken (``unread`` bytes): a message it holds
    whole is parsed when the host asks for the next result, without a read, so without
    :func:`fetch` (its copy in the buffer then never released: 3 copies of a row read whole
    with the end of the row before it, 1.41 x the cap in the test's "whole" case).

    The first such message, when large, is judged and parsed now (the result before it
    still held: ``before``, the JSON of the chunks before it, and ``rows``, what it holds,
    read twice for it: its PGresult, then its rows' values), and the buffer's copy of it
    dropped. What is left unread after it is held once more beside the later results' own
    copies until the next read: counted three times, refused when that is past the budget
    (never left to cost more than it may)."""
    length = pending_message(conn)
    if length <= SMALL_MESSAGE or unread < 1 + length:  # (its length counts itself)
        return  # (a message begun: the next fetch reads the rest, and counts it carried)
    if length > conn.wire_cap or before + max(rows + 2 * length, 2 * rows + length) > \
            conn.budget:
        close(conn)
        raise row_over_cap(conn.connector, length, 2, conn.max_bytes)
    if (chunk := conn.chunk) is not None:
        chunk.value = 1
    conn.raw.pgconn.is_busy()  # (parses it: its result waits in libpq for the host)
    release_input(fields)
    left = fields.end - fields.start
    if left > SMALL_MESSAGE and before + rows + length + 3 * left > conn.budget:
        close(conn)
        raise row_over_cap(conn.connector, left, 3, conn.max_bytes, at_least=True)


# -- a plugin's result when libpq's buffer is not found ------------------------------------
_getsockopt = ctypes.CDLL(None).getsockopt
_getsockopt.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                        ctypes.c_void_p)
_getsockopt.restype = ctypes.c_int
_ioctl = ctypes.CDLL(None).ioctl
_ioctl.argtypes = (ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)
_ioctl.restype = ctypes.c_int
# struct tcp_info (linux/tcp.h, Linux 4.6 on): tcpi_bytes_received, a u64 at byte 128, and
# tcpi_data_segs_out, a u32 at byte 156.
_TCP_INFO, _TCP_INFO_LEN = 11, 160
_CHUNK = pq.ExecStatus.TUPLES_CHUNK


def _tcp_read(fd: int, first: bool) -> tuple[int, int] | None:
    """The bytes the process has read from TCP socket ``fd`` since it opened (what the
    kernel received on it, TCP_INFO's tcpi_bytes_received, less what waits unread: FIONREAD)
    and the data segments it sent (tcpi_data_segs_out: a query sent since); None off TCP (a
    Unix socket) or on a kernel without the fields. Taken in the order that errs high for a
    reading that ends a count, low for one that starts it (``first``): what arrives between
    the two calls is in the one but not the other."""
    info = (ctypes.c_char * _TCP_INFO_LEN)()
    size = ctypes.c_uint32(_TCP_INFO_LEN)
    waiting = ctypes.c_int(0)
    if not first and _ioctl(fd, _FIONREAD, ctypes.byref(waiting)) != 0:
        return None
    if _getsockopt(fd, socket.IPPROTO_TCP, _TCP_INFO, info, ctypes.byref(size)) != 0 or \
            size.value < _TCP_INFO_LEN:
        return None
    if first and _ioctl(fd, _FIONREAD, ctypes.byref(waiting)) != 0:
        return None
    raw = info.raw
    return (int.from_bytes(raw[128:136], "little") - waiting.value,
            int.from_bytes(raw[156:160], "little"))


class _Blind:
    """What :func:`_fetch_blind` knows of a connection's libpq buffer across results: the
    most it may hold (it is never released: what libpq read for one result and what it had
    carried into it), and what libpq read but had not parsed when the last chunk of rows was
    taken (the next rows, or some of them), with the data segments the connection had sent
    then (a query sent since starts a statement: nothing is carried into it)."""

    __slots__ = ("carry", "seen", "sent")

    def __init__(self) -> None:
        self.seen = self.carry = self.sent = 0


def _wire_size(res: Any) -> int:
    """The bytes the DataRow messages of ``res`` (a chunk of rows, in text) took on the
    wire: what libpq parsed of its buffer for them."""
    ptr, rows, cols = res.pgresult_ptr, res.ntuples, res.nfields
    return int(rows * (7 + 4 * cols) + sum(
        [getlength(ptr, i, j) for i in range(rows) for j in range(cols)]))


def _fetch_blind(conn: Reading) -> Generator[Wait, Any, Any]:
    """:func:`fetch` where libpq's input buffer was not found (a libpq whose PGconn layout
    this module does not know): no message's length is seen before libpq reads it, and its
    buffer's copy of what it read is never released, so a row costs the host three times its
    size while it is read (the buffer, the PGresult, the value), and the buffer stays as
    large as the most libpq has held unparsed on the connection, resident for as long as the
    connection lives. A result is refused (the connection closed, the rest unread) before it
    would cost more than its budget counted so, beside the rows before it (their JSON) and
    the buffer:

    * before libpq reads on and after each read, what it has read and not parsed, once
      more (the result libpq may build of it);
    * once the chunk is parsed, before its rows are decoded, twice the chunk (its PGresult,
      their values and JSON) and twice what libpq read past it (rows it may hand over whole,
      without a read, so without this function: their PGresults and values).

    What libpq read is the socket's count (TCP_INFO's bytes received less what waits):
    libpq reads past what waited when it was counted, unseen (the host counted 1/33 of a
    row read in slices; on loopback, part of a row read as the server sent it, so a 16 MiB
    row under a 32 MiB cap was answered at 1.5 x the cap). On a Unix socket, or a kernel
    before Linux 4.6, the bytes that waited at each wake-up: a bound that a busy host may
    not keep."""
    pgconn = conn.raw.pgconn
    if not pgconn.is_busy():
        return pgconn.get_result()
    raw: Any = conn.raw
    fd, pending, cap = pgconn.socket, conn.pending, conn.wire_cap
    state = getattr(raw, "blind", None)
    if state is None:
        state = _Blind()
        try:  # (a connection of this module's: _Bounded)
            raw.blind = state
        except AttributeError:
            pass
    tcp = _tcp_read(fd, True)
    base = 0 if tcp is None else tcp[0]
    # The rows of the chunks before (their JSON) and what libpq read of this chunk's with
    # them; none when a query was sent since (conn.held is the last statement's before a
    # statement is prepared).
    if tcp is None or tcp[1] == state.sent:
        carried, before = state.carry, max(0, conn.held - state.carry)
    else:
        carried = before = 0
    seen = state.seen
    got = 0
    while True:
        while not (yield _WAIT_R):
            continue
        ahead = _waiting(conn, fd, pending, got, cap)
        _judge_blind(conn, before, max(seen, carried + ahead), carried + ahead, ahead)
        pgconn.consume_input()
        if tcp is not None and (now := _tcp_read(fd, False)) is not None:
            got = now[0] - base
        else:
            got = ahead
        if got > CHUNK_BYTES and (chunk := conn.chunk) is not None:
            chunk.value = 1
        _judge_blind(conn, before, max(seen, carried + got), carried + got, got)
        while pgconn.notifies() is not None:
            pass
        if not pgconn.is_busy():
            break
    conn.held += got
    res: Any = pgconn.get_result()
    unread = carried + got
    state.seen = max(seen, unread)
    if res is not None and res.status == _CHUNK:
        unread = max(0, unread - _wire_size(res))
        if got > SMALL_MESSAGE:
            _judge_blind(conn, before, state.seen,
                         2 * memsize(res.pgresult_ptr) + 2 * unread, got)
        state.carry = unread
    else:
        state.carry = 0
    if tcp is not None:
        state.sent = tcp[1]
    return res


def _judge_blind(conn: Reading, before: int, buffer: int, more: int, read: int) -> None:
    """Refuse the result (:func:`_fetch_blind`) when ``before`` (the rows before it), the
    ``buffer`` libpq holds resident and ``more`` (what libpq builds of what it read) cost
    the host past the result's budget (``read``: what it read for this one, to say)."""
    if before + buffer + more > conn.budget:
        close(conn)
        raise Refused("TOO_LARGE", f"the result is larger than {conn.max_bytes} bytes "
                                   f"(connector {conn.connector}, max_result_bytes): libpq "
                                   f"{pq.version()}'s input buffer was not found, so a row "
                                   "costs the host three times its size while it is read "
                                   "(its copy in libpq's buffer is never released), and "
                                   f"this result has read {read} bytes of rows; a result "
                                   f"may cost at most {HOST_TIMES} x max_result_bytes")


def close(conn: Reading) -> None:
    """Close ``conn`` now (the rest of what the server sent unread): it never returns to
    the pool."""
    conn.broken = True
    try:
        conn.raw.close()
    except Exception:
        pass

