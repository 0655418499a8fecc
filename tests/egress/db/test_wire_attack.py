"""Attacks on the connectors' wire and authority of our own design (specs/abi.md §4.10-§4.12),
beyond tests/egress/db/test_hostile_wire.py and test_tls.py: spoofed PostgreSQL and MariaDB
servers that misbehave at start-up (huge or endless messages before the session is ready,
a TLS downgrade, a TLS certificate of another CA, SCRAM with a forged nonce, an unknown
authentication plugin, a greeting past the packet cap, packets nobody asked for), and real
servers' roles that change under the connector. Each call ends within its deadline with a
status, no password leaves the host, and no thread of the host outlives the call.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pymysql import _auth

from omnicore.egress.db import db_connector
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused
from tests.db_fixtures import maria  # noqa: F401 - a fixture
from tests.dbservers import CertAuthority, MariaDB
from tests.egress.db.spoofed import (
    _GREETING,
    _OK,
    _SALT,
    _TLS_GREETING,
    PASSWORD,
    SLACK,
    HostileStartPostgres,
    SpoofedMaria,
    _backend,
    _connect_probe,
    _host_threads,
    _no_password,
    _no_thread_left,
    _packet,
    _refused,
    _server_tls,
)


@pytest.fixture
def hostile_pg() -> Iterator[Callable[..., HostileStartPostgres]]:
    made: list[HostileStartPostgres] = []

    def start(mode: str, tls: ssl.SSLContext | None = None) -> HostileStartPostgres:
        server = HostileStartPostgres(mode, tls)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()


@pytest.fixture(scope="module")
def ca() -> CertAuthority:
    folder = Path(tempfile.mkdtemp(prefix="omnicore-attack-ca-"))
    return CertAuthority.make(folder)


def test_pg_a_huge_error_instead_of_authentication_is_refused_unread(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    server = hostile_pg("auth_error_huge")
    before = _host_threads()
    refused, took = _refused(_backend("postgres", server.port), 5.0)
    assert refused.status == "UNAVAILABLE", refused
    # libpq refuses an error over 30000 bytes before authentication from its header.
    assert took < 2.0, took
    assert server.ended.wait(10)
    assert server.sent < 64 << 20, server.sent
    _no_password(server)
    _no_thread_left(before)


@pytest.mark.parametrize("mode", ["params_forever", "keys_forever"])
def test_pg_endless_start_up_messages_end_at_the_deadline(
        hostile_pg: Callable[..., HostileStartPostgres], mode: str) -> None:
    server = hostile_pg(mode)
    before = _host_threads()
    refused, took = _refused(_backend("postgres", server.port), 2.0)
    assert refused.status == "UNAVAILABLE", refused
    assert took < 2.0 + SLACK, took
    assert server.ended.wait(10)
    _no_thread_left(before)


def test_pg_sslmode_require_refuses_a_server_without_tls(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    server = hostile_pg("ssl_no")
    before = _host_threads()
    refused, _ = _refused(_backend("postgres", server.port, "?sslmode=require"), 5.0)
    assert (refused.status, "TLS failed" in str(refused)) == ("UNAVAILABLE", True), refused
    assert server.ssl_requested and server.got == []  # not even the start-up message
    _no_thread_left(before)


def test_pg_disable_never_asks_for_tls_and_gives_the_clear_request_nothing(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    server = hostile_pg("ssl_no")
    refused, _ = _refused(_backend("postgres", server.port), 5.0)
    assert refused.status == "DENIED" and "in clear" in str(refused), refused
    assert not server.ssl_requested
    _no_password(server)


def test_pg_tls_without_verification_gives_the_clear_request_nothing(
        hostile_pg: Callable[..., HostileStartPostgres], ca: CertAuthority) -> None:
    """Encrypted is not verified: under require (any certificate) a spoofed server that asks
    for the password in clear gets nothing."""
    server = hostile_pg("tls_cleartext", _server_tls(ca))
    refused, _ = _refused(_backend("postgres", server.port, "?sslmode=require"), 5.0)
    assert refused.status == "DENIED" and "in clear" in str(refused), refused
    _no_password(server)


def test_pg_verify_ca_refuses_a_certificate_of_another_ca(
        hostile_pg: Callable[..., HostileStartPostgres], ca: CertAuthority) -> None:
    server = hostile_pg("tls_cleartext", _server_tls(ca))
    refused, _ = _refused(_backend("postgres", server.port,
                                   f"?sslmode=verify-ca&sslrootcert={ca.other_ca}"), 5.0)
    assert refused.status == "UNAVAILABLE" and "TLS failed" in str(refused), refused
    assert server.got == []
    _no_password(server)


def test_pg_verify_full_refuses_a_valid_certificate_for_another_host(
        hostile_pg: Callable[..., HostileStartPostgres], ca: CertAuthority) -> None:
    """The CA signed the certificate, for localhost: a URL naming 127.0.0.1 is refused under
    verify-full before the password is asked for."""
    server = hostile_pg("tls_cleartext", _server_tls(ca))
    refused, _ = _refused(_backend("postgres", server.port,
                                   f"?sslmode=verify-full&sslrootcert={ca.ca}"), 5.0)
    assert refused.status == "UNAVAILABLE" and "TLS failed" in str(refused), refused
    assert server.got == []


def test_pg_verify_full_to_the_right_host_sends_the_clear_password(
        hostile_pg: Callable[..., HostileStartPostgres], ca: CertAuthority) -> None:
    """The control of the two above: the same server named as its certificate says is
    verified, and only then is it answered in clear (what §4.12 allows)."""
    server = hostile_pg("tls_cleartext", _server_tls(ca))
    _refused(_backend("postgres", server.port, f"?sslmode=verify-full&sslrootcert={ca.ca}",
                      host="localhost"), 3.0)
    assert server.got and PASSWORD.encode() in server.got[0]


def test_pg_tls_without_channel_binding_offered_is_refused_under_require(
        hostile_pg: Callable[..., HostileStartPostgres], ca: CertAuthority) -> None:
    """A man in the middle terminates TLS and offers plain SCRAM: channel binding is
    required over unverified TLS, so the client refuses before any proof is sent."""
    server = hostile_pg("tls_scram_no_plus", _server_tls(ca))
    refused, _ = _refused(_backend("postgres", server.port, "?sslmode=require"), 5.0)
    assert refused.status == "DENIED", refused
    assert server.got == []


def test_pg_scram_with_a_forged_server_nonce_sends_no_proof(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    server = hostile_pg("scram_bad_nonce")
    before = _host_threads()
    refused, _ = _refused(_backend("postgres", server.port), 5.0)
    assert refused.status in ("DENIED", "UNAVAILABLE"), refused
    # The client-first message only: no client-final (its proof) after the forged nonce.
    assert len(server.got) == 1 and b"SCRAM-SHA-256" in server.got[0], server.got
    _no_password(server)
    _no_thread_left(before)


def _password_messages(server: HostileStartPostgres) -> list[bytes]:
    """The PasswordMessages the server got (``p``: the password in clear, or ``md5`` and
    the salted hash)."""
    return [got for got in server.got if got[:1] == b"p"]


def test_pg_md5_without_verified_tls_sends_nothing_and_says_what_to_do(
        hostile_pg: Callable[..., HostileStartPostgres], ca: CertAuthority) -> None:
    """An MD5 request is refused before anything is sent, in clear or over TLS that did not
    check the server (require; verify-ca of a certificate for another name): a spoofed
    server that asks for MD5 instead of SCRAM gets no hash to guess against."""
    before = _host_threads()
    for query, tls, host in (("", None, "127.0.0.1"),
                             ("?sslmode=require", _server_tls(ca), "127.0.0.1"),
                             (f"?sslmode=verify-ca&sslrootcert={ca.ca}", _server_tls(ca),
                              "127.0.0.1")):
        server = hostile_pg("md5", tls)
        refused, took = _refused(_backend("postgres", server.port, query, host=host), 5.0)
        assert (refused.status, str(refused)) == (
            "DENIED", "connector spoof: the server asked for an MD5 hash of the password, "
                      "which goes only to a server TLS verified (sslmode=verify-full); use "
                      "SCRAM on the server (password_encryption = 'scram-sha-256', then set "
                      "the role's password again), give the connector sslmode=verify-full, or "
                      "set connectors.spoof.password_to_unverified_server: allow"), query
        assert took < 5.0, took
        assert _password_messages(server) == [], (query, server.got)
        _no_password(server)
    _no_thread_left(before)


def test_pg_md5_and_cleartext_go_to_a_verified_server(
        hostile_pg: Callable[..., HostileStartPostgres], ca: CertAuthority) -> None:
    """The control: named as its certificate says, under verify-full, the server is answered
    (the hash for MD5, the password for cleartext)."""
    for mode in ("md5", "tls_cleartext"):
        server = hostile_pg(mode, _server_tls(ca))
        _refused(_backend("postgres", server.port, f"?sslmode=verify-full&sslrootcert={ca.ca}",
                          host="localhost"), 3.0)
        sent = _password_messages(server)
        assert len(sent) == 1, (mode, server.got)
        assert (sent[0][1:4] == b"md5") if mode == "md5" else PASSWORD.encode() in sent[0]


def test_pg_password_to_unverified_server_allow_answers_md5_and_cleartext(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    """The operator's explicit exception, per connector: then the server that asks gets the
    hash, or the password in clear (plain TCP here)."""
    for mode in ("md5", "ssl_no"):
        server = hostile_pg(mode)
        _refused(_backend("postgres", server.port,
                          password_to_unverified_server="allow"), 3.0)
        sent = _password_messages(server)
        assert len(sent) == 1, (mode, server.got)
        assert (sent[0][1:4] == b"md5") if mode == "md5" else PASSWORD.encode() in sent[0]


def test_maria_password_to_unverified_server_allow_answers_mysql_clear_password() -> None:
    """MariaDB's mysql_clear_password on plain TCP: refused by default, the password unsent;
    answered under the operator's allow."""
    for allow, sent in (({}, False),
                        ({"password_to_unverified_server": "allow"}, True)):
        server = SpoofedMaria("cleartext")
        try:
            backend = _backend("mysql", server.port, **allow)
            if sent:
                assert backend.run("p", True, "SELECT 1", [], time.monotonic() + 5) == \
                    b'{"columns":[],"rows":[]}'
                backend.close()
            else:
                refused, _ = _refused(backend, 5.0)
                assert refused.status == "DENIED", refused
                assert "'mysql_clear_password', which shows it the password" in str(refused)
                assert "connectors.spoof.password_to_unverified_server: allow" in \
                    str(refused)
            assert server.hostile_done.wait(10)
            assert server.answers == ([PASSWORD.encode() + b"\0"] if sent else []), allow
        finally:
            server.close()


