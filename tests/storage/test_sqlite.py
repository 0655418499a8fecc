"""What only the SQLite backend has: the file, WAL, migrations, clear errors for bad files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from omnicore.storage import SQLiteStorage, StorageError, open_storage
from omnicore.storage.sqlite import SCHEMA_VERSION


def test_open_creates_a_wal_database_in_data_dir(tmp_path: Path) -> None:
    store = open_storage(tmp_path / "data")
    try:
        store.kv("p").set("k", b"v")
        assert (tmp_path / "data" / "omnicore.db").exists()
        conn = sqlite3.connect(tmp_path / "data" / "omnicore.db")
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()
    finally:
        store.close()


def test_an_older_database_is_migrated_and_keeps_its_data(tmp_path: Path) -> None:
    db = tmp_path / "omnicore.db"
    old = SQLiteStorage(db, upto=1)  # what the first release wrote: kv only
    old.kv("p").set("kept", b"yes")
    old.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='tasks'").fetchone() is None
    conn.close()
    store = SQLiteStorage(db)
    try:
        assert store.backend.schema_version == SCHEMA_VERSION
        assert store.kv("p").get("kept") == b"yes"
        assert store.jobs("p").pending() == 0
    finally:
        store.close()


def test_the_job_queue_of_a_database_from_before_the_rename_moves_with_its_rows(
        tmp_path: Path) -> None:
    db = tmp_path / "omnicore.db"
    SQLiteStorage(db, upto=4).close()  # the previous schema: the queue's table is `tasks`
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO tasks(plugin, handler, payload, state, attempts, max_attempts, "
                 "backoff_ms, run_at, created_at, source, hops) "
                 "VALUES ('p', 'h', x'00', 'queued', 0, 3, 10, 0, 0, 'call', 0)")
    conn.commit()
    conn.close()
    store = SQLiteStorage(db)
    try:
        assert store.backend.schema_version == SCHEMA_VERSION
        assert store.backend.has_table("jobs") and not store.backend.has_table("tasks")
        job = store.queue.claim("me", 1.0, 30)
        assert job is not None and (job.plugin, job.handler, job.payload) == ("p", "h", b"\0")
        assert store.queue.finish(job.id, "me", 2.0)
        assert store.jobs("p").pending() == 0
    finally:
        store.close()


def test_a_newer_database_is_refused_by_name(tmp_path: Path) -> None:
    db = tmp_path / "omnicore.db"
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StorageError, match=f"{db}.*newer omnicore"):
        SQLiteStorage(db)


def test_a_corrupt_file_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "omnicore.db"
    db.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StorageError) as info:
        SQLiteStorage(db)
    assert str(db) in str(info.value) and "damaged or not an omnicore database" in str(info.value)
    assert info.value.path == db


def test_a_locked_database_is_a_clear_error_naming_it(tmp_path: Path) -> None:
    db = tmp_path / "omnicore.db"
    SQLiteStorage(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    store = SQLiteStorage(db, busy_timeout_s=0.05)
    try:
        with pytest.raises(StorageError, match=f"{db}.*locked"):
            store.kv("p").set("k", b"v")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.kv("p").set("k", b"v")  # usable again once the lock is gone
    store.close()


def test_an_unwritable_data_dir_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot open"):
        open_storage(blocker / "data")
