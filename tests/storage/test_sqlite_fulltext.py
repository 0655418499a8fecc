"""What only SQLite's full-text index has: a table per plugin, kept in step with the memory
rows, and the upgrade from the one table every plugin shared (memory schema v1)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from omnicore.storage import SQLiteStorage
from omnicore.storage.memory_rows import NewMemory, query_words
from omnicore.storage.sqlite.database import Database
from omnicore.storage.sqlite.fulltext import fts_table, scope
from omnicore.storage.sqlite.schema import COMPONENTS


def _add(storage: SQLiteStorage, plugin: str, text: str, *, tier: int = 2, cap: int = 100,
         importance: float = 0.5, expires_at: float | None = None) -> int:
    item = NewMemory(plugin, tier, text, None, importance, time.time(), expires_at, False)
    return storage.memory.insert(item, cap)[0]


def _search(storage: SQLiteStorage, plugin: str, query: str) -> list[tuple[int, float]]:
    found = storage.memory.search(plugin, query_words(query), (0, 1, 2), time.time(), [], 50)
    return [(row.id, rel) for row, rel in found]


def _indexed(path: Path, plugin: str) -> set[int]:
    """The rowids in ``plugin``'s FTS index (its own doclists, not the content table)."""
    conn = sqlite3.connect(path)
    try:
        table = fts_table(plugin)
        conn.execute(f"CREATE VIRTUAL TABLE temp.v USING fts5vocab(main, {table}, instance)")
        return {int(r[0]) for r in conn.execute("SELECT DISTINCT doc FROM temp.v")}
    finally:
        conn.close()


def test_the_index_forgets_deleted_evicted_and_expired_rows(tmp_path: Path) -> None:
    db = tmp_path / "omnicore.db"
    storage = SQLiteStorage(db)
    try:
        now = time.time()
        deleted = _add(storage, "p", "apple deleted")
        evicted = _add(storage, "p", "apple evicted", tier=1, cap=1, importance=0.1)
        kept = _add(storage, "p", "apple kept", tier=1, cap=1)  # evicts the one above
        expired = _add(storage, "p", "apple expired", tier=0, expires_at=now + 0.5)
        live = _add(storage, "p", "apple live")
        assert storage.memory.delete("p", deleted) is False
        assert storage.memory.consolidate(now + 1, now, 3, 0.95).expired == 1
        assert _indexed(db, "p") == {kept, live}
        assert {mid for mid, _ in _search(storage, "p", "apple")} == {kept, live}
        assert {deleted, evicted, expired}.isdisjoint(_indexed(db, "p"))
    finally:
        storage.close()


def test_relevance_does_not_depend_on_other_plugins_rows(tmp_path: Path) -> None:
    # BM25 counts rows: over a table every plugin shared, a plugin could read off its scores
    # how many memories the others keep, and with which words.
    storage = SQLiteStorage(tmp_path / "omnicore.db")
    try:
        mine = _add(storage, "a", "the harbour opens at dawn")
        _add(storage, "a", "lunch at noon")
        alone = _search(storage, "a", "harbour dawn")
        for i in range(200):
            _add(storage, "b", f"harbour dawn harbour note {i}")
            _add(storage, "c", f"unrelated words {i}")
        assert _search(storage, "a", "harbour dawn") == alone
        assert [mid for mid, _ in alone] == [mine]
        assert len(_search(storage, "b", "harbour")) == 50  # the limit, b's own rows
    finally:
        storage.close()


def test_a_v1_database_is_upgraded_to_a_table_per_plugin(tmp_path: Path) -> None:
    path = tmp_path / "omnicore.db"
    old = Database(path)
    old.ensure_schema("memory", COMPONENTS["memory"][:1])
    now = time.time()

    def write(conn: sqlite3.Connection) -> None:
        for mid, plugin, text in ((1, "a", "red apple"), (2, "a", "green pear"),
                                  (3, "b", "red car")):
            conn.execute("INSERT INTO memories (id, plugin, scope, tier, text, meta, importance,"
                         " created_at, accessed_at, expires_at) VALUES (?, ?, ?, 2, ?, NULL, "
                         "0.5, ?, ?, NULL)", (mid, plugin, scope(plugin), text, now, now))
    old.write(write)  # type: ignore[arg-type]
    old.close()
    storage = SQLiteStorage(path)
    try:
        assert [mid for mid, _ in _search(storage, "a", "red")] == [1]
        assert [mid for mid, _ in _search(storage, "b", "red")] == [3]
        assert _search(storage, "a", "car") == []
        assert storage.memory.delete("a", 1) is False
        assert _search(storage, "a", "red apple") == []
        assert _indexed(path, "a") == {2}
        conn = sqlite3.connect(path)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        conn.close()
        assert "memories_fts" not in names and "memories_ai" not in names
    finally:
        storage.close()


def test_a_plugin_that_never_remembered_finds_nothing(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "omnicore.db")
    try:
        _add(storage, "a", "something")
        assert _search(storage, "nobody", "something") == []
    finally:
        storage.close()
