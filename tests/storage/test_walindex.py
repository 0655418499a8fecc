"""The SQLite kv read cache and the wal-index header it trusts (storage/sqlite/walindex.py).

A cached value must never outlive a commit, whoever made it: this process through the store,
another connection of this process, or another process writing the file with plain sqlite3.
Each write path is tried against a value cached just before it.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from omnicore.storage import JobSpec, KVQuota, QuotaExceeded, SQLiteStorage
from omnicore.storage.sqlite.readcache import ReadCache
from omnicore.storage.sqlite.walindex import WalIndex


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStorage:
    s = SQLiteStorage(tmp_path / "omnicore.db")
    s.kv("p").set("k", b"first")  # a commit of ours: the header is seen at work
    assert s.backend.walindex is not None and s.backend.walindex.state == "live"
    return s


def _cached(store: SQLiteStorage, key: str, plugin: str = "p") -> bytes | None:
    """Read twice: the second read is answered by the cache (asserted)."""
    kv = store.kv(plugin)
    value = kv.get(key)
    assert kv.get(key) == value
    assert store.backend.read_cache.values.get((plugin, key), "absent") == value
    return value


def _other_process(db: Path, sql: str, *args: object) -> None:
    code = ("import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute(sys.argv[2], eval(sys.argv[3])); c.close()")
    subprocess.run([sys.executable, "-c", code, str(db), sql, repr(args)], check=True,
                   timeout=60)


def test_a_commit_by_another_process_is_seen_by_the_next_get(store: SQLiteStorage) -> None:
    db = store.path
    try:
        assert _cached(store, "k") == b"first"
        _other_process(db, "UPDATE kv SET value=? WHERE plugin='p' AND key='k'", b"second")
        assert store.kv("p").get("k") == b"second"
        # An absence is cached too, and a row inserted behind it is seen.
        assert _cached(store, "new") is None
        _other_process(db, "INSERT INTO kv(plugin, key, value, size) VALUES ('p','new',?,4)",
                       b"x")
        assert store.kv("p").get("new") == b"x"
        assert _cached(store, "new") == b"x"
        _other_process(db, "DELETE FROM kv WHERE plugin='p' AND key='new'")
        assert store.kv("p").get("new") is None
        # A checkpoint that restarts the WAL rewrites the header as well.
        assert _cached(store, "k") == b"second"
        _other_process(db, "UPDATE kv SET value=? WHERE plugin='p' AND key='k'", b"third")
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        assert store.kv("p").get("k") == b"third"
    finally:
        store.close()


def test_every_write_of_ours_and_of_a_second_storage_is_seen(store: SQLiteStorage,
                                                             tmp_path: Path) -> None:
    second = SQLiteStorage(store.path)
    kv = store.kv("p")
    try:
        writes = [
            ("set", lambda: kv.set("k", b"set"), b"set"),
            ("delete", lambda: kv.delete("k"), None),
            ("incr", lambda: kv.incr("k", 5), b"5"),
            ("set again", lambda: kv.set("k", b"back"), b"back"),
            ("second storage set", lambda: second.kv("p").set("k", b"other"), b"other"),
            ("second storage delete", lambda: second.kv("p").delete("k"), None),
            ("second storage incr", lambda: second.kv("p").incr("k", 2), b"2"),
            ("second storage set", lambda: second.kv("p").set("k", b"quiet"), b"quiet"),
            ("a job enqueued", lambda: second.queue.add(JobSpec("p", "h", b"", 0.0)),
            b"quiet"),
        ]
        for what, write, expected in writes:
            _cached(store, "k")
            write()
            assert kv.get("k") == expected, what
        # A refused write leaves the cached value standing, and right.
        with pytest.raises(QuotaExceeded):
            kv.set("k", b"x" * 100, KVQuota(max_bytes=50))
        assert _cached(store, "k") == b"quiet"
    finally:
        second.close()
        store.close()


def test_a_read_inside_a_transaction_that_rolls_back_is_not_kept(store: SQLiteStorage) -> None:
    kv = store.kv("p")

    def write_read_fail(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE kv SET value=? WHERE plugin='p' AND key='k'", (b"uncommitted",))
        assert kv.get("k") == b"uncommitted"  # a read of our own open transaction
        raise RuntimeError("rolled back")

    try:
        _cached(store, "k")
        with pytest.raises(RuntimeError):
            store.backend.write(write_read_fail)  # type: ignore[arg-type]
        assert kv.get("k") == b"first"
        assert kv.get("k") == b"first"
    finally:
        store.close()


def test_the_cache_is_bounded_and_never_mixes_plugins(store: SQLiteStorage) -> None:
    kv = store.kv("p")
    try:
        kv.set("big", b"b" * (ReadCache.MAX_VALUE + 1))
        store.kv("q").set("k", b"q's")
        assert _cached(store, "k", "q") == b"q's"
        assert _cached(store, "k", "p") == b"first"
        assert kv.get("big") == b"b" * (ReadCache.MAX_VALUE + 1)
        assert ("p", "big") not in store.backend.read_cache.values
        for i in range(ReadCache.MAX_ENTRIES + 10):
            kv.get(f"missing-{i}")
            assert len(store.backend.read_cache.values) <= ReadCache.MAX_ENTRIES
        # And in bytes: values just under the size kept, more than MAX_BYTES of them.
        big = b"v" * (ReadCache.MAX_VALUE - 64)
        n = ReadCache.MAX_BYTES // len(big) + 10
        roomy = KVQuota(max_keys=10**6, max_bytes=10**9)
        for i in range(n):
            kv.set(f"b{i}", big, roomy)
        for i in range(n):
            assert kv.get(f"b{i}") == big
            cache = store.backend.read_cache
            assert cache.nbytes <= ReadCache.MAX_BYTES
            assert cache.nbytes == sum(len(k) + len(v or b"") for (_, k), v in
                                       cache.values.items())
        assert len(store.backend.read_cache.values) > 1  # they were kept, within the bound
    finally:
        store.close()


def test_a_header_that_is_not_sqlites_is_never_trusted(tmp_path: Path) -> None:
    live = SQLiteStorage(tmp_path / "live.db")
    live.kv("p").set("k", b"v")
    # A rollback-journal database beside a copy of a real -shm file: SQLite never touches it.
    fake = tmp_path / "fake.db"
    conn = sqlite3.connect(fake, isolation_level=None)
    conn.execute("CREATE TABLE t (a)")
    shutil.copy(f"{live.path}-shm", f"{fake}-shm")
    index = WalIndex.open(fake)
    assert index is not None and index.stamp() is None  # unproven: not used yet
    before = index.read()
    conn.execute("INSERT INTO t VALUES (1)")  # a commit of ours that the header did not see
    index.confirm(before)
    assert index.state == "dead" and index.stamp() is None
    index.close()
    conn.close()
    # An unknown layout (another version) or a short file is refused at the door.
    (tmp_path / "other.db-shm").write_bytes(b"\x01" * 200)
    assert WalIndex.open(tmp_path / "other.db") is None
    (tmp_path / "short.db-shm").write_bytes(b"\x00" * 10)
    assert WalIndex.open(tmp_path / "short.db") is None
    assert WalIndex.open(tmp_path / "none.db") is None
    live.close()


def test_any_commit_of_ours_proves_the_header_but_one_that_wrote_nothing_does_not(
        tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "omnicore.db")
    try:
        assert store.backend.walindex is not None and store.backend.walindex.state == "unproven"
        assert store.kv("p").delete("absent") is False  # a write that changed no row
        assert store.backend.walindex.state == "unproven"
        assert store.kv("p").get("k") is None
        assert store.backend.read_cache.values == {}  # nothing kept while unproven
        store.queue.add(JobSpec("p", "h", b"", 0.0))  # a transaction, not a kv write
        assert store.backend.walindex.state == "live"
        assert _cached(store, "k") is None
    finally:
        store.close()


def test_a_database_not_in_wal_mode_reads_through_sqlite(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "omnicore.db")
    store.close()
    # Without a wal-index (no -shm: here, the index refused) every get asks SQLite.
    store = SQLiteStorage(tmp_path / "omnicore.db")
    assert store.backend.walindex is not None
    store.backend.walindex.close()
    store.backend.walindex = None
    try:
        store.kv("p").set("k", b"v")
        assert store.kv("p").get("k") == b"v"
        assert store.backend.read_cache.values == {}
    finally:
        store.close()


def test_the_upgrade_recounts_usage_and_triggers_keep_it(tmp_path: Path) -> None:
    db = tmp_path / "omnicore.db"
    SQLiteStorage(db, upto=3).close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("INSERT INTO kv VALUES ('p', 'a', x'0102', 3), ('p', 'bb', x'01', 3)")
    conn.execute("INSERT INTO kv_usage VALUES ('p', 7, 999)")  # drifted
    conn.close()
    store = SQLiteStorage(db)
    kv = store.kv("p")
    try:
        assert (kv.usage().keys, kv.usage().bytes) == (2, 6)
        kv.set("c", b"123")
        kv.set("a", b"1")
        kv.delete("bb")
        assert (kv.usage().keys, kv.usage().bytes) == (2, 6)
    finally:
        store.close()


def test_a_previous_version_still_writing_the_upgraded_file_keeps_usage_right(
        tmp_path: Path) -> None:
    """An upgraded CLI migrates the file while a host of the previous version still runs on
    it: that host's writes (replayed here as it made them: absolute usage after an insert or
    update, a subtraction after a delete) and the triggers must not count twice."""
    db = tmp_path / "omnicore.db"
    store = SQLiteStorage(db)
    kv = store.kv("p")
    old = sqlite3.connect(db, isolation_level=None)

    def old_put(key: str, value: bytes) -> None:
        old.execute("BEGIN IMMEDIATE")
        row = old.execute("SELECT size FROM kv WHERE plugin='p' AND key=?", (key,)).fetchone()
        keys, used = old.execute("SELECT keys, bytes FROM kv_usage WHERE plugin='p'"
                                 ).fetchone() or (0, 0)
        size = len(key.encode()) + len(value)
        new_keys, new_bytes = keys + (row is None), used + size - (row[0] if row else 0)
        old.execute("INSERT INTO kv(plugin, key, value, size) VALUES ('p',?,?,?) ON CONFLICT"
                    "(plugin, key) DO UPDATE SET value=excluded.value, size=excluded.size",
                    (key, value, size))
        old.execute("INSERT INTO kv_usage(plugin, keys, bytes) VALUES ('p',?,?) ON CONFLICT"
                    "(plugin) DO UPDATE SET keys=excluded.keys, bytes=excluded.bytes",
                    (new_keys, new_bytes))
        old.execute("COMMIT")

    def old_delete(key: str) -> None:
        old.execute("BEGIN IMMEDIATE")
        row = old.execute("DELETE FROM kv WHERE plugin='p' AND key=? RETURNING size",
                          (key,)).fetchone()
        if row is not None:
            old.execute("UPDATE kv_usage SET keys=keys-1, bytes=bytes-? WHERE plugin='p'",
                        (row[0],))
        old.execute("COMMIT")

    try:
        kv.set("a", b"12345")
        old_put("b", b"xy")
        old_put("a", b"1")
        kv.set("c", b"c")
        old_delete("c")
        kv.delete("b")
        old_put("d", b"dddd")
        assert (kv.usage().keys, kv.usage().bytes) == (2, 2 + 5)
        assert sorted(kv.list("")) == ["a", "d"]
    finally:
        old.close()
        store.close()

