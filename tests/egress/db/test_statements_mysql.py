"""The MariaDB/MySQL statement gate (specs/abi.md §4.10, "Statements") on its own: a table of
statements a hostile plugin would write, each tokenized with MariaDB's lexical rules. The
same statements run against a real server in tests/capabilities/test_sql_grammar.py."""

from __future__ import annotations

import time

import pytest

from omnicore.egress.db.mystatements import tokens
from omnicore.egress.db.statements import judge, refusal, widening
from omnicore.errors import ConfigError

ALLOWED = None
HOSTILE: list[tuple[str, str | None]] = [
    # Executable comments are code by the server's version: refused, never guessed.
    ("/*! SET NAMES gbk */ SELECT 1", "executable comment"),
    ("/*!50000 SET NAMES gbk */ SELECT 1", "executable comment"),
    ("/*M!100000 SET NAMES gbk */ SELECT 1", "executable comment"),
    ("SELECT 1 /*!, GET_LOCK('x', 0) */", "executable comment"),
    ("SELECT /* /*! nested? */ 1", ALLOWED),  # /* ... */ does not nest: one plain comment
    ("SELECT '/*!50000 SET NAMES gbk */'", ALLOWED),  # in a string: data
    ("SELECT 1 /* unterminated", "unterminated /* comment"),
    ("/* */ */ SELECT 1", "does not start with a statement's keyword"),
    # -- needs a space or a control character after it; # always comments.
    ("SELECT 1 --1", ALLOWED),
    ("SELECT 1 --\tx\n", ALLOWED),
    ("SELECT 1 --x; DROP TABLE items", "more than one statement"),
    ("SELECT 1 -- x; DROP TABLE items", ALLOWED),
    ("SELECT 1 # x; DROP TABLE items", ALLOWED),
    ("SELECT 1 # x\n; DROP TABLE items", "more than one statement"),
    ("-- \nBEGIN", "opens or ends a transaction"),
    ("#\nSET NAMES gbk", "SET (kind set)"),
    # Strings: backslash escapes and doubled quotes, read every way sql_mode may read them.
    ("SELECT 'it''s'", ALLOWED),
    ("SELECT 'a\\'; DROP TABLE items; -- '", "more than one statement"),
    ("SELECT 'a\\\\'; DROP TABLE items; -- '", "more than one statement"),
    ('SELECT "a\\"; DROP TABLE items; -- "', "more than one statement"),
    ("SELECT 'a\\' , GET_LOCK('x', 0) -- '", "calls GET_LOCK()"),
    ("SELECT 'GET_LOCK(''x'', 0)'", ALLOWED),
    ("SELECT 'unterminated", "unterminated '-quoted text"),
    ("SELECT `a``b` FROM items", ALLOWED),
    ("SELECT 1 AS `; DROP TABLE items`", ALLOWED),
    ("SELECT x'41', _utf8mb4'x', N'x', b'1'", ALLOWED),
    ("SELECT 'a\0b'", "NUL character"),
    # One statement only; a trailing ; is the end of it.
    ("SELECT 1;", ALLOWED),
    ("SELECT 1; -- done", ALLOWED),
    ("SELECT 1; SELECT 2", "more than one statement"),
    ("SELECT 1;;DROP TABLE items", "more than one statement"),
    # Reads and row changes.
    ("(SELECT 1) UNION (SELECT 2)", ALLOWED),
    ("WITH x AS (SELECT 1) SELECT * FROM x", ALLOWED),
    ("INSERT INTO items VALUES (1, 'set names gbk')", ALLOWED),
    ("REPLACE INTO items VALUES (1, 'x')", ALLOWED),
    ("INSERT INTO items SELECT * FROM items ON DUPLICATE KEY UPDATE name = 'x'", ALLOWED),
    ("SELECT * FROM items FOR UPDATE", ALLOWED),
    ("SELECT * FROM items LOCK IN SHARE MODE", ALLOWED),
    ("SELECT IS_USED_LOCK('x'), IS_FREE_LOCK('x'), SLEEP(0)", ALLOWED),
    ("VALUES (1), (2)", ALLOWED),
    ("EXPLAIN SELECT 1", ALLOWED),
    ("SHOW GRANTS", "password hash"),  # MariaDB prints the hash (test_statements_attack.py)
    # SELECT ... INTO and user variables outlive the statement.
    ("SELECT 1 INTO @x", "INTO writes a user variable"),
    ("SELECT 1 INTO @`x`", "INTO writes a user variable"),
    ("SELECT name FROM items INTO @a", "INTO writes a user variable"),
    ("SELECT 1 INTO OUTFILE '/tmp/x'", "INTO writes a file of the server"),
    ("SELECT 1 INTO DUMPFILE '/tmp/x'", "INTO writes a file of the server"),
    ("SELECT @x := 1", "assigns a user variable"),
    ("SELECT 1 FROM items WHERE (@x:=id) > 0", "assigns a user variable"),
    ("SET @x = 1", "SET (kind set)"),
    # Every other kind, by its first keyword.
    ("SET PASSWORD = PASSWORD('owned')", "SET (kind set)"),
    ("SET DEFAULT ROLE admin", "SET (kind set)"),
    ("SET ROLE admin", "SET (kind set)"),
    ("SET STATEMENT max_statement_time=0 FOR SELECT 1", "SET (kind set)"),
    ("  ( SET NAMES gbk", "SET (kind set)"),
    ("CALL p()", "CALL (kind call)"),
    ("XA START 'x'", "XA opens or ends a transaction"),
    ("XA PREPARE 'x'", "XA opens or ends a transaction"),
    ("BEGIN NOT ATOMIC SET PASSWORD = ''; END", "more than one statement"),
    ("BEGIN NOT ATOMIC SELECT 1 END", "BEGIN opens or ends a transaction"),
    ("START TRANSACTION", "opens or ends a transaction"),
    ("COMMIT", "opens or ends a transaction"),
    ("ROLLBACK", "opens or ends a transaction"),
    ("SAVEPOINT a", "SAVEPOINT outside an API transaction"),
    ("LOCK TABLES items WRITE", "LOCK (kind lock)"),
    ("UNLOCK TABLES", "UNLOCK (kind unlock)"),
    ("HANDLER items OPEN", "HANDLER (kind handler)"),
    ("LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE items", "LOAD (kind load)"),
    ("GRANT ALL ON *.* TO CURRENT_USER", "GRANT (kind grant)"),
    ("CREATE PROCEDURE p() SET PASSWORD = ''", "CREATE (kind create)"),
    ("ALTER USER CURRENT_USER IDENTIFIED BY 'x'", "ALTER (kind alter)"),
    ("DROP TABLE items", "DROP (kind drop)"),
    ("KILL 1", "KILL (kind kill)"),
    ("USE mysql", "USE (kind use)"),
    ("PREPARE s FROM 'SELECT 1'", "PREPARE (kind prepare)"),
    ("EXECUTE s", "EXECUTE (kind execute)"),
    ("DO GET_LOCK('x', 0)", "DO (kind do)"),
    ("FLUSH PRIVILEGES", "FLUSH (kind flush)"),
    ("RESET QUERY CACHE", "RESET (kind reset)"),
    ("SHUTDOWN", "SHUTDOWN (kind shutdown)"),
    ("INSTALL SONAME 'x'", "INSTALL (kind install)"),
    ("ANALYZE DELETE FROM items", "ANALYZE (kind analyze)"),
    ("TRUNCATE items", "TRUNCATE (kind truncate)"),
    # Functions, however their names are written.
    ("SELECT GET_LOCK('x', 0)", "calls GET_LOCK()"),
    ("SELECT get_lock ('x', 0)", "calls GET_LOCK()"),
    ("SELECT get_lock/**/('x', 0)", "calls GET_LOCK()"),
    ("SELECT `get_lock`('x', 0)", "calls GET_LOCK()"),
    ('SELECT "GET_LOCK"(\'x\', 0)', "calls GET_LOCK()"),
    ("SELECT mysql.get_lock('x', 0)", "calls GET_LOCK()"),
    ("SELECT RELEASE_LOCK('x')", "calls RELEASE_LOCK()"),
    ("SELECT RELEASE_ALL_LOCKS()", "calls RELEASE_ALL_LOCKS()"),
    ("SELECT LOAD_FILE('/etc/passwd')", "calls LOAD_FILE()"),
    ("SELECT BENCHMARK(1e9, MD5('x'))", "calls BENCHMARK()"),
    ("SELECT MASTER_POS_WAIT('f', 1)", "calls MASTER_POS_WAIT()"),
    ("SELECT sys_exec('id')", "calls SYS_EXEC()"),
    ("INSERT INTO items VALUES (1, GET_LOCK('x', 0))", "calls GET_LOCK()"),
    ("SELECT * FROM items ORDER BY GET_LOCK('x', 0)", "calls GET_LOCK()"),
    ("SELECT (SELECT GET_LOCK('x', 0))", "calls GET_LOCK()"),
    # A table named like a function, with its column list, is no call.
    ("INSERT INTO benchmark (id) VALUES (1)", ALLOWED),
    ("INSERT IGNORE shop.`get_lock` (id) VALUES (1)", ALLOWED),
    ("REPLACE INTO benchmark (id) VALUES (BENCHMARK(1, 1))", "calls BENCHMARK()"),
    ("INSERT INTO t (id) SELECT GET_LOCK('x', 0)", "calls GET_LOCK()"),
    # Other sessions' statements, with a neighbour's values bound into their text.
    ("SHOW FULL PROCESSLIST", "reads other sessions' statements (processlist)"),
    ("SELECT info FROM information_schema.PROCESSLIST", "(processlist)"),
    ("SELECT * FROM information_schema.`processlist`", "(processlist)"),
    ("SELECT trx_query FROM information_schema.INNODB_TRX", "(innodb_trx)"),
    ("SELECT sql_text FROM performance_schema.events_statements_current",
     "(performance_schema)"),
    ("SELECT * FROM sys.session", "(sys)"),
    ("SHOW ENGINE INNODB STATUS", "(engine)"),
    ("SELECT sys FROM items", ALLOWED),
    ("", "does not start with a statement's keyword"),
    ("'SELECT'", "does not start with a statement's keyword"),
]


