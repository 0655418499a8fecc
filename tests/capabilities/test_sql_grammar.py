"""The statement gate (specs/abi.md §4.10, "Statements") through a real plugin call against
real PostgreSQL and MariaDB servers: what the gate lets through is what the server runs, what
it refuses never reaches the server, and the operator's widening works per plugin. Several
cases read a statement the way the server does where a pattern over the text would not
(nested comments, ``--1``, backslash escapes), so a gate of patterns fails here."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import psycopg
import pymysql
import pytest

from omnicore.errors import ConfigError
from tests.capabilities.test_sql_mysql import url  # noqa: F401 - a fixture
from tests.capabilities.test_sql_postgres import PASSWORD as PG_PASSWORD
from tests.capabilities.test_sql_postgres import pg  # noqa: F401 - a fixture
from tests.db_fixtures import Db, framed, maria, sql_app  # noqa: F401 - fixtures
from tests.dbservers import PASSWORD as MARIA_PASSWORD

GRANT = {"sql": {"connectors": ["db", "ro"]}}


def _refused(db: Db, handler: str, sql: str, *params: Any, conn: str = "db") -> str:
    return db.refused(handler, framed(conn, json.dumps({"sql": sql,
                                                        "params": list(params)}).encode()))


def _gate(msg: str, conn: str = "db") -> bool:
    """A refusal of the gate (never the server's own error)."""
    return msg.startswith((f"DENIED: connector {conn}", f"INVALID: connector {conn}")) and \
        msg.endswith("(specs/abi.md §4.10, Statements)")


# -- PostgreSQL -------------------------------------------------------------------------------
def _pg_admin(pg: dict[str, Any]) -> psycopg.Connection[Any]:  # noqa: F811
    return psycopg.connect(pg["url"].replace("@", f":{PG_PASSWORD}@"), autocommit=True)


@pytest.fixture
def pgdb(sql_app: Callable[..., Db], pg: dict[str, Any]  # noqa: F811
         ) -> tuple[Db, Db, dict[str, Any]]:
    """Plugins "shop" and "reporter" on connectors "db" and "ro" (read-only); only
    "reporter" may create tables on "db". The operator makes the schema."""
    with _pg_admin(pg) as admin:
        admin.execute("DROP TABLE IF EXISTS items, made")
        admin.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        admin.execute("INSERT INTO items VALUES (1, 'one'), (2, 'two'), (3, 'three')")
    base = {"kind": "postgres", "url": pg["url"], "secret": "pw", "pool_size": 1}
    conns = {"db": {**base, "statements": {"plugins": {"reporter": ["create"]}}},
             "ro": {**base, "read_only": True}}
    shop = sql_app(conns, GRANT, name="shop", secrets={"pw": PG_PASSWORD})
    reporter = sql_app(conns, GRANT, name="reporter")
    return shop, reporter, pg


def test_pg_a_nested_comment_hides_no_copy_and_copy_in_data_runs(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:
    shop, _, _ = pgdb
    started = time.monotonic()
    for sql in ("/* /* */ SELECT */ COPY (SELECT 1) TO STDOUT",
                "/* /* /* */ */ SELECT */ COPY items TO STDOUT", "COPY items FROM STDIN"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and "COPY to or from the client (STDIN/STDOUT)" in msg, msg
    assert time.monotonic() - started < 5  # answered, not looping in the copy stream
    # The same words as data, and a comment whose nesting hides a "second statement".
    assert shop.rows("db", "SELECT 'COPY (SELECT 1) TO STDOUT' AS \"COPY\"") == [
        ["COPY (SELECT 1) TO STDOUT"]]
    assert shop.rows("db", "SELECT $c$ COPY items TO STDOUT $c$") == [
        [" COPY items TO STDOUT "]]
    assert shop.rows("db", "SELECT count(*) /* /* */ ; DROP TABLE items; */ FROM items") == [
        [3]]
    assert shop.rows("db", "SELECT count(*) FROM items") == [[3]]
    # ... and a string a pattern would end early is a second statement to the grammar.
    msg = _refused(shop, "execute", "SELECT E'\\\\'; DROP TABLE items; --'")
    assert msg.startswith("INVALID: connector db: holds 2 statements"), msg
    assert shop.rows("db", "SELECT count(*) FROM items") == [[3]]


def test_pg_the_role_and_the_database_stay_as_the_operator_made_them(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:
    shop, reporter, server = pgdb
    db = server["db"]
    for sql in ("ALTER ROLE CURRENT_USER PASSWORD 'owned'",
                "ALTER ROLE CURRENT_USER SET search_path = forged",
                "ALTER ROLE CURRENT_USER SET role = postgres",
                f'ALTER DATABASE "{db}" SET default_transaction_read_only = on',
                "ALTER SYSTEM SET work_mem = '1GB'", "GRANT ALL ON items TO PUBLIC",
                "SET ROLE NONE", "SET SESSION AUTHORIZATION DEFAULT", "RESET ALL",
                "PREPARE TRANSACTION 'held'", "LISTEN ch", "NOTIFY ch", "DO $$ BEGIN END $$",
                "CALL nothing()", "VACUUM items", "LOAD 'plpgsql'", "DROP TABLE items",
                "SELECT 1 INTO made", "CREATE TABLE made AS SELECT 1",
                "EXPLAIN ANALYZE CREATE TABLE made AS SELECT 1", "TRUNCATE items"):
        for plugin in (shop, reporter):
            msg = _refused(plugin, "execute", sql)
            assert _gate(msg) and ("(kind " in msg or "transaction" in msg), (sql, msg)
    with _pg_admin(server) as admin:
        # (The catalogs are the cluster's: only this role's and this database's rows count.)
        assert admin.execute("SELECT count(*) FROM pg_db_role_setting WHERE setrole = "
                             "(SELECT oid FROM pg_roles WHERE rolname = current_user) OR "
                             "setdatabase = (SELECT oid FROM pg_database WHERE datname = "
                             "current_database())").fetchone() == (0,)
        assert admin.execute("SELECT count(*) FROM pg_prepared_xacts WHERE database = "
                             "current_database()").fetchone() == (0,)
        assert admin.execute("SELECT to_regclass('made')").fetchone() == (None,)
    # The password is the operator's still: a fresh connection logs in.
    shop.app.databases.backend("db", ("postgres",)).pool.discard_idle()
    assert shop.rows("db", "SELECT count(*) FROM items") == [[3]]


def test_pg_functions_that_outlive_the_statement_are_refused_wherever_they_stand(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:
    shop, _, server = pgdb
    for sql in ("SELECT pg_advisory_lock(7)", "SELECT pg_catalog.pg_advisory_lock(7)",
                'SELECT "pg_catalog"."pg_try_advisory_lock_shared"(7)',
                "SELECT * FROM items, LATERAL pg_advisory_lock(items.id) l",
                "SELECT id FROM items ORDER BY pg_try_advisory_lock(id)",
                "UPDATE items SET name = set_config('search_path', 'x', false) WHERE id = 1",
                "SELECT lo_from_bytea(0, 'x')", "SELECT pg_cancel_backend(pg_backend_pid())",
                "SELECT pg_notify('ch', 'x')", "SELECT pg_read_file('PG_VERSION')",
                "SELECT query_to_xml('SELECT pg_advisory_lock(7)', true, true, '')",
                "UPDATE pg_settings SET setting = 'forged' WHERE name = 'search_path'"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and ("calls " in msg or "set_config" in msg), (sql, msg)
    assert shop.rows("db", "SELECT current_setting('search_path')") == [['"$user", public']]
    # A transaction-level lock ends with the statement: allowed, and nothing stays held.
    assert shop.rows("db", "SELECT 1 FROM pg_advisory_xact_lock(7)") == [[1]]
    with _pg_admin(server) as admin:
        assert admin.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                             "AND database = (SELECT oid FROM pg_database WHERE datname = "
                             "current_database())").fetchone() == (0,)
        assert admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)
        assert admin.execute("SELECT name FROM items WHERE id = 1").fetchone() == ("one",)


def test_pg_reads_and_row_changes_run_however_wrapped(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:
    shop, _, _ = pgdb
    assert shop.rows("db", "WITH d AS (DELETE FROM items WHERE id = $1 RETURNING name) "
                           "SELECT name FROM d", 3) == [["three"]]
    assert shop.rows("db", "TABLE items ORDER BY id") == [[1, "one"], [2, "two"]]
    assert shop.rows("db", "VALUES (1, 'x')") == [[1, "x"]]
    assert shop.execute("db", "MERGE INTO items t USING (VALUES (2, 'deux')) v(id, name) "
                              "ON t.id = v.id WHEN MATCHED THEN UPDATE SET name = v.name"
                        ) == {"rows_affected": 1}
    assert shop.rows("db", "SELECT name FROM items WHERE id = 2 FOR UPDATE") == [["deux"]]
    # The read-only connector refuses the writes by their grammar, wherever they nest.
    for sql in ("WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d",
                "EXPLAIN ANALYZE DELETE FROM items", "SELECT nextval('s')"):
        msg = _refused(shop, "query", sql, conn="ro")
        assert msg.startswith("DENIED: connector ro is read-only: ") and _gate(msg, "ro"), msg
    assert shop.rows("db", "SELECT count(*) FROM items") == [[2]]


def test_pg_inside_an_api_transaction_what_ends_with_it_runs(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:
    shop, _, server = pgdb
    for sql in ("SAVEPOINT a", "SET LOCAL statement_timeout = 1000", "LOCK TABLE items",
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"):
        assert json.loads(shop.txrun("db", 1, sql)) == {"rows_affected": 0}, sql
    for sql in ("PREPARE TRANSACTION 'held'", "COMMIT", "SET LOCAL ROLE postgres"):
        with pytest.raises(Exception) as info:
            shop.txrun("db", 1, sql)
        assert "§4.10, Statements" in str(info.value), (sql, info.value)
    with _pg_admin(server) as admin:
        assert admin.execute("SELECT count(*) FROM pg_prepared_xacts WHERE database = "
                             "current_database()").fetchone() == (0,)


def test_pg_a_widened_kind_is_for_the_plugin_named_and_on_the_record(
        pgdb: tuple[Db, Db, dict[str, Any]], caplog: pytest.LogCaptureFixture) -> None:
    shop, reporter, server = pgdb
    msg = _refused(shop, "execute", "CREATE TABLE made (x int)")
    assert msg == ("DENIED: connector db: CREATE TABLE (kind create) is not a read or a row "
                   "change: the operator runs it, or allows it with connectors.db.statements "
                   "(allow: [create]) (specs/abi.md §4.10, Statements)")
    with caplog.at_level(logging.INFO, logger="omnicore.egress"):
        assert reporter.execute("db", "CREATE TABLE made (x int)") == {"rows_affected": 0}
    logged = [r.getMessage() for r in caplog.records if "allowed by" in r.getMessage()]
    assert logged == ["connector db: plugin reporter sends a create statement, allowed by "
                      "connectors.db.statements"]
    # What widening does not reach: another kind, the functions, the copy stream.
    for sql in ("DROP TABLE made", "CREATE TABLE t2 (x int DEFAULT pg_advisory_lock(1))"):
        assert _gate(_refused(reporter, "execute", sql)), sql
    with _pg_admin(server) as admin:
        assert admin.execute("SELECT to_regclass('made') IS NOT NULL, to_regclass('t2')"
                             ).fetchone() == (True, None)


def test_a_widening_that_names_no_kind_is_refused_at_load(sql_app: Callable[..., Db],  # noqa: F811
                                                          pg: dict[str, Any]) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match=r"connectors\.db\.statements\.plugins\.reporter: "
                                          r"'copy_to' is not a postgres statement kind"):
        sql_app({"db": {"kind": "postgres", "url": pg["url"],
                        "statements": {"plugins": {"reporter": ["copy_to"]}}}}, GRANT)


# -- MariaDB ----------------------------------------------------------------------------------
def _maria_admin(url: str) -> Any:  # noqa: F811
    u = urlparse(url)
    return pymysql.connect(host=u.hostname, port=u.port, user=u.username,
                           password=MARIA_PASSWORD, database=u.path.lstrip("/"),
                           autocommit=True)


@pytest.fixture
def mdb(sql_app: Callable[..., Db], url: str) -> tuple[Db, Db, str]:  # noqa: F811
    """Plugins "shop" and "reporter" on "db" and the read-only "ro"; "reporter" may CALL on
    both (the read-only one refuses it all the same)."""
    with _maria_admin(url) as admin, admin.cursor() as cur:
        cur.execute("CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(100))")
        cur.execute("INSERT INTO items VALUES (1, 'one'), (2, 'two')")
        cur.execute("CREATE PROCEDURE grow() INSERT INTO items VALUES (3, 'three')")
    base = {"kind": "mysql", "url": url, "secret": "pw", "pool_size": 1,
            "statements": {"plugins": {"reporter": ["call"]}}}
    conns = {"db": base, "ro": {**base, "read_only": True}}
    shop = sql_app(conns, GRANT, name="shop", secrets={"pw": MARIA_PASSWORD})
    reporter = sql_app(conns, GRANT, name="reporter")
    return shop, reporter, url


def test_maria_comments_read_as_the_server_reads_them(mdb: tuple[Db, Db, str]) -> None:
    shop, _, _ = mdb
    # "--1" is two minus signs to MariaDB, "-- 1" a comment, "#" always one.
    assert shop.rows("db", "SELECT 1 --1") == [[2]]
    assert shop.rows("db", "SELECT 1 -- 1") == [[1]]
    assert shop.rows("db", "SELECT count(*) FROM items # ; DROP TABLE items") == [[2]]
    assert shop.rows("db", "SELECT 1 /* /* */ + 1") == [[2]]  # /* does not nest
    msg = _refused(shop, "query", "SELECT 1 --x; DROP TABLE items")
    assert msg.startswith("INVALID: connector db: holds more than one statement"), msg
    for sql in ("/*!50000 SET NAMES gbk */ SELECT 1", "/*M!100000 SET NAMES gbk */ SELECT 1",
                "/*! SET NAMES gbk */ SELECT 1", "SELECT 1 /*!, GET_LOCK('x', 0) */"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and "executable comment" in msg, (sql, msg)
    assert shop.rows("db", "SELECT '/*!50000 SET NAMES gbk */'") == [
        ["/*!50000 SET NAMES gbk */"]]
    assert shop.rows("db", "SELECT @@character_set_client") == [["utf8mb4"]]
    assert shop.rows("db", "SELECT count(*) FROM items") == [[2]]


def test_maria_quotes_hide_no_keyword(mdb: tuple[Db, Db, str]) -> None:
    shop, _, _ = mdb
    assert shop.rows("db", "SELECT 'it\\'s', 'GET_LOCK(''x'', 0)', `name` FROM items "
                           "WHERE id = 1") == [["it's", "GET_LOCK('x', 0)", "one"]]
    for sql in ("SELECT 'a\\' , GET_LOCK('x', 0) -- '", "SELECT `GET_LOCK`('x', 0)",
                "SELECT get_lock /* */ ('x', 0)", "SELECT RELEASE_ALL_LOCKS()",
                "SELECT LOAD_FILE('/etc/passwd')", "SELECT BENCHMARK(100000000, MD5('x'))"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and "calls " in msg, (sql, msg)
    for sql in ("SELECT 'a\\'; DROP TABLE items; -- '", 'SELECT "a\\"; DROP TABLE items; -- "'):
        assert _refused(shop, "query", sql).startswith("INVALID: connector db: holds more")
    with _maria_admin(mdb[2]) as admin, admin.cursor() as cur:
        cur.execute("SELECT IS_USED_LOCK('x'), count(*) FROM items")
        assert cur.fetchone() == (None, 2)


def test_maria_the_session_and_the_role_stay_the_operators(mdb: tuple[Db, Db, str]) -> None:
    shop, reporter, where = mdb
    for sql in ("SET PASSWORD = PASSWORD('owned')", "SET DEFAULT ROLE NONE", "SET ROLE NONE",
                "SET @x = 1", "SET STATEMENT max_statement_time = 0 FOR SELECT 1",
                "XA START 'x'", "LOCK TABLES items WRITE", "HANDLER items OPEN",
                "GRANT SELECT ON items TO CURRENT_USER", "CREATE TABLE made (x INT)",
                "DROP TABLE items", "KILL CONNECTION_ID()", "USE mysql",
                "PREPARE s FROM 'SELECT 1'", "DO GET_LOCK('x', 0)", "FLUSH TABLES",
                "CALL grow()"):
        msg = _refused(shop, "execute", sql)
        assert _gate(msg) and ("(kind " in msg or "transaction" in msg), (sql, msg)
    for sql in ("SELECT 1 INTO @x", "SELECT name FROM items LIMIT 1 INTO @x",
                "SELECT 1 INTO OUTFILE '/tmp/omnicore-grammar'", "SELECT @x := 1"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and ("user variable" in msg or "file of the server" in msg), msg
    assert shop.rows("db", "SELECT @x, count(*) FROM items") == [[None, 2]]
    # CALL, widened for reporter on "db"; never on the read-only "ro" (a procedure commits).
    assert reporter.execute("db", "CALL grow()") == {"rows_affected": 1}
    msg = _refused(reporter, "execute", "CALL grow()", conn="ro")
    assert msg.startswith("DENIED: connector ro is read-only: CALL runs a procedure"), msg
    with _maria_admin(where) as admin, admin.cursor() as cur:
        cur.execute("SELECT count(*) FROM items")
        assert cur.fetchone() == (3,)
        cur.execute("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_NAME = 'made'")
        assert cur.fetchone() == (0,)


def test_maria_reads_and_row_changes_run(mdb: tuple[Db, Db, str]) -> None:
    shop, _, _ = mdb
    assert shop.execute("db", "REPLACE INTO items VALUES (?, ?)", 2, "deux") == {
        "rows_affected": 2}
    assert shop.rows("db", "WITH x AS (SELECT name FROM items WHERE id = ?) SELECT * FROM x",
                     2) == [["deux"]]
    assert shop.rows("db", "SELECT name FROM items WHERE id = 1 FOR UPDATE") == [["one"]]
    assert shop.rows("db", "SELECT IS_FREE_LOCK('x')") == [[1]]
    assert json.loads(shop.txrun("db", 2, "SAVEPOINT a")) == {"rows_affected": 0}
    msg = _refused(shop, "execute", "DELETE FROM items", conn="ro")
    assert msg.startswith("DENIED: connector ro is read-only: DELETE writes"), msg


def test_maria_other_sessions_statements_are_not_read(mdb: tuple[Db, Db, str]) -> None:
    shop, reporter, _ = mdb
    # PyMySQL binds values into the text: a neighbour on the same role would read them here.
    for sql in ("SHOW FULL PROCESSLIST", "SELECT INFO FROM information_schema.PROCESSLIST",
                "SELECT trx_query FROM information_schema.INNODB_TRX",
                "SELECT SQL_TEXT FROM performance_schema.events_statements_current",
                "SHOW ENGINE INNODB STATUS"):
        for plugin in (shop, reporter):
            msg = _refused(plugin, "query", sql)
            assert _gate(msg) and "reads other sessions' statements" in msg, (sql, msg)
