"""Spoofed servers that speak the wire protocol wrongly on purpose (specs/abi.md §4.12,
"TLS and authentication", and §4.10, "Deadlines"): a PostgreSQL server that asks for the
password in clear, answers a query with a COPY, with notices for ever or with a row that
never ends; a MariaDB server that asks for ``mysql_clear_password`` or sends a LOAD DATA
LOCAL request. Each call ends within its deadline with a status, no password leaves the
host, the connection is never given back, the pool serves the next call, and no thread of
the host outlives the call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from omnicore.egress.db import db_connector
from tests.db_fixtures import maria  # noqa: F401 - a fixture
from tests.egress.db.spoofed import (
    PASSWORD,
    SLACK,
    SpoofedMaria,
    SpoofedPostgres,
    _backend,
    _host_threads,
    _maria_url,
    _no_thread_left,
    _probe,
    _refused,
)


@pytest.fixture
def spoofed_pg() -> Iterator[Callable[[str], SpoofedPostgres]]:
    made: list[SpoofedPostgres] = []

    def start(mode: str) -> SpoofedPostgres:
        server = SpoofedPostgres(mode)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()


def test_pg_a_server_asking_for_the_password_in_clear_gets_nothing(
        spoofed_pg: Callable[[str], SpoofedPostgres]) -> None:
    server = spoofed_pg("cleartext")
    backend = _backend("postgres", server.port)
    before = _host_threads()
    refused, took = _refused(backend, 3.0, close=False)
    assert (refused.status, str(refused)) == (
        "DENIED", "connector spoof: the server asked for the password in clear, which goes "
                  "only to a server TLS verified (sslmode=verify-full); use SCRAM on the "
                  "server (password_encryption = 'scram-sha-256', then set the role's "
                  "password again), give the connector sslmode=verify-full, or set "
                  "connectors.spoof.password_to_unverified_server: allow")
    assert server.hostile_done.wait(5)
    assert server.passwords == []
    assert took < 3.0 + SLACK
    _no_thread_left(before)
    backend.close()


@pytest.mark.parametrize("mode", ["copy", "notices", "datarow"])
def test_pg_an_answer_the_connector_never_asked_for_ends_the_call_and_the_pool_goes_on(
        spoofed_pg: Callable[[str], SpoofedPostgres], mode: str) -> None:
    server = spoofed_pg(mode)
    # A small cap, so the byte bound (not the deadline) ends the endless answers; the copy
    # is ended by its status alone.
    backend = _backend("postgres", server.port, max_result_bytes=1 << 20)
    before = _host_threads()
    refused, took = _refused(backend, 3.0, close=False)
    if mode == "copy":
        assert (refused.status, str(refused)) == (
            "UNAVAILABLE", "connector spoof: the server answered with COPY_OUT, which the "
                           "connector never asks for; the connection was closed")
    else:
        assert (refused.status, str(refused)) == (
            "TOO_LARGE", "the result is larger than 1048576 bytes (connector spoof, "
                         "max_result_bytes)")
        # Refused before libpq read much past the cap (what the server got into the
        # socket buffers beyond it never reached the host's memory).
    assert took < 3.0 + SLACK, took
    # The connection was closed (the server saw its session end), never pooled ...
    assert server.hostile_done.wait(10)
    assert backend.pool.idle == 0 and backend.pool.in_use == 0
    # ... and the next call gets an honest new one.
    assert backend.run("p", True, "SELECT 1", [], time.monotonic() + 5) == \
        b'{"columns":[{"name":"x","type":"text"}],"rows":[["1"]]}'
    _no_thread_left(before)
    backend.close()


def test_pg_endless_notices_under_a_large_cap_end_at_the_deadline(
        spoofed_pg: Callable[[str], SpoofedPostgres]) -> None:
    """With a cap the notices do not reach within the call, the deadline ends them: the
    watchdog cuts the socket; the side connection's terminate is bounded too."""
    server = spoofed_pg("notices")
    backend = _backend("postgres", server.port, max_result_bytes=1 << 40)
    before = _host_threads()
    refused, took = _refused(backend, 1.0, close=False)
    assert (refused.status, str(refused)) == ("UNAVAILABLE",
                                              "connector spoof: statement timed out")
    assert took < 1.0 + SLACK, took
    assert backend.pool.idle == 0 and backend.pool.in_use == 0  # cut, closed, not pooled
    assert backend.run("p", True, "SELECT 1", [], time.monotonic() + 5).endswith(b'[["1"]]}')
    _no_thread_left(before)
    backend.close()


@pytest.fixture
def spoofed_maria() -> Iterator[Callable[[str], SpoofedMaria]]:
    made: list[SpoofedMaria] = []

    def start(mode: str) -> SpoofedMaria:
        server = SpoofedMaria(mode)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()


