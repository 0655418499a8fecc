"""What a result that fits its cap costs the host (specs/abi.md §4.12, "Memory"), measured
as a child process's peak resident memory (tests/egress/db/test_hostile_wire.py's probe:
libpq's and the socket's buffers included), and that its JSON is the same whichever way it
was written (a result past 1 MiB is written into one buffer as its rows come).

The bound (issue 60, item 5): a result costs the host at most 1.25 x its cap. A result of
many rows costs about its JSON (a PostgreSQL chunk of rows beside it: at most 32 rows, and one
row once the chunk read passes 1 MiB; allocations of 1 MiB or more mapped apart, so what a
result frees is not kept resident between what it holds);
one large row costs copies of itself while it is read (PostgreSQL 2: libpq's input buffer
and the result it builds from it; MariaDB 3: the packet, a cell's slice and value, its
JSON), so a row that would take the result past the bound is refused from its announced
length, before it is read.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from omnicore.egress.db import db_connector
from omnicore.egress.db.service import _make
from tests.db_fixtures import maria  # noqa: F401
from tests.egress.db.spoofed import (
    _JOINED,
    _UNKNOWN_BUFFER,
    JoiningRelay,
    SlicingRelay,
    _gated_probe,
    _maria_url,
    _probe,
)

CAP = 32 << 20


def _url(kind: str, pg_cluster: Any, server: Any) -> str:
    if kind == "postgres":
        return str(pg_cluster.database(f"rmem_{time.time_ns() % 10**9}"))
    return _maria_url(server)


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_large_result_is_the_same_json_as_a_small_one_would_be(
        kind: str, pg_cluster: Any, maria: Any) -> None:  # noqa: F811
    url = _url(kind, pg_cluster, maria)
    series = "generate_series(1, 40)" if kind == "postgres" else "seq_1_to_40"
    connector = db_connector("m", {"kind": kind, "url_secret": "u", "max_result_bytes": CAP,
                                   "pool_size": 1})
    backend = _make(connector, lambda name: url.encode())
    try:
        # 400 bytes in all, then 4 MB: past the 1 MiB spill; then 400 bytes again on the same
        # connection, whose libpq buffer had its free pages dropped (pg_wire.release_input)
        for size in (10, 100_000, 10):
            sql = f"SELECT seq, repeat('x', {size}) FROM {series}" if kind == "mysql" else \
                f"SELECT s, repeat('x', {size}) FROM {series} AS s"
            out = backend.run("p", True, sql, [], time.monotonic() + 30)
            got = json.loads(out)
            assert [r[1] for r in got["rows"]] == ["x" * size] * 40
            assert [int(r[0]) for r in got["rows"]] == list(range(1, 41))
            assert out.startswith(b'{"columns":[') and out.endswith(b"]}")
            assert out == json.dumps(got, separators=(",", ":"),
                                     ensure_ascii=False).encode()
    finally:
        backend.close()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_result_of_many_rows_that_fits_is_served_and_not_held_twice(
        kind: str, pg_cluster: Any, maria: Any) -> None:  # noqa: F811
    """24 MiB of JSON in 240 rows of 100 KiB under a 32 MiB cap. PostgreSQL refused it
    (TOO_LARGE: the bytes a full libpq buffer left on the socket were counted again at each
    wake-up); MariaDB held the pieces and their join (2.8 x the JSON). Measured before the
    probe decodes the answer (its own copy, counted until then): MariaDB 1.04 x, PostgreSQL
    1.07 x (1.21 x in chunks of 32 rows, 2.0 x in chunks of 256: a chunk's PGresult held
    beside the JSON; one row a chunk once a chunk passes 1 MiB)."""
    times = 1.15
    url = _url(kind, pg_cluster, maria)
    sql = ("SELECT repeat('x', 102400) FROM generate_series(1, 240)" if kind == "postgres"
           else "SELECT repeat('x', 102400) FROM seq_1_to_240")
    measured = _probe(kind, url, CAP, sql)
    assert measured["status"].startswith('{"columns":'), measured["status"][:200]
    assert measured["growth"] <= times * (24 << 20), measured["growth"] / (24 << 20)


#: A row's copies held at once while it is read (specs/abi.md §4.10, Memory).
COPIES = {"postgres": 2, "mysql": 3}


@pytest.mark.parametrize(("kind", "row"), [("postgres", 16 << 20), ("mysql", 10 << 20)])
def test_one_large_row_within_the_bound_is_answered_within_it(
        kind: str, row: int, pg_cluster: Any, maria: Any) -> None:  # noqa: F811
    """A row well within what a row may be under a 32 MiB cap (PostgreSQL: 2 copies of it
    held while it is read, 16 MiB; MariaDB: 3 copies, 10 MiB) is answered, its whole JSON,
    and the host's peak stays within 1.25 x the cap (PostgreSQL's 2 copies were 5, then 3:
    the JSON's pieces and their join, the PGresult kept while the row's JSON was written,
    libpq's input buffer kept resident beside them; pg_wire.release_input)."""
    measured = _probe(kind, _url(kind, pg_cluster, maria), CAP, f"SELECT repeat('x', {row})")
    assert measured["status"].startswith('{"columns":'), measured["status"][:200]
    assert json.loads(measured["status"])["rows"] == [["x" * row]]
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert measured["growth"] <= (COPIES[kind] + 0.2) * row, measured["growth"] / row


