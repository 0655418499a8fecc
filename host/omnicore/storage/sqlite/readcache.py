"""Values read from SQLite, valid while the wal-index header says nothing has committed since.

:meth:`Database.read_cached` keeps kv reads here (one cache per database, shared by every
plugin's view), so a get that hits costs no SQL (:mod:`.walindex`).
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["MISS", "ReadCache"]

#: What :attr:`ReadCache.values` answers for a key it does not hold.
MISS = object()


class ReadCache:
    """Values (and absences) read, dropped whole as soon as the wal-index header moves,
    whoever committed. Used under the database's lock only. Bounded: values over
    :data:`MAX_VALUE` bytes are not kept, and it starts afresh past :data:`MAX_ENTRIES`
    entries or :data:`MAX_BYTES` of keys and values."""

    MAX_VALUE = 16 * 1024
    MAX_ENTRIES = 4096
    MAX_BYTES = 4 * 1024 * 1024

    __slots__ = ("nbytes", "stamp", "values")

    def __init__(self) -> None:
        self.stamp: bytes | None = None
        self.values: dict[Hashable, bytes | None] = {}
        self.nbytes = 0

    def drop(self, stamp: bytes | None) -> None:
        """Forget everything; what is read from now on is kept under ``stamp`` (None: not
        kept)."""
        self.values.clear()
        self.nbytes = 0
        self.stamp = stamp

    def keep(self, key: tuple[str, str], value: bytes | None) -> None:
        """Keep a value just read (a miss: the key is not in :attr:`values`)."""
        size = len(key[1]) + (0 if value is None else len(value))
        if self.stamp is None or size > self.MAX_VALUE:
            return
        if len(self.values) >= self.MAX_ENTRIES or self.nbytes + size > self.MAX_BYTES:
            self.values.clear()
            self.nbytes = 0
        self.values[key] = value
        self.nbytes += size
