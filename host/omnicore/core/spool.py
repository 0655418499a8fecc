"""A local append-only journal that outlives the process: what a host holds through an outage.

A :class:`Spool` is one file of ``<folder>/<kind>-<owner>.spool`` that its host holds an
exclusive ``flock`` on while it runs. Each record is written whole (a length, a CRC-32, the
JSON) and ``fsync``-ed before :meth:`Spool.append` returns, so a record a caller was told was
taken survives a host killed with -9 or a power loss. The caller keeps what is pending; once
nothing is, :meth:`Spool.clear` empties the file, and :meth:`Spool.rewrite` compacts it to the
records still pending (written to a locked temporary file, then renamed over).

Several hosts may share a data dir (PostgreSQL): each writes its own file. At
:meth:`Spool.open`, a host adopts every other file of its kind that no live process holds the
lock of (a host that died: the kernel dropped its lock): their records are copied into its own
file (fsync-ed), the orphan removed, and the records handed back to be replayed. A torn last
record (the host died while writing it, so it was never acknowledged) is ignored. Replays are
the caller's to make idempotent (omnicore keys them).

What else is in the folder is input, not trusted to be a spool: only regular files are opened
(never through a symlink, never a FIFO or device, which could be read forever), an entry that
cannot be opened or read is left where it is for the operator, and records are read one at a
time within the file's size, the first that is not a whole JSON object (a zeroed tail after a
power loss, a forged frame) ending the file's records. A host checks, once it holds its own
file's lock, that the file is still the one at its path: a host starting beside it may have
found it unlocked an instant before and adopted it.
"""

from __future__ import annotations

import base64
import errno
import fcntl
import io
import json
import os
import stat
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Spool", "decode_bytes", "encode_bytes"]

_HEAD = struct.Struct("<II")  # length, crc32 of the JSON
#: A record is at most this (a torn or foreign file stops being read there).
MAX_RECORD = 64 * 1024 * 1024
#: A spool whose drained records take more than this (and four times what is pending) is
#: compacted by :meth:`Spool.settle`.
COMPACT_BYTES = 1024 * 1024


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode()


def decode_bytes(text: str) -> bytes:
    return base64.b64decode(text)


def _frame(record: Mapping[str, Any]) -> bytes:
    body = json.dumps(record, separators=(",", ":")).encode()
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _records(fd: int) -> Iterator[dict[str, Any]]:
    """The whole records of the file ``fd`` from its start, read one at a time (nothing beyond
    a record is held, and no length is believed past the file's end); a torn or corrupt one,
    or one that is not a JSON object, ends it."""
    left = os.fstat(fd).st_size
    os.lseek(fd, 0, os.SEEK_SET)
    reader = io.BufferedReader(io.FileIO(fd, "rb", closefd=False), 1 << 20)
    while left >= _HEAD.size:
        head = reader.read(_HEAD.size)
        if len(head) < _HEAD.size:
            return
        size, crc = _HEAD.unpack(head)
        left -= _HEAD.size
        if size > MAX_RECORD or size > left:
            return
        body = reader.read(size)
        if len(body) < size or zlib.crc32(body) != crc:
            return
        try:
            record = json.loads(body)
        except ValueError:  # (UnicodeDecodeError too) well framed, but no record
            return
        if not isinstance(record, dict):
            return
        yield record
        left -= size


