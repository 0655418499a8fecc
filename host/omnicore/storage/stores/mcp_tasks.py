"""MCP tasks' rows on a backend (the ``mcp_tasks`` component)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx
from omnicore.storage.mcp_task_rows import McpTaskRows, TaskRow

__all__ = ["McpTasks"]

_COLS = "id, owner, tool, job_id, status, output, error, created_at, updated_at, expires_at"


def _row(r: Sequence[Any]) -> TaskRow:
    return TaskRow(r[0], r[1], r[2], None if r[3] is None else int(r[3]), r[4],
                   None if r[5] is None else bytes(r[5]), r[6], float(r[7]), float(r[8]),
                   None if r[9] is None else float(r[9]))


class McpTasks(McpTaskRows):
    """:class:`McpTaskRows` on a backend."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        db.prepare("mcp_tasks")

    def add(self, row: TaskRow) -> None:
        def run(tx: Tx) -> None:
            tx.execute("DELETE FROM mcp_tasks WHERE expires_at < ?", (time.time(),))
            tx.execute(f"INSERT INTO mcp_tasks ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                       (row.id, row.owner, row.tool, row.job_id, row.status, row.output,
                        row.error, row.created_at, row.updated_at, row.expires_at))
        self._db.write(run)

    def set_job(self, task_id: str, job_id: int) -> None:
        self._db.write_one("UPDATE mcp_tasks SET job_id=? WHERE id=?", (job_id, task_id))

    def get(self, task_id: str) -> TaskRow | None:
        return self._db.read_row(_row, f"SELECT {_COLS} FROM mcp_tasks WHERE id=?", (task_id,))

    def page(self, owner: str, after: int | None, limit: int) -> tuple[list[TaskRow], int | None]:
        below = "" if after is None else " AND seq < ?"
        args: list[Any] = [owner] if after is None else [owner, after]
        rows = self._db.read(f"SELECT {_COLS}, seq FROM mcp_tasks WHERE owner=?{below} "
                             f"ORDER BY seq DESC LIMIT ?", [*args, limit + 1])
        more = len(rows) > limit
        rows = rows[:limit]
        return [_row(r) for r in rows], int(rows[-1][-1]) if more else None

    def settle(self, task_id: str, output: bytes | None, error: str | None, at: float) -> bool:
        return bool(self._db.write_one(
            "UPDATE mcp_tasks SET status='done', output=?, error=?, updated_at=? "
            "WHERE id=? AND status='working'",
            (output, None if error is None else error[:4096], at, task_id))[0])

    def cancel(self, task_id: str, at: float) -> bool:
        return bool(self._db.write_one(
            "UPDATE mcp_tasks SET status='cancelled', updated_at=? WHERE id=? AND "
            "status IN ('working', 'input_required')", (at, task_id))[0])

    def park(self, task_id: str, rounds: bytes, at: float) -> bool:
        return bool(self._db.write_one(
            "UPDATE mcp_tasks SET status='input_required', output=?, updated_at=? "
            "WHERE id=? AND status='working'", (rounds, at, task_id))[0])

    def answer(self, task_id: str, rounds: bytes, seen: float, at: float, *,
               resume: bool) -> bool:
        status, job = ("'working'", ", job_id=NULL") if resume else ("'input_required'", "")
        return bool(self._db.write_one(
            f"UPDATE mcp_tasks SET status={status}{job}, output=?, updated_at=? WHERE id=? "
            "AND status='input_required' AND updated_at=?", (rounds, at, task_id, seen))[0])

    def secret(self, name: str, make: bytes) -> bytes:
        # Owned by nobody (no principal is named ""), never expiring, under an id with a
        # colon (task ids are URL-safe base64): tasks/get and tasks/list never show it.
        key = f"secret:{name}"
        now = time.time()
        self._db.write_one(f"INSERT INTO mcp_tasks ({_COLS}) VALUES (?,'','',NULL,'secret',?,"
                           "NULL,?,?,NULL) ON CONFLICT (id) DO NOTHING", (key, make, now, now))
        rows = self._db.read("SELECT output FROM mcp_tasks WHERE id=?", (key,))
        return bytes(rows[0][0])
