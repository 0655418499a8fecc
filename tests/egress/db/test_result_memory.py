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
from tests.egress.db.spoofed import SlicingRelay, _gated_probe, _maria_url, _probe

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
    assert relay.sliced == 1, relay.sliced  # (the row came in slices)
    assert measured["status"].startswith('{"columns":'), measured["status"][:200]
    assert json.loads(measured["status"])["rows"] == [["x" * row]]
    assert measured["growth"] <= 1.25 * CAP, measured["growth"] / CAP
    assert measured["growth"] <= (COPIES["postgres"] + 0.2) * row, measured["growth"] / row
    assert json.loads(measured["after"])["rows"] == [[7]], measured["after"]


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