def _open_regular(path: Path, flags: int) -> int:
    """``path`` opened with ``flags``, only if it is a regular file, not through a symlink
    (OSError else). O_NONBLOCK for the open: a FIFO's would wait for a writer."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:  # adopted and removed meanwhile: skipped when opened
        return 0.0


def _same_file(fd: int, path: Path) -> bool:
    try:
        there = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    here = os.fstat(fd)
    return (there.st_dev, there.st_ino) == (here.st_dev, here.st_ino)


def _lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """This host's journal of one ``kind`` (``events``, ``bridge-<name>``) in ``folder``."""

    def __init__(self, folder: Path, kind: str, owner: str) -> None:
        self.folder = folder
        self.kind = kind
        self.path = folder / f"{kind}-{owner}.spool"
        self._fd: int | None = None
        #: The file's size: what was written since it was last emptied.
        self.size = 0

    def open(self) -> list[dict[str, Any]]:
        """Create and lock this host's file; adopt the files of hosts that died. Returns the
        adopted records (oldest file first), already in this host's file. OSError when this
        host's own file cannot be had (a symlink or another kind of file at its path...); an
        orphan that cannot be opened, read or copied is left as it is."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for _ in range(100):
            fd = _open_regular(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
            if not _lock(fd):
                os.close(fd)
                raise OSError(f"{self.path} is locked by another process")
            if _same_file(fd, self.path):
                break
            os.close(fd)  # adopted by a host that found it before it was locked: anew
        else:
            raise OSError(f"{self.path} is taken away each time it is created")
        self._fd = fd
        try:
            return self._adopt()
        except BaseException:
            self._fd = None
            os.close(fd)
            raise

    def _adopt(self) -> list[dict[str, Any]]:
        assert self._fd is not None
        self.size = os.fstat(self._fd).st_size
        adopted: list[dict[str, Any]] = []
        mine = list(_records(self._fd))  # a file of this owner name: another run of it
        orphans = sorted((p for p in self.folder.glob(f"{self.kind}-*.spool")
                          if p != self.path), key=_mtime)
        for orphan in orphans:
            try:
                ofd = _open_regular(orphan, os.O_RDWR)
            except OSError:
                continue  # adopted by another host first, or no spool: left as it is
            try:
                if not _lock(ofd) or os.fstat(ofd).st_nlink == 0:
                    continue  # alive, or adopted and removed meanwhile
                found = list(_records(ofd))
                self._write(found)
            except OSError:
                continue  # unreadable, or no room to copy it: it stays for a later start
            finally:
                os.close(ofd)
            adopted += found  # in this host's file now
            try:
                orphan.unlink()
            except OSError:  # adopted again later: its replays are keyed
                pass
        if adopted:
            _sync_dir(self.folder)
        return mine + adopted

    def _write(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Write ``records`` (in pieces of about 1 MiB: never a second copy of them all) and
        fsync once; on OSError none of them stays."""
        start, held = self.size, 0
        batch: list[bytes] = []
        try:
            for record in records:
                batch.append(_frame(record))
                held += len(batch[-1])
                if held >= 1 << 20:
                    self._write_frame(b"".join(batch), sync=False)
                    batch, held = [], 0
            if batch:
                self._write_frame(b"".join(batch), sync=False)
            if self.size != start:
                assert self._fd is not None
                os.fsync(self._fd)
        except OSError:
            self._truncate(start)
            raise

    def append(self, record: Mapping[str, Any], *, sync: bool = True) -> int:
        """Write ``record`` and fsync it; its size in the file. Raises OSError (a full
        disk...): then it is not taken. ``sync=False`` leaves the fsync to the next synced
        write (a record whose loss only means a replay, such as a confirmation)."""
        frame = _frame(record)
        self._write_frame(frame, sync)
        return len(frame)

    def _write_frame(self, frame: bytes, sync: bool = True) -> None:
        assert self._fd is not None, "the spool is not open"
        start = self.size
        try:
            view = memoryview(frame)
            while view:
                view = view[os.write(self._fd, view):]
            if sync:
                os.fsync(self._fd)
        except OSError:
            self._truncate(start)
            raise
        self.size += len(frame)

    def _truncate(self, size: int) -> None:
        assert self._fd is not None
        os.ftruncate(self._fd, size)  # no torn record in front of the next one
        self.size = size

    def clear(self) -> None:
        """Nothing is pending: empty the file."""
        if self._fd is not None and self.size:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
            self.size = 0

    def rewrite(self, pending: Iterable[Mapping[str, Any]]) -> None:
        """Compact the file to ``pending``: written to a locked temporary file, fsync-ed, and
        renamed over this host's file (never a moment without a locked, whole journal)."""
        assert self._fd is not None, "the spool is not open"
        tmp = self.path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)  # a rewrite that died, or anything planted there
        fd = _open_regular(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        if not _lock(fd):
            os.close(fd)
            raise OSError(f"{tmp} is locked by another process")
        old, self._fd, self.size = self._fd, fd, 0
        try:
            self._write(pending)
            os.replace(tmp, self.path)
            _sync_dir(self.folder)
        except OSError:
            os.close(fd)
            self._fd, self.size = old, os.fstat(old).st_size
            raise
        os.close(old)

    def settle(self, pending: Sequence[Any], pending_bytes: int,
               records: Callable[[], Iterable[Mapping[str, Any]]]) -> bool:
        """A record left the caller's ``pending`` (``pending_bytes`` of data still in it):
        :meth:`clear` when nothing is pending, :meth:`rewrite` to ``records()`` when the file
        outgrew ``COMPACT_BYTES`` and four times ``pending_bytes``; False when it did neither
        (the caller may note the record done). OSError as theirs."""
        if not pending:
            self.clear()
        elif self.size > max(COMPACT_BYTES, 4 * pending_bytes):
            self.rewrite(records())
        else:
            return False
        return True

    def close(self) -> None:
        """Release the file (it stays, with what is pending, for the next start)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            if self.size == 0:
                self.path.unlink(missing_ok=True)
            os.close(fd)
