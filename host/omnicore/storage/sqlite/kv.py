"""kv on SQLite: one plugin's keys, with their usage kept beside them for the quotas.

Triggers keep ``kv_usage`` in step with inserts and updates of ``kv`` (schema v4; a delete
updates it itself, see ``_v4_kv_usage_triggers``), so a set is one statement whose
``WHERE`` holds the quota rule of :meth:`KVQuota.admit`; only a refused or oversized write
takes the slow path, a transaction that asks ``admit`` for the exact error. Reads go through
a :class:`ReadCache` of the database, valid while its wal-index header says that nothing has
committed since (:mod:`.walindex`): a get that hits costs no SQL.
"""

from __future__ import annotations

import re
import sqlite3
from typing import cast

from omnicore.storage.base import (
    DEFAULT_QUOTA,
    MAX_LIST_KEYS,
    KVQuota,
    KVStore,
    KVUsage,
    NotAnInteger,
)
from omnicore.storage.sqlite.database import Database

__all__ = ["ReadCache", "SQLiteKV"]

_INT = re.compile(rb"-?[0-9]{1,19}")
_I64 = (-(2**63), 2**63 - 1)

_GET = "SELECT value FROM kv WHERE plugin=? AND key=?"
# ?1 plugin, ?2 key, ?3 value, ?4 entry size, ?5 max_keys, ?6 max_bytes: KVQuota.admit's rule
# (a new key must fit max_keys; the bytes must fit max_bytes unless the write shrinks them).
_PUT = ("INSERT INTO kv(plugin, key, value, size) SELECT ?1, ?2, ?3, ?4 "
        "WHERE (SELECT u.keys + (o.size IS NULL) <= ?5 "
        "AND (u.bytes + ?4 - ifnull(o.size, 0) <= ?6 OR ?4 <= ifnull(o.size, 0)) "
        "FROM (SELECT ifnull(max(keys), 0) AS keys, ifnull(max(bytes), 0) AS bytes "
        "FROM kv_usage WHERE plugin = ?1) AS u "
        "LEFT JOIN kv AS o ON o.plugin = ?1 AND o.key = ?2) "
        "ON CONFLICT(plugin, key) DO UPDATE SET value = excluded.value, size = excluded.size")
_MISS = object()


class ReadCache:
    """Values (and absences) read from ``kv``, dropped whole as soon as the wal-index header
    moves, whoever committed. Used under the database's lock only. Bounded: values over
    :data:`MAX_VALUE` bytes are not kept, and it starts afresh past :data:`MAX_ENTRIES`
    entries or :data:`MAX_BYTES` of keys and values."""

    MAX_VALUE = 16 * 1024
    MAX_ENTRIES = 4096
    MAX_BYTES = 4 * 1024 * 1024

    __slots__ = ("nbytes", "stamp", "values")

    def __init__(self) -> None:
        self.stamp: bytes | None = None
        self.values: dict[tuple[str, str], bytes | None] = {}
        self.nbytes = 0

    def drop(self, stamp: bytes | None) -> None:
        """Forget everything; what is read from now on is kept under ``stamp`` (None: not
        kept)."""
        self.values.clear()
        self.nbytes = 0
        self.stamp = stamp

    def keep(self, plugin: str, key: str, value: bytes | None) -> None:
        """Keep a value just read (a miss: the key is not in :attr:`values`)."""
        size = len(key) + (0 if value is None else len(value))
        if self.stamp is None or size > self.MAX_VALUE:
            return
        if len(self.values) >= self.MAX_ENTRIES or self.nbytes + size > self.MAX_BYTES:
            self.values.clear()
            self.nbytes = 0
        self.values[(plugin, key)] = value
        self.nbytes += size


