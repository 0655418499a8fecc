"""Full-text search on SQLite: one FTS5 table per owner, ranked by BM25.

An owner's rows are indexed in a table of their own (``memories_fts_<scope>``, named by a
hash of the owner), so a search reads only that owner's index: other plugins' rows are never
scanned, and BM25's statistics (how many rows hold a word, the average length) are the
owner's own, not counts of what other plugins keep. (The memory schema v1 had one table for
every plugin with the plugin as a token of each row: that token matched all of a plugin's
rows, so BM25 walked them all on every search, 3 ms at 100,000 memories.) The tables are
external content tables over the rows and are written beside them in the same transaction (a
trigger cannot pick a table per row). The relevance handed up is ``-bm25`` (BM25 is negative
in FTS5: lower is better).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Backend, TextIndex, Tx

__all__ = ["FTS5", "create", "fts_table", "scope"]


def scope(owner: str) -> str:
    """The name part of ``owner``'s index, kept in its rows' ``scope`` column."""
    return "p" + hashlib.sha256(owner.encode()).hexdigest()[:20]


def fts_table(owner: str, table: str = "memories") -> str:
    """The FTS5 table of ``owner``'s rows (a name of hex digits: safe to put in SQL)."""
    return f"{table}_fts_{scope(owner)}"


def create(conn: Tx | sqlite3.Connection, index: str, table: str = "memories") -> None:
    """Create the FTS5 table ``index`` over ``table``'s ``text`` if it does not exist."""
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {index} USING fts5(text, "
                 f"content='{table}', content_rowid='id')")


class FTS5(TextIndex):
    """A :class:`TextIndex` of FTS5 tables, one per owner, over ``table``."""

    def __init__(self, db: Backend, table: str, owner: str) -> None:
        self._db = db
        self._table = table
        self._owner = owner
        #: Index tables known to exist (one is never dropped, so this cannot go stale).
        self._known: set[str] = set()

    def columns(self, owner: str) -> dict[str, Any]:
        return {"scope": scope(owner)}

    def added(self, tx: Tx, owner: str, rowid: int, text: str) -> None:
        index = fts_table(owner, self._table)
        create(tx, index, self._table)
        tx.execute(f"INSERT INTO {index}(rowid, text) VALUES (?, ?)", (rowid, text))

    def removed(self, tx: Tx, rows: Sequence[tuple[str, int, str]]) -> None:
        # An external content table forgets a row only when told its indexed text.
        for owner, rowid, text in rows:
            index = fts_table(owner, self._table)
            tx.execute(f"INSERT INTO {index}({index}, rowid, text) VALUES ('delete', ?, ?)",
                       (rowid, text))

    def search(self, owner: str, words: Sequence[str], columns: str, keep: str,
               args: Sequence[Any], limit: int, *, filtered: bool) -> list[tuple[Any, float]]:
        index = fts_table(owner, self._table)
        if not self._exists(index):
            return []  # the owner never wrote a row
        match = " OR ".join('"' + w.replace('"', "") + '"' for w in words)
        # The owner too: two owners whose names hash alike (2^-80) still never meet.
        keep = f"m.{self._owner} = ?{keep}"
        if not filtered:
            # Rank, then read only the best `limit` rows: reading a row per match to test
            # `keep` first cost twice the ranking. When enough of the best pass (or there are
            # no more matches), they are the answer of the query below.
            best = self._db.read(
                f"SELECT {columns}, f.rank, {keep} FROM (SELECT rowid, bm25({index}) AS rank "
                f"FROM {index} WHERE {index} MATCH ? ORDER BY rank LIMIT ?) f LEFT JOIN "
                f"{self._table} m ON m.id = f.rowid ORDER BY f.rank",
                (owner, *args, match, limit))  # in the order of the text
            rows = [r for r in best if r[-1]]
            if len(rows) == limit or len(best) < limit:
                return [(r[:-2], max(-float(r[-2]), 0.0)) for r in rows]
        rows = self._db.read(
            f"SELECT {columns}, bm25({index}) AS rank FROM {index} JOIN {self._table} m ON "
            f"m.id = {index}.rowid WHERE {index} MATCH ? AND {keep} ORDER BY rank LIMIT ?",
            (match, owner, *args, limit))
        return [(r[:-1], max(-float(r[-1]), 0.0)) for r in rows]

    def _exists(self, index: str) -> bool:
        if index not in self._known and self._db.has_table(index):
            self._known.add(index)
        return index in self._known
