"""kv, on any backend: one plugin's keys, with their usage kept beside them for the quotas.

Every write takes the plugin's usage row first (``FOR UPDATE`` where several writers run at
once), so a quota can never be passed by two writers that each saw room, and refuses with
:meth:`KVQuota.admit`'s reason. Where one writer holds the database (SQLite, whose schema
keeps ``kv_usage`` beside ``kv`` by triggers since v4), a set is first tried as one
statement whose ``WHERE`` holds the same quota rule: half the time of the transaction
(bench_capabilities.py); only a refused or oversized write takes the transaction, for the
exact error. A get may be answered by the backend's read cache (SQLite: no SQL until the next
commit).
"""

from __future__ import annotations

import re

from omnicore.storage.backend import Backend, Tx
from omnicore.storage.base import (
    DEFAULT_QUOTA,
    MAX_LIST_KEYS,
    KVQuota,
    KVStore,
    KVUsage,
    NotAnInteger,
)

__all__ = ["KV", "kv_plugins"]

_INT = re.compile(rb"-?[0-9]{1,19}")
_I64 = (-(2**63), 2**63 - 1)

_GET = "SELECT value FROM kv WHERE plugin=? AND key=?"
# Single writer only (see above). ?1 plugin, ?2 key, ?3 value, ?4 entry size, ?5 max_keys,
# ?6 max_bytes: KVQuota.admit's rule (a new key must fit max_keys; the bytes must fit
# max_bytes unless the write shrinks them); the triggers keep kv_usage.
_PUT_ONE = ("INSERT INTO kv(plugin, key, value, size) SELECT ?1, ?2, ?3, ?4 "
            "WHERE (SELECT u.keys + (o.size IS NULL) <= ?5 "
            "AND (u.bytes + ?4 - ifnull(o.size, 0) <= ?6 OR ?4 <= ifnull(o.size, 0)) "
            "FROM (SELECT ifnull(max(keys), 0) AS keys, ifnull(max(bytes), 0) AS bytes "
            "FROM kv_usage WHERE plugin = ?1) AS u "
            "LEFT JOIN kv AS o ON o.plugin = ?1 AND o.key = ?2) "
            "ON CONFLICT(plugin, key) DO UPDATE SET value = excluded.value, size = excluded.size")


def kv_plugins(db: Backend) -> list[str]:
    """Plugins that have at least one key."""
    return [r[0] for r in db.read("SELECT plugin FROM kv_usage WHERE keys > 0 ORDER BY plugin")]


class KV(KVStore):
    __slots__ = ("_db", "plugin")

    def __init__(self, db: Backend, plugin: str) -> None:
        self._db = db
        self.plugin = plugin

    def get(self, key: str) -> bytes | None:
        value = self._db.read_value(_GET, (self.plugin, key), cache_key=(self.plugin, key))
        return None if value is None else bytes(value)

    def _usage(self, tx: Tx) -> tuple[int, int]:
        # The usage row is the per-plugin lock: concurrent writers of one plugin queue on it.
        tx.execute("INSERT INTO kv_usage(plugin, keys, bytes) VALUES (?, 0, 0) "
                   "ON CONFLICT DO NOTHING", (self.plugin,))
        row = tx.execute(f"SELECT keys, bytes FROM kv_usage WHERE plugin=?"
                         f"{self._db.dialect.for_update}", (self.plugin,)).fetchone()
        return int(row[0]), int(row[1])

    def _put(self, tx: Tx, key: str, value: bytes, quota: KVQuota,
             usage: tuple[int, int]) -> None:
        """Inside a write transaction: admit (or refuse with the reason) and write."""
        old = tx.execute("SELECT size FROM kv WHERE plugin=? AND key=?",
                         (self.plugin, key)).fetchone()
        size, new_keys, new_bytes = quota.admit(self.plugin, key, value,
                                                old[0] if old else None, usage)
        tx.execute("INSERT INTO kv(plugin, key, value, size) VALUES (?,?,?,?) "
                   "ON CONFLICT (plugin, key) DO UPDATE SET value=excluded.value, "
                   "size=excluded.size", (self.plugin, key, value, size))
        # Absolute, so it also stands over what an insert trigger added.
        tx.execute("UPDATE kv_usage SET keys=?, bytes=? WHERE plugin=?",
                   (new_keys, new_bytes, self.plugin))

    def set(self, key: str, value: bytes, quota: KVQuota = DEFAULT_QUOTA) -> None:
        value = bytes(value)
        if self._db.dialect.single_writer and len(value) <= quota.max_value_bytes and \
                self._db.write_one(_PUT_ONE, (self.plugin, key, value,
                                              len(key.encode()) + len(value), quota.max_keys,
                                              quota.max_bytes))[0]:
            return
        # Refused (or too large, or several writers): the rule in a transaction, for the
        # exact error (or the write, if another writer made room in between).
        self._db.write(lambda tx: self._put(tx, key, value, quota, self._usage(tx)))

    def delete(self, key: str) -> bool:
        def run(tx: Tx) -> bool:
            # The usage row first, as every writer takes it (none: the plugin has no keys).
            if tx.execute(f"SELECT keys FROM kv_usage WHERE plugin=?"
                          f"{self._db.dialect.for_update}", (self.plugin,)).fetchone() is None:
                return False
            old = tx.execute("DELETE FROM kv WHERE plugin=? AND key=? RETURNING size",
                             (self.plugin, key)).fetchone()
            if old is None:
                return False
            tx.execute("UPDATE kv_usage SET keys=keys-1, bytes=bytes-? WHERE plugin=?",
                       (old[0], self.plugin))
            return True
        return self._db.write(run)

    def incr(self, key: str, delta: int, quota: KVQuota = DEFAULT_QUOTA) -> int:
        def run(tx: Tx) -> int:
            usage = self._usage(tx)
            row = tx.execute(_GET, (self.plugin, key)).fetchone()
            current = 0
            if row is not None:
                raw = bytes(row[0])
                if not _INT.fullmatch(raw):
                    raise NotAnInteger(f"the value at {key!r} is not a decimal integer")
                current = int(raw)
            new = current + delta
            if not _I64[0] <= new <= _I64[1]:
                raise NotAnInteger(f"incr of {key!r} by {delta} overflows 64 bits")
            self._put(tx, key, str(new).encode(), quota, usage)
            return new
        return self._db.write(run)

    def list(self, prefix: str = "", limit: int = MAX_LIST_KEYS) -> list[str]:
        # The range start uses the primary key; substr() ends the match (bounded by max_keys).
        rows = self._db.read(
            "SELECT key FROM kv WHERE plugin=? AND key>=? AND substr(key, 1, ?)=? "
            "ORDER BY key LIMIT ?", (self.plugin, prefix, len(prefix), prefix, limit))
        return [r[0] for r in rows]

    def usage(self) -> KVUsage:
        rows = self._db.read("SELECT keys, bytes FROM kv_usage WHERE plugin=?", (self.plugin,))
        return KVUsage(int(rows[0][0]), int(rows[0][1])) if rows else KVUsage(0, 0)
