"""``PostgresStorage``: the pool, migrations, error mapping, kv and the event log."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from omnicore.config.schema import masked_url
from omnicore.storage.audit_rows import AuditLog
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
    Storage,
    StorageError,
)
from omnicore.storage.instance_rows import InstanceRows
from omnicore.storage.memory_rows import MemoryRows
from omnicore.storage.postgres._schema import LOCK_ID, MIGRATIONS, SCHEMA_VERSION
from omnicore.storage.secret_rows import SecretRows
from omnicore.storage.settings_rows import PluginSettingsRows
from omnicore.storage.user_rows import UserRows
from omnicore.storage.vector_rows import VectorRows
from omnicore.storage.workflows import WorkflowStore

__all__ = ["PostgresStorage", "masked_url"]

T = TypeVar("T")
_INT = re.compile(rb"-?[0-9]{1,19}")
_I64 = (-(2**63), 2**63 - 1)


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise StorageError("storage.url names PostgreSQL but psycopg is not installed: "
                           "pip install 'omnicore[postgres]'") from None
    return psycopg, psycopg_pool


class PostgresStorage(Storage):
    """:class:`~omnicore.storage.base.Storage` on a PostgreSQL database shared by instances."""

    shared = True

    def __init__(self, url: str, *, max_connections: int = 8,
                 connect_timeout_s: float = 2.0) -> None:
        psycopg, psycopg_pool = _psycopg()
        self._psycopg = psycopg
        self.url = url
        self.location = masked_url(url)
        self._timeout = connect_timeout_s
        # A statement that waits on a lock or a dead server must end: the caller holds a
        # plugin call's deadline or a request.
        self._pool = psycopg_pool.ConnectionPool(
            url, min_size=1, max_size=max_connections, open=False, timeout=connect_timeout_s,
            # Autocommit: a read is one round trip; a write opens its own transaction.
            kwargs={"connect_timeout": max(1, int(connect_timeout_s)), "autocommit": True,
                    "options": "-c statement_timeout=30000"},
            name="omnicore")
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
            self._migrate()
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise self._error("cannot open", exc) from None
        except psycopg.Error as exc:
            self._pool.close()
            raise self._error("cannot open", exc) from None
        except StorageError:
            self._pool.close()
            raise
        from omnicore.storage.postgres._instances import Liveness, PgInstances
        from omnicore.storage.postgres._jobs import PgQueue, PgSchedules
        self.queue = PgQueue(self)
        self.schedules = PgSchedules(self)
        self.events: EventLog = _Events(self)
        self._instances = PgInstances(self)
        self.liveness = Liveness(url, connect_timeout_s)
        self._rows = _Rows(self)
        self._accounts = _Accounts(self)
        from omnicore.storage.postgres._workflows import PgWorkflows
        self._workflows = PgWorkflows(self)
        from omnicore.storage.postgres._settings import PgPluginSettings
        self._plugin_settings = PgPluginSettings(self)
        #: Statements that make the leases of dead owners (``= ANY(%s)``) due at once; a store
        #: with leases adds its own (reap runs them all in one transaction).
        self.lease_release_sql: list[str] = [
            "UPDATE tasks SET lease_until=0 WHERE state='running' AND owner = ANY(%s)",
            "UPDATE wf_steps SET lease_until=0 WHERE state='running' AND owner = ANY(%s)"]

    @property
    def instances(self) -> InstanceRows:
        return self._instances

    @property
    def memory(self) -> MemoryRows:
        return self._rows.memory

    @property
    def vectors(self) -> VectorRows:
        return self._rows.vectors

    @property
    def secrets(self) -> SecretRows:
        return self._accounts.secrets

    @property
    def users(self) -> UserRows:
        return self._accounts.users

    @property
    def audit(self) -> AuditLog:
        return self._accounts.audit

    @property
    def workflows(self) -> WorkflowStore:
        return self._workflows

    @property
    def plugin_settings(self) -> PluginSettingsRows:
        return self._plugin_settings

    def on_event(self, callback: Callable[[list[int]], None]) -> None:
        self.liveness.on_event(callback)

    def on_settings(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any instance changes a plugin's settings (LISTEN/NOTIFY);
        from a thread of the storage's own."""
        self.liveness.on_settings(callback)

    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        """Call ``callback`` whenever any instance enqueues work on ``queue`` or releases
        leases (LISTEN/NOTIFY); from a thread of the storage's own."""
        self.liveness.on_wakeup(callback, queue)

    def _error(self, what: str, exc: BaseException) -> StorageError:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return StorageError(f"storage {self.location}: {what}: {text}", path=self.location)

    def _migrate(self) -> None:
        with self._pool.connection() as conn, conn.transaction():
            # Several instances and a CLI command may start at once on an empty database:
            # one migrates, the others wait here and then find nothing to do.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
            conn.execute("CREATE TABLE IF NOT EXISTS omnicore_schema (version integer NOT NULL)")
            row = conn.execute("SELECT version FROM omnicore_schema").fetchone()
            version = row[0] if row else 0
            if row is None:
                conn.execute("INSERT INTO omnicore_schema VALUES (0)")
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"storage {self.location}: schema version {version} was written by a "
                    f"newer omnicore (this one knows up to {SCHEMA_VERSION}); upgrade omnicore",
                    path=self.location)
            for step in MIGRATIONS[version:]:
                conn.execute(step)
            conn.execute("UPDATE omnicore_schema SET version=%s", (SCHEMA_VERSION,))

    @property
    def schema_version(self) -> int:
        return int(self._read("SELECT version FROM omnicore_schema")[0][0])

    def _write(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` in one transaction; a database failure is a StorageError."""
        psycopg = self._psycopg
        try:
            for attempt in (1, 2):
                with self._pool.connection(timeout=self._timeout) as conn:
                    try:
                        tx = conn.transaction()
                        tx.__enter__()
                    except psycopg.OperationalError:
                        # A pooled connection the server closed (it restarted): BEGIN failed,
                        # so nothing was done; the pool drops it and the next one is tried.
                        if attempt == 1 and conn.broken:
                            continue
                        raise
                    try:
                        result = fn(conn)
                    except BaseException as exc:
                        tx.__exit__(type(exc), exc, exc.__traceback__)
                        raise
                    tx.__exit__(None, None, None)
                    return result
            raise AssertionError("unreachable")  # pragma: no cover
        except psycopg.Error as exc:
            raise self._error("write failed", exc) from None
        except StorageError:
            raise
        except Exception as exc:
            if type(exc).__name__ == "PoolTimeout":
                raise self._error("unreachable", exc) from None
            raise

    def _write1(self, sql: str, args: Sequence[Any] = (), *,
                returning: bool = False) -> tuple[int, list[Any]]:
        """One statement in autocommit: atomic on its own, and one round trip where
        :meth:`_write` takes three (BEGIN, the statement, COMMIT): its row count and, if
        ``returning``, the rows it returned. Like a read, it is tried again once on a pooled
        connection the server closed: the statement then never reached a live backend, and
        the callers' statements are leases and inserts into an at-least-once queue."""
        # (Not ``cur.description`` to tell: it builds a Column per column per call.)
        return self._statement(sql, args, "write failed", lambda cur: (
            cur.rowcount, cur.fetchall() if returning else []))

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """One statement outside a transaction (the hot path of kv get); a read is safe to
        try again once on a connection the server closed."""
        return self._statement(sql, args, "read failed", lambda cur: list(cur.fetchall()))

    def _statement(self, sql: str, args: Sequence[Any], what: str,
                   result: Callable[[Any], T]) -> T:
        psycopg = self._psycopg
        try:
            for attempt in (1, 2):
                with self._pool.connection(timeout=self._timeout) as conn:
                    try:
                        return result(conn.execute(sql, args))
                    except psycopg.OperationalError:
                        if attempt == 1 and conn.broken:
                            continue
                        raise
            raise AssertionError("unreachable")  # pragma: no cover
        except psycopg.Error as exc:
            raise self._error(what, exc) from None
        except Exception as exc:
            if type(exc).__name__ == "PoolTimeout":
                raise self._error("unreachable", exc) from None
            raise

    def kv(self, plugin: str) -> KVStore:
        return _KV(self, plugin)

    def tasks(self, plugin: str) -> PluginTasks:
        from omnicore.storage.postgres._jobs import PgPluginTasks
        return PgPluginTasks(self, plugin)

    def kv_plugins(self) -> list[str]:
        return [r[0] for r in self._read("SELECT plugin FROM kv_usage WHERE keys > 0 "
                                         "ORDER BY plugin")]

    def close(self) -> None:
        self.liveness.close()
        self._pool.close()

    def __repr__(self) -> str:
        return f"<PostgresStorage {self.location}>"


class _Rows:
    """Memory and vector rows, built once."""

    def __init__(self, storage: PostgresStorage) -> None:
        from omnicore.storage.postgres._memory import PgMemory
        from omnicore.storage.postgres._vectors import PgVectors
        self.memory = PgMemory(storage)
        self.vectors = PgVectors(storage)


class _Accounts:
    """The stores that have no state beyond their tables, built once."""

    def __init__(self, storage: PostgresStorage) -> None:
        from omnicore.storage.postgres._accounts import PgAudit, PgSecrets, PgUsers
        self.secrets = PgSecrets(storage)
        self.users = PgUsers(storage)
        self.audit = PgAudit(storage)


class _KV(KVStore):
    __slots__ = ("_s", "plugin")

    def __init__(self, storage: PostgresStorage, plugin: str) -> None:
        self._s = storage
        self.plugin = plugin

    def get(self, key: str) -> bytes | None:
        rows = self._s._read("SELECT value FROM kv WHERE plugin=%s AND key=%s",
                             (self.plugin, key))
        return bytes(rows[0][0]) if rows else None

    def _usage_for_update(self, conn: Any) -> tuple[int, int]:
        # The usage row is the per-plugin lock: concurrent writers of one plugin queue on it,
        # so a quota can never be passed by two writers that each saw room.
        conn.execute("INSERT INTO kv_usage(plugin, keys, bytes) VALUES (%s, 0, 0) "
                     "ON CONFLICT DO NOTHING", (self.plugin,))
        row = conn.execute("SELECT keys, bytes FROM kv_usage WHERE plugin=%s FOR UPDATE",
                           (self.plugin,)).fetchone()
        return int(row[0]), int(row[1])

    def _put(self, conn: Any, key: str, value: bytes, quota: KVQuota,
             usage: tuple[int, int]) -> None:
        old = conn.execute("SELECT size FROM kv WHERE plugin=%s AND key=%s",
                           (self.plugin, key)).fetchone()
        size, new_keys, new_bytes = quota.admit(self.plugin, key, value,
                                                old[0] if old else None, usage)
        conn.execute("INSERT INTO kv(plugin, key, value, size) VALUES (%s,%s,%s,%s) "
                     "ON CONFLICT (plugin, key) DO UPDATE SET value=excluded.value, "
                     "size=excluded.size", (self.plugin, key, value, size))
        conn.execute("UPDATE kv_usage SET keys=%s, bytes=%s WHERE plugin=%s",
                     (new_keys, new_bytes, self.plugin))

    def set(self, key: str, value: bytes, quota: KVQuota = DEFAULT_QUOTA) -> None:
        def run(conn: Any) -> None:
            self._put(conn, key, bytes(value), quota, self._usage_for_update(conn))
        self._s._write(run)

    def delete(self, key: str) -> bool:
        def run(conn: Any) -> bool:
            self._usage_for_update(conn)
            old = conn.execute("DELETE FROM kv WHERE plugin=%s AND key=%s RETURNING size",
                               (self.plugin, key)).fetchone()
            if old is None:
                return False
            conn.execute("UPDATE kv_usage SET keys=keys-1, bytes=bytes-%s WHERE plugin=%s",
                         (old[0], self.plugin))
            return True
        return self._s._write(run)

    def incr(self, key: str, delta: int, quota: KVQuota = DEFAULT_QUOTA) -> int:
        def run(conn: Any) -> int:
            usage = self._usage_for_update(conn)
            row = conn.execute("SELECT value FROM kv WHERE plugin=%s AND key=%s",
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
            self._put(conn, key, str(new).encode(), quota, usage)
            return new
        return self._s._write(run)

    def list(self, prefix: str = "", limit: int = MAX_LIST_KEYS) -> list[str]:
        rows = self._s._read(
            "SELECT key FROM kv WHERE plugin=%s AND key>=%s AND starts_with(key, %s) "
            "ORDER BY key LIMIT %s", (self.plugin, prefix, prefix, limit))
        return [r[0] for r in rows]

    def usage(self) -> KVUsage:
        rows = self._s._read("SELECT keys, bytes FROM kv_usage WHERE plugin=%s",
                             (self.plugin,))
        return KVUsage(int(rows[0][0]), int(rows[0][1])) if rows else KVUsage(0, 0)


class _Events(EventLog):
    def __init__(self, storage: PostgresStorage) -> None:
        self._s = storage

    def append(self, topic: str, plugin: str | None, payload: bytes, retain: int) -> int:
        def run(conn: Any) -> int:
            new = int(conn.execute("INSERT INTO events(topic, plugin, payload, created_at) "
                                   "VALUES (%s,%s,%s,%s) RETURNING id",
                                   (topic, plugin, payload, time.time())).fetchone()[0])
            if new % 64 == 0:  # trim now and then, not on every append
                conn.execute("DELETE FROM events WHERE id<=%s", (new - retain,))
            # The other hosts' live subscribers hear of it at commit (LISTEN omnicore_events).
            conn.execute("SELECT pg_notify('omnicore_events', %s)",
                         (f"{self._s.liveness.origin}:{new}",))
            return new
        return self._s._write(run)

    def get(self, event_id: int) -> EventRecord | None:
        rows = self._s._read("SELECT id, topic, plugin, payload, created_at FROM events WHERE "
                             "id=%s", (event_id,))
        return EventRecord(int(rows[0][0]), rows[0][1], rows[0][2], bytes(rows[0][3]),
                           float(rows[0][4])) if rows else None

    def get_many(self, event_ids: Sequence[int]) -> list[EventRecord]:
        found: list[EventRecord] = []
        event_ids = sorted(set(event_ids))
        for at in range(0, len(event_ids), 1000):
            found += [EventRecord(int(r[0]), r[1], r[2], bytes(r[3]), float(r[4]))
                      for r in self._s._read(
                          "SELECT id, topic, plugin, payload, created_at FROM events WHERE "
                          "id = ANY(%s) ORDER BY id", (list(event_ids[at:at + 1000]),))]
        return found

    def recent(self, limit: int = 100, topic_prefix: str = "") -> list[EventRecord]:
        rows = self._s._read("SELECT id, topic, plugin, payload, created_at FROM events WHERE "
                             "starts_with(topic, %s) ORDER BY id DESC LIMIT %s",
                             (topic_prefix, limit))
        return [EventRecord(int(r[0]), r[1], r[2], bytes(r[3]), float(r[4])) for r in rows]