class SQLiteKV(KVStore):
    __slots__ = ("_cache", "_s", "plugin")

    def __init__(self, db: Database, plugin: str, cache: ReadCache) -> None:
        self._s = db
        self.plugin = plugin
        self._cache = cache  # one per database, shared by every plugin's view

    def get(self, key: str) -> bytes | None:
        db = self._s
        index = db.walindex
        if index is None:
            rows = db._read(_GET, (self.plugin, key))
            return bytes(rows[0][0]) if rows else None
        cache = self._cache
        with db._lock:
            stamp = index.stamp()
            if stamp is None or stamp != cache.stamp or db._conn.in_transaction:
                # Something committed (or a transaction of ours is open, or the header is
                # being written): nothing cached can be trusted; what is read now, after the
                # stamp was taken, can be kept under it.
                cache.drop(stamp if not db._conn.in_transaction else None)
            else:
                hit = cache.values.get((self.plugin, key), _MISS)
                if hit is not _MISS:
                    return hit  # type: ignore[return-value]
            try:
                row = db._conn.execute(_GET, (self.plugin, key)).fetchone()
            except sqlite3.Error as exc:
                raise db._error("read failed", exc) from None
            value = bytes(row[0]) if row else None
            cache.keep(self.plugin, key, value)
            return value

    def _put(self, conn: sqlite3.Connection, key: str, value: bytes, quota: KVQuota) -> None:
        """Inside a write transaction: admit (or refuse with the reason) and write."""
        old = conn.execute("SELECT size FROM kv WHERE plugin=? AND key=?",
                           (self.plugin, key)).fetchone()
        row = conn.execute("SELECT keys, bytes FROM kv_usage WHERE plugin=?",
                           (self.plugin,)).fetchone()
        size, _, _ = quota.admit(self.plugin, key, value, old[0] if old else None,
                                 row or (0, 0))
        conn.execute("INSERT INTO kv(plugin, key, value, size) VALUES (?,?,?,?) "
                     "ON CONFLICT(plugin, key) DO UPDATE SET value=excluded.value, "
                     "size=excluded.size", (self.plugin, key, value, size))

    def set(self, key: str, value: bytes, quota: KVQuota = DEFAULT_QUOTA) -> None:
        value = bytes(value)
        if len(value) <= quota.max_value_bytes and self._s._write_one(_PUT, (
                self.plugin, key, value, len(key.encode()) + len(value), quota.max_keys,
                quota.max_bytes)):
            return
        # Refused (or too large): the same rule again in a transaction, for the exact error
        # (or the write, if another writer made room in between).
        self._s._write(lambda conn: self._put(conn, key, value, quota))

    def delete(self, key: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            old = conn.execute("DELETE FROM kv WHERE plugin=? AND key=? RETURNING size",
                               (self.plugin, key)).fetchone()
            if old is None:
                return False
            conn.execute("UPDATE kv_usage SET keys=keys-1, bytes=bytes-? WHERE plugin=?",
                         (old[0], self.plugin))
            return True
        return cast(bool, self._s._write(run))

    def incr(self, key: str, delta: int, quota: KVQuota = DEFAULT_QUOTA) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT value FROM kv WHERE plugin=? AND key=?",
                               (self.plugin, key)).fetchone()
            current = 0
            if row is not None:
                raw = bytes(row[0])
                if not _INT.fullmatch(raw):
                    raise NotAnInteger(f"the value at {key!r} is not a decimal integer")
                current = int(raw)
            new = current + delta
            if not _I64[0] <= new <= _I64[1]:
                raise NotAnInteger(f"incr of {key!r} by {delta} overflows 64 bits")
            self._put(conn, key, str(new).encode(), quota)
            return new
        return cast(int, self._s._write(run))

    def list(self, prefix: str = "", limit: int = MAX_LIST_KEYS) -> list[str]:
        # The range start uses the primary key; substr() ends the match (bounded by max_keys).
        rows = self._s._read(
            "SELECT key FROM kv WHERE plugin=? AND key>=? AND substr(key, 1, ?)=? "
            "ORDER BY key LIMIT ?", (self.plugin, prefix, len(prefix), prefix, limit))
        return [r[0] for r in rows]

    def usage(self) -> KVUsage:
        rows = self._s._read("SELECT keys, bytes FROM kv_usage WHERE plugin=?", (self.plugin,))
        return KVUsage(*rows[0]) if rows else KVUsage(0, 0)
