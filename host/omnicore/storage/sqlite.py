"""The SQLite backend: one database file per app, WAL, one connection behind one lock.

Why one connection and a lock rather than a connection per thread: every kv operation is a
few microseconds of SQLite work, so the lock is rarely contended, writes are serialised by
SQLite anyway, and a single connection makes each read-modify-write (quotas, ``incr``,
``claim``) one ``BEGIN IMMEDIATE`` transaction with no retry loop.

Durability (``storage.synchronous``): ``normal`` (default) — in WAL mode a commit survives a
crash or ``kill -9`` of the host; only a power loss or OS crash can roll back the last
transactions. ``full`` also fsyncs the WAL on every commit (measured in
bench/bench_capabilities.py: a kv set goes from ≈10 µs to a disk flush, ≈1-5 ms here).

The schema is versioned with ``PRAGMA user_version`` and built by :data:`MIGRATIONS` with
sqlite-utils; opening an older file runs the missing steps in one transaction.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, cast

import sqlite_utils

from omnicore.storage.base import (
    DEFAULT_QUOTA,
    MAX_LIST_KEYS,
    EventLog,
    EventRecord,
    KVQuota,
    KVStore,
    KVUsage,
    NotAnInteger,
    PluginTasks,
    QuotaExceeded,
    Schedules,
    Storage,
    StorageError,
    Task,
    TaskQueue,
    TaskSpec,
    TaskState,
    ValueTooLarge,
)

__all__ = ["DB_FILE", "MIGRATIONS", "SCHEMA_VERSION", "SQLiteStorage"]

DB_FILE = "omnicore.db"
Synchronous = Literal["normal", "full"]

_INT = re.compile(rb"-?[0-9]{1,19}")
_I64 = (-(2**63), 2**63 - 1)


def _v1_kv(db: sqlite_utils.Database) -> None:
    db["kv"].create({"plugin": str, "key": str, "value": bytes, "size": int},  # type: ignore[union-attr]
                    pk=("plugin", "key"), not_null={"plugin", "key", "value", "size"})
    db["kv_usage"].create({"plugin": str, "keys": int, "bytes": int},  # type: ignore[union-attr]
                          pk="plugin", not_null={"keys", "bytes"})


def _v2_tasks(db: sqlite_utils.Database) -> None:
    db["tasks"].create({  # type: ignore[union-attr]
        "id": int, "plugin": str, "handler": str, "payload": bytes, "state": str,
        "attempts": int, "max_attempts": int, "backoff_ms": int, "run_at": float,
        "created_at": float, "started_at": float, "finished_at": float, "last_error": str,
        "source": str, "hops": int, "owner": str, "lease_until": float,
    }, pk="id", not_null={"plugin", "handler", "payload", "state", "attempts", "max_attempts",
                          "backoff_ms", "run_at", "created_at", "source", "hops"})
    db["tasks"].create_index(["state", "run_at"])  # type: ignore[union-attr]
    db["tasks"].create_index(["plugin", "state"])  # type: ignore[union-attr]
    db["schedules"].create({"plugin": str, "name": str, "next_fire": float},  # type: ignore[union-attr]
                           pk=("plugin", "name"), not_null={"next_fire"})


def _v3_events(db: sqlite_utils.Database) -> None:
    db["events"].create({"id": int, "topic": str, "plugin": str, "payload": bytes,  # type: ignore[union-attr]
                         "created_at": float}, pk="id",
                        not_null={"topic", "payload", "created_at"})


#: Step ``i`` takes a database from version ``i`` to ``i + 1``. Append only; never edit.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (_v1_kv, _v2_tasks,
                                                                   _v3_events)
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStorage(Storage):
    """:class:`~omnicore.storage.base.Storage` on one SQLite file.

    ``SQLiteStorage(path)`` opens (creating it and its folder if needed) and migrates;
    a corrupt, locked, unreadable or newer-version file raises :class:`StorageError` naming
    the file.
    """

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "normal",
                 busy_timeout_s: float = 5.0, upto: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise self._error("cannot open", exc) from None
        self._conn = conn
        try:
            conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._migrate(upto)
        except sqlite3.Error as exc:
            conn.close()
            raise self._error("cannot open", exc) from None
        except StorageError:
            conn.close()
            raise
        self.queue: TaskQueue = _Queue(self)
        self.schedules: Schedules = _Schedules(self)
        self.events: EventLog = _Events(self)

    def _error(self, what: str, exc: BaseException) -> StorageError:
        text = str(exc)
        hint = ""
        if "locked" in text or "busy" in text:
            hint = " (another process holds a write lock on it; is a second host running?)"
        elif "not a database" in text or "malformed" in text:
            hint = (" (the file is damaged or not an omnicore database: restore it from a "
                    "backup, or move it away to start empty)")
        return StorageError(f"storage {self.path}: {what}: {text}{hint}", path=self.path)

    def _migrate(self, upto: int) -> None:
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StorageError(f"storage {self.path}: schema version {version} was written by "
                               f"a newer omnicore (this one knows up to {SCHEMA_VERSION}); "
                               "upgrade omnicore or point data_dir elsewhere", path=self.path)
        if version >= upto:
            return
        db = sqlite_utils.Database(self._conn)
        with self._tx() as conn:
            for step in MIGRATIONS[version:upto]:
                step(db)
            conn.execute(f"PRAGMA user_version={upto}")

    @property
    def schema_version(self) -> int:
        return int(self._read("PRAGMA user_version")[0][0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (taken up front, so read-modify-write never upgrades)."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("cannot write", exc) from None
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK")
                raise self._error("cannot commit", exc) from None

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            with self._tx() as conn:
                return fn(conn)
        except sqlite3.Error as exc:
            raise self._error("write failed", exc) from None

    def _read(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error("read failed", exc) from None

    def kv(self, plugin: str) -> KVStore:
        return _KV(self, plugin)

    def tasks(self, plugin: str) -> PluginTasks:
        return _PluginTasks(self, plugin)

    def kv_plugins(self) -> list[str]:
        return [r[0] for r in self._read("SELECT plugin FROM kv_usage WHERE keys > 0 "
                                         "ORDER BY plugin")]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        return f"<SQLiteStorage {self.path}>"


class _KV(KVStore):
    __slots__ = ("_s", "plugin")

    def __init__(self, storage: SQLiteStorage, plugin: str) -> None:
        self._s = storage
        self.plugin = plugin

    def get(self, key: str) -> bytes | None:
        rows = self._s._read("SELECT value FROM kv WHERE plugin=? AND key=?", (self.plugin, key))
        return bytes(rows[0][0]) if rows else None

    def _put(self, conn: sqlite3.Connection, key: str, value: bytes, quota: KVQuota) -> None:
        if len(value) > quota.max_value_bytes:
            raise ValueTooLarge(f"value of {len(value)} bytes is over max_value_bytes "
                                f"({quota.max_value_bytes})")
        size = len(key.encode()) + len(value)
        old = conn.execute("SELECT size FROM kv WHERE plugin=? AND key=?",
                           (self.plugin, key)).fetchone()
        row = conn.execute("SELECT keys, bytes FROM kv_usage WHERE plugin=?",
                           (self.plugin,)).fetchone()
        keys, used = row if row else (0, 0)
        new_keys = keys + (0 if old else 1)
        new_bytes = used + size - (old[0] if old else 0)
        if new_keys > quota.max_keys:
            raise QuotaExceeded(f"plugin '{self.plugin}' has {keys} keys, max_keys is "
                                f"{quota.max_keys}")
        if new_bytes > quota.max_bytes and new_bytes > used:
            raise QuotaExceeded(f"plugin '{self.plugin}' would use {new_bytes} bytes, "
                                f"max_bytes is {quota.max_bytes}")
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


_TASK_COLS = ("id, plugin, handler, payload, state, attempts, max_attempts, backoff_ms, run_at, "
              "created_at, started_at, finished_at, last_error, source, hops, owner")


def _task(row: Sequence[Any]) -> Task:
    r = list(row)
    r[3] = bytes(r[3])
    return Task(*r)


def _insert(conn: sqlite3.Connection, spec: TaskSpec, now: float) -> int:
    row = conn.execute(
        "INSERT INTO tasks(plugin, handler, payload, state, attempts, max_attempts, "
        "backoff_ms, run_at, created_at, source, hops) VALUES (?,?,?,'queued',0,?,?,?,?,?,?) "
        "RETURNING id", (spec.plugin, spec.handler, spec.payload, spec.max_attempts,
                         spec.backoff_ms, spec.run_at, now, spec.source, spec.hops)).fetchone()
    return int(row[0])


class _PluginTasks(PluginTasks):
    __slots__ = ("_s", "plugin")

    def __init__(self, storage: SQLiteStorage, plugin: str) -> None:
        self._s = storage
        self.plugin = plugin

    def enqueue(self, handler: str, payload: bytes, run_at: float, *, max_attempts: int,
                backoff_ms: int, max_queued: int, source: str = "call", hops: int = 0) -> int:
        spec = TaskSpec(self.plugin, handler, bytes(payload), run_at, max_attempts, backoff_ms,
                        source, hops)

        def run(conn: sqlite3.Connection) -> int:
            pending = conn.execute("SELECT COUNT(*) FROM tasks WHERE plugin=? AND state IN "
                                   "('queued','running')", (self.plugin,)).fetchone()[0]
            if pending >= max_queued:
                raise QuotaExceeded(f"plugin '{self.plugin}' has {pending} tasks pending, "
                                    f"max_queued is {max_queued}")
            return _insert(conn, spec, time.time())
        return cast(int, self._s._write(run))

    def cancel(self, task_id: int) -> bool | None:
        return self._s.queue.cancel(task_id, time.time(), plugin=self.plugin)

    def get(self, task_id: int) -> Task | None:
        rows = self._s._read(f"SELECT {_TASK_COLS} FROM tasks WHERE id=? AND plugin=?",
                             (task_id, self.plugin))
        return _task(rows[0]) if rows else None

    def pending(self) -> int:
        return int(self._s._read("SELECT COUNT(*) FROM tasks WHERE plugin=? AND state IN "
                                 "('queued','running')", (self.plugin,))[0][0])


class _Queue(TaskQueue):
    def __init__(self, storage: SQLiteStorage) -> None:
        self._s = storage

    def add(self, spec: TaskSpec) -> int:
        return cast(int, self._s._write(lambda conn: _insert(conn, spec, time.time())))

    def get(self, task_id: int) -> Task | None:
        rows = self._s._read(f"SELECT {_TASK_COLS} FROM tasks WHERE id=?", (task_id,))
        return _task(rows[0]) if rows else None

    def list(self, *, plugin: str | None = None, states: Sequence[str] = (),
             limit: int = 100) -> list[Task]:
        where, args = [], []
        if plugin is not None:
            where.append("plugin=?")
            args.append(plugin)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        sql = f"SELECT {_TASK_COLS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._s._read(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
        return [_task(r) for r in rows]

    def claim(self, owner: str, now: float, lease_s: float) -> Task | None:
        def run(conn: sqlite3.Connection) -> Task | None:
            row = conn.execute(
                f"UPDATE tasks SET state='running', attempts=attempts+1, owner=?, "
                f"lease_until=?, started_at=? WHERE id=(SELECT id FROM tasks WHERE "
                f"(state='queued' AND run_at<=?) OR (state='running' AND lease_until<?) "
                f"ORDER BY run_at, id LIMIT 1) RETURNING {_TASK_COLS}",
                (owner, now + lease_s, now, now, now)).fetchone()
            return _task(row) if row else None
        return cast("Task | None", self._s._write(run))

    def renew(self, owner: str, task_ids: Sequence[int], lease_until: float) -> None:
        if not task_ids:
            return
        marks = ",".join("?" * len(task_ids))
        self._s._write(lambda conn: conn.execute(
            f"UPDATE tasks SET lease_until=? WHERE owner=? AND state='running' AND id IN "
            f"({marks})", (lease_until, owner, *task_ids)))

    def finish(self, task_id: int, owner: str, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE tasks SET state='succeeded', finished_at=?, owner=NULL, "
                               "lease_until=NULL WHERE id=? AND owner=? AND state='running'",
                               (now, task_id, owner))
            return cur.rowcount == 1
        return cast(bool, self._s._write(run))

    def fail(self, task_id: int, owner: str, now: float, error: str,
             retry_at: float | None) -> TaskState | None:
        state: TaskState = "queued" if retry_at is not None else "dead"

        def run(conn: sqlite3.Connection) -> TaskState | None:
            cur = conn.execute(
                "UPDATE tasks SET state=?, last_error=?, run_at=COALESCE(?, run_at), "
                "finished_at=?, owner=NULL, lease_until=NULL WHERE id=? AND owner=? AND "
                "state='running'", (state, error[:4096], retry_at,
                                    None if retry_at is not None else now, task_id, owner))
            return state if cur.rowcount == 1 else None
        return cast("TaskState | None", self._s._write(run))

    def release(self, owner: str, task_ids: Sequence[int]) -> None:
        if not task_ids:
            return
        marks = ",".join("?" * len(task_ids))
        self._s._write(lambda conn: conn.execute(
            f"UPDATE tasks SET state='queued', attempts=MAX(attempts-1, 0), owner=NULL, "
            f"lease_until=NULL WHERE owner=? AND state='running' AND id IN ({marks})",
            (owner, *task_ids)))

    def retry(self, task_id: int, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE tasks SET state='queued', attempts=0, run_at=?, "
                               "finished_at=NULL WHERE id=? AND state IN ('dead','cancelled')",
                               (now, task_id))
            return cur.rowcount == 1
        return cast(bool, self._s._write(run))

    def cancel(self, task_id: int, now: float, plugin: str | None = None) -> bool | None:
        def run(conn: sqlite3.Connection) -> bool | None:
            row = conn.execute("SELECT state, plugin FROM tasks WHERE id=?",
                               (task_id,)).fetchone()
            if row is None or (plugin is not None and row[1] != plugin):
                return None
            if row[0] != "queued":
                return False
            conn.execute("UPDATE tasks SET state='cancelled', finished_at=? WHERE id=?",
                         (now, task_id))
            return True
        return cast("bool | None", self._s._write(run))

    def next_due(self) -> float | None:
        rows = self._s._read("SELECT MIN(run_at) FROM tasks WHERE state='queued'")
        return rows[0][0] if rows and rows[0][0] is not None else None

    def counts(self) -> dict[tuple[str, TaskState], int]:
        rows = self._s._read("SELECT plugin, state, COUNT(*) FROM tasks GROUP BY plugin, state")
        return {(plugin, state): n for plugin, state, n in rows}

    def purge_finished(self, before: float) -> int:
        return cast(int, self._s._write(lambda conn: conn.execute(
            "DELETE FROM tasks WHERE state IN ('succeeded','cancelled') AND finished_at<?",
            (before,)).rowcount))


class _Schedules(Schedules):
    def __init__(self, storage: SQLiteStorage) -> None:
        self._s = storage

    def next_fire(self, plugin: str, name: str) -> float | None:
        rows = self._s._read("SELECT next_fire FROM schedules WHERE plugin=? AND name=?",
                             (plugin, name))
        return float(rows[0][0]) if rows else None

    def advance(self, plugin: str, name: str, expected: float | None, new_next: float,
                fire: TaskSpec | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if expected is None:
                cur = conn.execute("INSERT INTO schedules(plugin, name, next_fire) VALUES "
                                   "(?,?,?) ON CONFLICT DO NOTHING", (plugin, name, new_next))
            else:
                cur = conn.execute("UPDATE schedules SET next_fire=? WHERE plugin=? AND "
                                   "name=? AND next_fire=?", (new_next, plugin, name, expected))
            if cur.rowcount != 1:
                return False
            if fire is not None:
                _insert(conn, fire, time.time())
            return True
        return cast(bool, self._s._write(run))


class _Events(EventLog):
    def __init__(self, storage: SQLiteStorage) -> None:
        self._s = storage

    def append(self, topic: str, plugin: str | None, payload: bytes, retain: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            new = int(conn.execute("INSERT INTO events(topic, plugin, payload, created_at) "
                                   "VALUES (?,?,?,?) RETURNING id",
                                   (topic, plugin, payload, time.time())).fetchone()[0])
            if new % 64 == 0:  # trim now and then, not on every append
                conn.execute("DELETE FROM events WHERE id<=?", (new - retain,))
            return new
        return cast(int, self._s._write(run))

    def recent(self, limit: int = 100, topic_prefix: str = "") -> list[EventRecord]:
        rows = self._s._read("SELECT id, topic, plugin, payload, created_at FROM events WHERE "
                             "substr(topic, 1, ?)=? ORDER BY id DESC LIMIT ?",
                             (len(topic_prefix), topic_prefix, limit))
        return [EventRecord(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]
