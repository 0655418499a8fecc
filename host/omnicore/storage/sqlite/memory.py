"""Memory rows on SQLite: full-text search by FTS5 (BM25), one FTS5 table per plugin.

A plugin's rows are indexed in a table of their own (``memories_fts_<scope>``, named by a hash
of the plugin), so a search reads only that plugin's index: other plugins' rows are never
scanned, and BM25's statistics (how many rows hold a word, the average length) are the
plugin's own, not counts of what other plugins keep. (Schema v1 had one table for every
plugin with the plugin as a token of each row: that token matched all of a plugin's rows, so
BM25 walked them all on every search, 3 ms at 100,000 memories.) The tables are external
content tables over ``memories`` and are written beside it in the same transaction (a
trigger cannot pick a table per row). The relevance handed up is ``-bm25`` (BM25 is negative
in FTS5: lower is better).
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Tx
from omnicore.storage.errors import QuotaExceeded, StorageError
from omnicore.storage.memory_rows import Consolidated, Filter, MemoryRow, MemoryRows, NewMemory
from omnicore.storage.sqlite.database import Database

__all__ = ["SQLiteMemory", "fts_table"]

_COLS = "m.id, m.tier, m.text, m.meta, m.importance, m.created_at"


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE memories (id INTEGER PRIMARY KEY, plugin TEXT NOT NULL,"
                 " scope TEXT NOT NULL, tier INTEGER NOT NULL, text TEXT NOT NULL, meta TEXT,"
                 " importance REAL NOT NULL, created_at REAL NOT NULL,"
                 " accessed_at REAL NOT NULL, expires_at REAL, recalls INTEGER NOT NULL"
                 " DEFAULT 0, has_vector INTEGER NOT NULL DEFAULT 0)")
    conn.execute("CREATE INDEX memories_tier ON memories (plugin, tier, importance, "
                 "accessed_at)")
    conn.execute("CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at "
                 "IS NOT NULL")
    conn.execute("CREATE VIRTUAL TABLE memories_fts USING fts5(scope, text, content='memories',"
                 " content_rowid='id')")
    conn.execute("CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN INSERT INTO "
                 "memories_fts(rowid, scope, text) VALUES (new.id, new.scope, new.text); END")
    conn.execute("CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN INSERT INTO "
                 "memories_fts(memories_fts, rowid, scope, text) VALUES ('delete', old.id, "
                 "old.scope, old.text); END")


def _v2(conn: sqlite3.Connection) -> None:
    """One FTS5 table per plugin, filled from the rows; the shared table and its triggers go."""
    conn.execute("DROP TRIGGER IF EXISTS memories_ai")
    conn.execute("DROP TRIGGER IF EXISTS memories_ad")
    conn.execute("DROP TABLE IF EXISTS memories_fts")
    for (plugin,) in conn.execute("SELECT DISTINCT plugin FROM memories").fetchall():
        table = fts_table(plugin)
        _create(conn, table)
        conn.execute(f"INSERT INTO {table}(rowid, text) SELECT id, text FROM memories "
                     "WHERE plugin = ?", (plugin,))


def _scope(plugin: str) -> str:
    return "p" + hashlib.sha256(plugin.encode()).hexdigest()[:20]


def fts_table(plugin: str) -> str:
    """The FTS5 table of ``plugin``'s memories (a name of hex digits: safe to put in SQL)."""
    return "memories_fts_" + _scope(plugin)


def _create(conn: Tx | sqlite3.Connection, table: str) -> None:
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5(text, "
                 "content='memories', content_rowid='id')")


def _unindex(conn: Tx | sqlite3.Connection, gone: Sequence[tuple[str, int, str]]) -> None:
    """Take deleted rows ``(plugin, id, text)`` out of their plugins' FTS tables (an external
    content table forgets a row only when told its indexed text)."""
    for plugin, mid, text in gone:
        table = fts_table(plugin)
        conn.execute(f"INSERT INTO {table}({table}, rowid, text) VALUES ('delete', ?, ?)",
                     (mid, text))


