"""The statement gate (specs/abi.md §4.10, "Statements") attacked by someone who read each
server's grammar and privilege model (issue 60): cases beyond test_statements_postgres.py and
test_statements_mysql.py, each marked with what PostgreSQL 15 or MariaDB 10.11 did with it
when the gate let it through. The serious holes run end to end, through a plugin, against the
real servers in tests/capabilities/test_sql_grammar_attack.py.

A case marked HOLE passed the gate before its fix (and the server ran it); HOLDS: the gate
refused it, or it was harmless, before this file."""

from __future__ import annotations

import pytest

from omnicore.egress.db.statements import judge

ALLOWED = None
Case = tuple[str, str | None]

# -- PostgreSQL -------------------------------------------------------------------------------
#: (statement, None when it may run, else a piece of the refusal), outside a transaction.
PG: list[Case] = [
    # HOLE: attribute notation. PostgreSQL reads (x).f, and t.f of a scalar FROM item, as
    # f(x): no FuncCall in the tree. The server took session advisory locks, cancelled its own
    # (or a neighbour's) statement and made a large object with these.
    ("SELECT (1::bigint).pg_advisory_lock", "calls pg_advisory_lock() in attribute notation"),
    ("SELECT (2).pg_try_advisory_lock", "calls pg_try_advisory_lock()"),
    ("SELECT x.pg_advisory_lock FROM generate_series(5, 6) x", "calls pg_advisory_lock()"),
    ("SELECT (pid).pg_cancel_backend FROM pg_stat_activity", "calls pg_cancel_backend()"),
    ("SELECT (pid).pg_terminate_backend FROM pg_stat_activity", "pg_terminate_backend()"),
    ("SELECT (0::oid).lo_create", "calls lo_create()"),
    ("SELECT (0::oid).lo_unlink", "calls lo_unlink()"),
    ("VALUES ((7::bigint).pg_advisory_lock)", "calls pg_advisory_lock()"),
    ("SELECT 1 WHERE (8).pg_try_advisory_lock", "calls pg_try_advisory_lock()"),
    ("EXPLAIN ANALYZE SELECT (9).pg_advisory_lock", "calls pg_advisory_lock()"),
    ("SELECT * FROM items TABLESAMPLE system (((1).pg_try_advisory_lock)::int)",
     "calls pg_try_advisory_lock()"),
    ('SELECT (1).U&"pg!005fadvisory!005flock" UESCAPE \'!\'', "calls pg_advisory_lock()"),
    # HOLE: setseed's state is the backend's, not a setting: DISCARD ALL keeps it, and the
    # next plugin on the pooled session draws a random() the attacker predicted.
    ("SELECT setseed(0.42)", "calls setseed(), which reseeds random()"),
    ("SELECT (0.42::float8).setseed", "calls setseed()"),
    ("SET seed = 0.42", "SET seed reseeds random()"),
    ("RESET seed", "RESET seed reseeds random()"),
    ("SELECT pg_rotate_logfile_old()", "calls pg_rotate_logfile_old()"),
    # HOLDS: function calls inside special nodes, spellings, table functions, CTEs.
    ("SELECT * FROM ROWS FROM (pg_advisory_lock(1), generate_series(1, 2)) AS t(a, b)",
     "calls pg_advisory_lock()"),
    ("SELECT COALESCE(NULL, pg_advisory_lock(1)::text)", "calls pg_advisory_lock()"),
    ("SELECT NULLIF(pg_try_advisory_lock(1), true)", "calls pg_try_advisory_lock()"),
    ("SELECT GREATEST(pg_try_advisory_lock_shared(1), false)", "pg_try_advisory_lock_shared"),
    ("SELECT ARRAY[pg_advisory_lock(1)]", "calls pg_advisory_lock()"),
    ("SELECT ROW(pg_advisory_lock(1))", "calls pg_advisory_lock()"),
    ("SELECT 1 FROM items GROUP BY ROLLUP (pg_advisory_lock(id))", "pg_advisory_lock()"),
    ("SELECT pg_catalog.\"set_config\"('search_path', 'x', false)", "calls set_config()"),
    ('SELECT U&"pg\\005fadvisory\\005flock"(1)', "calls pg_advisory_lock()"),
    ("INSERT INTO items VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = "
     "set_config('search_path', 'x', false)", "calls set_config()"),
    ("INSERT INTO items VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET name = 'y' WHERE "
     "pg_try_advisory_lock(1)", "calls pg_try_advisory_lock()"),
    ("VALUES (set_config('search_path', 'x', false))", "calls set_config()"),
    ("WITH l AS MATERIALIZED (SELECT pg_try_advisory_lock(1)) SELECT * FROM l",
     "calls pg_try_advisory_lock()"),
    ("SELECT * FROM items WHERE EXISTS (SELECT pg_notify('c', name))", "calls pg_notify()"),
    ("SELECT xmlexists('//x' PASSING BY REF '<x/>')", ALLOWED),
    ("SELECT xpath('/x', '<x>pg_advisory_lock(1)</x>')", ALLOWED),
    # libxml2 loads no external entity for PostgreSQL (the server answered the text back).
    ("SELECT xmlparse(document '<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/hostname\">]>"
     "<x>&e;</x>')", ALLOWED),
    ("SELECT 'pg_advisory_lock'::regproc::oid > 0", ALLOWED),  # a name, never a call
    ("SELECT 'pg_settings'::regclass", ALLOWED),
    ("SELECT 1 OPERATOR(pg_catalog.+) 1", ALLOWED),
    ("SELECT items.name FROM items", ALLOWED),
    # HOLDS: the pg_settings update rule, however the relation is spelled.
    ('UPDATE "pg_settings" s SET setting = \'x\' WHERE s.name = \'search_path\'',
     "UPDATE of pg_settings"),
    ('UPDATE U&"pg!005fsettings" UESCAPE \'!\' SET setting = \'x\'', "UPDATE of pg_settings"),
    ("TABLE pg_settings", ALLOWED),
    ("SHOW ALL", ALLOWED),
    # HOLDS: tables made by a read (every INTO form), a COPY or a cursor in disguise.
    ("SELECT 1 INTO UNLOGGED t", "create_table_as"),
    # HOLE: INTO on a UNION's first arm (the arm is a select body without its node name).
    ("SELECT 1 INTO TEMP t UNION SELECT 2", "create_table_as"),
    ("SELECT * INTO TEMP t FROM (SELECT 1) x UNION ALL SELECT 2", "create_table_as"),
    ("(SELECT 1 INTO t) EXCEPT SELECT 2", "create_table_as"),
    ("EXPLAIN ANALYZE SELECT 1 INTO t INTERSECT SELECT 1", "create_table_as"),
    ("SELECT 1 AS a UNION SELECT 2 INTO TEMP t", "create_table_as"),  # the server refuses it
    ("SELECT '\"intoClause\":' AS \"intoClause\"", ALLOWED),
    ("WITH x AS (SELECT 1) SELECT * INTO TEMPORARY t FROM x", "create_table_as"),
    ("CREATE TEMP TABLE t AS SELECT 1", "kind create_table_as"),
    ("EXPLAIN SELECT 1 INTO t", "create_table_as"),
    ("EXPLAIN (ANALYZE) COPY items TO STDOUT", "syntax error"),
    ("DECLARE c CURSOR FOR SELECT 1", "kind declare_cursor"),
    # HOLDS: sequences, sleeps and ids on a read-write connector (the row changes' own kin).
    ("SELECT currval('s'), lastval()", ALLOWED),
    # The parser reads a C string: what follows a NUL was never judged (the wire truncates
    # there too, psycopg sent "SELECT 1"); refused as MariaDB's is.
    ("SELECT 1\x00; SELECT pg_advisory_lock(1)", "holds a NUL character"),
    ("SELECT txid_current()", ALLOWED),
    ("SELECT pg_sleep_for('1 ms')", ALLOWED),
]