@pytest.mark.parametrize(("sql", "expected"), HOSTILE, ids=[c[0][:60] for c in HOSTILE])
def test_a_statement_is_judged_by_mariadbs_lexical_rules(sql: str,
                                                         expected: str | None) -> None:
    why = refusal(sql, "mysql", False)
    if expected is None:
        assert why is None, why
    else:
        assert why is not None and expected in why, why
        assert "\n" not in why


def test_the_hostile_table_is_large() -> None:
    assert sum(e is not None for _, e in HOSTILE) >= 40


def test_the_tokens_follow_mariadbs_comment_and_quote_rules() -> None:
    assert tokens("SELECT 1--1", True, False) == ["SELECT", "1", "-", "-", "1"]
    assert tokens("SELECT 1 -- 1", True, False) == ["SELECT", "1"]
    assert tokens("SELECT 'a\\'b'", True, False) == ["SELECT", "s"]
    assert tokens("SELECT 'a\\', b", False, False) == ["SELECT", "s", ",", "B"]
    assert tokens('SELECT "a\\", b', True, True) == ["SELECT", "q:A\\", ",", "B"]
    assert tokens("SELECT `x``y`(", True, False) == ["SELECT", "q:X`Y", "("]
    assert tokens("SELECT @a, @@session.x, @`q`", True, False) == [
        "SELECT", "@", ",", "@", ",", "@", "q:Q"]


