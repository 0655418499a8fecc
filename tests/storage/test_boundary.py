"""Nothing outside ``omnicore/storage/`` writes SQL or reaches a backend's private names.

Every store sits behind an interface so another backend can serve it (issue 19); one
``sqlite3`` call, SQL string or ``storage._read`` above the package would tie that code to
SQLite again. The checker reads the source (it does not import it), and its own tests below
feed it each way such code could be written.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import omnicore
from tests.pysource import parse

PKG = Path(omnicore.__file__).parent
STORAGE = PKG / "storage"

#: SQL as a statement starts (any case): what no message, template or log line says.
_SQL = re.compile(r"\b(select\b[^;]*?\bfrom\s+[a-z_]\w*(\s+(where|order|group|join|limit)\b|"
                  r"\s*$|\s*[,)])|insert\s+(or\s+\w+\s+)?into\s+\w+\s*[(\s]|"
                  r"update\s+\w+\s+set\s+\w+\s*=|delete\s+from\s+\w+|"
                  r"create\s+(unique\s+|virtual\s+)?(table|index|trigger|view)\b|"
                  r"alter\s+table\b|drop\s+(table|index)\b|pragma\s+\w+|"
                  r"begin\s+(immediate|exclusive|deferred)\b)", re.I)
#: The private names of the backends and of the helpers they replaced.
PRIVATE = frozenset({"_conn", "_read", "_write", "_tx", "_db", "sqlite_of", "ensure_schema"})
#: Of those, the ones that were module-level helpers (a module may name its own ``_read``).
HELPERS = frozenset({"sqlite_of", "ensure_schema"})
#: Modules only storage may import.
BACKEND_MODULES = ("sqlite3", "sqlite_utils", "psycopg", "psycopg_pool",
                   "omnicore.storage.sqlite", "omnicore.storage.components")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _text(node: ast.AST) -> str | None:
    """The text a string expression builds (an f-string's fields as ``?``), or None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else " ? " for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        left, right = _text(node.left), _text(node.right)
        if left is not None and right is not None:
            return left + right
        return left if isinstance(node.op, ast.Mod) else None
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
            and node.func.attr in ("join", "format"):
        base = _text(node.func.value)
        if node.func.attr == "format":
            args = [_text(a) or " ? " for a in node.args]
            try:
                return None if base is None else base.format(*args)
            except (IndexError, KeyError, ValueError):
                return base
        if base is not None and node.args and isinstance(node.args[0], ast.List | ast.Tuple):
            parts = [_text(e) for e in node.args[0].elts]
            if all(p is not None for p in parts):
                return base.join(p for p in parts if p is not None)
    return None


def _is_backend(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in BACKEND_MODULES)


def violations(source: str, where: str = "<source>") -> Iterator[str]:
    """Each SQL string, private backend name or backend import in ``source``."""
    tree = parse(source)
    docs = _docstrings(tree)
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if id(node) not in docs and isinstance(node, ast.Constant | ast.JoinedStr | ast.BinOp
                                                   | ast.Call):
            text = _text(node)
            if text is not None and _SQL.search(text):
                yield f"{line}: SQL in a string: {text.strip()[:80]!r}"
        if isinstance(node, ast.Attribute) and node.attr in PRIVATE and not (
                isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            yield f"{line}: reaches the private name {node.attr!r}"
        if isinstance(node, ast.Name) and node.id in HELPERS:
            yield f"{line}: uses the backend helper {node.id!r}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _is_backend(alias.name):
                    yield f"{line}: imports {alias.name}"
        if isinstance(node, ast.ImportFrom) and node.module:
            if _is_backend(node.module):
                yield f"{line}: imports from {node.module}"
            if node.module == "omnicore.storage":
                for alias in node.names:
                    if alias.name in ("sqlite", "components"):
                        yield f"{line}: imports omnicore.storage.{alias.name}"
            for alias in node.names:
                if alias.name in PRIVATE:
                    yield f"{line}: imports the private name {alias.name!r}"
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            callee = node.func.attr if isinstance(node.func, ast.Attribute) else \
                getattr(node.func, "id", "")
            arg = node.args[0].value
            if callee in ("import_module", "__import__") and isinstance(arg, str) \
                    and _is_backend(arg):
                yield f"{line}: imports {arg} by name"
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("getattr", "setattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and node.args[1].value in PRIVATE:
            yield f"{line}: reaches the private name {node.args[1].value!r} by getattr"


#: The database connectors for plugins (egress/db/, specs/abi.md §4.10) are clients of the
#: operator's databases, not of omnicore's storage: they may import the drivers themselves
#: and speak SQL to those databases (a session's reset, a role's check), and nothing else on
#: the list above.
DRIVER_USERS = PKG / "egress" / "db"
DRIVERS = re.compile(r": imports (from )?psycopg(_pool)?(\.\w+)*$|: SQL in a string: ")
#: Modules whose SQL-looking strings are messages to plugin authors about their statements
#: (the SDKs' constant-statement checks, specs/abi.md §4.10.1), never a query.
MESSAGES = {PKG / "toolchains" / "pystatements.py", PKG / "toolchains" / "js" / "statements.py"}


def test_no_code_outside_storage_writes_sql_or_reaches_a_backend() -> None:
    found = []
    for path in sorted(PKG.rglob("*.py")):
        if STORAGE in path.parents:
            continue
        hits = violations(path.read_text(), str(path.relative_to(PKG)))
        if DRIVER_USERS in path.parents:
            hits = [h for h in hits if not DRIVERS.search(h)]
        if path in MESSAGES:
            hits = [h for h in hits if ": SQL in a string: " not in h]
        found += hits
    assert found == [], "\n".join(found)


def test_the_storage_package_is_where_the_sql_is() -> None:
    """The checker sees the SQL that storage/ holds: it is not blind to this codebase."""
    hits = [v for p in sorted(STORAGE.rglob("*.py")) if p.parent != STORAGE
            for v in violations(p.read_text(), p.name)]
    for store in ("kv", "jobs", "events", "memory", "vectors", "secrets", "workflows", "users"):
        assert any(h.startswith(f"{store}.py:") and "SQL" in h for h in hits), store


@pytest.mark.parametrize("source", [
    'conn.execute("SELECT value FROM kv WHERE plugin=?", (p,))',
    'q = "select id from memories where plugin = ?"',
    'q = f"SELECT {cols} FROM wf_runs WHERE id=?"',
    'q = "SELECT id, name " + "FROM users"',
    'q = "UPDATE tasks SET state=%s" % state',
    'q = " ".join(["DELETE", "FROM", "kv"])',
    'q = "INSERT INTO secrets VALUES (?, ?)"',
    'q = "insert or replace into kv (a) values (1)"',
    'q = "CREATE TABLE t (x)"',
    'q = "PRAGMA user_version"',
    'q = "{} FROM kv WHERE 1".format("SELECT x")',
    'rows = storage._read("x")',
    'storage._write(fn)',
    'db = app.storage._conn',
    'with store._tx() as c: pass',
    'rows = getattr(storage, "_read")("x")',
    'from omnicore.storage.components import sqlite_of',
    'from omnicore.storage.sqlite.database import Database',
    'from omnicore.storage import sqlite',
    'import sqlite3',
    'import sqlite3 as lite',
    'import sqlite_utils',
    'mod = importlib.import_module("sqlite3")',
    'mod = __import__("omnicore.storage.sqlite")',
    'db = sqlite_of(storage, "x")',
])
def test_the_checker_catches_each_way_to_write_it(source: str) -> None:
    assert list(violations(source)), source


@pytest.mark.parametrize("source", [
    '"""Select the plugin from the list, then update it."""',
    'msg = "select a plugin from the menu to see it"',
    'msg = "delete the key, then update the config"',
    'msg = "the task was deleted from the queue"',
    'self._read(fd)',
    'log.info("created table of contents")',
    'from omnicore.storage import Storage, open_storage',
])
def test_the_checker_lets_ordinary_code_be(source: str) -> None:
    assert list(violations(source)) == [], source
