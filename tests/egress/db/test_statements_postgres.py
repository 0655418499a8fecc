"""The PostgreSQL statement gate (specs/abi.md §4.10, "Statements") on its own: a table of
statements a hostile plugin would write, each judged by PostgreSQL's parser (pglast). The
same statements run against a real server in tests/capabilities/test_sql_grammar.py."""

from __future__ import annotations

import time

import pytest

from omnicore.egress.db.config import db_connector
from omnicore.egress.db.statements import judge, refusal, widening
from omnicore.errors import ConfigError

ALLOWED = None
#: (statement, expected: None when it may run, else a piece of the refusal)
HOSTILE: list[tuple[str, str | None]] = [
    # Nested comments, which a pattern over the text reads wrong (issue 60).
    ("/* /* */ SELECT */ COPY (SELECT 1) TO STDOUT", "COPY to or from the client"),
    ("/* /* /* */ */ SELECT */ COPY items TO STDOUT", "COPY to or from the client"),
    ("/* /* */ */ SELECT 1", ALLOWED),
    ("/* /* */ COPY */ SELECT 1", ALLOWED),
    ("-- BEGIN\nSELECT 1", ALLOWED),
    ("SELECT 1 -- ; DROP TABLE items", ALLOWED),
    # The word COPY, BEGIN, DROP inside strings, quoted names and dollar quotes is data.
    ("SELECT 'COPY (SELECT 1) TO STDOUT'", ALLOWED),
    ("SELECT $$ COPY items TO STDOUT $$", ALLOWED),
    ("SELECT $tag$ ; DROP TABLE items; $tag$", ALLOWED),
    ("SELECT E'\\'; DROP TABLE items; --'", ALLOWED),
    ('SELECT 1 AS "COPY"', ALLOWED),
    ("SELECT U&'\\0043OPY'", ALLOWED),
    ('SELECT U&"\\0073et_config"(\'a\', \'b\', false)', "calls set_config()"),
    # ... and a string that ends where a pattern would not think it does is a second statement.
    ("SELECT E'\\\\'; DROP TABLE items; --'", "holds 2 statements"),
    ("SELECT $a$ $b$ $a$; DROP TABLE items", "holds 2 statements"),
    ("SELECT 1; ", ALLOWED),
    (";;SELECT 1", ALLOWED),
    ("", "holds no statement"),
    ("-- nothing", "holds no statement"),
    # Reads and row changes, however wrapped.
    ("TABLE items", ALLOWED),
    ("VALUES (1), (2)", ALLOWED),
    ("(SELECT 1) UNION (SELECT 2)", ALLOWED),
    ("WITH d AS (DELETE FROM items WHERE id = 1 RETURNING *) SELECT * FROM d", ALLOWED),
    ("WITH u AS (UPDATE items SET name = 'x' RETURNING id) INSERT INTO log SELECT id FROM u",
     ALLOWED),
    ("MERGE INTO items t USING (VALUES (1)) v(id) ON t.id = v.id WHEN MATCHED THEN DELETE",
     ALLOWED),
    ("SELECT * FROM items FOR UPDATE SKIP LOCKED", ALLOWED),
    ("SELECT * FROM items FOR SHARE", ALLOWED),
    ("EXPLAIN ANALYZE DELETE FROM items", ALLOWED),
    ("SHOW search_path", ALLOWED),
    ("SELECT pg_advisory_xact_lock(1)", ALLOWED),
    ("SELECT pg_sleep(0.01)", ALLOWED),  # the deadline bounds it
    ("INSERT INTO items VALUES (DEFAULT, 'copy')", ALLOWED),
    # SELECT ... INTO and its kin make tables.
    ("SELECT 1 INTO t", "SELECT ... INTO (kind create_table_as)"),
    ("SELECT * INTO TEMP t FROM items", "create_table_as"),
    ("CREATE TABLE t AS SELECT 1", "kind create_table_as"),
    ("EXPLAIN ANALYZE CREATE TABLE t AS SELECT 1", "kind create_table_as"),
    ("EXPLAIN ANALYZE EXECUTE p", "kind execute"),
    ("CREATE TEMP TABLE items (id int)", "CREATE TABLE (kind create)"),
    # Roles, databases, the server: their effect outlives the call and reaches neighbours.
    ("ALTER ROLE CURRENT_USER PASSWORD 'owned'", "ALTER ROLE (kind alter_role)"),
    ("ALTER ROLE CURRENT_USER SET search_path = forged", "kind alter_role_set"),
    ("ALTER DATABASE omnicore SET default_transaction_read_only = on",
     "kind alter_database_set"),
    ("ALTER SYSTEM SET work_mem = '1GB'", "kind alter_system"),
    ("GRANT ALL ON items TO PUBLIC", "GRANT/REVOKE (kind grant)"),
    ("REVOKE SELECT ON items FROM PUBLIC", "kind grant"),
    ("CREATE ROLE x", "kind create_role"),
    ("DROP TABLE items", "DROP (kind drop)"),
    ("TRUNCATE items", "kind truncate"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", "kind create_function"),
    ("CREATE TABLE t (x int DEFAULT pg_advisory_lock(1))", "kind create"),
    # The session and the transaction.
    ("SET search_path = forged", "SET (kind variable_set)"),
    ("SET ROLE postgres", "SET ROLE (kind variable_set)"),
    ("SET SESSION AUTHORIZATION DEFAULT", "SET SESSION AUTHORIZATION"),
    ("RESET ALL", "RESET (kind variable_set)"),
    ("SET LOCAL statement_timeout = 0", "outside an API transaction"),
    ("BEGIN", "opens or ends a transaction"),
    ("START TRANSACTION READ WRITE", "opens or ends a transaction"),
    ("COMMIT", "opens or ends a transaction"),
    ("END", "opens or ends a transaction"),
    ("ABORT", "opens or ends a transaction"),
    ("PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION opens or ends a transaction"),
    ("COMMIT PREPARED 'x'", "COMMIT PREPARED opens or ends a transaction"),
    ("SAVEPOINT a", "SAVEPOINT outside an API transaction"),
    ("ROLLBACK TO a", "outside an API transaction"),
    ("LOCK TABLE items", "LOCK (kind lock) outside an API transaction"),
    ("PREPARE p AS SELECT 1", "kind prepare"),
    ("EXECUTE p", "kind execute"),
    ("DEALLOCATE ALL", "kind deallocate"),
    ("DECLARE c CURSOR WITH HOLD FOR SELECT 1", "DECLARE (kind declare_cursor)"),
    ("FETCH ALL FROM c", "kind fetch"),
    ("LISTEN ch", "kind listen"),
    ("NOTIFY ch", "kind notify"),
    ("DISCARD ALL", "kind discard"),
    ("DO $$ BEGIN PERFORM 1; END $$", "DO (kind do)"),
    ("CALL p()", "CALL (kind call)"),
    ("VACUUM items", "kind vacuum"),
    ("LOAD 'plpgsql'", "LOAD (kind load)"),
    ("CHECKPOINT", "kind check_point"),
    ("COPY items TO STDOUT", "COPY to or from the client"),
    ("COPY items FROM STDIN", "COPY to or from the client"),
    ("COPY items TO '/tmp/items'", "COPY (kind copy)"),
    ("COPY items TO PROGRAM 'id'", "COPY (kind copy)"),
    # Functions whose effect outlives or escapes the statement, wherever they stand.
    ("SELECT pg_advisory_lock(1)", "calls pg_advisory_lock()"),
    ("SELECT pg_catalog.pg_advisory_lock_shared(1)", "calls pg_advisory_lock_shared()"),
    ('SELECT "pg_catalog"."pg_try_advisory_lock"(1)', "calls pg_try_advisory_lock()"),
    ("SELECT PG_ADVISORY_UNLOCK_ALL()", "calls pg_advisory_unlock_all()"),
    ("SELECT * FROM items, LATERAL pg_advisory_lock(items.id) l", "calls pg_advisory_lock()"),
    ("SELECT * FROM items ORDER BY pg_advisory_lock(id)", "calls pg_advisory_lock()"),
    ("SELECT * FROM items WHERE id IN (SELECT pg_advisory_lock(1))", "pg_advisory_lock()"),
    ("INSERT INTO items VALUES (1, set_config('role', 'x', false))", "calls set_config()"),
    ("UPDATE items SET name = pg_catalog.set_config('search_path', 'f', false)",
     "calls set_config()"),
    ("SELECT * FROM ROWS FROM (lo_import('/etc/passwd')) AS t", "calls lo_import()"),
    ("SELECT lo_from_bytea(0, 'x')", "calls lo_from_bytea()"),
    ('SELECT "lo_create"(0)', "calls lo_create()"),
    ("SELECT lowrite(0, 'x')", "calls lowrite()"),
    ("SELECT pg_cancel_backend(pid) FROM pg_stat_activity", "calls pg_cancel_backend()"),
    ("SELECT pg_terminate_backend(1)", "calls pg_terminate_backend()"),
    ("SELECT pg_notify('ch', 'x')", "calls pg_notify()"),
    ("SELECT pg_read_file('/etc/passwd')", "calls pg_read_file()"),
    ("SELECT pg_ls_dir('.')", "calls pg_ls_dir()"),
    ("SELECT pg_stat_file('x')", "calls pg_stat_file()"),
    ("SELECT dblink_exec('dbname=x', 'DROP TABLE items')", "calls dblink_exec()"),
    ("SELECT pg_export_snapshot()", "calls pg_export_snapshot()"),
    ("SELECT pg_reload_conf()", "calls pg_reload_conf()"),
    ("SELECT pg_rotate_logfile()", "calls pg_rotate_logfile()"),
    ("SELECT pg_switch_wal()", "calls pg_switch_wal()"),
    ("SELECT query_to_xml('SELECT pg_advisory_lock(1)', true, true, '')",
     "calls query_to_xml()"),
    ("SELECT ts_stat('SELECT 1')", "calls ts_stat()"),
    ("WITH x AS (SELECT pg_advisory_lock(1)) SELECT 1", "calls pg_advisory_lock()"),
    ("EXPLAIN ANALYZE SELECT pg_advisory_lock(1)", "calls pg_advisory_lock()"),
    ("SELECT CASE WHEN false THEN pg_advisory_lock(1) END", "calls pg_advisory_lock()"),
    # A setting changed through the pg_settings view's update rule (it calls set_config).
    ("UPDATE pg_settings SET setting = 'forged' WHERE name = 'search_path'",
     "UPDATE of pg_settings changes a setting past the statement"),
    ("UPDATE pg_catalog.PG_SETTINGS SET setting = 'x'", "UPDATE of pg_settings"),
    ("WITH s AS (UPDATE pg_settings SET setting = 'x' RETURNING 1) SELECT 1",
     "UPDATE of pg_settings"),
    ("SELECT setting FROM pg_settings WHERE name = 'search_path'", ALLOWED),
    ("SELECT (SELECT pg_terminate_backend(1))", "calls pg_terminate_backend()"),
    ("SELECT count(*) FILTER (WHERE pg_advisory_lock(1) IS NULL) FROM items",
     "calls pg_advisory_lock()"),
    # Not PostgreSQL at all.
    ("SELEC 1", 'syntax error at or near "SELEC"'),
    ("/* /* */ SELECT 1", "unterminated /* comment"),
]


@pytest.mark.parametrize(("sql", "expected"), HOSTILE, ids=[c[0][:60] for c in HOSTILE])
def test_a_statement_is_judged_by_postgresqls_grammar(sql: str, expected: str | None) -> None:
    why = refusal(sql, "postgres", False)
    if expected is None:
        assert why is None, why
    else:
        assert why is not None and expected in why, why
        assert "\n" not in why


def test_the_hostile_table_is_large() -> None:
    assert sum(e is not None for _, e in HOSTILE) >= 40


#: Inside a transaction the API opened, what ends with it may run.
IN_TX: list[tuple[str, str | None]] = [
    ("SAVEPOINT a", ALLOWED), ("RELEASE a", ALLOWED), ("ROLLBACK TO a", ALLOWED),
    ("ROLLBACK TO SAVEPOINT a", ALLOWED),
    ("SET LOCAL statement_timeout = 0", ALLOWED),
    ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ALLOWED),
    ("SET CONSTRAINTS ALL DEFERRED", ALLOWED),
    ("LOCK TABLE items IN SHARE MODE", ALLOWED),
    ("SET LOCAL ROLE postgres", "SET ROLE (kind variable_set)"),
    ("SET LOCAL SESSION AUTHORIZATION DEFAULT", "SET SESSION AUTHORIZATION"),
    ("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", "kind variable_set"),
    ("SET search_path = forged", "kind variable_set"),
    ("COMMIT", "opens or ends a transaction"),
    ("ROLLBACK", "opens or ends a transaction"),
    ("PREPARE TRANSACTION 'x'", "opens or ends a transaction"),
    ("SELECT pg_advisory_lock(1)", "calls pg_advisory_lock()"),
]


