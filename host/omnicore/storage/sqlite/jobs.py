"""The job queue and schedules on SQLite: leases with an owner, claimed in one statement."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from typing import Any, cast

from omnicore.storage.base import (
    PluginTasks,
    QuotaExceeded,
    Schedules,
    Task,
    TaskQueue,
    TaskSpec,
    TaskState,
)
from omnicore.storage.sqlite.database import Database

__all__ = ["SQLitePluginTasks", "SQLiteQueue", "SQLiteSchedules"]


_TASK_COLS = ("id, plugin, handler, payload, state, attempts, max_attempts, backoff_ms, run_at, "
              "created_at, started_at, finished_at, last_error, source, hops, owner")


def _task(row: Sequence[Any]) -> Task:
    r = list(row)
    r[3] = bytes(r[3])
    return Task(*r)


def _insert(conn: sqlite3.Connection, spec: TaskSpec, now: float) -> int:
    row = conn.execute(
        "INSERT INTO tasks(plugin, handler, payload, state, attempts, max_attempts, "
        "backoff_ms, run_at, created_at, source, hops) VALUES (?,?,?,'queued',0,?,?,?,?,?,?) "
        "RETURNING id", (spec.plugin, spec.handler, spec.payload, spec.max_attempts,
                         spec.backoff_ms, spec.run_at, now, spec.source, spec.hops)).fetchone()
    return int(row[0])


class SQLitePluginTasks(PluginTasks):
    __slots__ = ("_s", "plugin")

    def __init__(self, db: Database, plugin: str) -> None:
        self._s = db
        self.plugin = plugin

    def enqueue(self, handler: str, payload: bytes, run_at: float, *, max_attempts: int,
                backoff_ms: int, max_queued: int, source: str = "call", hops: int = 0) -> int:
        spec = TaskSpec(self.plugin, handler, bytes(payload), run_at, max_attempts, backoff_ms,
                        source, hops)

        def run(conn: sqlite3.Connection) -> int:
            pending = conn.execute("SELECT COUNT(*) FROM tasks WHERE plugin=? AND state IN "
                                   "('queued','running')", (self.plugin,)).fetchone()[0]
            if pending >= max_queued:
                raise QuotaExceeded(f"plugin '{self.plugin}' has {pending} tasks pending, "
                                    f"max_queued is {max_queued}")
            return _insert(conn, spec, time.time())
        job_id = cast(int, self._s._write(run))
        self._s.wakeup.send("jobs")
        return job_id

    def cancel(self, task_id: int) -> bool | None:
        return SQLiteQueue(self._s).cancel(task_id, time.time(), plugin=self.plugin)

    def get(self, task_id: int) -> Task | None:
        rows = self._s._read(f"SELECT {_TASK_COLS} FROM tasks WHERE id=? AND plugin=?",
                             (task_id, self.plugin))
        return _task(rows[0]) if rows else None

    def pending(self) -> int:
        return int(self._s._read("SELECT COUNT(*) FROM tasks WHERE plugin=? AND state IN "
                                 "('queued','running')", (self.plugin,))[0][0])


class SQLiteQueue(TaskQueue):
    def __init__(self, db: Database) -> None:
        self._s = db

    def add(self, spec: TaskSpec) -> int:
        job_id = cast(int, self._s._write(lambda conn: _insert(conn, spec, time.time())))
        self._s.wakeup.send("jobs")
        return job_id

    def get(self, task_id: int) -> Task | None:
        rows = self._s._read(f"SELECT {_TASK_COLS} FROM tasks WHERE id=?", (task_id,))
        return _task(rows[0]) if rows else None

    def list(self, *, plugin: str | None = None, states: Sequence[str] = (),
             limit: int = 100) -> list[Task]:
        where, args = [], []
        if plugin is not None:
            where.append("plugin=?")
            args.append(plugin)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args += list(states)
        sql = f"SELECT {_TASK_COLS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._s._read(sql + " ORDER BY id DESC LIMIT ?", [*args, limit])
        return [_task(r) for r in rows]

    def claim(self, owner: str, now: float, lease_s: float) -> Task | None:
        def run(conn: sqlite3.Connection) -> Task | None:
            # An expired lease first (a dead host's job), else the oldest due job: two
            # probes of the (state, run_at) index that stop at their first row. One
            # ``WHERE a OR b ... ORDER BY`` sorted the whole due queue on every claim.
            row = conn.execute(
                f"UPDATE tasks SET state='running', attempts=attempts+1, owner=?, "
                f"lease_until=?, started_at=? WHERE id=COALESCE("
                f"(SELECT id FROM tasks WHERE state='running' AND lease_until<? "
                f"ORDER BY lease_until LIMIT 1), "
                f"(SELECT id FROM tasks WHERE state='queued' AND run_at<=? "
                f"ORDER BY run_at, id LIMIT 1)) RETURNING {_TASK_COLS}",
                (owner, now + lease_s, now, now, now)).fetchone()
            return _task(row) if row else None
        return cast("Task | None", self._s._write(run))

    def renew(self, owner: str, task_ids: Sequence[int], lease_until: float) -> None:
        if not task_ids:
            return
        marks = ",".join("?" * len(task_ids))
        self._s._write(lambda conn: conn.execute(
            f"UPDATE tasks SET lease_until=? WHERE owner=? AND state='running' AND id IN "
            f"({marks})", (lease_until, owner, *task_ids)))

    def finish(self, task_id: int, owner: str, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE tasks SET state='succeeded', finished_at=?, owner=NULL, "
                               "lease_until=NULL WHERE id=? AND owner=? AND state='running'",
                               (now, task_id, owner))
            return cur.rowcount == 1
        return cast(bool, self._s._write(run))

    def fail(self, task_id: int, owner: str, now: float, error: str,
             retry_at: float | None) -> TaskState | None:
        state: TaskState = "queued" if retry_at is not None else "dead"

        def run(conn: sqlite3.Connection) -> TaskState | None:
            cur = conn.execute(
                "UPDATE tasks SET state=?, last_error=?, run_at=COALESCE(?, run_at), "
                "finished_at=?, owner=NULL, lease_until=NULL WHERE id=? AND owner=? AND "
                "state='running'", (state, error[:4096], retry_at,
                                    None if retry_at is not None else now, task_id, owner))
            return state if cur.rowcount == 1 else None
        return cast("TaskState | None", self._s._write(run))

    def release(self, owner: str, task_ids: Sequence[int]) -> None:
        if not task_ids:
            return
        marks = ",".join("?" * len(task_ids))
        self._s._write(lambda conn: conn.execute(
            f"UPDATE tasks SET state='queued', attempts=MAX(attempts-1, 0), owner=NULL, "
            f"lease_until=NULL WHERE owner=? AND state='running' AND id IN ({marks})",
            (owner, *task_ids)))

    def release_others(self, owner: str) -> int:
        return cast(int, self._s._write(lambda conn: conn.execute(
            "UPDATE tasks SET lease_until=0 WHERE state='running' AND owner IS NOT ?",
            (owner,)).rowcount))

    def retry(self, task_id: int, now: float) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE tasks SET state='queued', attempts=0, run_at=?, "
                               "finished_at=NULL WHERE id=? AND state IN ('dead','cancelled')",
                               (now, task_id))
            return cur.rowcount == 1
        return cast(bool, self._s._write(run))

    def cancel(self, task_id: int, now: float, plugin: str | None = None) -> bool | None:
        def run(conn: sqlite3.Connection) -> bool | None:
            row = conn.execute("SELECT state, plugin FROM tasks WHERE id=?",
                               (task_id,)).fetchone()
            if row is None or (plugin is not None and row[1] != plugin):
                return None
            if row[0] != "queued":
                return False
            conn.execute("UPDATE tasks SET state='cancelled', finished_at=? WHERE id=?",
                         (now, task_id))
            return True
        return cast("bool | None", self._s._write(run))

    def next_due(self) -> float | None:
        rows = self._s._read("SELECT MIN(run_at) FROM tasks WHERE state='queued'")
        return rows[0][0] if rows and rows[0][0] is not None else None

    def counts(self) -> dict[tuple[str, TaskState], int]:
        rows = self._s._read("SELECT plugin, state, COUNT(*) FROM tasks GROUP BY plugin, state")
        return {(plugin, state): n for plugin, state, n in rows}

    def purge_finished(self, before: float) -> int:
        return cast(int, self._s._write(lambda conn: conn.execute(
            "DELETE FROM tasks WHERE state IN ('succeeded','cancelled') AND finished_at<?",
            (before,)).rowcount))


class SQLiteSchedules(Schedules):
    def __init__(self, db: Database) -> None:
        self._s = db

    def next_fire(self, plugin: str, name: str) -> float | None:
        rows = self._s._read("SELECT next_fire FROM schedules WHERE plugin=? AND name=?",
                             (plugin, name))
        return float(rows[0][0]) if rows else None

    def advance(self, plugin: str, name: str, expected: float | None, new_next: float,
                fire: TaskSpec | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if expected is None:
                cur = conn.execute("INSERT INTO schedules(plugin, name, next_fire) VALUES "
                                   "(?,?,?) ON CONFLICT DO NOTHING", (plugin, name, new_next))
            else:
                cur = conn.execute("UPDATE schedules SET next_fire=? WHERE plugin=? AND "
                                   "name=? AND next_fire=?", (new_next, plugin, name, expected))
            if cur.rowcount != 1:
                return False
            if fire is not None:
                _insert(conn, fire, time.time())
            return True
        return cast(bool, self._s._write(run))
