"""A private PostgreSQL cluster for one test session: Debian's binaries, never a shared server.

``initdb`` into a temporary directory as an unprivileged user (PostgreSQL refuses to run as
root, and CI runs as root), a free loopback port, the socket in the same directory, and
``pg_ctl stop -m immediate`` at the end. A missing PostgreSQL is an error, not a skip: the
set-up (scripts/setup-toolchains.sh) installs Debian's ``postgresql`` package.

The directory is on /dev/shm when it is a tmpfs with room: a thrown-away cluster has no use for
a disk, and on one it wrote each test database's 7.5 MB (twice, with its WAL) beside the
builds, and its removal at the end of a run once took over three minutes (stop 77's CI).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.dbservers import free_port

__all__ = ["Cluster", "pg_bin"]


def pg_bin() -> Path:
    """The newest PostgreSQL server binaries Debian installed (/usr/lib/postgresql/N/bin)."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                      key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                      else 0)
    if not versions:
        raise RuntimeError("PostgreSQL server binaries not found in /usr/lib/postgresql: "
                           "run scripts/setup-toolchains.sh (Debian package postgresql)")
    return versions[-1].parent


@dataclass
class Cluster:
    """A running cluster; :meth:`database` makes a fresh database owned by a non-superuser."""

    root: Path
    port: int
    user: str | None  # the OS user the server runs as (None: ourselves)

    @classmethod
    def start(cls) -> Cluster:
        binaries = pg_bin()
        root = Path(tempfile.mkdtemp(prefix="omnicore-pg-", dir=_memory_dir()))
        user = None
        if os.geteuid() == 0:
            user = "postgres" if _has_user("postgres") else "nobody"
            uid = pwd.getpwnam(user)
            os.chown(root, uid.pw_uid, uid.pw_gid)
        port = free_port()
        data = root / "data"
        cluster = cls(root, port, user)
        cluster._run([str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                      "-E", "UTF8", "--locale", "C.UTF-8", "--no-sync"])
        # Small, quick and private: loopback only, our own socket dir, no fsync (a test
        # cluster is thrown away), and the server default of 100 connections kept on purpose
        # (the pool must fit it with several instances).
        cluster.resume()
        return cluster

    def resume(self) -> None:
        """Start the server (again, after :meth:`halt`: same data, port and socket)."""
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        self._run([str(pg_bin() / "pg_ctl"), "-D", str(self.root / "data"), "-o", opts, "-w",
                   "-t", "60", "-l", str(self.root / "server.log"), "start"])

    def halt(self) -> None:
        """Stop the server as an operator's restart does (``-m fast``: sessions are ended,
        their transactions rolled back), keeping the data for :meth:`resume`."""
        self.pg_ctl("stop", "-m", "fast", "-w")

    def _run(self, argv: list[str]) -> None:
        if self.user is not None:
            argv = ["runuser", "-u", self.user, "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr or done.stdout}\n{tail}")

    def psql(self, sql: str, db: str = "postgres") -> str:
        argv = [str(pg_bin() / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {done.stderr}")
        return done.stdout

    def drop(self, name: str) -> None:
        """Drop a test's database, its sessions ended first (a host a failed test left
        running); a failure is left for :meth:`stop`, which removes every one."""
        try:
            self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except (RuntimeError, subprocess.TimeoutExpired):
            pass

    def database(self, name: str) -> str:
        """A new database owned by the role ``omnicore`` (not a superuser); its URL."""
        if not self.psql("SELECT 1 FROM pg_roles WHERE rolname='omnicore'").strip():
            self.psql("CREATE ROLE omnicore LOGIN PASSWORD 'omnicore' NOSUPERUSER")
        self.psql(f'CREATE DATABASE "{name}" OWNER omnicore')
        return f"postgresql://omnicore:omnicore@127.0.0.1:{self.port}/{name}"

    def pg_ctl(self, *args: str) -> None:
        self._run([str(pg_bin() / "pg_ctl"), "-D", str(self.root / "data"), *args])

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


#: The room a session's clusters may need on /dev/shm: its databases are dropped after each
#: test, so what stays is a few databases, the WAL (``max_wal_size``, 1 GB) and the catalogs.
_SHM_ROOM = 4 << 30


def _memory_dir() -> str | None:
    """/dev/shm if it is a tmpfs with :data:`_SHM_ROOM` free, else None (``$TMPDIR``)."""
    shm = Path("/dev/shm")
    try:
        mounts = Path("/proc/mounts").read_text().split("\n")
        stat = os.statvfs(shm)
    except OSError:
        return None
    tmpfs = any(line.split()[1:3] == [str(shm), "tmpfs"] for line in mounts if line.strip())
    if not tmpfs or stat.f_bavail * stat.f_frsize < _SHM_ROOM:
        return None
    return str(shm)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
