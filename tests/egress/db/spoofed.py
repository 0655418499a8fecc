"""Spoofed PostgreSQL and MariaDB servers and the probes the connectors' wire tests share
(tests/egress/db/test_hostile_wire.py, test_wire_attack.py, test_tls.py,
test_result_memory.py): each server speaks the wire protocol wrongly on purpose, per its
``mode``, on a free port of 127.0.0.1, each session on a thread of its own (named ``fake-``,
which :func:`_host_threads` leaves out).
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from omnicore.egress.db import db_connector
from omnicore.egress.db.base import _SIDE, CLIENT_GRACE_S, HARD_GRACE_S, SIDE_TIMEOUT_S
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused
from tests.dbservers import PASSWORD as MARIA_PASSWORD
from tests.dbservers import USER as MARIA_USER
from tests.dbservers import CertAuthority
from tests.waiting import busy_share, eventually

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
    # And nothing spins: the connector's threads and the fakes' are near idle over half a
    # second (a loop left behind on a COPY or on notices would take a whole core). Those, not
    # the process: another test's host in this worker may be busy a while (seen: 62-135% of
    # a core, after the route tests' componentize-py hosts); no thread the call started is
    # left (above), so a loop it left runs on one of these.
    used, busy = busy_share([t for t in threading.enumerate()
                             if t.name.startswith(("fake-", "omnicore-db-"))])
    assert used < 0.5, f"the connector's threads used {used:.0%} of a core after the call: " \
                       f"{busy}"


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


class Listener:
    """A server on a free port of 127.0.0.1 that runs :meth:`_session` on a thread per
    connection until :meth:`close`. A subclass sets its own fields, then calls this
    ``__init__`` (which starts accepting)."""

    name = "fake"
    sock: socket.socket
    port: int
    stop: threading.Event

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name=self.name).start()

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
                             name=f"{self.name}-session").start()
        self.sock.close()

    @staticmethod
    def _read(client: socket.socket, n: int) -> bytes:
        """Exactly ``n`` bytes from ``client`` (ConnectionError when it closes first)."""
        data = b""
        while len(data) < n:
            chunk = client.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def _session(self, client: socket.socket) -> None:
        raise NotImplementedError


class SpoofedPostgres(Listener):
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

    name = "fake-pg"

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sessions = 0
        self.sent = 0  # bytes of the hostile answer sent
        self.passwords: list[bytes] = []
        self.hostile_done = threading.Event()
        super().__init__()

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


class SpoofedMaria(Listener):
    """A MariaDB server on 127.0.0.1: its first session, per ``mode``, switches to
    ``mysql_clear_password`` at authentication (``cleartext``: what it got is in
    :attr:`answers`, and an answer is taken with OK) or answers the first query with a LOAD
    DATA LOCAL request (``infile``); ``grants_error`` refuses every SHOW GRANTS (error 1142)
    in every session; other sessions, and every other command, are answered OK. With ``tls``
    (a context with the server's certificate) it offers TLS."""

    name = "fake-maria"

    def __init__(self, mode: str, tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.tls = tls
        self.sessions = 0
        self.answers: list[bytes] = []
        self.handshakes: list[bytes] = []  # each session's handshake response
        self.file_sent: list[bytes] = []
        self.hostile_done = threading.Event()
        super().__init__()

    @classmethod
    def _read_packet(cls, client: socket.socket) -> tuple[int, bytes]:
        head = cls._read(client, 4)
        return head[3], cls._read(client, head[0] | head[1] << 8 | head[2] << 16)

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

# The statement's time is the call's (240 s below), not the connector's default 10 s: the
# gated relays' slices on a loaded machine took longer than that (the watchdog cancelled
# them, "statement timed out", in a clean-clone CI run); the probes measure memory, not time.
connector = db_connector("m", {"kind": kind, "url_secret": "u", "max_result_bytes": cap,
                               "pool_size": 1, "statement_timeout_ms": 240_000})
backend = _make(connector, lambda name: url.encode())
backend.run("p", True, "SELECT 1", [], time.monotonic() + 30)
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak is measured from here
base = status("VmRSS")
try:
    answer = backend.run("p", query, sql, [], time.monotonic() + 240)
    growth = status("VmHWM") - base  # (before the decode below: the probe's own copy)
    out = answer.decode()
except Refused as exc:
    growth = status("VmHWM") - base
    out = f"{exc.status}: {exc}"
try:  # the connector afterwards (its connection kept, or replaced)
    after = backend.run("p", True, "SELECT 7", [], time.monotonic() + 30).decode()
except Refused as exc:
    after = f"{exc.status}: {exc}"
print(json.dumps({"status": out, "growth": growth, "after": after}))
"""


def _probe(kind: str, url: str, cap: int, sql: str, how: str = "query",
           prelude: str = "") -> dict[str, Any]:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root / "host"), str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", prelude + _PROBE, kind, url, str(cap), sql,
                           how],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _maria_url(server: Any) -> str:
    return str(server.database(f"mem_{time.time_ns() % 10**9}")).replace(
        f"{MARIA_USER}@", f"{MARIA_USER}:{MARIA_PASSWORD}@")


# -- a spoofed PostgreSQL whose start-up is hostile -------------------------------------------
class HostileStartPostgres(Listener):
    """A PostgreSQL server on 127.0.0.1 whose every session runs ``mode``'s start-up; what
    the client sent after the start-up message is kept in :attr:`got` (a password would be
    there), and whether a session ended in :attr:`ended`.

    * ``auth_error_huge``: an ErrorResponse of 1 GiB announced instead of an authentication
      request, sent for ever;
    * ``notice_huge``: AuthenticationOk, then a NoticeResponse of 1 GiB, sent for ever;
    * ``params_forever``: AuthenticationOk, then ParameterStatus messages of new names for
      ever;
    * ``keys_forever``: AuthenticationOk, then BackendKeyData for ever;
    * ``ssl_no``: answers SSLRequest 'N' and asks for the password in clear;
    * ``tls_cleartext``: TLS with ``tls`` (any certificate), then the password in clear;
    * ``tls_scram_no_plus``: TLS, then SCRAM offered without its channel-binding variant;
    * ``scram_bad_nonce``: SCRAM whose server nonce does not extend the client's;
    * ``md5``: asks for an MD5 password;
    * ``hang_side_huge``: the first session never answers its first query; later ones (the
      side connection of the deadline's terminate) run ``notice_huge``;
    * ``query_notice_huge``: an honest start-up, then a NoticeResponse of 1 GiB, sent for
      ever, in answer to the host's first simple-protocol statement (the privileges check,
      a SET, BEGIN, DISCARD ALL).
    """

    name = "fake-pgstart"

    def __init__(self, mode: str, tls: ssl.SSLContext | None = None) -> None:
        self.mode = mode
        self.tls = tls
        self.got: list[bytes] = []
        self.ssl_requested = False
        self.sessions = 0
        self.ended = threading.Event()
        self.sent = 0
        super().__init__()

    def _message(self, client: socket.socket) -> bytes:
        kind = self._read(client, 1)
        size = struct.unpack("!I", self._read(client, 4))[0]
        body = kind + self._read(client, size - 4)
        self.got.append(body)
        return body

    def _flood(self, client: socket.socket, first: bytes, block: bytes) -> None:
        client.sendall(first)
        while not self.stop.is_set():
            client.sendall(block)
            self.sent += len(block)

    def _session(self, client: socket.socket) -> None:
        client.settimeout(30)
        mode = self.mode
        try:
            with client:
                length, code = struct.unpack("!II", self._read(client, 8))
                if code == 80877103:  # SSLRequest
                    self.ssl_requested = True
                    if self.tls is not None:
                        client.sendall(b"S")
                        client = self.tls.wrap_socket(client, server_side=True)
                    else:
                        client.sendall(b"N")
                    length, code = struct.unpack("!II", self._read(client, 8))
                self._read(client, length - 8)
                if code == 80877102:  # CancelRequest
                    return
                ok = _msg(b"R", struct.pack("!I", 0))
                self.sessions += 1
                if mode == "hang_side_huge":
                    # The first session never answers its first query; the next (the side
                    # connection of the deadline's terminate) gets a notice of 1 GiB.
                    mode = "hang" if self.sessions == 1 else "notice_huge"
                if mode == "hang":
                    client.sendall(_WELCOME)
                    while True:
                        if self._message(client)[:1] == b"S":  # a query's Sync: no answer
                            while client.recv(4096):
                                pass
                            return
                if mode == "auth_error_huge":
                    self._flood(client, b"E" + struct.pack("!I", 1 << 30) + b"SFATAL\0M",
                                b"e" * 65536)
                elif mode == "notice_huge":
                    self._flood(client, ok + b"N" + struct.pack("!I", 1 << 30) + b"SNOTICE\0M",
                                b"n" * 65536)
                elif mode == "params_forever":
                    client.sendall(ok)
                    n = 0
                    while not self.stop.is_set():
                        block = b"".join(_msg(b"S", b"p%d\0v\0" % i)
                                         for i in range(n, n + 2048))
                        n += 2048
                        client.sendall(block)
                        self.sent += len(block)
                elif mode == "keys_forever":
                    self._flood(client, ok, _msg(b"K", struct.pack("!II", 1, 2)) * 4096)
                elif mode in ("ssl_no", "tls_cleartext"):
                    client.sendall(_msg(b"R", struct.pack("!I", 3)))
                    self._message(client)
                elif mode in ("tls_scram_no_plus", "scram_bad_nonce"):
                    client.sendall(_msg(b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0"))
                    first = self._message(client)
                    if mode == "scram_bad_nonce":
                        salt = base64.b64encode(b"0123456789abcdef")
                        client.sendall(_msg(b"R", struct.pack("!I", 11) +
                                            b"r=forgedNonceNotTheClients,s=" + salt +
                                            b",i=4096"))
                        self._message(client)
                    del first
                elif mode == "query_notice_huge":
                    client.sendall(_WELCOME)
                    while True:  # the host's first simple-protocol statement: a 1 GiB notice
                        if self._message(client)[:1] == b"Q":
                            self._flood(client, b"N" + struct.pack("!I", 1 << 30) +
                                        b"SNOTICE\0M", b"n" * 65536)
                            return
                elif mode == "md5":
                    client.sendall(_msg(b"R", struct.pack("!I", 5) + b"salt"))
                    self._message(client)
                    client.sendall(_msg(b"E", b"SFATAL\0C28P01\0Mpassword authentication "
                                              b"failed\0\0"))
        except (ConnectionError, OSError):
            pass
        finally:
            client.close()  # (the TLS socket, when it was wrapped)
            self.ended.set()


def _server_tls(ca: CertAuthority) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca.cert, ca.key)
    return context


def _backend(kind: str, port: int, query: str = "", host: str = "127.0.0.1",
             **extra: Any) -> Any:
    """A one-connection backend of connector ``spoof`` to ``host:port``, URL query
    ``query``, its password :data:`PASSWORD`."""
    scheme = "postgresql" if kind == "postgres" else "mysql"
    connector = db_connector("spoof", {"kind": kind,
                                       "url": f"{scheme}://u@{host}:{port}/d{query}",
                                       "secret": "pw", "pool_size": 1, **extra})
    return _make(connector, lambda name: PASSWORD.encode())


def _refused(backend: Any, deadline_s: float, *, close: bool = True
             ) -> tuple[Refused, float]:
    """The refusal of ``SELECT 1`` through ``backend`` within ``deadline_s``, and the time
    it took; the backend closed after unless ``close`` is false."""
    started = time.monotonic()
    try:
        with pytest.raises(Refused) as info:
            backend.run("p", True, "SELECT 1", [], started + deadline_s)
    finally:
        if close:
            backend.close()
    return info.value, time.monotonic() - started


def _no_password(server: HostileStartPostgres) -> None:
    assert all(PASSWORD.encode() not in got for got in server.got), server.got


# A child process: the peak of its resident memory while it tries to connect to a spoofed
# server (C's, libpq's buffer, included).
_CONNECT_PROBE = r"""
import json, sys, time
from omnicore.egress.db import db_connector
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))

