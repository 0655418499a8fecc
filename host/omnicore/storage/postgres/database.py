"""The PostgreSQL backend's connection: a pool, migrations, error mapping, NOTIFY wake-ups.

Why a pool of at most ``max_connections`` (default 8): PostgreSQL's default
``max_connections`` is 100, and a cluster of several instances, each with its workers, the
console and CLI commands, must fit in it with room for the operator's own tools.

Every database error becomes a :class:`~omnicore.storage.errors.StorageError` naming the
database with its password masked; an unreachable server fails within ``connect_timeout_s``
instead of hanging a caller, while a pool whose every connection is busy (the server
answering) is waited for up to :data:`BUSY_WAIT_S` more, as pools do, not failed at 2 s.
Stores write ``?`` placeholders; they are rewritten to psycopg's ``%s`` here (once per
statement text).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from omnicore.config.schema import masked_url
from omnicore.storage.backend import Backend, Cursor, Dialect, TextIndex, Tx
from omnicore.storage.errors import StorageError
from omnicore.storage.migration import Pending, Policy
from omnicore.storage.postgres import migrations
from omnicore.storage.postgres.fulltext import TsVector
from omnicore.storage.postgres.jsonfilter import filter_sql
from omnicore.storage.postgres.liveness import (
    CATALOG,
    CHANNEL,
    EVENTS,
    SETTINGS,
    Liveness,
    LockPresence,
)
from omnicore.storage.postgres.schema import SCHEMA_VERSION, SETTINGS_LOCK

__all__ = ["POSTGRES", "Database"]

T = TypeVar("T")

#: Several hosts claim at once: each skips the rows another transaction holds.
POSTGRES = Dialect(name="postgres", single_writer=False,
                   skip_locked=" FOR UPDATE SKIP LOCKED", for_update=" FOR UPDATE",
                   same="IS NOT DISTINCT FROM", greatest="GREATEST", insertion_order="seq",
                   json_filter=filter_sql, no_index="")
#: Keys whose lock has had a number of its own since before the seam: hosts of an older
#: version sharing the database take that number, so the same key must.
_LOCKS = {"settings": SETTINGS_LOCK}
#: How long the pool keeps one attempt to replace a lost connection going (see __init__).
RECONNECT_S = 2.0
#: How much longer a caller waits for a pooled connection when none came within
#: ``connect_timeout_s`` while the storage's own connection is up: the pool is busy or still
#: growing (a loaded host's connections open slowly), not the server away.
BUSY_WAIT_S = 10.0
#: The NOTIFY channel of each :meth:`Tx.announce` channel.
_CHANNELS = {"events": EVENTS, "settings": SETTINGS, "catalog": CATALOG}


@functools.lru_cache(maxsize=4096)
def _sql(text: str) -> str:
    # psycopg formats every query given arguments: a literal % must be doubled.
    return text.replace("%", "%%").replace("?", "%s")


def _psycopg() -> Any:
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        raise StorageError("storage.url names PostgreSQL but psycopg is not installed: "
                           "pip install 'omnicore[postgres]'") from None
    return psycopg, psycopg_pool


@functools.cache
def _pool_class() -> Any:
    """psycopg_pool's pool, telling a busy pool from a server that is away: a caller waits
    ``connect_timeout_s`` for a connection, and :data:`BUSY_WAIT_S` more only while
    ``reachable()`` (the storage's own connection is up). An unreachable server still fails
    within ``connect_timeout_s``; a host starting on a loaded machine, its workers opening
    the pool's connections one by one, no longer fails its start on a 2 s wait."""
    _, psycopg_pool = _psycopg()

    class Pool(psycopg_pool.ConnectionPool):  # type: ignore[misc,name-defined]
        reachable: Callable[[], bool] = staticmethod(lambda: False)

        def getconn(self, timeout: float | None = None) -> Any:
            try:
                return super().getconn(timeout)
            except psycopg_pool.PoolTimeout:
                if not self.reachable():
                    raise
                return super().getconn(BUSY_WAIT_S)

    return Pool


class _Tx:
    """A transaction on one pooled connection; NOTIFYs are delivered at its commit."""

    __slots__ = ("_conn", "_origin")

    def __init__(self, conn: Any, origin: str) -> None:
        self._conn = conn
        self._origin = origin

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(_sql(sql), tuple(args))  # type: ignore[no-any-return]

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        return self._conn.cursor().executemany(_sql(sql), list(rows))

    def lock(self, key: str) -> None:
        if key in _LOCKS:
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCKS[key],))
        else:
            self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))

    def wake(self, queue: str) -> None:
        self._conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, queue))

    def announce(self, channel: str, payload: str) -> None:
        # Tagged with this storage's origin, so its own listener does not deliver it twice.
        self._conn.execute("SELECT pg_notify(%s, %s)",
                           (_CHANNELS[channel], f"{self._origin}:{payload}"))