def test_maria_native_password_goes_over_plain_tcp() -> None:
    """mysql_native_password is a scramble of the password with the server's 20-byte salt
    (specs/abi.md §4.12, Passwords): answered without TLS, the password never in it."""
    server = SpoofedMaria("ok")
    try:
        backend = _backend("mysql", server.port)
        assert backend.run("p", True, "SELECT 1", [], time.monotonic() + 5) == \
            b'{"columns":[],"rows":[]}'
        backend.close()
        scramble = _auth.scramble_native_password(PASSWORD.encode(), _SALT)
        assert server.handshakes and scramble in server.handshakes[0]
        assert PASSWORD.encode() not in server.handshakes[0]
    finally:
        server.close()


def test_pg_a_huge_notice_at_start_up_costs_no_more_than_the_cap(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    """After AuthenticationOk libpq takes a NoticeResponse of any length whole: a server
    sending one of 1 GiB had libpq's buffer grow for the whole connect timeout."""
    server = hostile_pg("notice_huge")
    measured = _connect_probe("postgres", f"postgresql://u@127.0.0.1:{server.port}/d", 4.0)
    assert measured["status"].startswith("UNAVAILABLE"), measured
    assert measured["growth"] <= 64 << 20, measured


def test_pg_endless_parameters_at_start_up_cost_bounded_memory(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    """Each ParameterStatus of a new name is a new entry in libpq's list, for the whole
    connect timeout."""
    server = hostile_pg("params_forever")
    measured = _connect_probe("postgres", f"postgresql://u@127.0.0.1:{server.port}/d", 4.0)
    assert measured["status"].startswith("UNAVAILABLE"), measured
    assert measured["growth"] <= 64 << 20, measured


# -- a spoofed MariaDB ------------------------------------------------------------------------
class HostileMaria(SpoofedMaria):
    """:class:`SpoofedMaria` with more modes for its first session:

    * ``unknown_plugin``: switches authentication to a plugin nobody knows;
    * ``dialog``: switches to ``dialog`` (PAM: the password in clear);
    * ``huge_greeting``: a greeting of 16 MiB announced, sent for ever;
    * ``extra_packet``: answers the first query honestly, then sends an OK nobody asked for;
    * ``grants_forever``: answers the privileges check (SHOW GRANTS) with rows for ever;
    * ``columns_forever``: answers the first query with 2**40 columns announced, their
      definitions sent for ever;
    * ``hang_side_huge``: never answers the first query; every later session (the side
      connection of the deadline's KILL QUERY) gets a greeting of 16 MiB frames for ever.
    """

    def _session(self, client: socket.socket) -> None:
        if self.mode in ("unknown_plugin", "dialog", "huge_greeting", "extra_packet",
                         "grants_forever", "columns_forever", "hang_side_huge", "sha2_full"):
            return self._hostile_session(client)
        return super()._session(client)

    def _hostile_session(self, client: socket.socket) -> None:
        client.settimeout(30)
        self.sessions += 1
        hostile = self.sessions == 1
        try:
            with client:
                if (hostile and self.mode == "huge_greeting") or \
                        (not hostile and self.mode == "hang_side_huge"):
                    frame = b"\x0a" + b"g" * (0xFFFFFF - 1)  # frames of 16 MiB, for ever
                    seq = 0
                    while not self.stop.is_set():
                        client.sendall(b"\xff\xff\xff" + bytes([seq]) + frame)
                        seq = (seq + 1) % 256
                    return
                client.sendall(_packet(0, _GREETING if self.tls is None else _TLS_GREETING))
                seq, _ = self._read_packet(client)
                if hostile and self.mode == "sha2_full":
                    # caching_sha2_password: the fast path "failed", full authentication asked
                    # (the password in clear, or RSA-encrypted to a key the server sends).
                    client.sendall(_packet(seq + 1, b"\xfecaching_sha2_password\0" +
                                           _SALT + b"\0"))
                    try:
                        seq, answer = self._read_packet(client)
                        self.answers.append(answer)
                        client.sendall(_packet(seq + 1, b"\x01\x04"))
                        self.answers.append(self._read_packet(client)[1])
                    except (ConnectionError, OSError):
                        pass
                    return
                if hostile and self.mode in ("unknown_plugin", "dialog"):
                    name = b"evil_plugin" if self.mode == "unknown_plugin" else b"dialog"
                    client.sendall(_packet(seq + 1, b"\xfe" + name + b"\0" + b"x" * 20 + b"\0"))
                    try:
                        self.answers.append(self._read_packet(client)[1])
                    except (ConnectionError, OSError):
                        pass
                    return
                client.sendall(_packet(seq + 1, _OK))
                queries = 0
                while not self.stop.is_set():
                    _, command = self._read_packet(client)
                    if command[:1] == b"\x01":
                        return
                    if hostile and self.mode == "grants_forever" and \
                            b"SHOW GRANTS" in command:
                        self._endless_rows(client)
                        return
                    if hostile and self.mode == "hang_side_huge" and b"SELECT 1" in command:
                        while client.recv(4096):  # never answered: the deadline's KILL
                            pass
                        return
                    if hostile and self.mode == "columns_forever" and \
                            b"SELECT 1" in command:
                        self._endless_columns(client)
                        return
                    if command[:1] == b"\x03" and b"SELECT 1" in command:
                        queries += 1
                        column = b"".join(bytes([len(t)]) + t for t in (
                            b"def", b"", b"", b"", b"x", b"")) + b"\x0c" + struct.pack(
                            "<HIBHBH", 45, 4, 253, 0, 0, 0)
                        answer = (_packet(1, b"\x01") + _packet(2, column) +
                                  _packet(3, b"\xfe\x00\x00\x02\x00") + _packet(4, b"\x011") +
                                  _packet(5, b"\xfe\x00\x00\x02\x00"))
                        if hostile and queries == 1:
                            answer += _packet(6, _OK)  # nobody asked for it
                        client.sendall(answer)
                        continue
                    client.sendall(_packet(1, _OK))
        except (ConnectionError, OSError):
            pass
        finally:
            if hostile:
                self.hostile_done.set()


    def _endless_columns(self, client: socket.socket) -> None:
        column = b"".join(bytes([len(t)]) + t for t in (
            b"def", b"", b"", b"", b"c" * 200, b"")) + b"\x0c" + struct.pack(
            "<HIBHBH", 45, 4, 253, 0, 0, 0)
        client.sendall(_packet(1, b"\xfe" + struct.pack("<Q", 1 << 40)))
        seq = 2
        while not self.stop.is_set():
            block = b""
            for _ in range(256):
                block += _packet(seq, column)
                seq = (seq + 1) % 256
            client.sendall(block)

    def _endless_rows(self, client: socket.socket) -> None:
        column = b"".join(bytes([len(t)]) + t for t in (
            b"def", b"", b"", b"", b"g", b"")) + b"\x0c" + struct.pack(
            "<HIBHBH", 45, 1024, 253, 0, 0, 0)
        client.sendall(_packet(1, b"\x01") + _packet(2, column) +
                       _packet(3, b"\xfe\x00\x00\x02\x00"))
        row = b"\xfc" + struct.pack("<H", 1000) + b"GRANT USAGE ON *.* TO x " + b"y" * 976
        seq = 4
        while not self.stop.is_set():
            block = b""
            for _ in range(64):
                block += _packet(seq, row)
                seq = (seq + 1) % 256
            client.sendall(block)


@pytest.fixture
def hostile_maria() -> Iterator[Callable[[str], HostileMaria]]:
    made: list[HostileMaria] = []

    def start(mode: str) -> HostileMaria:
        server = HostileMaria(mode)
        made.append(server)
        return server

    yield start
    for server in made:
        server.close()


@pytest.mark.parametrize("mode", ["unknown_plugin", "dialog"])
def test_maria_a_switch_to_a_plugin_not_allowed_gets_nothing(
        hostile_maria: Callable[[str], HostileMaria], mode: str) -> None:
    server = hostile_maria(mode)
    before = _host_threads()
    refused, took = _refused(_backend("mysql", server.port), 3.0)
    assert refused.status == "DENIED", refused
    name = "evil_plugin" if mode == "unknown_plugin" else "dialog"
    assert f"'{name}'" in str(refused), refused
    assert server.hostile_done.wait(5)
    assert all(PASSWORD.encode() not in a for a in server.answers), server.answers
    assert took < 3.0 + SLACK
    _no_thread_left(before)


def test_maria_a_greeting_past_the_packet_cap_is_refused_unread(
        hostile_maria: Callable[[str], HostileMaria]) -> None:
    server = hostile_maria("huge_greeting")
    before = _host_threads()
    refused, took = _refused(_backend("mysql", server.port, max_result_bytes=1 << 20), 5.0)
    assert refused.status in ("TOO_LARGE", "UNAVAILABLE"), refused
    assert took < 2.0, took
    _no_thread_left(before)


def test_maria_a_packet_nobody_asked_for_closes_the_connection(
        hostile_maria: Callable[[str], HostileMaria]) -> None:
    """An OK after a complete result sits on the socket: the next statement on the pooled
    connection reads it first (out of sequence, or a stale answer). The call must not be
    given that stale answer as its own, and the pool goes on."""
    server = hostile_maria("extra_packet")
    backend = _backend("mysql", server.port)
    before = _host_threads()
    try:
        first = backend.run("p", True, "SELECT 1", [], time.monotonic() + 3)
        assert first.endswith(b'[["1"]]}')
        outs: list[Any] = []
        for _ in range(2):
            try:
                outs.append(backend.run("p", True, "SELECT 1", [], time.monotonic() + 3))
            except Refused as exc:
                outs.append(exc)
        # Never a wrong answer: a refusal, or the right rows.
        assert all(isinstance(o, Refused) or o.endswith(b'[["1"]]}') for o in outs), outs
        # The connection after the refusal is a new, honest one.
        assert outs[-1] == first, outs
    finally:
        backend.close()
    _no_thread_left(before)


# -- real servers: roles that change under the connector ---------------------------------------
def _role(cluster: Any, db: str, attrs: str = "") -> str:
    role = f"atk_{time.time_ns() % 10**12}"
    cluster.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}' {attrs}")
    cluster.psql(f'GRANT CONNECT ON DATABASE "{db}" TO {role}')
    return role


def _pg_backend(pg_url: str, **extra: Any) -> Any:
    """A backend on ``pg_url`` (its owner's role) whose per-plugin roles' passwords are
    ``pw-<role>`` (the secret's name is the role)."""
    connector = db_connector("db", {"kind": "postgres", "url_secret": "url", "pool_size": 1,
                                    **extra})

    def read(name: str) -> bytes:
        return pg_url.encode() if name == "url" else f"pw-{name}".encode()
    return _make(connector, read)


def _rows(backend: Any, plugin: str, sql: str, deadline_s: float = 5.0) -> list[Any]:
    return list(json.loads(backend.run(plugin, True, sql, [], time.monotonic() + deadline_s))
                ["rows"])


def test_pg_a_role_made_superuser_after_its_first_connection_is_refused_at_its_next(
        pg_cluster: Any, pg_url: str) -> None:
    """The privileges are read at every new connection, not once per role: a role an
    operator (or a compromised admin tool) made superuser later is refused as soon as the
    pool opens a connection for it."""
    db = pg_url.rsplit("/", 1)[1]
    role = _role(pg_cluster, db)
    backend = _pg_backend(pg_url, plugins={"p": {"user": role, "secret": role}})
    try:
        assert _rows(backend, "p", "SELECT current_user") == [[role]]
        pg_cluster.psql(f"ALTER ROLE {role} SUPERUSER")
        backend.pool.discard_idle()  # the next call opens a new connection
        with pytest.raises(Refused) as info:
            backend.run("p", True, "SELECT 1", [], time.monotonic() + 5)
        assert info.value.status == "DENIED" and f"role {role} has superuser" in \
            str(info.value), info.value
    finally:
        backend.close()


def test_pg_privileges_warn_lets_a_superuser_connect_and_says_so_once(
        pg_cluster: Any, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = pg_url.rsplit("/", 1)[1]
    role = _role(pg_cluster, db, "SUPERUSER")
    backend = _pg_backend(pg_url, privileges="warn",
                          plugins={"p": {"user": role, "secret": role}})
    try:
        with caplog.at_level(logging.WARNING, logger="omnicore"):
            assert _rows(backend, "p", "SELECT current_user") == [[role]]
            backend.pool.discard_idle()
            assert _rows(backend, "p", "SELECT 1") == [[1]]
        said = [r.getMessage() for r in caplog.records if f"role {role} has superuser" in
                r.getMessage()]
        assert len(said) == 1 and "privileges: warn" in said[0], said
        # The gate still stands between the plugin and the superuser's powers.
        with pytest.raises(Refused) as info:
            backend.run("p", False, f"ALTER ROLE {role} NOSUPERUSER", [],
                        time.monotonic() + 5)
        assert info.value.status in ("DENIED", "INVALID"), info.value
    finally:
        backend.close()


def test_pg_read_only_with_a_plugins_writing_role_refuses_writes_and_names_that_role(
        pg_cluster: Any, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    db = pg_url.rsplit("/", 1)[1]
    pg_cluster.psql("CREATE TABLE items (id int PRIMARY KEY); ALTER TABLE items OWNER TO "
                    "omnicore", db=db)
    role = _role(pg_cluster, db)
    pg_cluster.psql(f"GRANT SELECT, INSERT ON items TO {role}", db=db)
    backend = _pg_backend(pg_url, read_only=True, pool_size=2,
                          plugins={"w": {"user": role, "secret": role}})
    try:
        with caplog.at_level(logging.WARNING, logger="omnicore"):
            assert _rows(backend, "p", "SELECT count(*) FROM items") == [[0]]
            assert _rows(backend, "w", "SELECT count(*) FROM items") == [[0]]
            with pytest.raises(Refused) as info:
                backend.run("w", False, "INSERT INTO items VALUES (1)", [],
                            time.monotonic() + 5)
        assert info.value.status == "DENIED" and "read-only" in str(info.value), info.value
        assert pg_cluster.psql("SELECT count(*) FROM items", db=db).strip() == "0"
        # The operator hears of each role that can write, the plugin's too.
        said = [r.getMessage() for r in caplog.records if "is read_only but its role" in
                r.getMessage()]
        assert any(f"its role {role} can write" in m for m in said), said
    finally:
        backend.close()


def test_pg_a_plugins_role_never_gets_another_plugins_session(
        pg_cluster: Any, pg_url: str) -> None:
    db = pg_url.rsplit("/", 1)[1]
    a, b = _role(pg_cluster, db), _role(pg_cluster, db)
    backend = _pg_backend(pg_url, plugins={"a": {"user": a, "secret": a},
                                           "b": {"user": b, "secret": b}})
    try:
        (pid_a, who_a), = _rows(backend, "a", "SELECT pg_backend_pid(), current_user")
        (pid_b, who_b), = _rows(backend, "b", "SELECT pg_backend_pid(), current_user")
        assert (who_a, who_b) == (a, b) and pid_a != pid_b
        # And b cannot reach a's backend: signalling another role's session is refused by
        # the gate (and by the server: a's role is not b's).
        with pytest.raises(Refused):
            backend.run("b", True, f"SELECT pg_cancel_backend({pid_b})", [],
                        time.monotonic() + 5)
        assert backend.pool.resets == 0
    finally:
        backend.close()


def test_pg_a_statement_killed_at_its_deadline_in_a_transaction_leaves_no_lock(
        pg_cluster: Any, pg_url: str) -> None:
    """A plugin's transaction takes a row lock, then its statement runs past the deadline:
    the call ends with a status, and once the call's end rolls back (as the host does at a
    call's end), the neighbour's write goes through at once; no thread is left."""
    db = pg_url.rsplit("/", 1)[1]
    pg_cluster.psql("CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0);"
                    "ALTER TABLE t OWNER TO omnicore", db=db)
    backend = _pg_backend(pg_url, pool_size=2)
    backend.reserve("a")
    backend.reserve("b")
    before = _host_threads()
    try:
        conn = backend.begin("a", time.monotonic() + 10)
        backend.run("a", False, "UPDATE t SET v = 1 WHERE id = 1", [], time.monotonic() + 5,
                    conn=conn)
        started = time.monotonic()
        with pytest.raises(Refused) as info:
            backend.run("a", True, "SELECT pg_sleep(30)", [], started + 1.0, conn=conn)
        assert info.value.status == "UNAVAILABLE" and "timed out" in str(info.value)
        assert time.monotonic() - started < 1.0 + SLACK
        backend.end("a", conn, False, time.monotonic() + 5)
        started = time.monotonic()
        assert backend.run("b", False, "UPDATE t SET v = 2 WHERE id = 1", [],
                           time.monotonic() + 3) == b'{"rows_affected":1}'
        assert time.monotonic() - started < 1.0
        assert backend.pool.in_use == 0
    finally:
        backend.close()
    _no_thread_left(before)


def test_pg_two_plugins_holding_transactions_and_waiting_leave_a_third_its_connection(
        pg_cluster: Any, pg_url: str) -> None:
    """a and b each hold a transaction (their share) and wait for more; c, granted too,
    gets its connection at once, and a's and b's waits end QUOTA at their deadlines."""
    backend = _pg_backend(pg_url, pool_size=3)
    for p in ("a", "b", "c"):
        backend.reserve(p)
    far = time.monotonic() + 30
    held = [backend.begin("a", far), backend.begin("b", far)]
    results: dict[str, Any] = {}

    def greedy(plugin: str) -> None:
        try:
            results[plugin] = backend.run(plugin, True, "SELECT 1", [], time.monotonic() + 2)
        except Refused as exc:
            results[plugin] = exc

    waiters = [threading.Thread(target=greedy, args=(p,)) for p in ("a", "b")]
    try:
        for w in waiters:
            w.start()
        started = time.monotonic()
        assert _rows(backend, "c", "SELECT 1", 1.0) == [[1]]
        assert time.monotonic() - started < 1.0
        for w in waiters:
            w.join(10)
        assert all(isinstance(results[p], Refused) and results[p].status == "QUOTA"
                   for p in ("a", "b")), results
    finally:
        for conn, plugin in zip(held, ("a", "b"), strict=True):
            backend.end(plugin, conn, False, time.monotonic() + 5)
        backend.close()


def test_pg_a_session_lock_of_a_plugin_killed_at_its_deadline_is_released(
        pg_cluster: Any, pg_url: str) -> None:
    """A function of the database's owner takes a session advisory lock (which survives the
    statement's cancel: it is not a transaction's), then the statement runs past the
    deadline. The leaver's deadline is spent, so its connection is closed rather than
    cleaned on the neighbour's time; the neighbour takes the same lock at once."""
    db = pg_url.rsplit("/", 1)[1]
    pg_cluster.psql(
        "CREATE FUNCTION grab(k bigint) RETURNS bigint LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_advisory_lock(k); RETURN k; END $$;"
        "ALTER FUNCTION grab(bigint) OWNER TO omnicore", db=db)
    backend = _pg_backend(pg_url, pool_size=1)
    before = _host_threads()
    try:
        started = time.monotonic()
        with pytest.raises(Refused) as info:
            backend.run("evil", True, "SELECT grab(42), pg_sleep(30)", [], started + 1.0)
        assert "timed out" in str(info.value)
        assert time.monotonic() - started < 1.0 + SLACK
        started = time.monotonic()
        assert _rows(backend, "shop", "SELECT grab(42)", 3.0) == [[42]]
        assert time.monotonic() - started < 1.5
    finally:
        backend.close()
    _no_thread_left(before)


def _maria_backend(maria: MariaDB, user: str, password: str, db: str, **extra: Any) -> Any:  # noqa: F811
    url = f"mysql://{user}:{password}@127.0.0.1:{maria.port}/{db}"
    connector = db_connector("db", {"kind": "mysql", "url_secret": "url", "pool_size": 1,
                                    **extra})
    return _make(connector, lambda name: url.encode())


def _maria_user(maria: MariaDB, db: str) -> tuple[str, str]:  # noqa: F811
    user = f"atk{time.time_ns() % 10**9}"
    maria.sql(f"CREATE DATABASE IF NOT EXISTS `{db}`")
    maria.sql(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw-{user}'")
    maria.sql(f"GRANT SELECT ON `{db}`.* TO '{user}'@'%'")
    return user, f"pw-{user}"


def test_maria_a_power_granted_after_the_first_connection_is_refused_at_the_next(
        maria: MariaDB) -> None:  # noqa: F811
    user, password = _maria_user(maria, "atk_later")
    backend = _maria_backend(maria, user, password, "atk_later")
    try:
        assert _rows(backend, "p", "SELECT 1") == [[1]]
        maria.sql(f"GRANT PROCESS ON *.* TO '{user}'@'%'")
        backend.pool.discard_idle()
        with pytest.raises(Refused) as info:
            backend.run("p", True, "SELECT 1", [], time.monotonic() + 5)
        assert info.value.status == "DENIED" and "PROCESS" in str(info.value), info.value
    finally:
        backend.close()


def test_maria_a_power_reached_through_a_role_of_a_role_is_refused(
        maria: MariaDB) -> None:  # noqa: F811
    """The account's default role has no power of its own but was granted a role that has
    SUPER: enabling the first enables the second (MariaDB's role graph), so the account
    has SUPER in every session."""
    user, password = _maria_user(maria, "atk_roles")
    outer, inner = f"{user}_outer", f"{user}_inner"
    maria.sql(f"CREATE ROLE {inner}")
    maria.sql(f"GRANT SUPER ON *.* TO {inner}")
    maria.sql(f"CREATE ROLE {outer}")
    maria.sql(f"GRANT {inner} TO {outer}")
    maria.sql(f"GRANT {outer} TO '{user}'@'%'")
    maria.sql(f"SET DEFAULT ROLE {outer} FOR '{user}'@'%'")
    backend = _maria_backend(maria, user, password, "atk_roles")
    try:
        with pytest.raises(Refused) as info:
            backend.run("p", True, "SELECT 1", [], time.monotonic() + 5)
        assert info.value.status == "DENIED" and "SUPER" in str(info.value), info.value
    finally:
        backend.close()


def test_maria_a_power_of_a_role_not_enabled_by_default_is_refused(
        maria: MariaDB) -> None:  # noqa: F811
    """A role granted to the account but not its default one: MariaDB refuses SHOW GRANTS FOR
    it (1044) until it is enabled, and the check was only warned of, while a procedure's SET
    ROLE reaches its SUPER. Enabled for its SHOW, its power is read and refused; the
    session's own role is back after the check."""
    user, password = _maria_user(maria, "atk_role_off")
    role = f"{user}_off"
    maria.sql(f"CREATE ROLE {role}")
    maria.sql(f"GRANT SUPER ON *.* TO {role}")
    maria.sql(f"GRANT {role} TO '{user}'@'%'")
    backend = _maria_backend(maria, user, password, "atk_role_off")
    try:
        with pytest.raises(Refused) as info:
            backend.run("p", True, "SELECT 1", [], time.monotonic() + 5)
        assert info.value.status == "DENIED" and "SUPER" in str(info.value), info.value
    finally:
        backend.close()
    maria.sql(f"REVOKE SUPER ON *.* FROM {role}")
    maria.sql(f"GRANT SELECT ON atk_role_off.* TO {role}")
    backend = _maria_backend(maria, user, password, "atk_role_off")
    try:  # a harmless role: served, and no role left enabled by the check
        assert _rows(backend, "p", "SELECT CURRENT_ROLE()") == [[None]]
    finally:
        backend.close()


def test_maria_a_privileges_check_the_server_refuses_refuses_the_connection() -> None:
    """A server that refuses SHOW GRANTS (error 1142): under refuse the connection is not
    taken unchecked, the refusal names the error and what to do; under warn it serves."""
    server = SpoofedMaria("grants_error")
    try:
        refused, _ = _refused(_backend("mysql", server.port), 5.0)
        assert refused.status == "DENIED", refused
        assert str(refused).startswith(
            "connector spoof: the privileges of role u could not be checked "
            "(OperationalError): (1142, 'SHOW command denied to user'); let the account read "
            "its grants"), str(refused)
        assert str(refused).endswith("or set connectors.spoof.privileges: warn"), str(refused)
        backend = _backend("mysql", server.port, privileges="warn")
        try:
            assert backend.run("p", True, "SELECT 1", [], time.monotonic() + 5) == \
                b'{"columns":[],"rows":[]}'
        finally:
            backend.close()
    finally:
        server.close()


def test_maria_sslmode_require_refuses_a_server_without_tls(
        hostile_maria: Callable[[str], HostileMaria]) -> None:
    server = hostile_maria("extra_packet")  # its greeting offers no TLS
    before = _host_threads()
    refused, _ = _refused(_backend("mysql", server.port, "?sslmode=require"), 3.0)
    assert refused.status in ("UNAVAILABLE", "DENIED"), refused
    assert all(PASSWORD.encode() not in a for a in server.answers)
    _no_thread_left(before)


def test_pg_a_huge_notice_in_answer_to_a_host_statement_costs_no_more_than_the_cap(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    """The host's own statements (the privileges check at connect, SET statement_timeout,
    BEGIN, the clean-up, DISCARD ALL) are read as a plugin's result is: bounded in bytes."""
    server = hostile_pg("query_notice_huge")
    measured = _connect_probe("postgres", f"postgresql://u@127.0.0.1:{server.port}/d", 4.0)
    assert measured["status"].startswith(("UNAVAILABLE", "TOO_LARGE")), measured
    assert measured["growth"] <= 64 << 20, measured


def test_maria_endless_rows_in_answer_to_the_privileges_check_cost_bounded_memory() -> None:
    """PyMySQL's buffered cursor holds every row of the host's own statements (SHOW GRANTS
    at connect, XA RECOVER at the clean-up): a spoofed server sending rows for ever."""
    server = HostileMaria("grants_forever")
    try:
        measured = _connect_probe("mysql", f"mysql://u@127.0.0.1:{server.port}/d", 4.0)
    finally:
        server.close()
    assert measured["status"].startswith(("UNAVAILABLE", "TOO_LARGE")), measured
    assert measured["growth"] <= 64 << 20, measured


def test_maria_a_result_of_endless_columns_is_refused_at_its_count() -> None:
    server = HostileMaria("columns_forever")
    try:
        measured = _connect_probe("mysql", f"mysql://u@127.0.0.1:{server.port}/d", 4.0)
    finally:
        server.close()
    assert measured["status"].startswith("UNAVAILABLE"), measured
    assert measured["took"] < 2.0 and measured["growth"] <= 64 << 20, measured


def test_maria_the_side_connection_of_a_kill_is_bounded_in_bytes_too() -> None:
    """The deadline's KILL QUERY opens a side connection to the same server: a spoofed one
    answers it with a greeting of 16 MiB frames for ever (the side's packets had no cap)."""
    server = HostileMaria("hang_side_huge")
    try:
        measured = _connect_probe("mysql", f"mysql://u@127.0.0.1:{server.port}/d", 1.0)
    finally:
        server.close()
    assert measured["status"].endswith("statement timed out"), measured
    assert measured["growth"] <= 64 << 20, measured


def test_pg_the_side_connection_of_a_terminate_is_bounded_in_bytes_too(
        hostile_pg: Callable[..., HostileStartPostgres]) -> None:
    """The deadline's cut terminates the backend from a side connection to the same
    server: a spoofed one answers its start-up with a notice of 1 GiB."""
    server = hostile_pg("hang_side_huge")
    measured = _connect_probe("postgres", f"postgresql://u@127.0.0.1:{server.port}/d", 1.0)
    assert measured["status"].endswith("statement timed out"), measured
    assert server.sessions >= 2, "the side connection was never opened"
    assert measured["growth"] <= 64 << 20, measured


def test_maria_caching_sha2_full_authentication_gets_no_password(
        hostile_maria: Callable[[str], HostileMaria]) -> None:
    """The fast path's scramble is sent; the full authentication a spoofed server asks for
    next (the password in clear without TLS) is refused."""
    server = hostile_maria("sha2_full")
    before = _host_threads()
    refused, _ = _refused(_backend("mysql", server.port), 3.0)
    assert refused.status == "DENIED" and "caching_sha2_password" in str(refused), refused
    assert server.hostile_done.wait(5)
    assert server.answers and all(PASSWORD.encode() not in a for a in server.answers), \
        server.answers
    _no_thread_left(before)


def test_pg_a_privileges_check_that_fails_does_not_let_a_superuser_in(
        pg_cluster: Any, pg_url: str) -> None:
    """A role whose own settings make the check's query fail (a statement_timeout of 1 ms,
    set on the role): under ``refuse`` the role is not taken unchecked."""
    db = pg_url.rsplit("/", 1)[1]
    role = _role(pg_cluster, db, "SUPERUSER")
    pg_cluster.psql(f"ALTER ROLE {role} SET statement_timeout = '1ms'")
    backend = _pg_backend(pg_url, plugins={"p": {"user": role, "secret": role}})
    try:
        with pytest.raises(Refused) as info:
            backend.run("p", True, "SELECT current_setting('is_superuser')", [],
                        time.monotonic() + 5)
        assert info.value.status == "DENIED", info.value
    finally:
        backend.close()