connector = db_connector("m", {"kind": sys.argv[1], "url": sys.argv[2], "secret": "pw",
                               "pool_size": 1, "max_result_bytes": 1 << 20})
backend = _make(connector, lambda name: b"pw")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS")
started = time.monotonic()
try:
    out = backend.run("p", True, "SELECT 1", [], started + float(sys.argv[3])).decode()
except Refused as exc:
    out = f"{exc.status}: {exc}"
took = time.monotonic() - started
from omnicore.egress.db.base import _SIDE
# The side pool's work (a KILL, a terminate) done too: idle for a whole second (the cut
# submits it from the watchdog's thread just after it wakes the call).
until, quiet = time.monotonic() + 15, 0
while time.monotonic() < until and quiet < 20:
    idle = _SIDE._work_queue.empty() and _SIDE._idle_semaphore._value == len(_SIDE._threads)
    quiet = quiet + 1 if idle else 0
    time.sleep(0.05)
print(json.dumps({"status": out, "growth": status("VmHWM") - base, "took": took}))

"""


def _connect_probe(kind: str, url: str, deadline_s: float) -> dict[str, Any]:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root / "host"), str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", _CONNECT_PROBE, kind, url, str(deadline_s)],
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- a PostgreSQL whose large messages arrive while the host is not looking -----------------
# The probe above, in a process that stops after each count of what waits on its socket
# (pg_wire.fetch's FIONREAD) until the relay below says go: what a loaded machine does to
# the host when it is descheduled between counting the bytes and libpq's read of them, held
# with a gate instead of left to the scheduler.
_GATED = r"""
import fcntl, socket, sys, termios
_gate = socket.create_connection(("127.0.0.1", int(sys.argv[6])))
_ioctl = fcntl.ioctl

