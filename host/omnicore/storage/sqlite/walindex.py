"""Whether anything has committed to a WAL database since a moment: its wal-index header.

Every commit to a database in WAL mode, by any connection of any process, rewrites the header
at the start of the database's ``-shm`` file (https://www.sqlite.org/walformat.html, "The
WAL-Index Header": two copies of a 48-byte header holding a change counter, the last frame,
the salts and a checksum; a writer writes the second copy, then the first, and a reader
trusts them only when they agree). Checkpoints and recovery rewrite it too. So while the
header reads the same, nothing has committed and whatever was read before is still what the
database holds. Comparing it is about 0.1 µs; asking SQLite (``PRAGMA data_version`` through
the sqlite3 module) costs as much as the read a cache would save.

Unsafe code in one room: only this module knows the layout, and it trusts the file only after
seeing it at work. :meth:`WalIndex.open` returns None unless the file exists with a header it
knows (version 3007000, initialised); :meth:`WalIndex.stamp` is None until the owner has seen
a commit of its own change the header (:meth:`confirm`), and for good if one did not (the
file is then not the one SQLite uses). Callers read through SQLite whenever it is None.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

__all__ = ["WalIndex"]

_HEADER = 48                      # one copy of WalIndexHdr
_VERSION = 3007000                # iVersion: the only wal-index format SQLite has written
_FIELDS = struct.Struct("<IIIB")  # iVersion, unused, iChange, isInit


class WalIndex:
    """The wal-index header of one database, mapped read-only."""

    __slots__ = ("_fd", "_map", "state")

    def __init__(self, fd: int, mapped: mmap.mmap) -> None:
        self._fd = fd
        self._map = mapped
        #: "unproven" until :meth:`confirm` saw a commit of ours in it, then "live" or "dead".
        self.state = "unproven"

    @classmethod
    def open(cls, database: Path) -> WalIndex | None:
        """The header of ``database`` (which must be open in WAL mode), or None."""
        try:
            fd = os.open(f"{database}-shm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            mapped = mmap.mmap(fd, 2 * _HEADER, mmap.MAP_SHARED, mmap.PROT_READ)
        except (OSError, ValueError):  # ValueError: the file is shorter than the header
            os.close(fd)
            return None
        version, _, _, init = _FIELDS.unpack_from(mapped)
        index = cls(fd, mapped)
        if version != _VERSION or init != 1:
            index.close()
            return None
        return index

    def read(self) -> bytes | None:
        """The header now, or None while a writer is between its two copies."""
        m = self._map
        first = m[0:_HEADER]  # read in the order SQLite's readers do: the first copy first
        return first if m[_HEADER:2 * _HEADER] == first else None

    def stamp(self) -> bytes | None:
        """The header now, once this file is known to be SQLite's; else None."""
        return self.read() if self.state == "live" else None

    def confirm(self, before: bytes | None) -> None:
        """Called after a commit of ours that wrote a page, with :meth:`read` from before it:
        an unchanged header means SQLite keeps its wal-index elsewhere; never trust it."""
        if self.state == "unproven" and before is not None:
            self.state = "dead" if self.read() == before else "live"

    def close(self) -> None:
        if self._fd >= 0:
            self._map.close()
            os.close(self._fd)
            self._fd = -1
            self.state = "dead"