@pytest.mark.parametrize(("sql", "expected"), PG, ids=[c[0][:60] for c in PG])
def test_postgres_attack(sql: str, expected: str | None) -> None:
    why = judge(sql, "postgres", False).reason
    assert why is None if expected is None else (why is not None and expected in why), why


#: Inside a transaction the API opened.
PG_IN_TX: list[Case] = [
    # HOLE: SET LOCAL seed reseeds the backend's generator; COMMIT restores the setting's
    # shown value only (the server gave the next transaction the attacker's sequence).
    ("SET LOCAL seed = 0.42", "SET seed reseeds random()"),
    ("SET LOCAL search_path = x", ALLOWED),
    # HOLE: standard_conforming_strings off makes \' an escaped quote to the server: the next
    # statement's string (to pglast) was code (to the server), an advisory lock held past the
    # transaction. No reading of the text holds once the lexer may change under the gate.
    ("SET LOCAL standard_conforming_strings = off", "changes how the server reads the text"),
    ("SET LOCAL standard_conforming_strings TO DEFAULT", "changes how the server reads"),
    ("RESET standard_conforming_strings", "changes how the server reads the text"),
    ("SET LOCAL backslash_quote = on", "changes how the server reads the text"),
    ("SET LOCAL escape_string_warning = off", ALLOWED),
    ("SELECT (1).pg_advisory_lock", "calls pg_advisory_lock()"),
    ("SELECT pg_advisory_xact_lock(1)", ALLOWED),
]


