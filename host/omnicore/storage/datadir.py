"""The data dir as a resource: private to the host's user, and held by one host at a time.

Private: the dir is created 0700 and each database file 0600 before SQLite first opens it
(SQLite gives its ``-wal`` and ``-shm`` files the mode of the database, so they follow);
files an older omnicore left more open are tightened on open. ``console.db`` holds password
hashes and ``omnicore.db`` the sealed secrets: no other user on the machine reads either.

One host: :class:`DataDirLock` is an exclusive ``flock`` on ``<data_dir>/omnicore.lock``,
held from the start of a host to its end. The kernel drops it when the process dies however
it dies (``kill -9`` included), so a lock never outlives its holder and never needs
clearing by hand. The holder writes who it is into the file (pid, runtime id, console URL
once known), so a second host is refused with a line that names the first. Short CLI
commands (``call``, kv and data reads, enqueue) never take it: SQLite serialises their few
writes beside the host's.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import time
from pathlib import Path
from typing import Any

from omnicore.storage.errors import DataDirLocked, StorageError

__all__ = ["LOCK_FILE", "DataDirLock", "private_dir", "private_file"]

LOCK_FILE = "omnicore.lock"

#: How long a refused host waits for a holder that has the lock but has not yet written who
#: it is (the two are not one step): enough for a write, far below a human's patience.
_HOLDER_WAIT_S = 0.5


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) with the leaf mode 0700; an existing one is
    left as the operator made it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def private_file(path: Path) -> Path:
    """Make sure ``path`` (a database about to be opened) and its ``-wal``/``-shm`` exist
    only as mode 0600: created so, or tightened if an older version made them wider."""
    private_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.close(fd)
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(each.stat().st_mode) & 0o077:
                each.chmod(0o600)
    return path


class DataDirLock:
    """The exclusive lock of one data dir; :meth:`acquire` at start, :meth:`release` at stop.

    ``previous`` is what the last holder wrote if it did not release the lock (it died):
    its leases can be given back at once, since it cannot be running any more.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self.previous: dict[str, Any] | None = None
        self._fd: int | None = None
        self._holder: dict[str, Any] = {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, **holder: Any) -> None:
        """Take the lock and write ``holder`` into it; :class:`DataDirLocked` naming the
        holder when another process has it."""
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StorageError(f"cannot lock data dir {self.path.parent}: "
                               f"{exc.strerror or exc}", path=self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                other = _read_holder(fd, wait=True)
            finally:
                os.close(fd)
            raise DataDirLocked(
                f"data dir {self.path.parent} is in use by another host ({_describe(other)}); "
                "stop that one first, or give this one another data_dir",
                path=self.path, holder=other) from None
        except OSError as exc:  # a filesystem without locks (some network mounts)
            os.close(fd)
            raise StorageError(f"cannot lock data dir {self.path.parent}: "
                               f"{exc.strerror or exc} (put data_dir on a local disk)",
                               path=self.path) from None
        self.previous = _read_holder(fd, wait=False) or None
        self._fd = fd
        self._holder = {"pid": os.getpid(), **holder}
        self._write()

    def update(self, **fields: Any) -> None:
        """Add ``fields`` (``console_url=...``) to what a refused host is told; no-op when
        not held."""
        if self._fd is None:
            return
        self._holder.update(fields)
        self._write()

    def release(self) -> None:
        """Empty the file (a clean stop leaves no holder to recover from) and unlock.

        The file itself stays: unlinking it would let a third host lock a new file while a
        second still waits on the old one.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def _write(self) -> None:
        assert self._fd is not None
        data = json.dumps(self._holder, sort_keys=True).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)


def _read_holder(fd: int, *, wait: bool) -> dict[str, Any]:
    deadline = time.monotonic() + (_HOLDER_WAIT_S if wait else 0.0)
    while True:
        raw = os.pread(fd, 64 * 1024, 0)
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {}
        if isinstance(doc, dict) and (doc or time.monotonic() >= deadline):
            return doc
        if time.monotonic() >= deadline:
            return {}
        time.sleep(0.02)


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "it has not said who it is yet"
    parts = [f"pid {holder.get('pid', '?')}", f"runtime id {holder.get('runtime_id', '?')}"]
    parts.append(f"console {holder['console_url']}" if holder.get("console_url")
                 else "no console")
    return ", ".join(parts)
