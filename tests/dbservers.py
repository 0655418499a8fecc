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

__all__ = ["MariaDB", "Redis", "free_port", "listening"]

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
    """A running MariaDB; :meth:`database` makes a database the omnicore account owns."""

    @classmethod
    def start(cls) -> MariaDB:
        if not Path("/usr/sbin/mariadbd").exists():
            raise RuntimeError("mariadbd not found: install Debian's mariadb-server")
        root = Path(tempfile.mkdtemp(prefix="omnicore-maria-"))
        user = ["--user=root"] if os.geteuid() == 0 else []
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={root / 'data'}",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        "--skip-name-resolve", *user], check=True, capture_output=True,
                       timeout=120)
        port = free_port()
        server = cls(root, port, cls._spawn(root, port))
        server.sql(f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'")
        return server

    @staticmethod
    def _spawn(root: Path, port: int) -> subprocess.Popen[bytes]:
        user = ["--user=root"] if os.geteuid() == 0 else []
        log = root / "server.log"
        proc = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", f"--datadir={root / 'data'}",
             f"--socket={root / 'sock'}", f"--port={port}", "--bind-address=127.0.0.1",
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
        self.proc = self._spawn(self.root, self.port)


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