@pytest.mark.parametrize(("sql", "expected"), PG_IN_TX, ids=[c[0] for c in PG_IN_TX])
def test_postgres_attack_in_a_transaction(sql: str, expected: str | None) -> None:
    why = judge(sql, "postgres", True).reason
    assert why is None if expected is None else (why is not None and expected in why), why


#: On a read-only connector: (statement, None or a piece of the refusal).
PG_READ_ONLY: list[Case] = [
    # HOLE: the read-only transaction runs these: an xid (a commit record), index pages.
    ("SELECT txid_current()", "assigns a transaction id"),
    ("SELECT pg_current_xact_id()", "assigns a transaction id"),
    ("SELECT brin_desummarize_range('bi', 0)", "writes an index"),
    ("SELECT brin_summarize_new_values('bi')", "writes an index"),
    ("SELECT gin_clean_pending_list('gi')", "writes an index"),
    ("SELECT ('s'::regclass).nextval", "advances a sequence"),
    # HOLDS.
    ("INSERT INTO items DEFAULT VALUES", "INSERT writes"),
    ("EXPLAIN ANALYZE WITH d AS (DELETE FROM items RETURNING 1) SELECT 1", "DELETE writes"),
    ("SELECT pg_catalog.nextval('s')", "advances a sequence"),
    ("SELECT currval('s')", ALLOWED),
    ("SELECT txid_current_if_assigned()", ALLOWED),
    ("SELECT * FROM items FOR UPDATE", ALLOWED),  # the read-only transaction refuses it
]


@pytest.mark.parametrize(("sql", "expected"), PG_READ_ONLY, ids=[c[0] for c in PG_READ_ONLY])
def test_postgres_attack_read_only(sql: str, expected: str | None) -> None:
    verdict = judge(sql, "postgres", False, True)
    if expected is None:
        assert verdict.reason is None, verdict
        return
    assert verdict.reason is not None and expected in verdict.reason, verdict
    if "writes" in expected or "assigns" in expected or "sequence" in expected:
        assert verdict.message("ro").startswith("connector ro is read-only: ")