def _gated(fd, request, *args):
    out = _ioctl(fd, request, *args)
    if request == termios.FIONREAD:
        _gate.sendall(b"c")  # counted
        if _gate.recv(1) != b"g":
            raise SystemExit("the relay closed the gate")
    return out

fcntl.ioctl = _gated
"""


def _tcp_queue(local: int, remote: int) -> int | None:
    """The bytes waiting unread on the loopback TCP socket from port ``local`` to port
    ``remote`` (the kernel's receive queue, /proc/net/tcp; None: no such socket)."""
    key = f"0100007F:{local:04X} 0100007F:{remote:04X} 01 "
    with open("/proc/net/tcp") as table:
        for line in table:
            at = line.find(key)
            if at >= 0:
                return int(line[at + len(key):].split()[0].split(":")[1], 16)
    return None


class SlicingRelay(Listener):
    """A TCP relay on 127.0.0.1 to the PostgreSQL server on ``target`` whose messages from
    the server of more than ``large`` bytes reach the client in slices, each while the
    client is stopped between its count of what waits on its socket and its read (the
    :data:`_GATED` probe, whose gate connects to :attr:`gate_port`):

    a slice of ``piece`` bytes (under what pg_wire.fetch reads without looking at libpq's
    buffer) wakes the client; it counts it and stops; ``batch`` bytes more are put on its
    socket (delivered: the kernel's receive queue holds them); it goes on and libpq reads
    all of it; once it has (the queue empty), the next slice. Every other message is
    forwarded as it comes, those after a large one once it is all sent."""

    name = "fake-slicing"

    def __init__(self, target: int, *, large: int = 1 << 20, piece: int = 1024,
                 batch: int = 32 << 10) -> None:
        self.target, self.large, self.piece, self.batch = target, large, piece, batch
        self.lock = threading.Lock()
        self.rest = memoryview(b"")  # what is left to send of the large message
        self.sent = threading.Event()  # ... all of it sent
        self.client: socket.socket | None = None
        self.ports = (0, 0)  # the client's and the relay's end of the client's connection
        self.sliced = 0  # large messages sent in slices
        self.gate = socket.create_server(("127.0.0.1", 0))
        self.gate_port = self.gate.getsockname()[1]
        super().__init__()
        threading.Thread(target=self._gatekeeper, daemon=True, name=f"{self.name}-gate").start()

    def _queued(self) -> int:
        got = _tcp_queue(*self.ports)
        assert got is not None, "the client's connection to the relay is gone"
        return got

    def _gatekeeper(self) -> None:
        self.gate.settimeout(30)
        try:
            gate, _ = self.gate.accept()
        except OSError:
            return
        gate.settimeout(None)
        with gate:
            while True:
                if not select.select([gate], [], [], 0.0005)[0]:
                    # No count: once libpq has read all that was put on its socket, the
                    # next slice wakes it (the first one too: libpq may have read it with
                    # what came before it, after a count the relay let go at once).
                    with self.lock:
                        if self.client is not None and self.rest and not self._gone() \
                                and _tcp_queue(*self.ports) == 0:
                            self.client.sendall(self.rest[:self.piece])
                            self.rest = self.rest[self.piece:]
                            if not self.rest:
                                self.sent.set()
                    continue
                if not gate.recv(1):
                    return
                with self.lock:
                    client, rest = self.client, self.rest
                    if client is None or not rest or self._gone():
                        gate.sendall(b"g")
                        continue
                    # Stopped after its count: a batch more put on its socket, then go
                    # (unless its connection is gone since: a watchdog's cut, say, from
                    # another thread of the probe; the gate is not the place to fail).
                    before = _tcp_queue(*self.ports)
                    if before is None:
                        gate.sendall(b"g")
                        continue
                    batch, rest = rest[:self.batch], rest[self.batch:]
                    client.sendall(batch)
                    eventually(lambda: self._queued() >= before + len(batch),  # noqa: B023
                               "the batch in the client's receive queue", every=0.0005)
                    self.rest = rest
                    gate.sendall(b"g")
                    if not rest:
                        self.sent.set()

    def _gone(self) -> bool:
        """Whether the client closed its connection (its result refused while the relay
        sliced it): what is left of the large message is dropped."""
        if _tcp_queue(*self.ports) is not None:
            return False
        self.rest = memoryview(b"")
        self.sent.set()
        return True

    def _session(self, client: socket.socket) -> None:
        server = self._relayed(client)
        try:
            while True:
                head = self._read(server, 5)
                message = head + self._read(server, struct.unpack("!I", head[1:])[0] - 4)
                if len(message) <= self.large:
                    client.sendall(message)
                    continue
                with self.lock:  # (the gatekeeper sends the rest)
                    self.client = client
                    self.ports = (client.getpeername()[1], client.getsockname()[1])
                    self.sliced += 1
                    self.sent.clear()
                    self.rest = memoryview(message)[self.piece:]
                    client.sendall(message[:self.piece])
                self.sent.wait()
        except (ConnectionError, OSError):
            pass
        finally:
            client.close()
            server.close()

    def _relayed(self, client: socket.socket) -> socket.socket:
        """The server's end of ``client``'s session, what the client sends relayed to it on a
        thread of its own (``_upstream``); the caller relays what the server answers."""
        server = socket.create_connection(("127.0.0.1", self.target))
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=self._upstream, args=(client, server), daemon=True,
                         name=f"{self.name}-up").start()
        return server

    def _upstream(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                server.sendall(data)
        except OSError:
            pass
        finally:
            try:
                server.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self) -> None:
        super().close()
        self.gate.close()