IN_TX: list[tuple[str, str | None]] = [
    ("SAVEPOINT a", ALLOWED), ("RELEASE SAVEPOINT a", ALLOWED),
    ("ROLLBACK TO SAVEPOINT a", ALLOWED), ("ROLLBACK WORK TO a", ALLOWED),
    ("ROLLBACK", "opens or ends a transaction"), ("COMMIT", "opens or ends a transaction"),
    ("XA END 'x'", "opens or ends a transaction"),
    ("SET TRANSACTION READ WRITE", "SET (kind set)"),
]


@pytest.mark.parametrize(("sql", "expected"), IN_TX, ids=[c[0] for c in IN_TX])
def test_inside_an_api_transaction(sql: str, expected: str | None) -> None:
    why = refusal(sql, "mysql", True)
    assert why is None if expected is None else (why is not None and expected in why), why


READ_ONLY: list[tuple[str, str | None]] = [
    ("SELECT * FROM items", ALLOWED),
    ("INSERT INTO items VALUES (1)", "INSERT writes"),
    ("REPLACE INTO items VALUES (1)", "REPLACE writes"),
    ("UPDATE items SET name = 'x'", "UPDATE writes"),
    ("DELETE FROM items", "DELETE writes"),
    ("CALL p()", "CALL runs a procedure, which may commit"),
    ("SELECT NEXTVAL(s)", "calls NEXTVAL()"),
    ("SELECT NEXT VALUE FOR s", "NEXT VALUE FOR advances a sequence"),
    ("SELECT SETVAL(s, 1)", "calls SETVAL()"),
]