class Database(Backend):
    """A PostgreSQL database several hosts share: opened (pool, migrations) at construction."""

    dialect = POSTGRES
    latest_schema = SCHEMA_VERSION

    def __init__(self, url: str, *, max_connections: int = 8,
                 connect_timeout_s: float = 2.0, upto: int = SCHEMA_VERSION,
                 schema: Policy = "migrate") -> None:
        psycopg, psycopg_pool = _psycopg()
        self._psycopg = psycopg
        self.url = url
        self.location = masked_url(url)
        self._timeout = connect_timeout_s
        # A statement that waits on a lock or a dead server must end: the caller holds a
        # plugin call's deadline or a request.
        self._pool = _pool_class()(
            url, min_size=1, max_size=max_connections, open=False, timeout=connect_timeout_s,
            # A lost connection is retried with a doubling wait (1, 2, 4, 8 s ...) until this
            # ends the attempt; the next caller starts a fresh one at once. So a server back
            # from a restart is found within seconds, not a doubled wait later (a minute after a
            # long restart), while callers and the leases of jobs held wait for a connection.
            reconnect_timeout=RECONNECT_S,
            # Autocommit: a read is one round trip; a write opens its own transaction.
            kwargs={"connect_timeout": max(1, int(connect_timeout_s)), "autocommit": True,
                    "options": "-c statement_timeout=30000"},
            name="omnicore")
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
            with self._pool.connection() as conn:
                migrations.open_schema(conn, self.location, schema, upto)
        except psycopg_pool.PoolTimeout as exc:
            self._pool.close()
            raise self._error("cannot open", exc) from None
        except psycopg.Error as exc:
            self._pool.close()
            raise self._error("cannot open", exc) from None
        except StorageError:
            self._pool.close()
            raise
        #: The storage's own connection: liveness lock and LISTEN (see liveness.py).
        self.liveness = Liveness(url, connect_timeout_s)
        self._pool.reachable = self.liveness.reachable
        self.presence = LockPresence(self.liveness)

    def _error(self, what: str, exc: BaseException) -> StorageError:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return StorageError(f"storage {self.location}: {what}: {text}", path=self.location)

    def pending(self) -> list[Pending]:
        with self._pool.connection(timeout=self._timeout) as conn:
            return migrations.pending(conn)

    def migrate(self) -> list[Pending]:
        try:
            with self._pool.connection(timeout=self._timeout) as conn:
                return migrations.apply(conn, self.location)
        except self._psycopg.Error as exc:
            raise self._error("migration failed", exc) from None

    @property
    def schema_version(self) -> int:
        return int(self.read("SELECT version FROM omnicore_schema")[0][0])

    def prepare(self, component: str) -> None:
        return None  # every component's tables are migrated at open (schema.py)

    def has_table(self, name: str) -> bool:
        return bool(self.read("SELECT to_regclass(?) IS NOT NULL", (name,))[0][0])

    def text_index(self, table: str, owner: str) -> TextIndex:
        return TsVector(self, table, owner)

    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        self.liveness.on_wakeup(callback, queue)

    def write(self, fn: Callable[[Tx], T]) -> T:
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
                        result = fn(_Tx(conn, self.liveness.origin))
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

    def write_one(self, sql: str, args: Sequence[Any] = (), *, returning: bool = False,
                  wake: str | None = None) -> tuple[int, list[Any]]:
        # Autocommit, and like a read tried again once on a pooled connection the server
        # closed: the statement then never reached a live backend, and the callers'
        # statements are leases and inserts into an at-least-once queue. (Not
        # ``cur.description`` to tell: it builds a Column per column per call.)
        text = _sql(sql)
        params = tuple(args)
        if wake is not None:
            # The statement and its wake-up in one: pg_notify, like a NOTIFY, is delivered
            # when the statement's transaction commits, and only when it returned a row.
            text = f"WITH w AS ({text}) SELECT w.*, pg_notify(%s, %s) FROM w"
            rows = self._statement(text, (*params, CHANNEL, wake), "write failed",
                                   lambda cur: list(cur.fetchall()))
            return len(rows), [r[:-1] for r in rows]
        return self._statement(text, params, "write failed", lambda cur: (
            cur.rowcount, cur.fetchall() if returning else []))

    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """One statement outside a transaction (the hot path of kv get); a read is safe to
        try again once on a connection the server closed."""
        return self._statement(_sql(sql), tuple(args), "read failed",
                               lambda cur: list(cur.fetchall()))

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

    def close(self) -> None:
        self.liveness.close()
        self._pool.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.location}>"
