"""The audit log: one row per entry, ``before``/``after`` as JSON text."""

from __future__ import annotations

import json
from typing import Any

from omnicore.storage.audit_rows import AuditEntry, AuditLog
from omnicore.storage.backend import Backend, bounded_delete

__all__ = ["Audit"]


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"),
                                                  ensure_ascii=False)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class Audit(AuditLog):
    """:class:`AuditLog` on a backend (the ``audit`` component)."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        db.prepare("audit")

    def append(self, actor: str, action: str, target: str | None, before: Any, after: Any,
               origin: str | None, at: float) -> int:
        rows = self._db.write_one(
            "INSERT INTO audit (at, actor, action, target, before, after, origin) VALUES "
            "(?,?,?,?,?,?,?) RETURNING id",
            (at, actor, action, target, _dump(before), _dump(after), origin), returning=True)[1]
        return int(rows[0][0])

    def entries(self, *, actor: str | None = None, action_prefix: str = "",
                target: str | None = None, since: float | None = None,
                before_id: int | None = None, limit: int = 100,
                plugin: str | None = None) -> list[AuditEntry]:
        where = ["substr(action, 1, ?) = ?"]
        args: list[Any] = [len(action_prefix), action_prefix]
        if plugin is not None:
            where.append("(target = ? OR substr(target, 1, ?) = ?)")
            args += [plugin, len(plugin) + 1, plugin + "/"]
        for column, value in (("actor=?", actor), ("target=?", target),
                              ("at >= ?", since), ("id < ?", before_id)):
            if value is not None:
                where.append(column)
                args.append(value)
        rows = self._db.read("SELECT id, at, actor, action, target, before, after, origin FROM "
                             f"audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                             (*args, limit))
        return [AuditEntry(int(r[0]), float(r[1]), r[2], r[3], r[4], _load(r[5]),
                           _load(r[6]), r[7]) for r in rows]

    def purge(self, before: float, *, limit: int | None = None) -> int:
        return self._db.write_one(*bounded_delete("audit", "id", "at < ?", [before], limit))[0]
