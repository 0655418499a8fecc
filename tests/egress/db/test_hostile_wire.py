"""Spoofed servers that speak the wire protocol wrongly on purpose (specs/abi.md §4.12,
"TLS and authentication", and §4.10, "Deadlines"): a PostgreSQL server that asks for the
password in clear, answers a query with a COPY, with notices for ever or with a row that
never ends; a MariaDB server that asks for ``mysql_clear_password`` or sends a LOAD DATA
LOCAL request. Each call ends within its deadline with a status, no password leaves the
host, the connection is never given back, the pool serves the next call, and no thread of
the host outlives the call.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.egress.db import db_connector
from omnicore.egress.db.base import _SIDE, CLIENT_GRACE_S, HARD_GRACE_S, SIDE_TIMEOUT_S
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused
from tests.db_fixtures import maria  # noqa: F401 - a fixture
from tests.dbservers import PASSWORD as MARIA_PASSWORD
from tests.dbservers import USER as MARIA_USER
from tests.waiting import eventually

PASSWORD = "spoof-Secret-3391"
#: What a call may take past its deadline: the graces of the escalation and a loaded machine.
SLACK = CLIENT_GRACE_S + HARD_GRACE_S + 3.0


def _host_threads() -> set[threading.Thread]:
    """The process's threads but the fakes' (named ``fake-``) and the connectors' own
    long-lived ones (the watchdog, the side pool's workers)."""
    return {t for t in threading.enumerate()
            if not t.name.startswith(("fake-", "omnicore-db-side", "omnicore-db-watchdog"))}


def _side_idle() -> bool:
    """Whether every worker of the side pool is idle (its idle semaphore counts them)."""
    return _SIDE._work_queue.empty() and \
        _SIDE._idle_semaphore._value == len(_SIDE._threads)  # type: ignore[attr-defined]


def _no_thread_left(before: set[threading.Thread]) -> None:
    """No thread the call started runs after it, and the side pool's work is done within
    its own bound (a cancel or KILL against a spoofed server gives up by SIDE_TIMEOUT_S)."""
    assert _host_threads() <= before, _host_threads() - before
    eventually(_side_idle, "the side pool idle", timeout=2 * SIDE_TIMEOUT_S + 5)
    # And nothing spins: the process (host and fakes) is near idle over half a second (a
    # loop left behind on a COPY or on notices would take a whole core).
    cpu, wall = time.process_time(), time.monotonic()
    threading.Event().wait(0.5)
    used = (time.process_time() - cpu) / (time.monotonic() - wall)
    assert used < 0.5, f"the process used {used:.0%} of a core after the call"


# -- a spoofed PostgreSQL -------------------------------------------------------------------
def _msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!I", len(body) + 4) + body


_READY = _msg(b"Z", b"I")
_PARAMS = b"".join(_msg(b"S", k + b"\0" + v + b"\0") for k, v in (
    (b"server_version", b"15.4"), (b"server_encoding", b"UTF8"),
    (b"client_encoding", b"UTF8"), (b"standard_conforming_strings", b"on"),
    (b"integer_datetimes", b"on"), (b"DateStyle", b"ISO, MDY"), (b"TimeZone", b"UTC")))
_WELCOME = _msg(b"R", struct.pack("!I", 0)) + _PARAMS + \
    _msg(b"K", struct.pack("!II", 4242, 7)) + _READY
_NOTICE = _msg(b"N", b"SNOTICE\0C00000\0M" + b"n" * 200 + b"\0\0")
_ONE_TEXT_COLUMN = _msg(b"T", struct.pack("!H", 1) + b"x\0" + struct.pack("!IhIhih", 0, 0, 25,
                                                                          -1, -1, 0))


class SpoofedPostgres:
    """A PostgreSQL server on 127.0.0.1 whose first session behaves as ``mode`` says when the
    connector sends its first extended-protocol query (``SELECT 1``); later sessions (the
    pool's next connection, a side connection's terminate) are honest: every query is
    answered ``SELECT 1`` -> ``1``. Cancel requests are read and closed.

    * ``cleartext``: asks for the password in clear at the first session's start (and
      records what it got in :attr:`passwords`);
    * ``copy``: answers the query with a CopyOutResponse (and a little CopyData);
    * ``notices``: answers with NoticeResponses, for ever;
    * ``datarow``: answers with a DataRow of 1 GiB, sent for ever.
    """

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.sessions = 0
        self.sent = 0  # bytes of the hostile answer sent
        self.passwords: list[bytes] = []
        self.hostile_done = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name="fake-pg").start()

    def close(self) -> None:
        self.stop.set()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._session, args=(client,), daemon=True,
                             name="fake-pg-session").start()
        self.sock.close()

    def _read(self, client: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = client.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _session(self, client: socket.socket) -> None:
        client.settimeout(30)
        hostile = False
        try:
            with client:
                length, code = struct.unpack("!II", self._read(client, 8))
                if code == 80877103:  # SSLRequest (never under sslmode=disable)
                    client.sendall(b"N")
                    length, code = struct.unpack("!II", self._read(client, 8))
                self._read(client, length - 8)
                if code == 80877102:  # CancelRequest
                    return
                self.sessions += 1
                hostile = self.sessions == 1
                if hostile and self.mode == "cleartext":
                    client.sendall(_msg(b"R", struct.pack("!I", 3)))
                    try:
                        kind = self._read(client, 1)
                        size = struct.unpack("!I", self._read(client, 4))[0]
                        body = self._read(client, size - 4)
                        if kind == b"p":
                            self.passwords.append(body)
                    except (ConnectionError, OSError):
                        pass
                    return
                client.sendall(_WELCOME)
                self._queries(client, hostile)
        except (ConnectionError, OSError):
            pass
        finally:
            if hostile:
                self.hostile_done.set()

    def _queries(self, client: socket.socket, hostile: bool) -> None:
        while not self.stop.is_set():
            kind = self._read(client, 1)
            size = struct.unpack("!I", self._read(client, 4))[0]
            body = self._read(client, size - 4)
            if kind == b"X":
                return
            if kind == b"Q":  # simple protocol: the SET of statement_timeout, DISCARD ALL
                word = body.split(b" ", 1)[0].rstrip(b"\0").upper()
                client.sendall(_msg(b"C", word + b"\0") + _READY)
            elif kind == b"S":  # Sync ends an extended-protocol query: its answer
                if hostile:
                    self._hostile(client)
                    return
                client.sendall(_msg(b"1") + _msg(b"2") + _ONE_TEXT_COLUMN +
                               _msg(b"D", struct.pack("!HI", 1, 1) + b"1") +
                               _msg(b"C", b"SELECT 1\0") + _READY)

    def _hostile(self, client: socket.socket) -> None:
        head = _msg(b"1") + _msg(b"2")
        if self.mode == "copy":
            client.sendall(head + _msg(b"H", struct.pack("!bHH", 0, 1, 0)) +
                           _msg(b"d", b"data\n") * 3)
            while client.recv(4096):  # holds the connection open: the client has to end it
                pass
            return
        if self.mode == "notices":
            client.sendall(head + _ONE_TEXT_COLUMN)
            block = _NOTICE * 64
        else:  # datarow: 1 GiB announced, sent for ever
            client.sendall(head + _ONE_TEXT_COLUMN +
                           b"D" + struct.pack("!IHI", (1 << 30) + 10, 1, 1 << 30))
            block = b"x" * 65536
        while not self.stop.is_set():
            client.sendall(block)
            self.sent += len(block)


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


def _backend(kind: str, port: int, **extra: Any) -> Any:
    scheme = "postgresql" if kind == "postgres" else "mysql"
    connector = db_connector("spoof", {"kind": kind, "url": f"{scheme}://u@127.0.0.1:{port}/d",
                                       "secret": "pw", "pool_size": 1, **extra})
    return _make(connector, lambda name: PASSWORD.encode())


def _refused(backend: Any, deadline_s: float) -> tuple[Refused, float]:
    started = time.monotonic()
    with pytest.raises(Refused) as info:
        backend.run("p", True, "SELECT 1", [], started + deadline_s)
    return info.value, time.monotonic() - started


def test_pg_a_server_asking_for_the_password_in_clear_gets_nothing(
        spoofed_pg: Callable[[str], SpoofedPostgres]) -> None:
    server = spoofed_pg("cleartext")
    backend = _backend("postgres", server.port)
    before = _host_threads()
    refused, took = _refused(backend, 3.0)
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
    refused, took = _refused(backend, 3.0)
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
    refused, took = _refused(backend, 1.0)
    assert (refused.status, str(refused)) == ("UNAVAILABLE",
                                              "connector spoof: statement timed out")
    assert took < 1.0 + SLACK, took
    assert backend.pool.idle == 0 and backend.pool.in_use == 0  # cut, closed, not pooled
    assert backend.run("p", True, "SELECT 1", [], time.monotonic() + 5).endswith(b'[["1"]]}')
    _no_thread_left(before)
    backend.close()


# -- a spoofed MariaDB ----------------------------------------------------------------------
def _packet(seq: int, body: bytes) -> bytes:
    return struct.pack("<I", len(body))[:3] + bytes([seq]) + body


# Capabilities: LONG_PASSWORD, PROTOCOL_41, SECURE_CONNECTION, PLUGIN_AUTH, TRANSACTIONS,
# CONNECT_WITH_DB, MULTI_RESULTS (no SSL).
_CAPS = 0x1 | 0x200 | 0x8000 | 0x80000 | 0x2000 | 0x8 | 0x20000
_SALT = b"abcdefgh" + b"ijklmnopqrst"
_GREETING = (b"\x0a" + b"5.5.5-10.11.6-MariaDB\0" + struct.pack("<I", 77) + _SALT[:8] +
             b"\0" + struct.pack("<H", _CAPS & 0xFFFF) + b"\x2d" + struct.pack("<H", 2) +
             struct.pack("<H", _CAPS >> 16) + bytes([21]) + b"\0" * 10 + _SALT[8:] + b"\0" +
             b"mysql_native_password\0")
_OK = b"\x00\x00\x00\x02\x00\x00\x00"
_TLS_GREETING = _GREETING.replace(struct.pack("<H", _CAPS & 0xFFFF),
                                  struct.pack("<H", (_CAPS | 0x800) & 0xFFFF), 1)


class SpoofedMaria:
    """A MariaDB server on 127.0.0.1: its first session, per ``mode``, switches to
    ``mysql_clear_password`` at authentication (``cleartext``: what it got is in
    :attr:`answers`, and an answer is taken with OK) or answers the first query with a LOAD
    DATA LOCAL request (``infile``); ``grants_error`` refuses every SHOW GRANTS (error 1142)
    in every session; other sessions, and every other command, are answered OK. With ``tls``
    (a context with the server's certificate) it offers TLS."""

    def __init__(self, mode: str, tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.sessions = 0
        self.answers: list[bytes] = []
        self.handshakes: list[bytes] = []  # each session's handshake response
        self.file_sent: list[bytes] = []
        self.hostile_done = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name="fake-maria").start()

    def close(self) -> None:
        self.stop.set()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                client, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._session, args=(client,), daemon=True,
                             name="fake-maria-session").start()
        self.sock.close()

    @staticmethod
    def _read_packet(client: socket.socket) -> tuple[int, bytes]:
        head = b""
        while len(head) < 4:
            chunk = client.recv(4 - len(head))
            if not chunk:
                raise ConnectionError("closed")
            head += chunk
        size = head[0] | head[1] << 8 | head[2] << 16
        body = b""
        while len(body) < size:
            chunk = client.recv(size - len(body))
            if not chunk:
                raise ConnectionError("closed")
            body += chunk
        return head[3], body

    def _session(self, client: socket.socket) -> None:
        client.settimeout(30)
        self.sessions += 1
        hostile = self.sessions == 1
        try:
            with client:
                client.sendall(_packet(0, _GREETING if self.tls is None else _TLS_GREETING))
                seq, body = self._read_packet(client)  # the handshake response
                if self.tls is not None and len(body) == 32:  # an SSL request first
                    client = self.tls.wrap_socket(client, server_side=True)
                    seq, body = self._read_packet(client)
                self.handshakes.append(body)
                if hostile and self.mode == "cleartext":
                    client.sendall(_packet(seq + 1, b"\xfemysql_clear_password\0"))
                    try:
                        seq, answer = self._read_packet(client)
                    except (ConnectionError, OSError):
                        return
                    self.answers.append(answer)
                client.sendall(_packet(seq + 1, _OK))
                while not self.stop.is_set():
                    _, command = self._read_packet(client)
                    if command[:1] == b"\x01":  # COM_QUIT
                        return
                    if hostile and self.mode == "more" and command[:1] == b"\x03" and \
                            b"SELECT 1" in command:
                        # One row, then an EOF saying more results follow (never sent).
                        column = b"".join(bytes([len(t)]) + t for t in (
                            b"def", b"", b"", b"", b"x", b"")) + b"\x0c" + struct.pack(
                            "<HIBHBH", 45, 4, 253, 0, 0, 0)
                        eof_more = b"\xfe\x00\x00" + struct.pack("<H", 0x0002 | 0x0008)
                        client.sendall(_packet(1, b"\x01") + _packet(2, column) +
                                       _packet(3, b"\xfe\x00\x00\x02\x00") +
                                       _packet(4, b"\x011") + _packet(5, eof_more))
                        while client.recv(4096):  # the client must end the session
                            pass
                        return
                    if self.mode == "grants_error" and command[:1] == b"\x03" and \
                            b"SHOW GRANTS" in command:
                        client.sendall(_packet(1, b"\xff" + struct.pack("<H", 1142) +
                                               b"#42000SHOW command denied to user"))
                        continue
                    if hostile and self.mode == "infile" and command[:1] == b"\x03" and \
                            b"SELECT 1" in command:
                        client.sendall(_packet(1, b"\xfb/etc/passwd"))
                        try:
                            self.file_sent.append(self._read_packet(client)[1])
                        except (ConnectionError, OSError):
                            pass
                        return
                    client.sendall(_packet(1, _OK))
        except (ConnectionError, OSError):
            pass
        finally:
            client.close()  # (the TLS socket, when it was wrapped)
            if hostile:
                self.hostile_done.set()


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
    refused, took = _refused(backend, 3.0)
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
    refused, took = _refused(backend, 3.0)
    assert (refused.status, str(refused)) == (
        "UNAVAILABLE", "connector spoof: the server asked for a local file (LOAD DATA "
                       "LOCAL), which the connector never sends; the connection was closed")
    assert server.hostile_done.wait(5)
    assert server.file_sent == []
    assert backend.pool.idle == 0 and backend.pool.in_use == 0
    assert took < 3.0 + SLACK
    _no_thread_left(before)
    backend.close()


