"""The stores are written once over the backend seam (storage/backend.py), and nothing in
storage/ reaches into another object's private names (no import circle anywhere is
tests/core/test_layering.py's check).

The checks read the source (they do not import it); their own tests below feed them each way
such code could be written.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import omnicore
from tests.pysource import parse

STORAGE = Path(omnicore.__file__).parent / "storage"
STORES = STORAGE / "stores"
#: What a store written once may not import: a driver or a backend's package.
DRIVERS = ("sqlite3", "sqlite_utils", "psycopg", "psycopg_pool", "omnicore.storage.sqlite",
           "omnicore.storage.postgres")


def _private(tree: ast.AST) -> Iterator[str]:
    """``x._name`` where ``x`` is not ``self`` or ``cls``: another object's private name."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__") \
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
            yield f"{node.lineno}: reaches {ast.unparse(node)}"


def _drivers(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        for name in names:
            if any(name == d or name.startswith(d + ".") for d in DRIVERS):
                yield f"{node.lineno}: imports {name}"


def test_no_store_reaches_another_objects_private_names() -> None:
    """Above all a backend's: a store runs its SQL through the public seam only."""
    found = [f"{p.relative_to(STORAGE)}:{v}" for d in ("stores", "sqlite", "postgres")
             for p in sorted((STORAGE / d).glob("*.py"))
             for v in _private(parse(p.read_text()))]
    assert found == [], "\n".join(found)


def test_a_store_written_once_imports_no_driver_and_no_backend() -> None:
    found = [f"{p.name}:{v}" for p in sorted(STORES.glob("*.py"))
             for v in _drivers(parse(p.read_text()))]
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("source", [
    "rows = self._db._read('x')",
    "self._s._write(fn)",
    "storage._conn.execute('x')",
    "db._lock.acquire()",
])
def test_the_private_name_check_catches_each_way_to_write_it(source: str) -> None:
    assert list(_private(ast.parse(source))), source


@pytest.mark.parametrize("source", [
    "rows = self._db.read('x')",
    "self._cache.clear()",
    "cls._instances = {}",
    "x.__class__",
])
def test_the_private_name_check_lets_ordinary_code_be(source: str) -> None:
    assert list(_private(ast.parse(source))) == [], source


@pytest.mark.parametrize("source", [
    "import sqlite3",
    "import psycopg",
    "from omnicore.storage.sqlite.database import Database",
    "from omnicore.storage.postgres import database",
])
def test_the_driver_check_catches_each_import(source: str) -> None:
    assert list(_drivers(ast.parse(source))), source
