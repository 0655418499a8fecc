"""kv on SQLite: one plugin's keys, with their usage kept beside them for the quotas."""

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

__all__ = ["SQLiteKV"]

_INT = re.compile(rb"-?[0-9]{1,19}")
_I64 = (-(2**63), 2**63 - 1)


class SQLiteKV(KVStore):
    __slots__ = ("_s", "plugin")

    def __init__(self, db: Database, plugin: str) -> None:
        self._s = db
        self.plugin = plugin

    def get(self, key: str) -> bytes | None:
        rows = self._s._read("SELECT value FROM kv WHERE plugin=? AND key=?", (self.plugin, key))
        return bytes(rows[0][0]) if rows else None

    def _put(self, conn: sqlite3.Connection, key: str, value: bytes, quota: KVQuota) -> None:
        old = conn.execute("SELECT size FROM kv WHERE plugin=? AND key=?",
                           (self.plugin, key)).fetchone()
        row = conn.execute("SELECT keys, bytes FROM kv_usage WHERE plugin=?",
                           (self.plugin,)).fetchone()
        size, new_keys, new_bytes = quota.admit(self.plugin, key, value,
                                                old[0] if old else None, row or (0, 0))
        conn.execute("INSERT INTO kv(plugin, key, value, size) VALUES (?,?,?,?) "
                     "ON CONFLICT(plugin, key) DO UPDATE SET value=excluded.value, "
                     "size=excluded.size", (self.plugin, key, value, size))
        conn.execute("INSERT INTO kv_usage(plugin, keys, bytes) VALUES (?,?,?) "
                     "ON CONFLICT(plugin) DO UPDATE SET keys=excluded.keys, "
                     "bytes=excluded.bytes", (self.plugin, new_keys, new_bytes))

    def set(self, key: str, value: bytes, quota: KVQuota = DEFAULT_QUOTA) -> None:
        self._s._write(lambda conn: self._put(conn, key, bytes(value), quota))

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