@pytest.mark.parametrize(("sql", "expected"), IN_TX, ids=[c[0] for c in IN_TX])
def test_inside_an_api_transaction(sql: str, expected: str | None) -> None:
    why = refusal(sql, "postgres", True)
    assert why is None if expected is None else (why is not None and expected in why), why


READ_ONLY: list[tuple[str, str | None]] = [
    ("SELECT * FROM items", ALLOWED),
    ("EXPLAIN SELECT 1", ALLOWED),
    ("INSERT INTO items VALUES (1)", "INSERT writes"),
    ("UPDATE items SET name = 'x'", "UPDATE writes"),
    ("DELETE FROM items", "DELETE writes"),
    ("MERGE INTO items t USING items s ON t.id = s.id WHEN MATCHED THEN DELETE",
     "MERGE writes"),
    ("WITH d AS (DELETE FROM items RETURNING *) SELECT * FROM d", "DELETE writes"),
    ("EXPLAIN ANALYZE DELETE FROM items", "DELETE writes"),
    ("SELECT nextval('s')", "calls nextval(), which advances a sequence"),
    ("SELECT pg_catalog.setval('s', 1)", "calls setval()"),
    ("SELECT lo_create(0)", "calls lo_create()"),
]


@pytest.mark.parametrize(("sql", "expected"), READ_ONLY, ids=[c[0] for c in READ_ONLY])
def test_a_read_only_connector_refuses_writes_by_the_grammar(sql: str,
                                                             expected: str | None) -> None:
    verdict = judge(sql, "postgres", False, True)
    if expected is None:
        assert verdict.reason is None, verdict
        return
    assert verdict.reason is not None and expected in verdict.reason, verdict
    if "writes" in expected or "sequence" in expected:
        assert verdict.message("db").startswith("DENIED: ") is False
        assert verdict.message("db").startswith("connector db is read-only: ")


