"""Nothing a plugin starts on a database session outlives its call, and every granted plugin
gets a connection within its deadline (specs/abi.md §4.10, "Sessions", "Pool and
fairness"): against real PostgreSQL and MariaDB servers (tests/pgcluster.py,
tests/dbservers.py). What a plugin could leave is reached the way the statement gate cannot
see it: a function or procedure the database's owner made (created here as the superuser)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
import pytest

from omnicore.egress.refused import Refused
from tests.capabilities.test_sql_mysql import url  # noqa: F401 - a fixture
from tests.capabilities.test_sql_postgres import PASSWORD as PG_PASSWORD
from tests.capabilities.test_sql_postgres import ROLE as PG_ROLE
from tests.capabilities.test_sql_postgres import pg  # noqa: F401 - a fixture
from tests.db_fixtures import Db, framed, maria, sql_app  # noqa: F401 - fixtures
from tests.dbservers import PASSWORD as MARIA_PASSWORD
from tests.dbservers import MariaDB
from tests.waiting import eventually

GRANT = {"sql": {"connectors": ["db"]}}


def _plugins(sql_app: Callable[..., Db], conn: dict[str, Any], secret: str,  # noqa: F811
             names: tuple[str, ...] = ("evil", "shop"), timeout_ms: int = 5000
             ) -> list[Db]:
    conns = {"db": {"secret": "db-pw", "pool_size": 1, **conn}}
    return [sql_app(conns, GRANT, name=n, secrets={"db-pw": secret},
                    limits={"timeout_ms": timeout_ms}) for n in names]


def _backend(db: Db) -> Any:
    return db.app.databases.backend("db", ("postgres", "mysql"))


# -- PostgreSQL -------------------------------------------------------------------------------
@pytest.fixture
def pgdb(pg: dict[str, Any]) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The test database with functions only its owner could make: they take a session lock
    and make temporary tables, which the gate cannot see inside."""
    cluster = pg["cluster"]
    cluster.psql(
        "CREATE OR REPLACE FUNCTION grab(k bigint) RETURNS bigint LANGUAGE plpgsql AS "
        "$$ BEGIN PERFORM pg_advisory_lock(k); RETURN k; END $$;"
        "CREATE OR REPLACE FUNCTION temps(n int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN "
        "FOR i IN 1..n LOOP EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS t%s (a int)', i); "
        "END LOOP; RETURN n; END $$;"
        f"GRANT EXECUTE ON FUNCTION grab(bigint), temps(int) TO {PG_ROLE}", db=pg["db"])
    yield pg


def _pg_advisory_locks(pg: dict[str, Any]) -> int:  # noqa: F811
    return int(pg["cluster"].psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
                                  db=pg["db"]).strip())


def test_pg_a_session_lock_is_released_when_the_call_returns(
        sql_app: Callable[..., Db], pgdb: dict[str, Any]) -> None:  # noqa: F811
    evil, shop = _plugins(sql_app, {"kind": "postgres", "url": pgdb["url"], "pool_size": 4},
                          PG_PASSWORD)
    assert evil.rows("db", "SELECT grab(4242)") == [[4242]]
    # Returned: the lock is gone from the server at once, not when the connection next
    # changes hands (it stays idle in the pool, evil's own).
    assert _pg_advisory_locks(pgdb) == 0
    assert _backend(evil).pool.idle >= 1
    # The neighbour takes the same lock on its own connection without waiting.
    started = time.monotonic()
    assert shop.rows("db", "SELECT grab(4242)") == [[4242]]
    assert time.monotonic() - started < 2
    # Inside an API transaction: released when the transaction ends (commit), before the
    # connection goes back.
    assert json.loads(evil.txrun("db", 1, "SELECT grab(7)")) == {"rows_affected": 1}
    assert _pg_advisory_locks(pgdb) == 0
    # And a call that ends with its transaction open (rolled back at the call's end).
    evil.txrun("db", 0, "SELECT grab(8)")
    assert _pg_advisory_locks(pgdb) == 0


def test_pg_a_plain_statement_pays_no_clean_up(
        sql_app: Callable[..., Db], pgdb: dict[str, Any]) -> None:  # noqa: F811
    (shop,) = _plugins(sql_app, {"kind": "postgres", "url": pgdb["url"]}, PG_PASSWORD,
                       names=("shop",))
    backend = _backend(shop)
    calls: list[str] = []
    clean = backend.dialect.clean
    backend.dialect.clean = lambda conn, deadline: calls.append("clean") or clean(conn, deadline)
    try:
        shop.rows("db", "SELECT 1, count(*), now() IS NOT NULL FROM pg_class WHERE oid = $1", 1)
        assert calls == []
        shop.rows("db", "SELECT grab(1)")
        assert calls == ["clean"]
    finally:
        backend.dialect.clean = clean