# -- MariaDB ----------------------------------------------------------------------------------
MY: list[Case] = [
    # HOLE: HIGH_PRIORITY was taken for INSERT's, before a table: SELECT's is before a call.
    ("SELECT HIGH_PRIORITY GET_LOCK('x', 0)", "calls GET_LOCK()"),
    ("SELECT DISTINCT HIGH_PRIORITY RELEASE_ALL_LOCKS()", "calls RELEASE_ALL_LOCKS()"),
    ("SELECT (SELECT HIGH_PRIORITY BENCHMARK(1, 1))", "calls BENCHMARK()"),
    ("INSERT HIGH_PRIORITY INTO items VALUES (1, 'x')", ALLOWED),
    # HOLE: "--" then DEL (a control character) comments to the server; read as two minus
    # signs, the quote after them hid the next line from the gate.
    ("SELECT 1 --\x7f'\n, GET_LOCK(0x78, 0) -- '", "calls GET_LOCK()"),
    ("SELECT 1 --\x7f; DROP TABLE items", ALLOWED),  # a comment to the server too
    # HOLE: another session's running statement, literals included, in its plan.
    ("SHOW EXPLAIN FOR 12", "reads other sessions' statements"),
    ("SHOW EXPLAIN FORMAT=JSON FOR 12", "reads other sessions' statements"),
    ("SHOW ANALYZE FORMAT=JSON FOR 12", "reads other sessions' statements"),
    ("EXPLAIN FOR CONNECTION 12", "reads other sessions' statements"),
    ("EXPLAIN FORMAT=JSON FOR CONNECTION 12", "reads other sessions' statements"),
    ("SHOW /* */ EXPLAIN FOR 12", "reads other sessions' statements"),
    # (Refused with them, though the server asks privileges the recommended role lacks:
    # every session's statements in the binary log and in the logs kept as tables.)
    ("SHOW BINLOG EVENTS", "reads other sessions' statements"),
    ("SHOW RELAYLOG EVENTS", "reads other sessions' statements"),
    ("SELECT argument FROM mysql.general_log", "reads other sessions' statements"),
    ("SELECT sql_text FROM `mysql`.`slow_log`", "reads other sessions' statements"),
    ("SHOW BINARY LOGS", ALLOWED),
    # HOLE: MariaDB prints the account's password hash (IDENTIFIED BY PASSWORD '*...').
    ("SHOW GRANTS", "password hash"),
    ("SHOW GRANTS FOR CURRENT_USER()", "password hash"),
    ("SHOW CREATE USER CURRENT_USER", "password hash"),
    ("SHOW CREATE TABLE items", ALLOWED),
    # HOLDS: executable comments, comment and quote forms, literals spelling keywords.
    ("/*M!100000 SELECT GET_LOCK('x', 0) */ SELECT 1", "executable comment"),
    ("SELECT 1 /*!100000 , GET_LOCK('x', 0) */", "executable comment"),
    ("SELECT 1 /*M!999999 , GET_LOCK('x', 0) */", "executable comment"),
    ("SELECT 1 --\t; DROP TABLE items", ALLOWED),
    ("SELECT 1 --", ALLOWED),
    ("SELECT 1 -- ", ALLOWED),
    ("SELECT 1 AS `#x`, GET_LOCK('x', 0)", "calls GET_LOCK()"),
    ("SELECT 1 AS `-- x`, RELEASE_LOCK('x')", "calls RELEASE_LOCK()"),
    ("SELECT N'GET_LOCK(''x'', 0)', _utf8mb4'SET', X'4745545F4C4F434B', b'1', 0x41", ALLOWED),
    ("SELECT \\N, 'a\\'', GET_LOCK('x', 0) #'", "calls GET_LOCK()"),
    ("SELECT 'a'' , GET_LOCK(''x'', 0) -- '", ALLOWED),
    ("SELECT GET_LOCK\t('x', 0)", "calls GET_LOCK()"),
    ("SELECT GET_LOCK\n/* */ ('x', 0)", "calls GET_LOCK()"),
    ("SELECT GET_LOÇK('x', 0)", ALLOWED),  # no such function: the server refuses it
    # ODBC escapes: {fn f(...)} and {ident expr} are expr to the server.
    ("SELECT {fn GET_LOCK('x', 0)}", "calls GET_LOCK()"),
    ("SELECT {d GET_LOCK('x', 0)}", "calls GET_LOCK()"),
    ("SELECT {INTO GET_LOCK('x', 0)}", ALLOWED),  # INTO is reserved: a syntax error
    # EXPLAIN runs a constant subquery while it plans (the server took the lock).
    ("EXPLAIN SELECT * FROM items WHERE id = (SELECT GET_LOCK('e', 0))", "calls GET_LOCK()"),
    ("EXPLAIN SELECT 1 INTO @x", "user variable"),
    # HOLDS: every INTO and assignment form.
    ("SELECT 1 INTO @`x`", "user variable"),
    ("SELECT 1 INTO @'x'", "user variable"),
    ("WITH x AS (SELECT 1 AS a) SELECT a FROM x INTO @y", "user variable"),
    ("SELECT 1 FROM items FOR UPDATE INTO @x", "user variable"),
    ("SELECT @@sql_mode := 'ANSI_QUOTES'", "assigns a user variable"),
    ("SELECT 1 INTO DUMPFILE '/tmp/x'", "file of the server"),
    # HOLDS: row changes that call, statements that are not reads.
    ("REPLACE INTO items SELECT 9, GET_LOCK('x', 0)", "calls GET_LOCK()"),
    ("INSERT INTO items VALUES (9, RELEASE_ALL_LOCKS())", "calls RELEASE_ALL_LOCKS()"),
    ("INSERT INTO benchmark (id) VALUES (1)", ALLOWED),
    ("VALUES (GET_LOCK('x', 0))", "calls GET_LOCK()"),
    ("TABLE items", ALLOWED),
    ("HANDLER items OPEN", "kind handler"),
    ("DO GET_LOCK('x', 0)", "kind do"),
    ("EXECUTE IMMEDIATE 'SELECT GET_LOCK(''x'', 0)'", "kind execute"),
    ("SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(100)", "kind set"),
    ("lbl: LOOP LEAVE lbl; END LOOP", "holds more than one statement"),
    ("lbl: REPEAT SELECT 1 UNTIL 1 END REPEAT", "kind lbl"),
    ("BEGIN NOT ATOMIC SELECT 1; END", "holds more than one statement"),
    ("SELECT SLEEP(0.01)", ALLOWED),  # the deadline bounds it
    ("SELECT name FROM items PROCEDURE ANALYSE()", ALLOWED),
    ("SELECT sys_exec('id')", "runs a program on the server"),
    ("SELECT `udf`.`sys_eval`('id')", "runs a program on the server"),
    ("SELECT trx_query FROM `information_schema`.`INNODB_TRX`", "other sessions"),
]