def _where(tiers: Sequence[int], flt: Filter) -> tuple[str, list[Any]]:
    sql = f" AND m.tier IN ({','.join('?' * len(tiers))})" \
          " AND (m.expires_at IS NULL OR m.expires_at > ?)"
    # The keys were checked (no '"'), so quoting them in the JSON path is safe.
    sql += "".join(f" AND json_extract(m.meta, '$.\"{key}\"') = ?" for key, _ in flt)
    return sql, [*tiers]


def _row(r: Sequence[Any]) -> MemoryRow:
    return MemoryRow(int(r[0]), int(r[1]), str(r[2]), r[3], float(r[4]), float(r[5]))


class SQLiteMemory(MemoryRows):
    """:class:`MemoryRows` in the app's database (the ``memory`` component)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        #: FTS tables known to exist (one is never dropped, so this cannot go stale).
        self._tables: set[str] = set()
        db.ensure_schema("memory", (_v1, _v2))

    def insert(self, item: NewMemory, cap: int) -> tuple[int, list[int]]:
        def run(conn: Tx) -> tuple[int, list[int]]:
            evicted: list[int] = []
            n = conn.execute("SELECT COUNT(*) FROM memories WHERE plugin = ? AND tier = ?",
                             (item.plugin, item.tier)).fetchone()[0]
            if n >= cap:
                rows = conn.execute(
                    "SELECT id, has_vector, text FROM memories WHERE plugin = ? AND tier = ? "
                    "ORDER BY importance, accessed_at LIMIT ?",
                    (item.plugin, item.tier, n - cap + 1)).fetchall()
                if not rows:
                    raise QuotaExceeded(f"tier {item.tier} is full")
                conn.executemany("DELETE FROM memories WHERE id = ?", [(r[0],) for r in rows])
                _unindex(conn, [(item.plugin, r[0], r[2]) for r in rows])
                evicted = [r[0] for r in rows if r[1]]
            table = fts_table(item.plugin)
            _create(conn, table)
            for _ in range(16):
                mid = secrets.randbits(53) or 1
                try:
                    conn.execute(
                        "INSERT INTO memories (id, plugin, scope, tier, text, meta, importance, "
                        "created_at, accessed_at, expires_at, has_vector) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (mid, item.plugin, _scope(item.plugin), item.tier, item.text, item.meta,
                         float(item.importance), item.now, item.now, item.expires_at,
                         1 if item.has_vector else 0))
                except sqlite3.IntegrityError:
                    continue  # an id already taken (about one chance in 10^15)
                conn.execute(f"INSERT INTO {table}(rowid, text) VALUES (?, ?)",
                             (mid, item.text))
                return mid, evicted
            raise StorageError("could not find a free memory id")
        return self._db.write(run)

    def search(self, plugin: str, words: Sequence[str], tiers: Sequence[int], now: float,
               flt: Filter, limit: int) -> list[tuple[MemoryRow, float]]:
        if not words:
            return []
        table = fts_table(plugin)
        if not self._exists(table):
            return []  # the plugin never remembered anything
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in words)
        where, args = _where(tiers, flt)
        # m.plugin too: two plugins whose names hash alike (2^-80) still never meet.
        keep = f"m.plugin = ?{where}"
        if not flt:
            # Rank, then read only the best `limit` rows: reading a row per match to test
            # its tier and expiry first cost twice the ranking. When enough of the best pass
            # (or there are no more matches), they are the answer of the query below.
            best = self._db.read(
                f"SELECT {_COLS}, f.rank, {keep} FROM (SELECT rowid, bm25({table}) AS rank "
                f"FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?) f LEFT JOIN "
                "memories m ON m.id = f.rowid ORDER BY f.rank",
                (plugin, *args, now, match, limit))  # in the order of the text
            rows = [r for r in best if r[7]]
            if len(rows) == limit or len(best) < limit:
                return [(_row(r), max(-float(r[6]), 0.0)) for r in rows]
        rows = self._db.read(
            f"SELECT {_COLS}, bm25({table}) AS rank FROM {table} JOIN memories m ON "
            f"m.id = {table}.rowid WHERE {table} MATCH ? AND {keep} ORDER BY rank LIMIT ?",
            (match, plugin, *args, now, *(v for _, v in flt), limit))
        return [(_row(r), max(-float(r[6]), 0.0)) for r in rows]

    def _exists(self, table: str) -> bool:
        if table not in self._tables and self._db.read(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)):
            self._tables.add(table)
        return table in self._tables

    def by_ids(self, plugin: str, ids: Sequence[int], tiers: Sequence[int], now: float,
               flt: Filter) -> list[MemoryRow]:
        if not ids:
            return []
        where, args = _where(tiers, flt)
        rows = self._db.read(f"SELECT {_COLS} FROM memories m WHERE m.plugin = ? AND m.id IN "
                              f"({','.join('?' * len(ids))}){where}",
                              (plugin, *ids, *args, now, *(v for _, v in flt)))
        return [_row(r) for r in rows]

    def top(self, plugin: str, tiers: Sequence[int], now: float, flt: Filter,
            limit: int) -> list[MemoryRow]:
        where, args = _where(tiers, flt)
        rows = self._db.read(f"SELECT {_COLS} FROM memories m WHERE m.plugin = ?{where} "
                              "ORDER BY m.importance DESC, m.created_at DESC LIMIT ?",
                              (plugin, *args, now, *(v for _, v in flt), limit))
        return [_row(r) for r in rows]

    def touch(self, plugin: str, ids: Sequence[int], now: float, times: int = 1) -> None:
        def run(conn: Tx) -> None:
            for at in range(0, len(ids), 500):  # under SQLite's limit of bound parameters
                part = ids[at:at + 500]
                # "+plugin": look rows up by id; the (plugin, ...) index would scan them all.
                conn.execute(f"UPDATE memories SET recalls = recalls + ?, accessed_at = ? WHERE "
                             f"id IN ({','.join('?' * len(part))}) AND +plugin = ?",
                             (times, now, *part, plugin))
        if ids:
            self._db.write(run)

    def delete(self, plugin: str, mid: int) -> bool | None:
        def run(conn: Tx) -> Any:
            row = conn.execute("DELETE FROM memories WHERE plugin = ? AND id = ? RETURNING "
                               "has_vector, text", (plugin, mid)).fetchone()
            if row is not None:
                _unindex(conn, [(plugin, mid, row[1])])
            return row
        row = self._db.write(run)
        return None if row is None else bool(row[0])

    def count(self, plugin: str) -> dict[int, int]:
        return {int(t): int(n) for t, n in self._db.read(
            "SELECT tier, COUNT(*) FROM memories WHERE plugin = ? GROUP BY tier", (plugin,))}

    def consolidate(self, now: float, since: float, promote_after: int,
                    decay: float) -> Consolidated:
        def run(conn: Tx) -> Consolidated:
            gone = conn.execute("DELETE FROM memories WHERE expires_at IS NOT NULL AND "
                                "expires_at <= ? RETURNING plugin, id, text, has_vector",
                                (now,)).fetchall()
            _unindex(conn, [(p, i, t) for p, i, t, _ in gone])
            promoted = conn.execute("UPDATE memories SET tier = 2, expires_at = NULL WHERE "
                                    "tier = 1 AND recalls >= ?", (promote_after,)).rowcount
            conn.execute("UPDATE memories SET importance = importance * ? WHERE "
                         "accessed_at < ? AND importance > 0.01", (decay, since))
            return Consolidated(len(gone), promoted,
                                [(str(p), int(i)) for p, i, _, v in gone if v])
        return self._db.write(run)