def test_pg_temporary_tables_cost_the_plugin_that_left_them(
        sql_app: Callable[..., Db], pgdb: dict[str, Any]) -> None:  # noqa: F811
    (evil,) = _plugins(sql_app, {"kind": "postgres", "url": pgdb["url"]}, PG_PASSWORD,
                       names=("evil",), timeout_ms=60_000)
    assert evil.rows("db", "SELECT temps(2000)") == [[2000]]
    # Its own next statement still finds them (the session is its own)...
    assert evil.rows("db", "SELECT count(*) FROM pg_class WHERE relnamespace = "
                           "pg_my_temp_schema()") == [[2000]]
    pool = _backend(evil).pool
    resets = pool.resets
    # ...but the neighbour, on a pool of one connection and a call of one second, is never
    # charged the drop: evil's connection is closed (the server drops the tables as that
    # session ends) and shop gets a new one.
    shop = sql_app({}, GRANT, name="shop", limits={"timeout_ms": 1000})
    started = time.monotonic()
    assert shop.rows("db", "SELECT count(*) FROM pg_class WHERE relnamespace = "
                                "pg_my_temp_schema()") == [[0]]
    assert time.monotonic() - started < 1.0
    assert pool.resets == resets


# -- MariaDB ----------------------------------------------------------------------------------
def _root(maria: MariaDB, url: str, sql: str) -> list[tuple[Any, ...]]:  # noqa: F811
    return maria.sql(sql, db=url.rsplit("/", 1)[1])


@pytest.fixture
def mdb(maria: MariaDB, url: str) -> str:  # noqa: F811
    _root(maria, url, "CREATE FUNCTION grab(k VARCHAR(64)) RETURNS INT RETURN GET_LOCK(k, 0)")
    _root(maria, url, "CREATE TABLE xa_rows (a INT PRIMARY KEY)")
    _root(maria, url, "CREATE PROCEDURE px() BEGIN XA START 'omni60'; INSERT INTO xa_rows "
                      "VALUES (1); XA END 'omni60'; XA PREPARE 'omni60'; END")
    return url


def test_maria_a_named_lock_is_released_when_the_call_returns(
        sql_app: Callable[..., Db], maria: MariaDB, mdb: str) -> None:  # noqa: F811
    evil, shop = _plugins(sql_app, {"kind": "mysql", "url": mdb, "pool_size": 4},
                          MARIA_PASSWORD)
    assert evil.rows("db", "SELECT grab('held')") == [[1]]
    assert _root(maria, mdb, "SELECT IS_FREE_LOCK('held')") == [(1,)]
    assert shop.rows("db", "SELECT grab('held')") == [[1]]  # at once: GET_LOCK(k, 0)
    assert _root(maria, mdb, "SELECT IS_FREE_LOCK('held')") == [(1,)]


def test_maria_a_procedures_xa_prepare_is_rolled_back_before_the_call_returns(
        sql_app: Callable[..., Db], maria: MariaDB, mdb: str) -> None:  # noqa: F811
    (evil,) = _plugins(sql_app, {"kind": "mysql", "url": mdb,
                                 "statements": {"allow": ["call"]}},
                       MARIA_PASSWORD, names=("evil",))
    got = evil.refused("execute", framed("db", b'{"sql": "CALL px()"}'))
    assert got.startswith("DENIED: connector db: the statement left a transaction open"), got
    assert _root(maria, mdb, "XA RECOVER") == []
    assert _root(maria, mdb, "SELECT count(*) FROM xa_rows") == [(0,)]


def test_maria_the_reset_drops_a_current_role_that_survives_com_reset_connection(
        sql_app: Callable[..., Db], maria: MariaDB, mdb: str) -> None:  # noqa: F811
    role = f"r{abs(hash(mdb)) % 10**6}"
    maria.sql(f"CREATE ROLE IF NOT EXISTS {role}")
    maria.sql(f"GRANT {role} TO 'omnicore'@'%'")
    evil, shop = _plugins(sql_app, {"kind": "mysql", "url": mdb}, MARIA_PASSWORD)
    assert evil.rows("db", "SELECT 1") == [[1]]
    backend = _backend(evil)
    conn, _ = backend.pool.acquire(time.monotonic() + 5, "evil")
    with conn.raw.cursor(pymysql.cursors.Cursor) as cur:
        cur.execute(f"SET ROLE {role}")  # what a procedure could do behind the gate
    backend.pool.release(conn)
    assert shop.rows("db", "SELECT CURRENT_ROLE()") == [[None]]
    assert backend.pool.resets >= 1