def test_one_large_row_read_while_the_host_was_descheduled_is_answered_within_the_bound(
        pg_cluster: Any) -> None:
    """The row above (16 MiB under a 32 MiB cap), each read of it by libpq taking what came
    on the socket after the host counted what waited there: on a loaded 2-core machine
    the host is descheduled between the two. pg_wire.fetch counted what it saw waiting
    (a few KiB) as what libpq read whenever that was under 8 KiB: a row read in such pieces
    counted under 1 MiB, libpq's buffer was not released, and the row was resident 3
    times (1.50 x the cap, in a full CI run; here every time: a relay puts 32 KiB more on
    the socket while the probe is stopped after each count). What libpq reads is now read
    off its buffer: 2 copies, as when the row came in one go."""
    relay = SlicingRelay(pg_cluster.port)
    try:
        url = str(pg_cluster.database(f"rmem_{time.time_ns() % 10**9}"))
        row = 16 << 20
        measured = _gated_probe(url, CAP, f"SELECT repeat('x', {row})", relay)
    finally:
        relay.close()
    # The row came in slices (at least once: two clean-clone CI runs on a loaded machine
    # counted 2, the statement sent again; what is asserted below is the bound).
    assert relay.sliced >= 1, relay.sliced
    assert measured["status"].startswith('{"columns":'), measured["status"][:200]
    assert json.loads(measured["status"])["rows"] == [["x" * row]]
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert measured["growth"] <= (COPIES["postgres"] + 0.2) * row, measured["growth"] / row
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


MiB = 1 << 20



def _two_rows_joined(pg_cluster: Any, first: int, second: int, carry: int, cap: int
                     ) -> tuple[JoiningRelay, dict[str, Any]]:
    """Two rows of ``first`` and ``second`` bytes read through a JoiningRelay, ``carry``
    bytes of the second in the read that ends the first, under ``cap``: the relay, and what
    the probe measured."""
    relay = JoiningRelay(pg_cluster.port, carry=carry)
    try:
        url = str(pg_cluster.database(f"rmem_{time.time_ns() % 10**9}"))
        sql = (f"SELECT repeat('x', CASE WHEN s = 1 THEN {first} ELSE {second} END) "
               "FROM generate_series(1, 2) AS s")
        return relay, _gated_probe(url, cap, sql, relay, _JOINED)
    finally:
        relay.close()


