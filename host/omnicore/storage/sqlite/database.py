"""The SQLite backend's file: one database per app, WAL, one connection behind one lock.

Why one connection and a lock rather than a connection per thread: every kv operation is a
few microseconds of SQLite work, so the lock is rarely contended, writes are serialised by
SQLite anyway, and a single connection makes each read-modify-write (quotas, ``incr``,
``claim``) one ``BEGIN IMMEDIATE`` transaction with no retry loop.

Durability (``storage.synchronous``): ``normal`` (default) — in WAL mode a commit survives a
crash or ``kill -9`` of the host; only a power loss or OS crash can roll back the last
transactions. ``full`` also fsyncs the WAL on every commit (measured in
bench/bench_capabilities.py: a kv set goes from ≈10 µs to a disk flush, ≈1-5 ms here).

The core schema (kv, jobs, schedules, events) is versioned with ``PRAGMA user_version`` and
built by :data:`MIGRATIONS` with sqlite-utils; opening an older file runs the missing steps in
one transaction. The other stores in the same file keep their own version in
``component_schema`` (:meth:`Database.ensure_schema`), so each migrates independently and
appending a step to one never renumbers another.

A full disk: the failed write is rolled back whole and raised as :class:`StorageFull` (its
message says "disk full"), reads go on, and the next write succeeds as soon as there is
space again. Every failure is also logged here, once per kind every few seconds, so a
plugin that only sees ``UNAVAILABLE`` leaves the reason in the host's log. The file is
created 0600 (its ``-wal`` and ``-shm`` follow; :mod:`omnicore.storage.datadir`).
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from omnicore.logging import get_logger
from omnicore.storage.backend import Backend, Dialect, TextIndex, Tx
from omnicore.storage.datadir import private_file
from omnicore.storage.errors import StorageError, StorageFull
from omnicore.storage.migration import Pending, Policy, ahead, behind
from omnicore.storage.sqlite.fulltext import FTS5
from omnicore.storage.sqlite.readcache import MISS as _MISS
from omnicore.storage.sqlite.readcache import ReadCache
from omnicore.storage.sqlite.schema import COMPONENTS
from omnicore.storage.sqlite.wakeup import Wakeup
from omnicore.storage.sqlite.walindex import WalIndex

if TYPE_CHECKING:
    import sqlite_utils

__all__ = ["DB_FILE", "MIGRATIONS", "SCHEMA_VERSION", "SQLITE", "Database", "Step", "Synchronous"]

T = TypeVar("T")

#: One writer holds the file (``BEGIN IMMEDIATE``): a claim needs no row locks.
def _json_filter(column: str, flt: Sequence[tuple[str, Any]]) -> tuple[str, list[Any]]:
    # The keys were checked (no '"'), so quoting them in the JSON path is safe.
    return ("".join(f" AND json_extract({column}, '$.\"{key}\"') = ?" for key, _ in flt),
            [v for _, v in flt])


SQLITE = Dialect(name="sqlite", single_writer=True, skip_locked="", for_update="", same="IS",
                 greatest="MAX", insertion_order="rowid", json_filter=_json_filter,
                 no_index="+")

DB_FILE = "omnicore.db"
Synchronous = Literal["normal", "full"]
#: One migration step of a component: runs SQL on the connection inside a write transaction.
Step = Callable[[sqlite3.Connection], None]

_log = get_logger("storage")
#: At most one log line per kind of failure per this many seconds (a plugin retrying a write
#: on a full disk must not flood the log); the lines skipped are counted in the next one.
_LOG_EVERY_S = 10.0


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


def _v4_kv_usage_triggers(db: sqlite_utils.Database) -> None:
    # Triggers keep kv_usage beside kv on insert and update, so a set is one statement (with
    # its quota check in its WHERE) instead of a transaction of five: half the time
    # (bench_capabilities.py). No trigger on delete: a host of the previous version still
    # running on this file (an upgraded CLI migrated it) writes absolute usage after its
    # inserts and updates, which overrides the triggers, but subtracts after its deletes,
    # which one would double. The usage is recounted once here, so no drift from before can
    # outlive the upgrade.
    conn = db.conn
    conn.execute("DELETE FROM kv_usage")
    conn.execute("INSERT INTO kv_usage(plugin, keys, bytes) "
                 "SELECT plugin, count(*), sum(size) FROM kv GROUP BY plugin")
    conn.execute("CREATE TRIGGER kv_usage_insert AFTER INSERT ON kv BEGIN "
                 "INSERT INTO kv_usage(plugin, keys, bytes) VALUES (new.plugin, 1, new.size) "
                 "ON CONFLICT(plugin) DO UPDATE SET keys = keys + 1, bytes = bytes + new.size; "
                 "END")
    conn.execute("CREATE TRIGGER kv_usage_update AFTER UPDATE OF size ON kv BEGIN "
                 "UPDATE kv_usage SET bytes = bytes - old.size + new.size "
                 "WHERE plugin = new.plugin; END")


def _v5_jobs(db: sqlite_utils.Database) -> None:
    # The durable queue row is a job (specs/host.md's glossary), and so is its table. A plain
    # rename, unlike PostgreSQL's view for a rolling upgrade: one host holds a data dir, and
    # a view would not serve the previous version's enqueue (SQLite's INSERT ... RETURNING
    # through an INSTEAD OF trigger returns no id). The indexes keep their names
    # (idx_tasks_state_run_at, idx_tasks_plugin_state): SQLite renames no index, and
    # rebuilding them to change a name would cost a pass over the whole queue.
    db.conn.execute("ALTER TABLE tasks RENAME TO jobs")


def _v6_job_runs_keys(db: sqlite_utils.Database) -> None:
    # The host that ran each delivery of a job (space-separated runtime ids), and the
    # idempotency keys of enqueues through the REST API (kept a day).
    db.conn.execute("ALTER TABLE jobs ADD COLUMN runs TEXT NOT NULL DEFAULT ''")
    db.conn.execute("CREATE TABLE job_keys (key TEXT PRIMARY KEY, job_id INTEGER, "
                    "digest TEXT NOT NULL, created_at REAL NOT NULL)")
    db.conn.execute("CREATE INDEX job_keys_by_age ON job_keys(created_at)")


def _v7_job_results(db: sqlite_utils.Database) -> None:
    # What a job's handler answered (its first 64 KiB), kept with the job.
    db.conn.execute("ALTER TABLE jobs ADD COLUMN result BLOB")


def _v8_jobs_due_by_plugin(db: sqlite_utils.Database) -> None:
    # A claim limited to the plugins a host serves probes each plugin's oldest due job
    # (stores/leases.py): one index seek per plugin, whatever the queue holds of others.
    db.conn.execute("CREATE INDEX jobs_due_by_plugin ON jobs(plugin, run_at, id) "
                    "WHERE state = 'queued'")


def _v9_job_digest(db: sqlite_utils.Database) -> None:
    # The plugin version a job must run on (sha256:<hex>; NULL: any): claimed only by a
    # host serving that module (stores/leases.py).
    db.conn.execute("ALTER TABLE jobs ADD COLUMN digest TEXT")


def _v10_event_hops(db: sqlite_utils.Database) -> None:
    # The hops of the work that published an event, so a host delivering another host's
    # event counts on from there (capabilities.events.max_hops holds across hosts).
    db.conn.execute("ALTER TABLE events ADD COLUMN hops INTEGER NOT NULL DEFAULT 1")


def _v11_job_trace(db: sqlite_utils.Database) -> None:
    # The W3C traceparent of the span that queued a job (NULL: tracing was off), so its run
    # continues that trace (omnicore.telemetry).
    db.conn.execute("ALTER TABLE jobs ADD COLUMN trace TEXT")


#: Step ``i`` takes a database from version ``i`` to ``i + 1``. Append only; never edit. One
#: host holds the file at a time, so a step needs no expand-then-contract (``_v5_jobs``).
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _v1_kv, _v2_tasks, _v3_events, _v4_kv_usage_triggers, _v5_jobs, _v6_job_runs_keys,
    _v7_job_results, _v8_jobs_due_by_plugin, _v9_job_digest, _v10_event_hops,
    _v11_job_trace)
SCHEMA_VERSION = len(MIGRATIONS)
#: Components whose tables live in a file of their own (console.db: sqlite/users.py).
_ELSEWHERE = frozenset({"users"})


class Database(Backend):
    """One SQLite file: opened (created, migrated) at construction, shared by every store.

    A corrupt, locked, unreadable or newer-version file raises :class:`StorageError` naming
    the file. It is the SQLite :class:`~omnicore.storage.backend.Backend`: the stores run
    their SQL through :meth:`read`, :meth:`write_one` and :meth:`write`.
    """

    dialect = SQLITE
    latest_schema = SCHEMA_VERSION

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "normal",
                 busy_timeout_s: float = 5.0, upto: int = SCHEMA_VERSION,
                 foreign_keys: bool = False, schema: Policy = "migrate") -> None:
        self.path = Path(path)
        self.location = str(self.path)
        #: Another process's enqueue wakes the host's idle workers (see wakeup.py).
        self.wakeup = Wakeup(self.path)
        self._lock = threading.RLock()
        self._logged: dict[str, tuple[float, int]] = {}
        self._policy = schema
        try:
            private_file(self.path)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                                   timeout=busy_timeout_s)
        except (OSError, sqlite3.Error) as exc:
            raise self._error("cannot open", exc) from None
        self._conn = conn
        #: kv values read, kept while nothing has committed since (read_value).
        self.read_cache = ReadCache()
        #: Tells a reader whether anything committed since it last looked (the kv cache).
        self.walindex: WalIndex | None = None
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()
            conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
            if foreign_keys:  # only outside a transaction: here, once
                conn.execute("PRAGMA foreign_keys=ON")
            if schema == "migrate":
                self._migrate(upto)
            elif schema == "require":
                self._require()
        except sqlite3.Error as exc:
            conn.close()
            raise self._error("cannot open", exc) from None
        except StorageError:
            conn.close()
            raise
        if mode and str(mode[0]).lower() == "wal":
            self.walindex = WalIndex.open(self.path)

    def _error(self, what: str, exc: BaseException) -> StorageError:
        text = str(exc)
        hint = ""
        error: StorageError
        if _is_full(exc):
            error = StorageFull(f"storage {self.path}: {what}: disk full ({text}): nothing was "
                                "written; free space on its disk and writes work again",
                                path=self.path)
        else:
            if "locked" in text or "busy" in text:
                hint = " (another process holds a write lock on it; is a second host running?)"
            elif "not a database" in text or "malformed" in text:
                hint = (" (the file is damaged or not an omnicore database: restore it from a "
                        "backup, or move it away to start empty)")
            error = StorageError(f"storage {self.path}: {what}: {text}{hint}", path=self.path)
        if what != "cannot open":  # that one ends the start, in one line of its own
            self._report(what, error)
        return error

    def _report(self, what: str, error: StorageError) -> None:
        now = time.monotonic()
        with self._lock:
            last, skipped = self._logged.get(what, (float("-inf"), 0))
            if now - last < _LOG_EVERY_S:
                self._logged[what] = (last, skipped + 1)
                return
            self._logged[what] = (now, 0)
        more = f" ({skipped} more like it in the last {_LOG_EVERY_S:.0f}s)" if skipped else ""
        _log.error("%s%s", error, more)

    def _core_version(self) -> int:
        version = int(self._conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise ahead(self.location, version, None, SCHEMA_VERSION)
        return version

    def _require(self) -> None:
        # storage.migrate false: a file this omnicore would migrate is refused, whole.
        todo = self.pending()
        if todo:
            first = todo[0]
            raise behind(self.location, f"{first.component} {first.version - 1}",
                         f"{first.component} {_latest(first.component)}")

    def pending(self) -> list[Pending]:
        version = self._core_version()
        todo = [Pending("core", i + 1, MIGRATIONS[i].__name__.lstrip("_"))
                for i in range(version, SCHEMA_VERSION)]
        found = dict(self.read("SELECT component, version FROM component_schema")) \
            if self.has_table("component_schema") else {}
        for name, steps in COMPONENTS.items():
            if name not in _ELSEWHERE:
                todo += [Pending(name, i + 1, steps[i].__name__.lstrip("_"))
                         for i in range(found.get(name, 0), len(steps))]
        return todo

    def migrate(self) -> list[Pending]:
        todo = self.pending()
        self._migrate(SCHEMA_VERSION)
        for name, steps in COMPONENTS.items():
            if name not in _ELSEWHERE:
                self.ensure_schema(name, steps, policy="migrate")
        return todo

    def _migrate(self, upto: int) -> None:
        version = self._core_version()
        if version >= upto:
            return
        # Imported here, not at the top: sqlite-utils imports numpy, a tenth of a second that
        # every `omnicore call` in an app would pay although only a new file migrates.
        import sqlite_utils

        db = sqlite_utils.Database(self._conn)
        with self._tx() as conn:
            for step in MIGRATIONS[version:upto]:
                step(db)
            conn.execute(f"PRAGMA user_version={upto}")

    @property
    def schema_version(self) -> int:
        return int(self.read("PRAGMA user_version")[0][0])

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (taken up front, so read-modify-write never upgrades)."""
        with self._lock:
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error("cannot write", exc) from None
            # A header not yet seen at work is proven by this commit, if it writes a row.
            index = self.walindex if self.walindex and self.walindex.state == "unproven" \
                else None
            before, changes = (index.read(), conn.total_changes) if index else (None, 0)
            try:
                yield conn
            except BaseException:
                _rollback(conn)
                raise
            try:
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(conn)
                raise self._error("cannot commit", exc) from None
            if index is not None and conn.total_changes > changes:
                index.confirm(before)

    def write(self, fn: Callable[[Tx], T]) -> T:
        try:
            with self._tx() as conn:
                tx = _Tx(conn)
                result = fn(tx)
        except sqlite3.Error as exc:
            raise self._error("write failed", exc) from None
        for queue in tx.woken:
            self.wakeup.send(queue)
        return result

    def write_one(self, sql: str, args: Sequence[Any] = (), *, returning: bool = False,
                  wake: str | None = None) -> tuple[int, list[Any]]:
        try:
            with self._lock:
                index = self.walindex
                before = index.read() if index is not None and index.state == "unproven" \
                    else None
                cur = self._conn.execute(sql, args)
                rows = cur.fetchall() if returning else []
                changed = len(rows) if returning else cur.rowcount
                if index is not None and before is not None and changed > 0:
                    index.confirm(before)
        except sqlite3.Error as exc:
            raise self._error("write failed", exc) from None
        if wake is not None and changed > 0:
            self.wakeup.send(wake)
        return changed, rows

    def read(self, sql: str, args: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            with self._lock:
                return self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error("read failed", exc) from None

    def read_value(self, sql: str, args: Sequence[Any] = (),
                   cache_key: tuple[str, str] | None = None) -> Any:
        """With ``cache_key``, from :attr:`read_cache` while nothing has committed since it
        was read (the wal-index header says so): a hit costs no SQL."""
        index = self.walindex
        cache = self.read_cache
        if index is None or cache_key is None:
            rows = self.read(sql, args)
            return rows[0][0] if rows else None
        with self._lock:
            stamp = index.stamp()
            in_tx = self._conn.in_transaction
            if stamp is None or stamp != cache.stamp or in_tx:
                # Something committed (or a transaction of ours is open, or the header is
                # being written): nothing cached can be trusted; what is read now, after the
                # stamp was taken, can be kept under it.
                cache.drop(stamp if not in_tx else None)
            else:
                hit = cache.values.get(cache_key, _MISS)
                if hit is not _MISS:
                    return hit
            try:
                row = self._conn.execute(sql, args).fetchone()
            except sqlite3.Error as exc:
                raise self._error("read failed", exc) from None
            value = row[0] if row else None
            cache.keep(cache_key, value)
            return value

    def prepare(self, component: str) -> None:
        self.ensure_schema(component, COMPONENTS[component], policy=self._policy)

    def has_table(self, name: str) -> bool:
        return bool(self.read("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                              (name,)))

    def text_index(self, table: str, owner: str) -> TextIndex:
        return FTS5(self, table, owner)

    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        self.wakeup.listen(callback, queue)

    def ensure_schema(self, component: str, steps: Sequence[Step],
                      policy: Policy = "migrate") -> None:
        """Bring ``component``'s tables to ``len(steps)``; a newer version raises
        StorageError, and so does an older one under any ``policy`` but ``migrate``. Steps
        run inside one write transaction."""
        try:
            with self._tx() as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS component_schema "
                             "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
                row = conn.execute("SELECT version FROM component_schema WHERE component = ?",
                                   (component,)).fetchone()
                version = row[0] if row else 0
                if version > len(steps):
                    raise StorageError(f"storage {self.location}: the {component} tables are at "
                                       f"version {version}, written by a newer omnicore (this one "
                                       f"knows up to {len(steps)}); upgrade omnicore",
                                       path=self.location)
                if version < len(steps) and policy != "migrate":
                    raise behind(self.location, f"{component} {version}",
                                 f"{component} {len(steps)}")
                for step in steps[version:]:
                    step(conn)
                if version < len(steps):
                    conn.execute("INSERT INTO component_schema VALUES (?, ?) "
                                 "ON CONFLICT(component) "
                                 "DO UPDATE SET version = excluded.version",
                                 (component, len(steps)))
        except sqlite3.Error as exc:
            raise self._error("write failed", exc) from None

    def close(self) -> None:
        self.wakeup.close()
        with self._lock:
            if self.walindex is not None:
                self.walindex.close()
            self._conn.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.path}>"


class _Tx:
    """A write transaction on the connection; wake-ups go out after it commits."""

    __slots__ = ("execute", "executemany", "woken")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.execute = conn.execute
        self.executemany = conn.executemany
        self.woken: set[str] = set()

    def lock(self, key: str) -> None:
        return None  # the transaction already holds the only write lock there is

    def wake(self, queue: str) -> None:
        self.woken.add(queue)

    def announce(self, channel: str, payload: str) -> None:
        return None  # no other host shares the file


def _latest(component: str) -> int:
    return SCHEMA_VERSION if component == "core" else len(COMPONENTS[component])


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite rolls a transaction back by itself after some errors (a full disk among them);
    # a second ROLLBACK would then fail and hide the error that matters.
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _is_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_FULL