# -- fairness ---------------------------------------------------------------------------------
def test_two_plugins_at_their_share_leave_a_third_its_connection(
        sql_app: Callable[..., Db], pgdb: dict[str, Any]) -> None:  # noqa: F811
    (third,) = _plugins(sql_app, {"kind": "postgres", "url": pgdb["url"], "pool_size": 4},
                        PG_PASSWORD, names=("third",), timeout_ms=1000)
    backend = _backend(third)
    far = time.monotonic() + 30
    held = [backend.begin("a", far), backend.begin("a", far), backend.begin("b", far)]
    try:
        # b's second would take the connection the others are owed: QUOTA by its deadline.
        with pytest.raises(Refused) as info:
            backend.begin("b", time.monotonic() + 0.2)
        assert info.value.status == "QUOTA"
        started = time.monotonic()
        assert third.rows("db", "SELECT 1") == [[1]]
        assert time.monotonic() - started < 1.0
    finally:
        for conn, plugin in zip(held, ("a", "a", "b"), strict=True):
            backend.end(plugin, conn, False, time.monotonic() + 5)
    assert eventually(lambda: backend.pool.in_use == 0, "every connection given back")


# -- which statements are cleaned after (egress/db/lifetime.py) -------------------------------
@pytest.mark.parametrize(("sql", "leaves"), [
    ("SELECT id, name FROM items WHERE id = $1", False),
    ("INSERT INTO items (id, name) VALUES ($1, $2)", False),
    ("SELECT count(*), max(id), now() FROM items", False),
    ("SELECT 'pg_advisory_lock(1)' /* grab(1) */", False),  # a string and a comment: no call
    ("SELECT grab(1)", True),
    ("SELECT pg_catalog.pg_advisory_lock(1)", True),
    ("SELECT public.count(id) FROM items", True),              # not the built-in
    ("SELECT 1 INTO TEMP t", True),
    ("CREATE TEMP TABLE t (a int)", True),
    ("PREPARE TRANSACTION 'x'", True),
    ("SELECT (", True),                                        # unreadable: cleaned
])
def test_pg_statements_that_may_leave_state(sql: str, leaves: bool) -> None:
    from omnicore.egress.db.lifetime import pg_leaves

    assert pg_leaves(sql) is leaves


@pytest.mark.parametrize(("sql", "leaves"), [
    ("SELECT id, name FROM items WHERE id = ?", False),
    ("INSERT INTO items (id, name) VALUES (?, ?)", False),
    ("INSERT INTO shop.items(id) VALUES (1)", False),
    ("SELECT COUNT(*), NOW() FROM items WHERE id IN (1, 2)", False),
    ("SELECT grab('k')", True),
    ("SELECT GET_LOCK ('k', 0)", True),
    ("SELECT shop.count(1)", True),                            # a stored function
    ("SELECT `grab`('k')", True),
    ("CALL px()", True),
    ("CALL px", True),
    ("SELECT 1 /*! , GET_LOCK('k', 0) */", True),              # an executable comment
    ("SELECT 'a\\', GET_LOCK('k', 0), '\\'", True),            # either escaping mode
])
def test_maria_statements_that_may_leave_state(sql: str, leaves: bool) -> None:
    from omnicore.egress.db.lifetime import mysql_leaves

    assert mysql_leaves(sql) is leaves


def test_pg_a_prepared_transaction_is_rolled_back_before_the_connection_goes_back() -> None:
    """Behind the gate (PREPARE TRANSACTION is refused and no function can run it): on a
    server that takes prepared transactions, the clean-up rolls back the role's."""
    from omnicore.egress.db import db_connector
    from omnicore.egress.db.service import _make
    from tests.pgcluster import Cluster

    cluster = Cluster.start()
    try:
        cluster.psql("ALTER SYSTEM SET max_prepared_transactions = 4")
        cluster.halt()
        cluster.resume()
        url = cluster.database("twophase").replace("omnicore:omnicore@", "omnicore@")
        backend = _make(db_connector("db", {"kind": "postgres", "url": url, "secret": "pw"}),
                        lambda name: b"omnicore")
        try:
            deadline = time.monotonic() + 10
            conn = backend.begin("evil", deadline)
            conn.raw.execute("CREATE TABLE x (a int)")  # (a lock it would hold)
            conn.raw.execute("PREPARE TRANSACTION 'omni60'")
            assert cluster.psql("SELECT count(*) FROM pg_prepared_xacts").strip() == "1"
            conn.dirty = True  # as a statement that may leave state marks it
            backend.end("evil", conn, True, deadline)
            assert cluster.psql("SELECT count(*) FROM pg_prepared_xacts").strip() == "0"
        finally:
            backend.close()
    finally:
        cluster.stop()