def test_maria_a_server_asking_for_mysql_clear_password_gets_nothing(
        spoofed_maria: Callable[[str], SpoofedMaria]) -> None:
    server = spoofed_maria("cleartext")
    backend = _backend("mysql", server.port)
    before = _host_threads()
    refused, took = _refused(backend, 3.0, close=False)
    assert (refused.status, str(refused)) == (
        "DENIED", "connector spoof: the server asked for authentication "
                  "'mysql_clear_password', which shows it the password; the password goes "
                  "only to a server TLS verified (sslmode=verify-full) or as a scramble "
                  "(mysql_native_password, ed25519): give the connector sslmode=verify-full, "
                  "change the account's plugin (ALTER USER ... IDENTIFIED VIA "
                  "mysql_native_password USING PASSWORD('...')), or set "
                  "connectors.spoof.password_to_unverified_server: allow")
    assert server.hostile_done.wait(5)
    assert all(PASSWORD.encode() not in answer for answer in server.answers)
    assert took < 3.0 + SLACK
    _no_thread_left(before)
    backend.close()


def test_maria_a_load_data_local_request_is_refused_and_the_connection_closed(
        spoofed_maria: Callable[[str], SpoofedMaria]) -> None:
    server = spoofed_maria("infile")
    backend = _backend("mysql", server.port)
    before = _host_threads()
    refused, took = _refused(backend, 3.0, close=False)
    assert (refused.status, str(refused)) == (
        "UNAVAILABLE", "connector spoof: the server asked for a local file (LOAD DATA "
                       "LOCAL), which the connector never sends; the connection was closed")
    assert server.hostile_done.wait(5)
    assert server.file_sent == []
    assert backend.pool.idle == 0 and backend.pool.in_use == 0
    assert took < 3.0 + SLACK
    _no_thread_left(before)
    backend.close()


@pytest.mark.parametrize("kind", ["postgres", "mysql"])
def test_a_row_past_the_cap_costs_at_most_a_quarter_more_than_the_cap(
        kind: str, pg_cluster: Any, maria: Any) -> None:  # noqa: F811
    cap = 16 << 20
    if kind == "postgres":
        url = pg_cluster.database(f"mem_{time.time_ns() % 10**9}")
        row = 300 << 20  # (was 2 copies in libpq: its buffer and its result)
    else:
        url = _maria_url(maria)
        row = 60 << 20  # (the test server's max_allowed_packet is 64 MiB)
    measured = _probe(kind, url, cap, f"SELECT repeat('x', {row})")
    # (MariaDB's row comes in frames of 16 MiB: its first already costs past 1.25 x the cap
    # thrice, so the refusal says why, "its next row is at least 16777215 bytes ...")
    assert measured["status"].startswith(f"TOO_LARGE: the result is larger than {cap} bytes "
                                         "(connector m, max_result_bytes)"), measured
    assert measured["growth"] <= cap * 1.25, measured


def test_maria_execute_counts_rows_without_holding_them(maria: Any) -> None:  # noqa: F811
    """execute of a statement with rows (200 rows of 1 MiB: 200 MiB on the wire) counts
    them as they come; PyMySQL's cursor held them all."""
    cap = 16 << 20
    measured = _probe("mysql", _maria_url(maria), cap,
                      "SELECT repeat('x', 1048576) FROM seq_1_to_200", "execute")
    assert measured["status"] == '{"rows_affected":200}', measured
    assert measured["growth"] <= cap * 1.25, measured


def test_maria_results_left_on_the_wire_close_the_connection(
        spoofed_maria: Callable[[str], SpoofedMaria]) -> None:
    """A result saying more results follow (a procedure's, or a spoofed server's that never
    sends them): the call has its rows, and the connection is closed rather than pooled
    (PyMySQL would read every following result whole before the next statement)."""
    server = spoofed_maria("more")
    backend = _backend("mysql", server.port)
    before = _host_threads()
    out = backend.run("p", True, "SELECT 1", [], time.monotonic() + 3)
    assert out == b'{"columns":[{"name":"x","type":"varchar"}],"rows":[["1"]]}'
    assert server.hostile_done.wait(5)
    assert backend.pool.idle == 0 and backend.pool.in_use == 0
    _no_thread_left(before)
    backend.close()


def test_pg_libpqs_input_buffer_is_found(pg_url: str) -> None:
    """The offset of libpq's private input-buffer fields (pg_wire._find_input) is found for
    the libpq psycopg runs on: without it a row past the cap is bounded by the socket's
    count only (a libpq that moved them fails here, not in production)."""
    from omnicore.egress.db import pg_wire, postgres

    connector = db_connector("m", {"kind": "postgres", "url_secret": "u"})
    conn = postgres.PostgresDialect().connect(
        connector.target(lambda name: pg_url.encode()), connector, time.monotonic() + 10)
    try:
        assert pg_wire._in_offset and pg_wire._in_offset[0] is not None
        assert conn.in_fields and pg_wire.pending_message(conn) == 0
    finally:
        conn.close()
