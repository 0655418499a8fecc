"""Memory rows: tiers with caps, expiry, recalls, and full-text search over the text.

The search itself is the backend's :class:`~omnicore.storage.backend.TextIndex` (FTS5 tables
per plugin on SQLite, a ``tsvector`` column on PostgreSQL); everything else is one SQL.
Insertions with eviction hold the ``memory:<plugin>:<tier>`` lock, so a tier's cap holds with
several hosts writing at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx, marks
from omnicore.storage.errors import QuotaExceeded, StorageError
from omnicore.storage.memory_rows import Consolidated, Filter, MemoryRow, MemoryRows, NewMemory

__all__ = ["Memory"]

_COLS = "m.id, m.tier, m.text, m.meta, m.importance, m.created_at"
#: Ids per statement: under SQLite's limit of bound parameters.
_CHUNK = 500


def _row(r: Sequence[Any]) -> MemoryRow:
    return MemoryRow(int(r[0]), int(r[1]), str(r[2]), r[3], float(r[4]), float(r[5]))


class Memory(MemoryRows):
    """:class:`MemoryRows` on a backend (the ``memory`` component)."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        self._text = db.text_index("memories", "plugin")
        db.prepare("memory")

    def _where(self, tiers: Sequence[int], now: float, flt: Filter) -> tuple[str, list[Any]]:
        more, args = self._db.dialect.json_filter("m.meta", flt)
        return (f" AND m.tier IN ({marks(len(tiers))}) AND (m.expires_at IS NULL OR "
                f"m.expires_at > ?){more}", [*tiers, now, *args])

    def insert(self, item: NewMemory, cap: int) -> tuple[int, list[int]]:
        extra = self._text.columns(item.plugin)
        names = "".join(f", {c}" for c in extra)

        def run(tx: Tx) -> tuple[int, list[int]]:
            tx.lock(f"memory:{item.plugin}:{item.tier}")
            evicted: list[int] = []
            n = tx.execute("SELECT COUNT(*) FROM memories WHERE plugin=? AND tier=?",
                           (item.plugin, item.tier)).fetchone()[0]
            if n >= cap:
                rows = tx.execute(
                    "DELETE FROM memories WHERE id IN (SELECT id FROM memories WHERE plugin=? "
                    "AND tier=? ORDER BY importance, accessed_at LIMIT ?) "
                    "RETURNING id, has_vector, text",
                    (item.plugin, item.tier, n - cap + 1)).fetchall()
                if not rows:
                    raise QuotaExceeded(f"tier {item.tier} is full")
                self._text.removed(tx, [(item.plugin, int(r[0]), str(r[2])) for r in rows])
                evicted = [int(r[0]) for r in rows if r[1]]
            for _ in range(16):
                mid = secrets.randbits(53) or 1
                done = tx.execute(
                    f"INSERT INTO memories (id, plugin, tier, text, meta, importance, "
                    f"created_at, accessed_at, expires_at, has_vector{names}) VALUES "
                    f"(?,?,?,?,?,?,?,?,?,?{',?' * len(extra)}) ON CONFLICT (id) DO NOTHING",
                    (mid, item.plugin, item.tier, item.text, item.meta,
                     float(item.importance), item.now, item.now, item.expires_at,
                     bool(item.has_vector), *extra.values())).rowcount
                if done:  # else an id already taken (about one chance in 10^15)
                    self._text.added(tx, item.plugin, mid, item.text)
                    return mid, evicted
            raise StorageError("could not find a free memory id")
        return self._db.write(run)

    def search(self, plugin: str, words: Sequence[str], tiers: Sequence[int], now: float,
               flt: Filter, limit: int) -> list[tuple[MemoryRow, float]]:
        if not words:
            return []
        keep, args = self._where(tiers, now, flt)
        return [(_row(r), rel) for r, rel in self._text.search(
            plugin, words, _COLS, keep, args, limit, filtered=bool(flt))]

    def by_ids(self, plugin: str, ids: Sequence[int], tiers: Sequence[int], now: float,
               flt: Filter) -> list[MemoryRow]:
        where, args = self._where(tiers, now, flt)
        rows: list[MemoryRow] = []
        for at in range(0, len(ids), _CHUNK):
            part = ids[at:at + _CHUNK]
            rows += [_row(r) for r in self._db.read(
                f"SELECT {_COLS} FROM memories m WHERE m.plugin=? AND m.id IN "
                f"({marks(len(part))}){where}", (plugin, *part, *args))]
        return rows

    def top(self, plugin: str, tiers: Sequence[int], now: float, flt: Filter,
            limit: int) -> list[MemoryRow]:
        where, args = self._where(tiers, now, flt)
        rows = self._db.read(f"SELECT {_COLS} FROM memories m WHERE m.plugin=?{where} "
                             "ORDER BY m.importance DESC, m.created_at DESC LIMIT ?",
                             (plugin, *args, limit))
        return [_row(r) for r in rows]

    def touch(self, plugin: str, ids: Sequence[int], now: float, times: int = 1) -> None:
        # The plugin's column kept off its index: look rows up by id; the (plugin, ...)
        # index would scan all of the plugin's rows.
        no_index = self._db.dialect.no_index

        def run(tx: Tx) -> None:
            for at in range(0, len(ids), _CHUNK):
                part = ids[at:at + _CHUNK]
                tx.execute(f"UPDATE memories SET recalls = recalls + ?, accessed_at=? WHERE id "
                           f"IN ({marks(len(part))}) AND {no_index}plugin=?",
                           (times, now, *part, plugin))
        if ids:
            self._db.write(run)

    def delete(self, plugin: str, mid: int) -> bool | None:
        def run(tx: Tx) -> Any:
            row = tx.execute("DELETE FROM memories WHERE plugin=? AND id=? RETURNING "
                             "has_vector, text", (plugin, mid)).fetchone()
            if row is not None:
                self._text.removed(tx, [(plugin, mid, str(row[1]))])
            return row
        row = self._db.write(run)
        return None if row is None else bool(row[0])

    def count(self, plugin: str) -> dict[int, int]:
        return {int(t): int(n) for t, n in self._db.read(
            "SELECT tier, COUNT(*) FROM memories WHERE plugin=? GROUP BY tier", (plugin,))}

    def consolidate(self, now: float, since: float, promote_after: int,
                    decay: float) -> Consolidated:
        def run(tx: Tx) -> Consolidated:
            gone = tx.execute("DELETE FROM memories WHERE expires_at IS NOT NULL AND "
                              "expires_at <= ? RETURNING plugin, id, text, has_vector",
                              (now,)).fetchall()
            self._text.removed(tx, [(str(p), int(i), str(t)) for p, i, t, _ in gone])
            promoted = tx.execute("UPDATE memories SET tier = 2, expires_at = NULL WHERE "
                                  "tier = 1 AND recalls >= ?", (promote_after,)).rowcount
            tx.execute("UPDATE memories SET importance = importance * ? WHERE "
                       "accessed_at < ? AND importance > 0.01", (decay, since))
            return Consolidated(len(gone), int(promoted),
                                [(str(p), int(i)) for p, i, _, v in gone if v])
        return self._db.write(run)