@pytest.mark.parametrize(("first", "second", "carry", "cap"), [
    # (a) the next row read almost whole with the end of the row before it: its fetch reads
    # under _RELEASE_AFTER itself (7 MiB less 6.5 carried), and the buffer's copy of it was
    # released only because the release counts what was carried into the result;
    (9 * MiB, 7 * MiB, int(6.5 * MiB), 22 * MiB),
    # (b) the next row's first 5 MiB read with the end of the row before it, behind it in
    # libpq's buffer (which has room for both): the next read moves them to the buffer's
    # start, and the pages they were moved from, past where the row ends, are dropped.
    (int(8.5 * MiB), int(7.4 * MiB), 5 * MiB, 21 * MiB),
    # (c) the next row read whole with the end of the row before it: libpq parses it when
    # the host asks for the next result, without a read (pg_wire.fetch is not called).
    (int(8.5 * MiB), 7 * MiB, 7 * MiB + 11, 21 * MiB),
], ids=["carried", "moved", "whole"])
def test_a_large_row_read_with_the_end_of_the_one_before_is_answered_within_the_bound(
        first: int, second: int, carry: int, cap: int, pg_cluster: Any) -> None:
    """Two large rows, the second's first ``carry`` bytes read by libpq in the same read as
    the end of the first (a relay puts them on the probe's socket together while it is
    stopped after its count: what a host descheduled while the server sent both gets).
    Each row costs the host its 2 copies while it is read, beside the JSON of the first: the
    result is answered, whole, within 1.25 x the cap (first + 2 x second, and 2 x first plus
    what was carried, at most). Each guard of pg_wire.fetch this exercises left the second
    row a third copy: (a) without counting what was carried, libpq's buffer kept its copy of
    the row beside its PGresult and value (first + 3 x second: 1.37 x a 22 MiB cap); (b)
    without dropping the pages libpq moved the carried bytes from, they stayed resident
    while the row's PGresult was built (first + 2 x second + carry: 1.35 x a 21 MiB cap);
    (c) a row read whole was parsed with no fetch at all, its copy in libpq's buffer kept
    beside its PGresult and value (first + 3 x second: 1.41 x a 21 MiB cap): it is now
    judged and parsed as the row before is taken, and the buffer's copy dropped."""
    relay, measured = _two_rows_joined(pg_cluster, first, second, carry, cap)
    assert relay.joined == 1, relay.joined  # (the two rows' bytes came in one read)
    status = measured["status"]
    assert status.startswith('{"columns":'), status[:300]
    assert json.loads(status)["rows"] == [["x" * first], ["x" * second]]
    assert measured["growth"] <= 1.25 * cap, measured["growth"] / cap
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


@pytest.mark.parametrize(("first", "second", "carry", "cap"), [
    # (a) the next row would cost first + 2 x second (22 MiB) past the 18.75 MiB a 15 MiB
    # cap allows: its check at the next fetch counted the 3.9 MiB carried into it with the
    # row before (where libpq read them), then subtracted them as bytes of this row not
    # parsed yet: 18.1 MiB, answered at 1.47 x the cap;
    (4 * MiB, 9 * MiB, int(3.9 * MiB), 15 * MiB),
    # (b) the read that ends the first row brings 6.5 MiB of the next: libpq's buffer holds
    # both while the first row's PGresult is built (2 x first + 6.5 MiB: 24.5 MiB, past the
    # 22.5 MiB an 18 MiB cap allows), where the first row alone was judged (1.36 x the cap).
    (9 * MiB, 7 * MiB, int(6.5 * MiB), 18 * MiB),
], ids=["carried", "beyond"])
def test_a_large_row_read_with_the_end_of_the_one_before_is_refused_within_the_bound(
        first: int, second: int, carry: int, cap: int, pg_cluster: Any) -> None:
    """The rows above, whose JSON fits the cap but whose reading would cost the host more
    than 1.25 x the cap once what libpq read past the first row is counted: refused
    TOO_LARGE (the cap named, and why), within the bound, and the connector answers after."""
    relay, measured = _two_rows_joined(pg_cluster, first, second, carry, cap)
    assert relay.joined == 1, relay.joined
    status = measured["status"]
    assert status.startswith(f"TOO_LARGE: the result is larger than {cap} bytes (connector "
                             "m, max_result_bytes): its next row is "), status[:300]
    assert measured["growth"] <= 1.25 * cap, measured["growth"] / cap
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


