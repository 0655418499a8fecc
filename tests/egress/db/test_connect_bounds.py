"""What a PostgreSQL connection must be before a plugin's statement runs on it, and how long
opening one may take (specs/abi.md §4.10-4.12):

* a connect is bounded by the call's deadline, not only by libpq's ``connect_timeout`` (at
  least 2 s): a server that accepts and never answers costs a 500 ms call about 500 ms;
* a server or database whose ``standard_conforming_strings`` is off is refused at connect,
  naming it and what to do (the statement gate reads strings as the default ``on`` does).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from omnicore.egress.db import db_connector
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused
from omnicore.errors import GuestError
from tests.db_fixtures import framed, sql_app  # noqa: F401


@pytest.fixture
def silent_server() -> Iterator[tuple[int, threading.Event]]:
    """A TCP server that accepts connections and never sends a byte; its port, and an event
    set at its first accepted connection."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    accepted = threading.Event()
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        lsock.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            held.append(conn)  # open, unanswered
            accepted.set()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield lsock.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        lsock.close()


def _backend(url: str, password: str = "pw") -> Any:
    connector = db_connector("pg", {"kind": "postgres", "url": url, "secret": "pw",
                                    "pool_size": 1, "privileges": "warn"})
    return _make(connector, lambda name: password.encode())


def test_a_connect_to_a_silent_server_ends_at_the_calls_deadline(
        silent_server: tuple[int, threading.Event]) -> None:
    port, accepted = silent_server
    backend = _backend(f"postgresql://u@127.0.0.1:{port}/d")
    try:
        start = time.monotonic()
        with pytest.raises(Refused) as info:
            backend.run("p", True, "SELECT 1", [], start + 0.5)
        took = time.monotonic() - start
    finally:
        backend.close()
    assert accepted.is_set()  # it did reach the server, which said nothing
    assert info.value.status == "UNAVAILABLE", str(info.value)
    assert "timed out" in str(info.value), str(info.value)
    # libpq's connect_timeout alone would have held it 2 s; psycopg's wait looks every 0.1 s.
    assert took < 1.0, took


def test_a_plugin_call_of_500_ms_on_a_silent_server_ends_in_time(
        sql_app: Any, silent_server: tuple[int, threading.Event]) -> None:  # noqa: F811
    port, accepted = silent_server
    db = sql_app({"pg": {"kind": "postgres", "url": f"postgresql://u@127.0.0.1:{port}/d",
                         "secret": "pg-pw", "privileges": "warn"}},
                 {"sql": {"connectors": ["pg"]}}, secrets={"pg-pw": "pw"},
                 limits={"timeout_ms": 500})
    start = time.monotonic()
    with pytest.raises(Exception) as info:
        db.call("query", framed("pg", json.dumps({"sql": "SELECT 1", "params": []}).encode()))
    took = time.monotonic() - start
    assert accepted.is_set()
    # The statement's refusal (the guest returns it) or the call's deadline: never 2 s.
    assert isinstance(info.value, GuestError) or "deadline" in str(info.value).lower(), \
        repr(info.value)
    assert took < 1.0, took


def test_a_database_without_standard_conforming_strings_is_refused_by_name(
        pg_cluster: Any) -> None:
    url = str(pg_cluster.database("scs_off")).replace("omnicore:omnicore@", "omnicore@")
    backend = _backend(url, "omnicore")
    try:
        assert json.loads(backend.run("p", True, "SELECT 'a\\b'", [], time.monotonic() + 10)
                          )["rows"] == [["a\\b"]]
    finally:
        backend.close()
    pg_cluster.psql("ALTER DATABASE scs_off SET standard_conforming_strings = off")
    try:
        backend = _backend(url, "omnicore")
        try:
            with pytest.raises(Refused) as info:
                backend.run("p", True, "SELECT 1", [], time.monotonic() + 10)
        finally:
            backend.close()
        message = str(info.value)
        assert info.value.status == "UNAVAILABLE", message
        assert "standard_conforming_strings = off" in message, message
        assert "ALTER DATABASE scs_off SET standard_conforming_strings = on" in message, message
    finally:
        pg_cluster.psql("ALTER DATABASE scs_off RESET standard_conforming_strings")
    backend = _backend(url, "omnicore")
    try:  # set back on: served again
        assert json.loads(backend.run("p", True, "SELECT 1", [], time.monotonic() + 10)
                          )["rows"] == [[1]]
    finally:
        backend.close()


def test_a_role_without_standard_conforming_strings_is_refused_too(pg_cluster: Any) -> None:
    url = str(pg_cluster.database("scs_role")).replace("omnicore:omnicore@", "omnicore@")
    pg_cluster.psql("CREATE ROLE scs_reader LOGIN PASSWORD 'scs-pw-1'")
    pg_cluster.psql("GRANT CONNECT ON DATABASE scs_role TO scs_reader")
    pg_cluster.psql("ALTER ROLE scs_reader SET standard_conforming_strings = off")
    try:
        backend = _backend(url.replace("omnicore@", "scs_reader@"), "scs-pw-1")
        try:
            with pytest.raises(Refused) as info:
                backend.run("p", True, "SELECT 1", [], time.monotonic() + 10)
        finally:
            backend.close()
        assert "role scs_reader with standard_conforming_strings = off" in str(info.value)
        assert "ALTER ROLE scs_reader RESET standard_conforming_strings" in str(info.value)
    finally:
        pg_cluster.psql("DROP OWNED BY scs_reader", db="scs_role")
        pg_cluster.psql("DROP ROLE scs_reader")
