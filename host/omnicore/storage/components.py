"""Tables of their own for the stores built beside the core schema (secrets, vectors, memory).

The core schema (kv, tasks, events) is versioned by ``PRAGMA user_version`` in
:mod:`omnicore.storage.sqlite`. A store that lives in the same database keeps its own version
in ``component_schema`` instead, so each one migrates independently and appending a step to
one never renumbers another. Steps run inside one write transaction of the app's storage.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from omnicore.errors import ConfigError
from omnicore.storage.base import Storage, StorageError
from omnicore.storage.sqlite import SQLiteStorage

__all__ = ["Step", "ensure_schema", "read", "sqlite_of", "write"]

#: One migration step: runs SQL on the connection inside the storage's write transaction.
Step = Callable[[sqlite3.Connection], None]


def sqlite_of(storage: Storage, what: str) -> SQLiteStorage:
    """``storage`` as the SQLite backend, which ``what`` needs; ConfigError otherwise."""
    if not isinstance(storage, SQLiteStorage):
        raise ConfigError(f"{what} needs the SQLite storage backend, not "
                          f"{type(storage).__name__}", key="storage")
    return storage


def ensure_schema(storage: SQLiteStorage, component: str, steps: Sequence[Step]) -> None:
    """Bring ``component``'s tables to ``len(steps)``; a newer version raises StorageError."""
    def run(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS component_schema "
                     "(component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM component_schema WHERE component = ?",
                           (component,)).fetchone()
        version = row[0] if row else 0
        if version > len(steps):
            raise StorageError(f"storage {storage.location}: the {component} tables are at "
                               f"version {version}, written by a newer omnicore (this one "
                               f"knows up to {len(steps)}); upgrade omnicore",
                               path=storage.location)
        for step in steps[version:]:
            step(conn)
        if version < len(steps):
            conn.execute("INSERT INTO component_schema VALUES (?, ?) ON CONFLICT(component) "
                         "DO UPDATE SET version = excluded.version", (component, len(steps)))

    write(storage, run)


def write(storage: SQLiteStorage, fn: Callable[[sqlite3.Connection], Any]) -> Any:
    """Run ``fn`` in one write transaction of ``storage`` (errors name the file)."""
    return storage._write(fn)


def read(storage: SQLiteStorage, sql: str, args: Sequence[Any] = ()) -> list[Any]:
    """Rows of one read query on ``storage``."""
    return storage._read(sql, args)
