"""Memory rows on PostgreSQL: full-text search by PostgreSQL's own text search.

The text is indexed as a generated ``tsvector`` with the ``simple`` configuration (no
stemming, no stop words: what SQLite's unicode61 tokenizer does) under a GIN index, and a
query is the OR of its words; relevance is ``ts_rank`` scaled to the range BM25 gives for a
short text, so the score above (``r/(1+r)``) blends it as it blends BM25. Insertions with
eviction are serialised per plugin and tier by a transaction-scoped advisory lock, so a
tier's cap holds with several instances writing at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

from omnicore.storage.errors import QuotaExceeded, StorageError
from omnicore.storage.memory_rows import Consolidated, Filter, MemoryRow, MemoryRows, NewMemory
from omnicore.storage.postgres._jsonfilter import filter_sql
from omnicore.storage.postgres.database import Database

__all__ = ["PgMemory"]

_COLS = "m.id, m.tier, m.text, m.meta, m.importance, m.created_at"
#: ts_rank of a one-word match in a short text is about 0.06-0.1; BM25 there is about 1.
_RANK_SCALE = 10.0


def _row(r: Sequence[Any]) -> MemoryRow:
    return MemoryRow(int(r[0]), int(r[1]), str(r[2]), r[3], float(r[4]), float(r[5]))


def _where(tiers: Sequence[int], now: float, flt: Filter) -> tuple[str, list[Any]]:
    more, args = filter_sql("m.meta", flt)
    return (" AND m.tier = ANY(?) AND (m.expires_at IS NULL OR m.expires_at > ?)" + more,
            [list(tiers), now, *args])


class PgMemory(MemoryRows):
    def __init__(self, storage: Database) -> None:
        self._s = storage

    def insert(self, item: NewMemory, cap: int) -> tuple[int, list[int]]:
        def run(conn: Any) -> tuple[int, list[int]]:
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('memory:' || ? || ':' || ?))",
                         (item.plugin, item.tier))
            evicted: list[int] = []
            n = conn.execute("SELECT COUNT(*) FROM memories WHERE plugin=? AND tier=?",
                             (item.plugin, item.tier)).fetchone()[0]
            if n >= cap:
                rows = conn.execute(
                    "DELETE FROM memories WHERE id IN (SELECT id FROM memories WHERE plugin=? "
                    "AND tier=? ORDER BY importance, accessed_at LIMIT ?) "
                    "RETURNING id, has_vector", (item.plugin, item.tier, n - cap + 1)).fetchall()
                if not rows:
                    raise QuotaExceeded(f"tier {item.tier} is full")
                evicted = [int(r[0]) for r in rows if r[1]]
            for _ in range(16):
                mid = secrets.randbits(53) or 1
                done = conn.execute(
                    "INSERT INTO memories (id, plugin, tier, text, meta, importance, created_at, "
                    "accessed_at, expires_at, has_vector) VALUES (?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT (id) DO NOTHING",
                    (mid, item.plugin, item.tier, item.text, item.meta, float(item.importance),
                     item.now, item.now, item.expires_at, item.has_vector)).rowcount
                if done:
                    return mid, evicted
            raise StorageError("could not find a free memory id")
        return self._s.write(run)

    def search(self, plugin: str, words: Sequence[str], tiers: Sequence[int], now: float,
               flt: Filter, limit: int) -> list[tuple[MemoryRow, float]]:
        if not words:
            return []
        # The words are \w+ runs (memory_rows.query_words): quoting each makes it a lexeme.
        query = " | ".join("'" + w.replace("'", "").replace("\\", "") + "'" for w in words)
        where, args = _where(tiers, now, flt)
        rows = self._s.read(
            f"SELECT {_COLS}, ts_rank(m.tsv, q) AS rank FROM memories m, "
            f"to_tsquery('simple', ?) q WHERE m.plugin=? AND m.tsv @@ q{where} "
            "ORDER BY rank DESC, m.id LIMIT ?", (query, plugin, *args, limit))
        return [(_row(r), max(float(r[6]) * _RANK_SCALE, 0.0)) for r in rows]

    def by_ids(self, plugin: str, ids: Sequence[int], tiers: Sequence[int], now: float,
               flt: Filter) -> list[MemoryRow]:
        if not ids:
            return []
        where, args = _where(tiers, now, flt)
        rows = self._s.read(f"SELECT {_COLS} FROM memories m WHERE m.plugin=? AND "
                             f"m.id = ANY(?){where}", (plugin, list(ids), *args))
        return [_row(r) for r in rows]

    def top(self, plugin: str, tiers: Sequence[int], now: float, flt: Filter,
            limit: int) -> list[MemoryRow]:
        where, args = _where(tiers, now, flt)
        rows = self._s.read(f"SELECT {_COLS} FROM memories m WHERE m.plugin=?{where} "
                             "ORDER BY m.importance DESC, m.created_at DESC LIMIT ?",
                             (plugin, *args, limit))
        return [_row(r) for r in rows]

    def touch(self, plugin: str, ids: Sequence[int], now: float, times: int = 1) -> None:
        if ids:
            self._s.write(lambda conn: conn.execute(
                "UPDATE memories SET recalls = recalls + ?, accessed_at=? WHERE id = ANY(?) "
                "AND plugin=?", (times, now, list(ids), plugin)))

    def delete(self, plugin: str, mid: int) -> bool | None:
        row = self._s.write(lambda conn: conn.execute(
            "DELETE FROM memories WHERE plugin=? AND id=? RETURNING has_vector",
            (plugin, mid)).fetchone())
        return None if row is None else bool(row[0])

    def count(self, plugin: str) -> dict[int, int]:
        return {int(t): int(n) for t, n in self._s.read(
            "SELECT tier, COUNT(*) FROM memories WHERE plugin=? GROUP BY tier", (plugin,))}

    def consolidate(self, now: float, since: float, promote_after: int,
                    decay: float) -> Consolidated:
        def run(conn: Any) -> Consolidated:
            gone = conn.execute("DELETE FROM memories WHERE expires_at IS NOT NULL AND "
                                "expires_at <= ? RETURNING plugin, id, has_vector",
                                (now,)).fetchall()
            promoted = conn.execute("UPDATE memories SET tier = 2, expires_at = NULL WHERE "
                                    "tier = 1 AND recalls >= ?", (promote_after,)).rowcount
            conn.execute("UPDATE memories SET importance = importance * ? WHERE "
                         "accessed_at < ? AND importance > 0.01", (decay, since))
            return Consolidated(len(gone), int(promoted),
                                [(str(p), int(i)) for p, i, v in gone if v])
        return self._s.write(run)