@pytest.mark.parametrize(("sql", "expected"), MY, ids=[repr(c[0])[:60] for c in MY])
def test_mariadb_attack(sql: str, expected: str | None) -> None:
    why = judge(sql, "mysql", False).reason
    assert why is None if expected is None else (why is not None and expected in why), why


MY_READ_ONLY: list[Case] = [
    ("SELECT NEXT VALUE FOR s", "advances a sequence"),
    ("SELECT NEXT /* */ VALUE\nFOR s", "advances a sequence"),
    ("SELECT NEXTVAL (s)", "advances a sequence"),
    ("SELECT `nextval`(s)", "advances a sequence"),
    ("SELECT SETVAL(s, 5)", "sets a sequence"),
    ("SELECT HIGH_PRIORITY NEXTVAL(s)", "advances a sequence"),
    ("SELECT LASTVAL(s), PREVIOUS VALUE FOR s", ALLOWED),
    ("CALL p()", "CALL runs a procedure"),
    ("REPLACE INTO items VALUES (1, 'x')", "REPLACE writes"),
    ("SELECT name FROM items WHERE id = 1 FOR UPDATE", ALLOWED),
]


@pytest.mark.parametrize(("sql", "expected"), MY_READ_ONLY,
                         ids=[c[0][:60] for c in MY_READ_ONLY])
def test_mariadb_attack_read_only(sql: str, expected: str | None) -> None:
    why = judge(sql, "mysql", False, True).reason
    assert why is None if expected is None else (why is not None and expected in why), why


def test_the_attack_tables_are_large() -> None:
    refused = sum(e is not None for table in (PG, PG_IN_TX, PG_READ_ONLY, MY, MY_READ_ONLY)
                  for _, e in table)
    assert refused >= 60 and len(PG) + len(MY) >= 90
