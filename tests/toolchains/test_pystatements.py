"""The rule a Python plugin's SQL statements are held to (omnicore.toolchains.pystatements,
specs/abi.md §4.10.1): each accepted and refused shape, read from source."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from omnicore.toolchains import pystatements


def refused(source: str) -> list[str]:
    tree = ast.parse(textwrap.dedent(source))
    return [f"{p.line}: {p.what}" for p in pystatements.problems(tree, Path("plugin.py"))]


def test_literals_concatenations_and_module_constants_pass() -> None:
    assert refused('''
        STOCK = "select sku, qty from stock where sku = $1"
        LONG: str = ("select sku, qty "
                     "from stock where sku = $1")
        BOTH = STOCK + " and qty > $2"
        A = B = "select 1"

        def handler(db, sku):
            db.query("select qty from stock where sku = $1", [sku])
            db.query(STOCK, [sku])
            db.query(LONG, [sku])
            db.execute(BOTH + " for update", [sku, 0])
            db.query(statement=A)
            with db.transaction() as tx:
                tx.execute("update stock set qty = qty - $1 where sku = $2", [1, sku])
            db.query()
    ''') == []


@pytest.mark.parametrize(("statement", "what"), [
    ('f"select * from stock where sku = \'{sku}\'"', "an f-string"),
    ('f"select 1"', "an f-string"),
    ('"select * from t where id = %s" % sku', "a %-formatted string"),
    ('"select * from t where id = {}".format(sku)', "a str.format() call"),
    ('" ".join(["select", sku])', "a str.join() call"),
    ('"select " + sku', "the name sku, which is not a module-level constant bound once"),
    ("sku", "the name sku, which is not a module-level constant bound once"),
    ("request['sql']", "an expression computed at run time (request['sql'])"),
    ("STATEMENTS[0]", "an expression computed at run time"),
    ("queries.STOCK", "an expression computed at run time"),
    ("str(sku)", "an expression computed at run time"),
    ("*args", "an expression computed at run time"),
    ("b'select 1'", "bytes b'select 1', not a string"),
])
def test_a_statement_built_at_run_time_is_refused(statement: str, what: str) -> None:
    found = refused(f'''
        def handler(db, sku, request, args):
            return db.query({statement}, [sku])
    ''')
    assert len(found) == 1 and found[0].startswith("3: " + what), found


def test_a_name_is_a_constant_only_when_bound_once_at_module_level() -> None:
    found = refused('''
        STOCK = "select 1"
        RETRIED = "select 2"
        RETRIED = RETRIED + " for update"
        SHADOWED = "select 3"
        BUILT = "select " + str(3)
        LOOPED = "select 4"
        for LOOPED in ("a", "b"):
            pass
        GLOBAL = "select 5"
        SELF = SELF

        def set_global():
            global GLOBAL
            GLOBAL = "drop table t"

        def handler(db, SHADOWED):
            db.query(STOCK)
            db.query(RETRIED)
            db.query(SHADOWED)
            db.query(BUILT)
            db.query(LOOPED)
            db.query(GLOBAL)
            local = "select 6"
            db.query(local)
            db.query(SELF)
    ''')
    assert found == [
        "19: the name RETRIED, which is not a module-level constant bound once to a literal",
        "20: the name SHADOWED, which is not a module-level constant bound once to a literal",
        "21: the name BUILT, bound to an expression computed at run time (str(3))",
        "22: the name LOOPED, which is not a module-level constant bound once to a literal",
        "23: the name GLOBAL, which is not a module-level constant bound once to a literal",
        "25: the name local, which is not a module-level constant bound once to a literal",
        "26: the name SELF, bound to the name SELF, defined by itself",
    ]


def test_every_query_and_execute_call_is_checked_whatever_its_receiver() -> None:
    # The receiver's type is unknown without running the code: a chained call, a
    # connection passed in, a transaction, all the same.
    found = refused('''
        from omnicore_plugin import sql

        def handler(sku):
            sql.connect("orders").query(f"select {sku}")
            helper(sql.connect("orders").begin(), sku)

        def helper(tx, sku):
            tx.execute("delete from t where sku = '" + sku + "'")
    ''')
    assert [f.split(":")[0] for f in found] == ["5", "9"]