@pytest.mark.parametrize(("sql", "expected"), READ_ONLY, ids=[c[0] for c in READ_ONLY])
def test_a_read_only_connector_refuses_writes(sql: str, expected: str | None) -> None:
    verdict = judge(sql, "mysql", False, True, frozenset({"call"}))
    if expected is None:
        assert verdict.reason is None, verdict
    else:
        assert verdict.reason is not None and expected in verdict.reason, verdict
        assert verdict.message("db").startswith("connector db is read-only: ")


def test_a_widened_kind_runs_marked_and_nothing_else_does() -> None:
    wide = frozenset({"call", "create"})
    verdict = judge("CALL p()", "mysql", False, False, wide)
    assert (verdict.reason, verdict.kind, verdict.widened) == (None, "call", True)
    assert "calls GET_LOCK()" in (refusal("CALL p(GET_LOCK('x', 0))", "mysql", False, False,
                                          wide) or "")
    assert "executable comment" in (refusal("CREATE /*!50000 TEMPORARY */ TABLE t (x INT)",
                                            "mysql", False, False, wide) or "")
    assert "SET (kind set)" in (refusal("SET NAMES gbk", "mysql", False, False, wide) or "")
    assert "opens or ends" in (refusal("XA START 'x'", "mysql", False, False, wide) or "")


def test_the_widening_key_is_checked_at_load() -> None:
    w = widening("mysql", {"plugins": {"reporter": ["call", "create"]}},
                 "connectors.db.statements")
    assert (w.for_plugin("reporter"), w.for_plugin("shop")) == (
        frozenset({"call", "create"}), frozenset())
    with pytest.raises(ConfigError, match="'create_table' is not a mysql statement kind"):
        widening("mysql", {"allow": ["create_table"]}, "connectors.db.statements")
    with pytest.raises(ConfigError, match="stay the API's"):
        widening("mysql", {"allow": ["xa"]}, "connectors.db.statements")


def test_the_tokenizer_costs_microseconds_and_the_cache_less() -> None:
    sql = "SELECT id, name FROM items WHERE id = ? AND name <> 'it''s' ORDER BY id LIMIT 10"
    judge.cache_clear()
    n = 300
    started = time.perf_counter()
    for i in range(n):
        judge(f"{sql} -- {i}", "mysql", False)
    uncached = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for _ in range(n):
        judge(sql, "mysql", False)
    cached = (time.perf_counter() - started) / n
    print(f"mysql gate: {uncached * 1e6:.1f} us uncached, {cached * 1e6:.2f} us cached")
    assert uncached < 2e-3 and cached < 5e-5


def test_a_widened_create_carries_its_compound_body() -> None:
    body = ("CREATE PROCEDURE spin() BEGIN DECLARE CONTINUE HANDLER FOR SQLEXCEPTION BEGIN "
            "END; l: LOOP DO SLEEP(5); END LOOP l; END")
    assert refusal(body, "mysql", False, False, frozenset({"create"})) is None
    assert "more than one statement" in (refusal(body, "mysql", False) or "")
    assert "calls GET_LOCK()" in (refusal(
        "CREATE PROCEDURE p() BEGIN DO GET_LOCK('x', 0); END", "mysql", False, False,
        frozenset({"create"})) or "")