#: The refusal of a result when libpq's input buffer was not found (pg_wire._judge_blind).
BLIND = ("input buffer was not found, so a row costs the host three times its size while it "
         "is read (its copy in libpq's buffer is never released)")


@pytest.mark.parametrize(("row", "answered"), [(12 << 20, True), (16 << 20, False)])
def test_with_libpq_buffer_not_found_a_large_row_is_answered_or_refused_within_the_bound(
        row: int, answered: bool, pg_cluster: Any) -> None:
    """A libpq whose PGconn layout pg_wire does not know (its input buffer not found: the
    probe sets pg_wire._in_offset to [None] before the connector's first connection): a
    row's length is not seen before libpq reads it, and libpq's copy of it is never
    released, so a row costs 3 copies of itself. The connector only warned, and a 16 MiB
    row under a 32 MiB cap was answered at 1.5 x the cap. Each row now counts three times
    its size: 12 MiB is answered within 1.25 x the cap (1.13 x), 16 MiB refused (naming
    why) before its value is decoded (libpq's buffer and PGresult: 1.0 x the cap); the
    connector answers after."""
    measured = _probe("postgres", _url("postgres", pg_cluster, None), CAP,
                      f"SELECT repeat('x', {row})", prelude=_UNKNOWN_BUFFER)
    status = measured["status"]
    if answered:
        assert status.startswith('{"columns":'), status[:300]
        assert json.loads(status)["rows"] == [["x" * row]]
    else:
        assert status.startswith(f"TOO_LARGE: the result is larger than {CAP} bytes "
                                 "(connector m, max_result_bytes): libpq "), status[:300]
        assert BLIND in status, status
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


def test_with_libpq_buffer_not_found_a_row_read_while_descheduled_is_refused_within_the_bound(
        pg_cluster: Any) -> None:
    """The 16 MiB row above, each read of it by libpq taking 32 KiB more than the host
    counted on its socket (the SlicingRelay: the host descheduled between its count and
    libpq's read). Without libpq's buffer, what libpq read is the socket's own count
    (TCP_INFO's bytes received less what waits unread), never what waited when counted: the
    row is refused within the bound (counted by what waited, 1/33 of it, it was answered at
    1.5 x the cap)."""
    relay = SlicingRelay(pg_cluster.port)
    try:
        url = str(pg_cluster.database(f"rmem_{time.time_ns() % 10**9}"))
        measured = _gated_probe(url, CAP, f"SELECT repeat('x', {16 << 20})", relay,
                                _UNKNOWN_BUFFER)
    finally:
        relay.close()
    status = measured["status"]
    assert status.startswith(f"TOO_LARGE: the result is larger than {CAP} bytes"), \
        (relay.sliced, status[:300])
    assert relay.sliced >= 1, relay.sliced  # (2 in a loaded CI run: see above)
    assert BLIND in status, status
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


def test_with_libpq_buffer_not_found_a_large_row_is_answered_again_on_its_connection(
        pg_cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libpq's buffer (pg_wire._in_offset set to [None] for the test, restored
    after), a 12 MiB row under a 32 MiB cap three times on one pooled connection: answered
    each time (what libpq's buffer keeps of the first counts against the others: 3 x 12 MiB
    fits the 40 MiB). The second run prepares the statement: a query sent, so nothing of the
    row before is counted as carried into the prepare's answer (which would refuse it)."""
    from omnicore.egress.db import pg_wire

    monkeypatch.setattr(pg_wire, "_in_offset", [None])
    url = _url("postgres", pg_cluster, None)
    connector = db_connector("m", {"kind": "postgres", "url_secret": "u",
                                   "max_result_bytes": CAP, "pool_size": 1})
    backend = _make(connector, lambda name: url.encode())
    try:
        row = 12 << 20
        for _ in range(3):
            out = backend.run("p", True, f"SELECT repeat('x', {row})", [],
                              time.monotonic() + 30)
            assert json.loads(out)["rows"] == [["x" * row]]
    finally:
        backend.close()


