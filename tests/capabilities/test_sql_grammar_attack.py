"""The statement gate's holes found by attack (issue 60; the classifier's table is
tests/egress/db/test_statements_attack.py), proved through a real plugin call against real
PostgreSQL 15 and MariaDB servers: each statement below passed the gate before its fix and the
server ran it (an advisory lock held past the call, a table made by a read, a neighbour's
random() predicted, a named lock, the account's password hash, a neighbour's statement).
Now each is refused by the gate, and the server shows it never ran."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.capabilities.test_sql_grammar import (  # noqa: F401 - fixtures
    _gate,
    _maria_admin,
    _pg_admin,
    _refused,
    mdb,
    pgdb,
)
from tests.capabilities.test_sql_mysql import url  # noqa: F401 - a fixture
from tests.capabilities.test_sql_postgres import pg  # noqa: F401 - a fixture
from tests.db_fixtures import Db, maria, sql_app  # noqa: F401 - fixtures

_ADVISORY = ("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
             "(SELECT oid FROM pg_database WHERE datname = current_database())")


# -- PostgreSQL -------------------------------------------------------------------------------
def test_pg_attribute_notation_calls_no_function_the_gate_refuses(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:  # noqa: F811
    shop, _, server = pgdb
    # (x).f and t.f are f(x) to PostgreSQL, with no FuncCall in the parse tree.
    for sql in ("SELECT (1::bigint).pg_advisory_lock", "SELECT (2).pg_try_advisory_lock",
                "SELECT x.pg_advisory_lock FROM generate_series(5, 6) x",
                "VALUES ((7::bigint).pg_advisory_lock)",
                "SELECT id FROM items WHERE (id).pg_try_advisory_lock",
                "SELECT (0::oid).lo_create",
                "SELECT (pid).pg_cancel_backend FROM pg_stat_activity WHERE pid <> "
                "pg_backend_pid() AND datname = current_database()"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and "in attribute notation" in msg, (sql, msg)
    assert shop.rows("db", "SELECT items.name FROM items WHERE items.id = 1") == [["one"]]
    with _pg_admin(server) as admin:
        assert admin.execute(_ADVISORY).fetchone() == (0,)
        assert admin.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (0,)


def test_pg_select_into_on_a_union_arm_makes_no_table(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:  # noqa: F811
    shop, _, server = pgdb
    for sql in ("SELECT 1 INTO made UNION SELECT 2",
                "(SELECT id INTO made FROM items) EXCEPT SELECT 2",
                "SELECT * INTO made FROM items UNION ALL SELECT 9, 'x'"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and "kind create_table_as" in msg, (sql, msg)
    with _pg_admin(server) as admin:
        assert admin.execute("SELECT to_regclass('made')").fetchone() == (None,)


def test_pg_no_plugin_seeds_its_neighbours_random(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:  # noqa: F811
    shop, reporter, server = pgdb
    # The generator's state is the server process's: DISCARD ALL keeps it, so the next plugin
    # on the pooled session would draw what the attacker computed beforehand.
    with _pg_admin(server) as admin:
        admin.execute("SELECT setseed(0.42)")
        row = admin.execute("SELECT random()").fetchone()
        assert row is not None
        predicted = row[0]
    for sql in ("SELECT setseed(0.42)", "SELECT (0.42::float8).setseed", "SET seed = 0.42",
                "RESET seed"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and "reseeds random()" in msg, (sql, msg)
    with pytest.raises(Exception) as info:
        shop.txrun("db", 1, "SET LOCAL seed = 0.42")
    assert "reseeds random()" in str(info.value) and "§4.10, Statements" in str(info.value)
    ((drawn,),) = reporter.rows("db", "SELECT random()")
    assert drawn != predicted


def test_pg_no_transaction_changes_how_the_server_reads_its_next_statement(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:  # noqa: F811
    shop, _, server = pgdb
    follow = "SELECT 'a\\'' , pg_advisory_lock(11) --'"  # one string, to the gate
    # Why: with standard_conforming_strings off, the server reads the same text as a call.
    with _pg_admin(server) as admin:
        admin.execute("BEGIN")
        admin.execute("SET LOCAL standard_conforming_strings = off")
        assert admin.execute(follow).fetchall() == [("a'", "")]
        admin.execute("ROLLBACK")
        admin.execute("SELECT pg_advisory_unlock_all()")
    assert shop.rows("db", follow) == [["a\\' , pg_advisory_lock(11) --"]]
    for sql in ("SET LOCAL standard_conforming_strings = off", "SET LOCAL backslash_quote = on",
                "RESET standard_conforming_strings"):
        with pytest.raises(Exception) as info:
            shop.txrun("db", 1, sql)
        assert "changes how the server reads the text" in str(info.value), (sql, info.value)
    with _pg_admin(server) as admin:
        assert admin.execute(_ADVISORY).fetchone() == (0,)


def test_pg_a_read_only_connector_assigns_no_transaction_id(
        pgdb: tuple[Db, Db, dict[str, Any]]) -> None:  # noqa: F811
    shop, _, _ = pgdb
    for sql in ("SELECT txid_current()", "SELECT pg_current_xact_id()",
                "SELECT (1).txid_current"):
        msg = _refused(shop, "query", sql, conn="ro")
        assert msg.startswith("DENIED: connector ro is read-only: ") and \
            "assigns a transaction id" in msg, (sql, msg)
    assert shop.rows("db", "SELECT txid_current() > 0") == [[True]]  # a read-write connector


# -- MariaDB ----------------------------------------------------------------------------------
def test_maria_no_named_lock_behind_high_priority_or_a_del_comment(
        mdb: tuple[Db, Db, str]) -> None:  # noqa: F811
    shop, _, where = mdb
    for sql in ("SELECT HIGH_PRIORITY GET_LOCK('x', 0)",
                "SELECT DISTINCT HIGH_PRIORITY GET_LOCK('x', 0)",
                # "--" then DEL is a comment to the server: the quote after it is not a string.
                "SELECT 1 --\x7f'\n, GET_LOCK(0x78, 0) -- '"):
        msg = _refused(shop, "query", sql)
        assert _gate(msg) and "calls GET_LOCK()" in msg, (repr(sql), msg)
    assert shop.rows("db", "SELECT HIGH_PRIORITY name FROM items WHERE id = 1") == [["one"]]
    assert shop.rows("db", "SELECT 1 --\x7f, GET_LOCK('x', 0)\n+ 1") == [[2]]
    with _maria_admin(where) as admin, admin.cursor() as cur:
        cur.execute("SELECT IS_USED_LOCK('x')")
        assert cur.fetchone() == (None,)


def test_maria_the_accounts_password_hash_is_not_shown(
        mdb: tuple[Db, Db, str]) -> None:  # noqa: F811
    shop, reporter, _ = mdb
    for sql in ("SHOW GRANTS", "SHOW GRANTS FOR CURRENT_USER()",
                "SHOW CREATE USER CURRENT_USER"):
        for plugin in (shop, reporter):
            msg = _refused(plugin, "query", sql)
            assert _gate(msg) and "password hash" in msg and "*" not in msg, (sql, msg)


def test_maria_a_neighbours_running_statement_is_not_explained(
        mdb: tuple[Db, Db, str]) -> None:  # noqa: F811
    shop, _, where = mdb
    with _maria_admin(where) as neighbour, neighbour.cursor() as cur:
        cur.execute("SELECT CONNECTION_ID()")
        (cid,) = cur.fetchone()
        running = threading.Thread(target=cur.execute, args=(
            "SELECT * FROM items WHERE name <> 'hunter2' AND SLEEP(1) = 0",))
        running.start()
        try:
            time.sleep(0.3)
            for sql in (f"SHOW EXPLAIN FORMAT=JSON FOR {cid}", f"SHOW ANALYZE FOR {cid}",
                        f"EXPLAIN FORMAT=JSON FOR CONNECTION {cid}"):
                msg = _refused(shop, "query", sql)
                assert _gate(msg) and "other sessions' statements" in msg, (sql, msg)
                assert "hunter2" not in msg
        finally:
            running.join()