def test_the_refusal_names_the_kind_and_the_key_that_allows_it() -> None:
    verdict = judge("COPY items TO '/tmp/x'", "postgres", False)
    assert verdict.message("orders") == (
        "connector orders: COPY (kind copy) is not a read or a row change: the operator runs "
        "it, or allows it with connectors.orders.statements (allow: [copy]) (specs/abi.md "
        "§4.10, Statements)")


def test_a_widened_kind_runs_marked_and_nothing_else_does() -> None:
    wide = frozenset({"copy", "call", "create"})
    verdict = judge("COPY items TO '/tmp/x'", "postgres", False, False, wide)
    assert (verdict.reason, verdict.kind, verdict.widened) == (None, "copy", True)
    assert judge("SELECT 1", "postgres", False, False, wide).widened is False
    # The copy stream, transactions and the functions stay refused whatever is widened.
    assert "COPY to or from the client" in (refusal("COPY items TO STDOUT", "postgres", False,
                                                    False, wide) or "")
    assert "calls pg_advisory_lock()" in (refusal(
        "CREATE TABLE t (x int DEFAULT pg_advisory_lock(1))", "postgres", False, False, wide)
        or "")
    assert "DROP (kind drop)" in (refusal("DROP TABLE items", "postgres", False, False, wide)
                                  or "")