def test_libpq_buffer_not_found_is_said_with_what_it_changes(
        caplog: pytest.LogCaptureFixture) -> None:
    """A PGconn whose memory matches no layout pg_wire knows: not found, and the warning
    says what that changes for a result."""
    import ctypes
    from types import SimpleNamespace

    from omnicore.egress.db import pg_wire

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    block = libc.malloc(4096)
    try:
        ctypes.memset(block, 0, 4096)
        with caplog.at_level("WARNING", logger="omnicore.egress"):
            assert pg_wire._find_input(SimpleNamespace(pgconn_ptr=block)) is None
    finally:
        libc.free(block)
    text = caplog.text
    assert "did not find libpq's input buffer" in text, text
    assert "each row is counted three times its size against a result's budget" in text, text
    assert "refused TOO_LARGE" in text, text


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_one_row_just_under_the_cap_is_refused_before_it_is_read(
        kind: str, pg_cluster: Any, maria: Any) -> None:  # noqa: F811
    """A row of 30 MiB under a 32 MiB cap: its JSON fits, but reading it would cost the host
    2 (PostgreSQL) or 3 (MariaDB) copies of it, 1.88 x and 2.8 x the cap: refused TOO_LARGE
    from its announced length (libpq's pending DataRow; MariaDB's packet header) before its
    bytes are read, the cap named and why; the host's peak stays within 1.25 x the cap, and
    the connector answers the next statement (the connection was closed and replaced)."""
    row = 30 << 20
    measured = _probe(kind, _url(kind, pg_cluster, maria), CAP, f"SELECT repeat('x', {row})")
    status = measured["status"]
    assert status.startswith(f"TOO_LARGE: the result is larger than {CAP} bytes (connector "
                             "m, max_result_bytes): its next row is "), status[:300]
    twice = "twice" if kind == "postgres" else "three times"
    assert f"a row costs the host about {twice} its size while it is read; a result may " \
           "cost at most 1.25 x max_result_bytes" in status, status
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_large_row_after_many_is_refused_by_what_they_hold(
        kind: str, pg_cluster: Any, maria: Any) -> None:  # noqa: F811
    """What the result holds counts beside the row being read: 180 rows of 100 KiB (17.6 MiB),
    then a row of 12 MiB (a row that alone is answered on both) under a 32 MiB cap. The JSON
    (29.6 MiB) fits the cap, but the host would hold the rows and 2 or 3 copies of the last
    one: refused before that row is read, the peak within 1.25 x the cap."""
    big = 12 << 20
    if kind == "postgres":
        sql = (f"SELECT repeat('x', CASE WHEN s <= 180 THEN 102400 ELSE {big} END) "
               "FROM generate_series(1, 181) AS s")
    else:
        sql = (f"SELECT repeat('x', CASE WHEN seq <= 180 THEN 102400 ELSE {big} END) "
               "FROM seq_1_to_181")
    measured = _probe(kind, _url(kind, pg_cluster, maria), CAP, sql)
    status = measured["status"]
    assert status.startswith(f"TOO_LARGE: the result is larger than {CAP} bytes"), status[:300]
    assert "its next row is" in status, status
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