class JoiningRelay(SlicingRelay):
    """A TCP relay on 127.0.0.1 to the PostgreSQL server on ``target`` that makes libpq read
    the end of the first DataRow of more than ``large`` bytes and the first ``carry`` bytes
    of the message after it (the next row) in one read, as a host descheduled while the
    server sent both does:

    the row is forwarded but its last ``tail`` bytes; then, at the client's next count of
    what waits on its socket (the :data:`_GATED` probe, stopped there), the rest of the row
    and ``carry`` bytes of the next message are put on its socket (the kernel's receive
    queue holds them: the probe's receive buffer is enlarged, :data:`_JOINED`) before it
    goes on, so that libpq's one read takes them all. (While no count comes, a piece of the
    tail at a time wakes it.) The rest is forwarded once libpq's read is over (the probe
    waits for its socket), then as it comes. With ``carry`` past the next message, that
    message comes whole in the read."""

    name = "fake-joining"

    def __init__(self, target: int, *, carry: int, large: int = 1 << 20,
                 tail: int = 256 << 10) -> None:
        self.carry, self.tail = carry, tail
        self.armed = False  # the next count is held while the join is put on the socket
        self.joined = 0  # joins done
        self.wakes = 0  # pieces of the tail sent to wake the client
        self.pid = 0  # the probe's (it says it first on its gate)
        super().__init__(target, large=large)

    def _asleep(self) -> bool:
        """Whether the probe's main thread sleeps (in its wait for the socket: it reads
        without blocking, and stops at the gate only after a count) with nothing left
        unread on its socket: libpq's read of the join is over (or the connection is gone:
        the result was refused)."""
        queued = _tcp_queue(*self.ports)
        if queued is None:
            return True  # (the client closed its connection: a refusal)
        with open(f"/proc/{self.pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
        return state == "S" and queued == 0

    def _gatekeeper(self) -> None:
        self.gate.settimeout(30)
        try:
            gate, _ = self.gate.accept()
        except OSError:
            return
        gate.settimeout(None)
        with gate:
            line = b""
            while not line.endswith(b"\n"):  # the probe's pid first (:data:`_JOINED`)
                line += gate.recv(1)
            self.pid = int(line)
            while True:
                if select.select([gate], [], [], 0.0005)[0]:
                    if not gate.recv(1):
                        return
                    with self.lock:
                        if self.armed and self.client is not None:
                            # Stopped after its count: the join on its socket, then go.
                            before, rest = self._queued(), self.rest
                            self.client.sendall(rest)
                            eventually(lambda: self._queued() >= before + len(rest),  # noqa: B023
                                       "the join in the client's receive queue", every=0.0005)
                            self.rest, self.armed = memoryview(b""), False
                            self.joined += 1
                            self.sent.set()
                    gate.sendall(b"g")
                    continue
                with self.lock:  # no count: wake the client with a piece of the tail
                    if self.armed and self.client is not None and \
                            len(self.rest) > self.carry + self.piece and \
                            _tcp_queue(*self.ports) == 0:
                        self.client.sendall(self.rest[:self.piece])
                        self.rest = self.rest[self.piece:]
                        self.wakes += 1

    def _session(self, client: socket.socket) -> None:
        server = self._relayed(client)
        try:
            while True:
                head = self._read(server, 5)
                message = head + self._read(server, struct.unpack("!I", head[1:])[0] - 4)
                if len(message) <= self.large or head[:1] != b"D" or self.joined:
                    client.sendall(message)
                    continue
                # The next message's first bytes, read ahead (the rest forwarded after).
                after = self._read(server, 5)
                body = struct.unpack("!I", after[1:])[0] - 4
                carried = self._read(server, min(body, self.carry - 5))
                with self.lock:
                    self.client = client
                    self.ports = (client.getpeername()[1], client.getsockname()[1])
                    self.sent.clear()
                    self.rest = memoryview(message[-self.tail:] + after + carried)
                client.sendall(message[:-self.tail])
                with self.lock:
                    self.armed = True
                self.sent.wait()
                # Nothing more until libpq's read of the join is over (else the rest would
                # come in the same read while the relay's thread runs beside the probe's).
                eventually(self._asleep, "the probe waiting for its socket", every=0.0005)
                if body > len(carried):
                    client.sendall(self._read(server, body - len(carried)))
        except (ConnectionError, OSError):
            pass
        finally:
            client.close()
            server.close()


#: Appended to :data:`_GATED` for :class:`JoiningRelay`: the probe says its pid on its gate,
#: and its socket gets a receive buffer of 32 MiB at its first count (SO_RCVBUFFORCE, as
#: root; SO_RCVBUF, capped by net.core.rmem_max, else), so that the kernel holds what the
#: relay puts on it for one read (a host whose net.ipv4.tcp_rmem lets TCP grow a
#: connection's buffer that far gets as much).
_JOINED = r"""
import os
_gate.sendall(b"%d\n" % os.getpid())
_sized = set()
_count = _gated

def _gated(fd, request, *args):
    if request == termios.FIONREAD and fd not in _sized:
        _sized.add(fd)
        sock = socket.socket(fileno=fd)
        try:
            try:
                sock.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)  # SO_RCVBUFFORCE
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
        finally:
            sock.detach()
    return _count(fd, request, *args)

fcntl.ioctl = _gated
"""

#: Appended to a probe: libpq's input buffer taken for not found (a libpq whose PGconn
#: layout moved), before the connector opens its first connection.
_UNKNOWN_BUFFER = r"""
from omnicore.egress.db import pg_wire as _pg_wire
_pg_wire._in_offset[:] = [None]
"""


def _gated_probe(url: str, cap: int, sql: str, relay: SlicingRelay,
                 prelude: str = "") -> dict[str, Any]:
    """:func:`_probe` of PostgreSQL through ``relay``: the probe's process stopped after each
    count of its socket's bytes until the relay lets it go (``prelude``: run first, after
    the gate is set)."""
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(root / "host"), str(root), os.environ.get("PYTHONPATH", "")])}
    port = url.rsplit(":", 1)[1].split("/", 1)[0]
    url = url.replace(f":{port}/", f":{relay.port}/")
    done = subprocess.run([sys.executable, "-c", _GATED + prelude + _PROBE, "postgres", url,
                           str(cap), sql, "query", str(relay.gate_port)],
                          capture_output=True, text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
