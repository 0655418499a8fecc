"""Private MariaDB and Redis servers for the connector tests: Debian's binaries, a temporary
data directory, a free loopback port, stopped at the end (as tests/pgcluster.py does for
PostgreSQL). A missing binary is an error, not a skip: the set-up installs
``mariadb-server`` and ``redis-server``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.waiting import Logged, eventually

__all__ = ["CertAuthority", "MariaDB", "Redis", "free_port", "listening"]

#: The non-root account the tests' connectors log in as.
USER, PASSWORD = "omnicore", "maria-Secret-8842"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def listening(port: int) -> bool:
    """Whether something accepts connections on ``port`` of 127.0.0.1."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


@dataclass(frozen=True)
class CertAuthority:
    """A certificate authority made for one test session, a server certificate it signed for
    ``localhost`` only (not 127.0.0.1: a URL naming the address fails verify-full's host
    check and passes verify-ca), and a second CA that signed nothing the servers show."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path

    @classmethod
    def make(cls, folder: Path) -> CertAuthority:
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        folder.mkdir(parents=True, exist_ok=True)
        now = dt.datetime.now(dt.UTC)

        def name(text: str) -> x509.Name:
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

        def authority(cn: str) -> tuple[Any, Any]:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - dt.timedelta(hours=1))
                    .not_valid_after(now + dt.timedelta(days=2))
                    .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                    .add_extension(x509.KeyUsage(
                        digital_signature=True, content_commitment=False,
                        key_encipherment=False, data_encipherment=False, key_agreement=False,
                        key_cert_sign=True, crl_sign=True, encipher_only=False,
                        decipher_only=False), True)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                        key.public_key()), False)
                    .sign(key, hashes.SHA256()))
            return key, cert

        ca_key, ca_cert = authority("omnicore test CA")
        _, other = authority("omnicore other CA")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name("localhost"))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                .add_extension(x509.ExtendedKeyUsage(
                    [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    ca_key.public_key()), False)
                .sign(ca_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        out = cls(folder / "ca.pem", folder / "server.pem", folder / "server.key",
                  folder / "other-ca.pem")
        out.ca.write_bytes(ca_cert.public_bytes(pem))
        out.other_ca.write_bytes(other.public_bytes(pem))
        out.cert.write_bytes(cert.public_bytes(pem))
        out.key.write_bytes(key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        out.key.chmod(0o600)
        return out

    def owned_by(self, user: str | None) -> None:
        """Give the server's key and certificate to ``user`` (a server running as another
        user than the tests reads them; PostgreSQL wants its key 0600 and its own)."""
        if user is not None:
            import pwd

            uid = pwd.getpwnam(user)
            for path in (self.cert, self.key, self.ca):
                os.chown(path, uid.pw_uid, uid.pw_gid)


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    eventually(lambda: listening(port), f"{what} listening on {port}",
               watch=[Logged(proc, log)])


@dataclass
class _Server:
    """A server process on ``port`` with its data under ``root``."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes]

    def halt(self) -> None:
        """Stop the process (its data stays, for ``resume``)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)

    def stop(self) -> None:
        try:
            if self.proc.poll() is None:
                self.halt()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class MariaDB(_Server):
    """A running MariaDB; :meth:`database` makes a database the omnicore account owns.
    With ``tls``, the server offers TLS with that CA's server certificate."""

    tls: CertAuthority | None = None

    @classmethod
    def start(cls, tls: CertAuthority | None = None) -> MariaDB:
        if not Path("/usr/sbin/mariadbd").exists():
            raise RuntimeError("mariadbd not found: install Debian's mariadb-server")
        root = Path(tempfile.mkdtemp(prefix="omnicore-maria-"))
        user = ["--user=root"] if os.geteuid() == 0 else []
        # A private tmpdir: bootstraps started together in the shared /tmp removed each
        # other's temporary tables ("Unknown table 'mysql.tmp_user_sys'", 2 of 6 in parallel).
        (root / "tmp").mkdir()
        made = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={root / 'data'}",
                               f"--tmpdir={root / 'tmp'}",
                               "--auth-root-authentication-method=normal", "--skip-test-db",
                               "--skip-name-resolve", *user], capture_output=True, timeout=120,
                              check=False)
        if made.returncode != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"mariadb-install-db exited {made.returncode}:\n"
                               + (made.stdout + made.stderr).decode(errors="replace")[-4000:])
        port = free_port()
        server = cls(root, port, cls._spawn(root, port, tls), tls)
        server.sql(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
        return server

    @staticmethod
    def _spawn(root: Path, port: int, tls: CertAuthority | None = None) -> subprocess.Popen[bytes]:
        user = ["--user=root"] if os.geteuid() == 0 else []
        if tls is not None:
            user += [f"--ssl-ca={tls.ca}", f"--ssl-cert={tls.cert}", f"--ssl-key={tls.key}"]
        log = root / "server.log"
        proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={root / 'data'}",
             f"--socket={root / 'sock'}", f"--port={port}", "--bind-address=127.0.0.1",
             f"--tmpdir={root / 'tmp'}",
             "--skip-networking=0", f"--pid-file={root / 'pid'}", f"--log-error={log}",
             "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
             "--innodb-log-file-size=8M", "--skip-log-bin",
             # Rows of 16 MiB and more reach the client in several protocol frames
             # (test_sql_mysql's test of them); the default packet cap is 16 MiB.
             "--max-allowed-packet=64M", *user],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(port, proc, "mariadbd", log)
        return proc

    def sql(self, statement: str, db: str | None = None) -> list[tuple[Any, ...]]:
        """Run ``statement`` as root over the socket; its rows."""
        import pymysql

        conn = pymysql.connect(unix_socket=str(self.root / "sock"), user="root",
                               database=db, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall())
        finally:
            conn.close()

    def database(self, name: str) -> str:
        """A new database the omnicore account may use; its URL (without the password)."""
        self.sql(f"CREATE DATABASE `{name}`")
        self.sql(f"GRANT ALL ON `{name}`.* TO '{USER}'@'%'")
        return f"mysql://{USER}@127.0.0.1:{self.port}/{name}"

    def resume(self) -> None:
        self.proc = self._spawn(self.root, self.port, self.tls)


@dataclass
class Redis(_Server):
    """A running redis-server with a password (``requirepass``), no persistence."""

    password: str = "redis-Secret-5521"

    @classmethod
    def start(cls) -> Redis:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not found: install Debian's redis-server")
        root = Path(tempfile.mkdtemp(prefix="omnicore-redis-"))
        port = free_port()
        server = cls(root, port, None)  # type: ignore[arg-type]
        server.proc = server._spawn()
        return server

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root), "--requirepass", self.password,
             "--logfile", str(self.root / "server.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, proc, "redis-server", self.root / "server.log")
        return proc

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def resume(self) -> None:
        self.proc = self._spawn()