def test_the_widening_key_is_checked_at_load() -> None:
    w = widening("postgres", {"allow": ["call"], "plugins": {"reporter": ["copy"]}},
                 "connectors.db.statements")
    assert w.for_plugin("reporter") == {"call", "copy"}
    assert w.for_plugin("shop") == {"call"}
    assert w.describe() == {"allow": ["call"], "plugins": {"reporter": ["copy"]}}
    c = db_connector("db", {"kind": "postgres", "url": "postgresql://u@h/d",
                            "statements": {"allow": ["call"], "plugins": {"reporter": ["copy"]}}})
    assert c.describe()["statements"] == w.describe() and c.statements == w
    assert "statements" not in db_connector("db", {"kind": "postgres",
                                                   "url": "postgresql://u@h/d"}).describe()
    for bad, says in (({"allow": ["cal"]}, "'cal' is not a postgres statement kind"),
                      ({"allow": ["transaction"]}, "stay the API's"),
                      ({"allow": "call"}, "must be a list"),
                      ({"plugins": ["x"]}, "maps plugin names"),
                      ({"deny": []}, "takes allow")):
        with pytest.raises(ConfigError, match=says):
            widening("postgres", bad, "connectors.db.statements")
    with pytest.raises(ConfigError, match="for postgres and mysql"):
        widening("redis", {"allow": []}, "connectors.db.statements")


def test_the_parse_costs_microseconds_and_the_cache_less() -> None:
    sql = "SELECT id, name FROM items WHERE id = $1 AND name <> $2 ORDER BY id LIMIT 10"
    judge.cache_clear()
    n = 300
    started = time.perf_counter()
    for i in range(n):
        judge(f"{sql} -- {i}", "postgres", False)
    uncached = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        judge(sql, "postgres", False)
    cached = (time.perf_counter() - started) / n
    print(f"postgres gate: {uncached * 1e6:.1f} us uncached, {cached * 1e6:.2f} us cached")
    # Bounds far above the measure (a shared, loaded machine): a parse stays small beside a
    # round trip to the server, and a cached verdict is a dictionary lookup.
    assert uncached < 2e-3 and cached < 5e-5


def test_the_gates_public_names() -> None:
    from omnicore.egress.db import mystatements, pgstatements, statements, verdict
    assert statements.__all__ == ["NO_WIDENING", "Verdict", "Widening", "judge", "refusal",
                                  "widening"]
    assert pgstatements.__all__ == ["judge", "kinds", "nodes"]
    assert mystatements.__all__ == ["KINDS", "judge", "tokens"]
    assert verdict.__all__ == ["TX", "Verdict", "widen_hint"]