# -- a result's memory ----------------------------------------------------------------------
# Run in a child process: its peak resident memory (VmHWM, reset after the connection is
# made) is the call's cost in host memory, C's (libpq's buffer, PyMySQL's reads) included.
_PROBE = r"""
import json, sys, time
from omnicore.egress.db import db_connector
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused

kind, url, cap, sql = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
query = sys.argv[5] == "query"

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

connector = db_connector("m", {"kind": kind, "url_secret": "u", "max_result_bytes": cap,
                               "pool_size": 1})
backend = _make(connector, lambda name: url.encode())
backend.run("p", True, "SELECT 1", [], time.monotonic() + 30)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak is measured from here
base = status("VmRSS")
try:
    out = backend.run("p", query, sql, [], time.monotonic() + 60).decode()
except Refused as exc:
    out = f"{exc.status}: {exc}"
print(json.dumps({"status": out, "growth": status("VmHWM") - base}))
"""


def _probe(kind: str, url: str, cap: int, sql: str, how: str = "query") -> dict[str, Any]:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root / "host"), str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _PROBE, kind, url, str(cap), sql, how],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _maria_url(server: Any) -> str:
    return str(server.database(f"mem_{time.time_ns() % 10**9}")).replace(
        f"{MARIA_USER}@", f"{MARIA_USER}:{MARIA_PASSWORD}@")


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
    assert measured["status"] == f"TOO_LARGE: the result is larger than {cap} bytes " \
                                 "(connector m, max_result_bytes)", measured
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
