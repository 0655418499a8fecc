"""TLS and honest authentication against real servers (specs/abi.md §4.12, "TLS and
authentication"): a PostgreSQL 15 cluster and a MariaDB server with a CA made for the test
session, and the connector URLs' ``sslmode`` / ``sslrootcert`` (libpq's names).

The server certificate names ``localhost`` only: a URL naming ``127.0.0.1`` fails
verify-full's host check and passes verify-ca.
"""

from __future__ import annotations

import json
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.egress.db import db_connector
from omnicore.egress.db.service import _make
from omnicore.egress.refused import Refused
from omnicore.errors import ConfigError
from tests.dbservers import PASSWORD as MARIA_PASSWORD
from tests.dbservers import USER as MARIA_USER
from tests.dbservers import CertAuthority, MariaDB
from tests.egress.db.spoofed import SpoofedMaria
from tests.pgcluster import Cluster

PG_PASSWORD = "tls-Secret-7730"


@pytest.fixture(scope="module")
def ca() -> Iterator[CertAuthority]:
    folder = Path(tempfile.mkdtemp(prefix="omnicore-ca-"))
    folder.chmod(0o755)  # the servers' users read their files from it
    yield CertAuthority.make(folder)


@pytest.fixture(scope="module")
def pg_tls(ca: CertAuthority) -> Iterator[Cluster]:
    """A private cluster with TLS on; roles ``scram`` (scram-sha-256 everywhere),
    ``clear`` (the password method: cleartext) and ``trusted`` (trust)."""
    cluster = Cluster.start()
    try:
        ca.owned_by(cluster.user)
        cluster.psql(f"ALTER SYSTEM SET ssl_cert_file = '{ca.cert}'")
        cluster.psql(f"ALTER SYSTEM SET ssl_key_file = '{ca.key}'")
        cluster.psql("ALTER SYSTEM SET ssl = on")
        (cluster.root / "data" / "pg_hba.conf").write_text(
            "local all all trust\n"
            "host all postgres 127.0.0.1/32 trust\n"
            "host all clear 127.0.0.1/32 password\n"
            "host all trusted 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n")
        cluster.pg_ctl("reload", "-w")
        for role in ("scram", "clear", "trusted"):
            cluster.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{PG_PASSWORD}'")
        cluster.psql("CREATE DATABASE tls OWNER scram")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def maria_tls(ca: CertAuthority) -> Iterator[MariaDB]:
    server = MariaDB.start(tls=ca)
    yield server
    server.stop()


def _backend(kind: str, url: str, password: str) -> Any:
    connector = db_connector("tls", {"kind": kind, "url": url, "secret": "pw", "pool_size": 1})
    return _make(connector, lambda name: password.encode())


def _run(kind: str, url: str, sql: str, password: str) -> list[list[Any]]:
    backend = _backend(kind, url, password)
    try:
        out = backend.run("p", True, sql, [], time.monotonic() + 10)
    finally:
        backend.close()
    return list(json.loads(out)["rows"])


def _refused(kind: str, url: str, password: str) -> Refused:
    backend = _backend(kind, url, password)
    try:
        with pytest.raises(Refused) as info:
            backend.run("p", True, "SELECT 1", [], time.monotonic() + 10)
    finally:
        backend.close()
    return info.value


_PG_SSL = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def _pg(cluster: Cluster, role: str, host: str, query: str) -> str:
    return f"postgresql://{role}@{host}:{cluster.port}/tls{query}"


# -- PostgreSQL -------------------------------------------------------------------------------
def test_pg_verify_full_checks_the_chain_and_the_name(pg_tls: Cluster, ca: CertAuthority) -> None:
    url = _pg(pg_tls, "scram", "localhost", f"?sslmode=verify-full&sslrootcert={ca.ca}")
    assert _run("postgres", url, _PG_SSL, PG_PASSWORD) == [[True]]


def test_pg_a_server_the_ca_did_not_sign_is_refused(pg_tls: Cluster, ca: CertAuthority) -> None:
    for mode in ("verify-full", "verify-ca"):
        url = _pg(pg_tls, "scram", "localhost", f"?sslmode={mode}&sslrootcert={ca.other_ca}")
        refused = _refused("postgres", url, PG_PASSWORD)
        assert refused.status == "UNAVAILABLE", str(refused)
        assert str(refused).startswith("connector tls: TLS failed ("), str(refused)
        assert "certificate verify failed" in str(refused), str(refused)


