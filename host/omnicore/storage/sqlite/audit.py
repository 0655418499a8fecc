"""The audit log on SQLite: one row per entry, ``before``/``after`` as JSON text."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from omnicore.storage.audit_rows import AuditEntry, AuditLog
from omnicore.storage.sqlite.database import Database

__all__ = ["SQLiteAudit"]


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT "
                 "NULL, action TEXT NOT NULL, target TEXT, before TEXT, after TEXT, origin TEXT)")
    conn.execute("CREATE INDEX audit_at ON audit (at)")


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"),
                                                  ensure_ascii=False)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SQLiteAudit(AuditLog):
    """:class:`AuditLog` in the app's database (the ``audit`` component)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.ensure_schema("audit", (_v1,))

    def append(self, actor: str, action: str, target: str | None, before: Any, after: Any,
               origin: str | None, at: float) -> int:
        return int(self._db.write(lambda conn: conn.execute(
            "INSERT INTO audit (at, actor, action, target, before, after, origin) VALUES "
            "(?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (at, actor, action, target, _dump(before), _dump(after), origin)).fetchone()[0]))

    def entries(self, *, actor: str | None = None, action_prefix: str = "",
                target: str | None = None, since: float | None = None,
                before_id: int | None = None, limit: int = 100,
                plugin: str | None = None) -> list[AuditEntry]:
        where = ["substr(action, 1, ?) = ?"]
        args: list[Any] = [len(action_prefix), action_prefix]
        if plugin is not None:
            where.append("(target = ? OR substr(target, 1, ?) = ?)")
            args += [plugin, len(plugin) + 1, plugin + "/"]
        for column, value in (("actor = ?", actor), ("target = ?", target),
                              ("at >= ?", since), ("id < ?", before_id)):
            if value is not None:
                where.append(column)
                args.append(value)
        rows = self._db.read("SELECT id, at, actor, action, target, before, after, origin FROM "
                              f"audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                              (*args, limit))
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], _load(r[5]), _load(r[6]), r[7])
                for r in rows]

    def purge(self, before: float) -> int:
        return (self._db.write(lambda conn: conn.execute(
            "DELETE FROM audit WHERE at < ?", (before,)).rowcount))
