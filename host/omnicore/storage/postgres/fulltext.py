"""Full-text search on PostgreSQL: its own text search over a generated column.

The text is indexed as a generated ``tsvector`` (``tsv``) with the ``simple`` configuration
(no stemming, no stop words: what SQLite's unicode61 tokenizer does) under a GIN index, and a
query is the OR of its words; relevance is ``ts_rank`` scaled to the range BM25 gives for a
short text, so the score above (``r/(1+r)``) blends it as it blends BM25.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Backend, TextIndex

__all__ = ["TsVector"]

#: ts_rank of a one-word match in a short text is about 0.06-0.1; BM25 there is about 1.
_RANK_SCALE = 10.0


class TsVector(TextIndex):
    """A :class:`TextIndex` over ``table``'s generated ``tsv`` column (the database keeps it)."""

    def __init__(self, db: Backend, table: str, owner: str) -> None:
        self._db = db
        self._table = table
        self._owner = owner

    def search(self, owner: str, words: Sequence[str], columns: str, keep: str,
               args: Sequence[Any], limit: int, *, filtered: bool) -> list[tuple[Any, float]]:
        # The words are \w+ runs (memory_rows.query_words): quoting each makes it a lexeme.
        query = " | ".join("'" + w.replace("'", "").replace("\\", "") + "'" for w in words)
        rows = self._db.read(
            f"SELECT {columns}, ts_rank(m.tsv, q) AS rank FROM {self._table} m, "
            f"to_tsquery('simple', ?) q WHERE m.{self._owner} = ? AND m.tsv @@ q{keep} "
            "ORDER BY rank DESC, m.id LIMIT ?", (query, owner, *args, limit))
        return [(r[:-1], max(float(r[-1]) * _RANK_SCALE, 0.0)) for r in rows]