def test_pg_another_name_fails_verify_full_and_passes_verify_ca(pg_tls: Cluster,
                                                                 ca: CertAuthority) -> None:
    url = _pg(pg_tls, "scram", "127.0.0.1", f"?sslmode=verify-full&sslrootcert={ca.ca}")
    refused = _refused("postgres", url, PG_PASSWORD)
    assert refused.status == "UNAVAILABLE" and "TLS failed" in str(refused), str(refused)
    assert "does not match host name" in str(refused), str(refused)
    url = _pg(pg_tls, "scram", "127.0.0.1", f"?sslmode=verify-ca&sslrootcert={ca.ca}")
    assert _run("postgres", url, _PG_SSL, PG_PASSWORD) == [[True]]


def test_pg_require_encrypts_and_binds_scram_to_the_channel(pg_tls: Cluster) -> None:
    url = _pg(pg_tls, "scram", "127.0.0.1", "?sslmode=require")
    assert _run("postgres", url, _PG_SSL, PG_PASSWORD) == [[True]]
    # TLS that checks nothing needs SCRAM's channel binding: a server that authenticates
    # without it (trust here; a man in the middle relaying SCRAM without -PLUS) is refused.
    refused = _refused("postgres", _pg(pg_tls, "trusted", "127.0.0.1", "?sslmode=require"),
                       PG_PASSWORD)
    assert refused.status == "DENIED", str(refused)
    assert "channel binding" in str(refused), str(refused)


def test_pg_disable_is_cleartext_on_the_wire(pg_tls: Cluster) -> None:
    assert _run("postgres", _pg(pg_tls, "scram", "127.0.0.1", ""), _PG_SSL,
                PG_PASSWORD) == [[False]]


def test_pg_a_cleartext_password_goes_only_to_a_verified_server(pg_tls: Cluster,
                                                                ca: CertAuthority) -> None:
    for query in ("", "?sslmode=require", f"?sslmode=verify-ca&sslrootcert={ca.ca}"):
        refused = _refused("postgres", _pg(pg_tls, "clear", "127.0.0.1", query), PG_PASSWORD)
        assert refused.status == "DENIED", (query, str(refused))
        assert "asked for the password in clear" in str(refused), (query, str(refused))
    url = _pg(pg_tls, "clear", "localhost", f"?sslmode=verify-full&sslrootcert={ca.ca}")
    assert _run("postgres", url, _PG_SSL, PG_PASSWORD) == [[True]]


# -- MariaDB ----------------------------------------------------------------------------------
_MARIA_SSL = "SHOW SESSION STATUS LIKE 'Ssl_version'"


def _maria(server: MariaDB, host: str, query: str) -> str:
    return f"mysql://{MARIA_USER}@{host}:{server.port}/{query}"


def test_maria_verify_full_checks_the_chain_and_the_name(maria_tls: MariaDB,
                                                         ca: CertAuthority) -> None:
    url = _maria(maria_tls, "localhost", f"?sslmode=verify-full&sslrootcert={ca.ca}")
    ((_, version),) = _run("mysql", url, _MARIA_SSL, MARIA_PASSWORD)
    assert version.startswith("TLSv1."), version


def test_maria_a_server_the_ca_did_not_sign_is_refused(maria_tls: MariaDB,
                                                       ca: CertAuthority) -> None:
    for mode in ("verify-full", "verify-ca"):
        url = _maria(maria_tls, "localhost", f"?sslmode={mode}&sslrootcert={ca.other_ca}")
        refused = _refused("mysql", url, MARIA_PASSWORD)
        assert refused.status == "UNAVAILABLE", str(refused)
        assert str(refused) == "connector tls: TLS failed (self-signed certificate in " \
                               "certificate chain)", str(refused)


def test_maria_another_name_fails_verify_full_and_passes_verify_ca(maria_tls: MariaDB,
                                                                   ca: CertAuthority) -> None:
    url = _maria(maria_tls, "127.0.0.1", f"?sslmode=verify-full&sslrootcert={ca.ca}")
    refused = _refused("mysql", url, MARIA_PASSWORD)
    assert (refused.status, str(refused)) == (
        "UNAVAILABLE", "connector tls: TLS failed (IP address mismatch, certificate is not "
                       "valid for '127.0.0.1'.)")
    url = _maria(maria_tls, "127.0.0.1", f"?sslmode=verify-ca&sslrootcert={ca.ca}")
    ((_, version),) = _run("mysql", url, _MARIA_SSL, MARIA_PASSWORD)
    assert version.startswith("TLSv1."), version