def _rows_sql(kind: str, count: int, size: int, last: int = 0) -> str:
    """``count`` rows of ``size`` bytes, then (``last``) one row of ``last`` bytes."""
    n, v = count + (1 if last else 0), "s" if kind == "postgres" else "seq"
    cell = f"CASE WHEN {v} <= {count} THEN {size} ELSE {last} END" if last else str(size)
    if kind == "postgres":
        return f"SELECT repeat('x', {cell}) FROM generate_series(1, {n}) AS s"
    return f"SELECT repeat('x', {cell}) FROM seq_1_to_{n}"


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
@pytest.mark.parametrize(("count", "size"), [(60, 500 << 10), (28, 1 << 20), (14, 2 << 20)])
def test_many_rows_of_hundreds_of_kib_that_fit_are_answered_within_the_bound(
        kind: str, count: int, size: int, pg_cluster: Any, maria: Any) -> None:  # noqa: F811
    """Rows each well under what one row may be, whose JSON (28-29 MiB) fits a 32 MiB cap,
    are answered whole within 1.25 x the cap. PostgreSQL refused them: libpq held 32 rows
    at once (a chunk, 16 to 64 MiB: its PGresult beside their JSON, 1.48 x the cap for 60
    rows of 500 KiB), so the rule refused the row that would have taken it past the bound;
    a chunk now ends with the row read once it passes 1 MiB, and each later row is a chunk
    of its own. Answered, 28 rows of 1 MiB cost 1.78 x the cap on PostgreSQL and 1.55 x on
    MariaDB: glibc served them from its heap once a mapped block was freed (the JSON's
    buffer copied as it grew, what was freed kept resident); allocations of 1 MiB or more
    are now mapped apart (0.94 x)."""
    measured = _probe(kind, _url(kind, pg_cluster, maria), CAP, _rows_sql(kind, count, size))
    assert measured["status"].startswith('{"columns":'), measured["status"][:300]
    assert json.loads(measured["status"])["rows"] == [["x" * size]] * count
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_large_row_after_many_is_answered_or_refused_within_the_bound(
        kind: str, pg_cluster: Any, maria: Any) -> None:  # noqa: F811
    """130 rows of 100 KiB (12.7 MiB), then one of 12 MiB, under a 32 MiB cap. PostgreSQL
    answered it at 1.33 x the cap: what the allocator kept of the earlier rows' chunks (a
    heap it could not give back) was counted nowhere. Now answered within 1.25 x (1.16 x).
    MariaDB holds such a row three times while it reads it (12.7 + 3 x 12 MiB would be past
    the bound): refused before the row is read, within the bound, the connector usable
    after."""
    measured = _probe(kind, _url(kind, pg_cluster, maria), CAP,
                      _rows_sql(kind, 130, 100 << 10, 12 << 20))
    status = measured["status"]
    if kind == "postgres":
        assert status.startswith('{"columns":'), status[:300]
        rows = json.loads(status)["rows"]
        assert rows == [["x" * (100 << 10)]] * 130 + [["x" * (12 << 20)]]
    else:
        assert status.startswith(f"TOO_LARGE: the result is larger than {CAP} bytes"), \
            status[:300]
        assert "a row costs the host about three times its size" in status, status
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


def test_libpq_chunk_size_is_found_and_is_the_one_libpq_reads(pg_cluster: Any) -> None:
    """The field pg_wire.fetch cuts a chunk with (libpq's maxChunkSize, private to libpq) is
    found on the libpq psycopg runs on, and is the one PQsetChunkedRowsMode sets; a cut to
    one row is what libpq then does: a result of 3 rows comes as 3 chunks. (Not found, a
    result of large rows would be refused as before, silently: this says so first.)"""
    import psycopg

    from omnicore.egress.db import pg_wire

    url = str(pg_cluster.database(f"chunk_{time.time_ns() % 10**9}"))
    with psycopg.connect(url, autocommit=True) as conn:
        pgconn = conn.pgconn
        field = pg_wire.chunk_field(pgconn)
        assert field is not None
        pgconn.send_query(b"SELECT s FROM generate_series(1, 3) AS s")
        pgconn.set_chunked_rows_mode(7)
        assert field.value == 7
        field.value = 1
        sizes = []
        while (res := pgconn.get_result()) is not None:
            sizes.append(res.ntuples)
        assert sizes == [1, 1, 1, 0], sizes