def test_maria_require_encrypts_and_disable_does_not(maria_tls: MariaDB) -> None:
    ((_, version),) = _run("mysql", _maria(maria_tls, "127.0.0.1", "?sslmode=require"),
                           _MARIA_SSL, MARIA_PASSWORD)
    assert version.startswith("TLSv1."), version
    ((_, version),) = _run("mysql", _maria(maria_tls, "127.0.0.1", ""), _MARIA_SSL,
                           MARIA_PASSWORD)
    assert version == "", version


# -- the URL --------------------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "query", "says"), [
    ("postgres", "?sslmode=prefer", "sslmode=prefer falls back to an unencrypted connection"),
    ("mysql", "?sslmode=allow", "sslmode=allow falls back to an unencrypted connection"),
    ("postgres", "?sslmode=on", "sslmode must be one of disable, require, verify-ca, "
                                "verify-full"),
    ("postgres", "?sslcert=/c.pem", "the URL parameter 'sslcert' is not one a postgres "
                                    "connector honours"),
    ("mysql", "?ssl=true", "the URL parameter 'ssl' is not one a mysql connector honours"),
    ("mysql", "?channel_binding=require", "the URL parameter 'channel_binding' is not one"),
    ("redis", "?sslmode=require", "the URL parameter 'sslmode' is not one a redis connector"),
    ("postgres", "?sslmode=require&sslmode=disable", "'sslmode' must be given once"),
    ("postgres", "?sslmode", "'sslmode' must be given once, with a value"),
    ("postgres", "?sslmode=verify-ca", "sslmode=verify-ca needs sslrootcert"),
    ("postgres", "?sslmode=require&sslrootcert=/etc/hostname",
     "sslrootcert is read only with sslmode=verify-ca or verify-full"),
    ("postgres", "?sslmode=verify-full&sslrootcert=ca.pem", "sslrootcert must be an absolute"),
    ("mysql", "?sslmode=verify-full&sslrootcert=/no/such/ca.pem",
     "sslrootcert /no/such/ca.pem is not a file"),
    ("postgres", "?channel_binding=require", "channel_binding=require needs TLS"),
    ("postgres", "?sslmode=require&channel_binding=maybe", "channel_binding must be one of"),
])
def test_a_url_parameter_the_connector_does_not_honour_is_refused_at_load(
        kind: str, query: str, says: str) -> None:
    scheme = {"postgres": "postgresql", "mysql": "mysql", "redis": "redis"}[kind]
    path = "/0" if kind == "redis" else "/d"
    with pytest.raises(ConfigError) as info:
        db_connector("c", {"kind": kind, "url": f"{scheme}://u@db.example{path}{query}"})
    assert says in str(info.value), str(info.value)
    assert str(info.value).startswith("connectors.c.url: "), str(info.value)


# -- a password in clear: only to a verified server -----------------------------------------
def test_maria_mysql_clear_password_goes_only_to_a_verified_server(ca: CertAuthority) -> None:
    """A spoofed MariaDB with TLS (the test CA's certificate) that switches to
    mysql_clear_password: under verify-full it gets the password (the server is who the URL
    names); under require and verify-ca (another name) it gets nothing."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(ca.cert, ca.key)
    for host, query, sent in (
            ("127.0.0.1", "?sslmode=require", False),
            ("127.0.0.1", f"?sslmode=verify-ca&sslrootcert={ca.ca}", False),
            ("localhost", f"?sslmode=verify-full&sslrootcert={ca.ca}", True)):
        server = SpoofedMaria("cleartext", tls=context)
        try:
            url = f"mysql://u@{host}:{server.port}/d{query}"
            if sent:
                assert _run("mysql", url, "SELECT 1", MARIA_PASSWORD) == []
            else:
                refused = _refused("mysql", url, MARIA_PASSWORD)
                assert refused.status == "DENIED", (query, str(refused))
                assert "'mysql_clear_password', which shows it the password" in str(refused)
            assert server.hostile_done.wait(10)
            assert server.answers == ([MARIA_PASSWORD.encode() + b"\0"] if sent else []), query
        finally:
            server.close()
