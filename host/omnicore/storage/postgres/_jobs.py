"""The job queue and schedules on PostgreSQL.

A claim is one statement: the oldest due row is picked with ``FOR UPDATE SKIP LOCKED``, so
workers on every instance take different rows without waiting on each other, and leased in
the same ``UPDATE``. Schedules advance by compare-and-set on ``next_fire`` in the same
transaction as the fire's insert, so a period fires once across all instances.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from omnicore.storage.base import (
    PluginTasks,
    QuotaExceeded,
    Schedules,
    Task,
    TaskQueue,
    TaskSpec,
    TaskState,
)

if TYPE_CHECKING:  # same package: the storage object that owns these views
    from omnicore.storage.postgres._storage import PostgresStorage

__all__ = ["PgPluginTasks", "PgQueue", "PgSchedules"]

_COLS = ("id, plugin, handler, payload, state, attempts, max_attempts, backoff_ms, run_at, "
         "created_at, started_at, finished_at, last_error, source, hops, owner")


def _task(row: Sequence[Any]) -> Task:
    r = list(row)
    r[3] = bytes(r[3])
    return Task(*r)


#: One statement: the insert and its wake-up. ``pg_notify`` in the statement, like a
#: ``NOTIFY``, is delivered when the statement's transaction commits, and wakes idle workers
#: on every instance (LISTEN omnicore_jobs).
_INSERT = ("WITH added AS (INSERT INTO tasks(plugin, handler, payload, state, attempts, "
           "max_attempts, backoff_ms, run_at, created_at, source, hops) "
           "VALUES (%s,%s,%s,'queued',0,%s,%s,%s,%s,%s,%s) RETURNING id) "
           "SELECT id, pg_notify('omnicore_jobs', 'jobs') FROM added")


def _args(spec: TaskSpec, now: float) -> tuple[Any, ...]:
    return (spec.plugin, spec.handler, spec.payload, spec.max_attempts, spec.backoff_ms,
            spec.run_at, now, spec.source, spec.hops)


class PgPluginTasks(PluginTasks):
    __slots__ = ("_s", "plugin")

    def __init__(self, storage: PostgresStorage, plugin: str) -> None:
        self._s = storage
        self.plugin = plugin

    def enqueue(self, handler: str, payload: bytes, run_at: float, *, max_attempts: int,
                backoff_ms: int, max_queued: int, source: str = "call", hops: int = 0) -> int:
        spec = TaskSpec(self.plugin, handler, bytes(payload), run_at, max_attempts, backoff_ms,
                        source, hops)

        def run(conn: Any) -> int:
            # One plugin's enqueues are serialised on a transaction-scoped advisory lock so
            # that two instances cannot both see room under max_queued.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('tasks:' || %s))",
                         (self.plugin,))
            pending = conn.execute("SELECT COUNT(*) FROM tasks WHERE plugin=%s AND state IN "
                                   "('queued','running')", (self.plugin,)).fetchone()[0]
            if pending >= max_queued:
                raise QuotaExceeded(f"plugin '{self.plugin}' has {pending} tasks pending, "
                                    f"max_queued is {max_queued}")
            return int(conn.execute(_INSERT, _args(spec, time.time())).fetchone()[0])
        return self._s._write(run)

    def cancel(self, task_id: int) -> bool | None:
        return self._s.queue.cancel(task_id, time.time(), plugin=self.plugin)

    def get(self, task_id: int) -> Task | None:
        rows = self._s._read(f"SELECT {_COLS} FROM tasks WHERE id=%s AND plugin=%s",
                             (task_id, self.plugin))
        return _task(rows[0]) if rows else None

    def pending(self) -> int:
        return int(self._s._read("SELECT COUNT(*) FROM tasks WHERE plugin=%s AND state IN "
                                 "('queued','running')", (self.plugin,))[0][0])


class PgQueue(TaskQueue):
    def __init__(self, storage: PostgresStorage) -> None:
        self._s = storage

    def add(self, spec: TaskSpec) -> int:
        return int(self._s._write1(_INSERT, _args(spec, time.time()), returning=True)[1][0][0])

    def get(self, task_id: int) -> Task | None:
        rows = self._s._read(f"SELECT {_COLS} FROM tasks WHERE id=%s", (task_id,))
        return _task(rows[0]) if rows else None

    def list(self, *, plugin: str | None = None, states: Sequence[str] = (),
             limit: int = 100) -> list[Task]:
        where: list[str] = []
        args: list[object] = []
        if plugin is not None:
            where.append("plugin=%s")
            args.append(plugin)
        if states:
            where.append("state = ANY(%s)")
            args.append(list(states))
        sql = f"SELECT {_COLS} FROM tasks"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._s._read(sql + " ORDER BY id DESC LIMIT %s", [*args, limit])
        return [_task(r) for r in rows]

    def claim(self, owner: str, now: float, lease_s: float) -> Task | None:
        # An expired lease first (a dead host's job), else the oldest due job: two ordered
        # index probes that each stop at their first unlocked row. (One ``WHERE a OR b``
        # made PostgreSQL gather and sort the whole due queue on every claim, so a claim
        # cost grew with the queue's depth.) COALESCE runs the second probe only when the
        # first finds nothing.
        _, rows = self._s._write1(
            f"UPDATE tasks SET state='running', attempts=attempts+1, owner=%s, "
            f"lease_until=%s, started_at=%s WHERE id=COALESCE("
            f"(SELECT id FROM tasks WHERE state='running' AND lease_until<%s "
            f"ORDER BY lease_until LIMIT 1 FOR UPDATE SKIP LOCKED), "
            f"(SELECT id FROM tasks WHERE state='queued' AND run_at<=%s "
            f"ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)) RETURNING {_COLS}",
            (owner, now + lease_s, now, now, now), returning=True)
        return _task(rows[0]) if rows else None

    def renew(self, owner: str, task_ids: Sequence[int], lease_until: float) -> None:
        if task_ids:
            self._s._write1("UPDATE tasks SET lease_until=%s WHERE owner=%s AND "
                            "state='running' AND id = ANY(%s)",
                            (lease_until, owner, list(task_ids)))

    def finish(self, task_id: int, owner: str, now: float) -> bool:
        count, _ = self._s._write1(
            "UPDATE tasks SET state='succeeded', finished_at=%s, owner=NULL, lease_until=NULL "
            "WHERE id=%s AND owner=%s AND state='running'", (now, task_id, owner))
        return count == 1

    def fail(self, task_id: int, owner: str, now: float, error: str,
             retry_at: float | None) -> TaskState | None:
        state: TaskState = "queued" if retry_at is not None else "dead"
        count, _ = self._s._write1(
            "UPDATE tasks SET state=%s, last_error=%s, run_at=COALESCE(%s, run_at), "
            "finished_at=%s, owner=NULL, lease_until=NULL WHERE id=%s AND owner=%s AND "
            "state='running'", (state, error[:4096], retry_at,
                                None if retry_at is not None else now, task_id, owner))
        return state if count == 1 else None

    def release(self, owner: str, task_ids: Sequence[int]) -> None:
        def run(conn: Any) -> None:
            conn.execute("UPDATE tasks SET state='queued', attempts=GREATEST(attempts-1, 0), "
                         "owner=NULL, lease_until=NULL WHERE owner=%s AND state='running' AND "
                         "id = ANY(%s)", (owner, list(task_ids)))
            conn.execute("NOTIFY omnicore_jobs, 'jobs'")
        if task_ids:
            self._s._write(run)

    def release_others(self, owner: str) -> int:
        def run(conn: Any) -> int:
            n = int(conn.execute("UPDATE tasks SET lease_until=0 WHERE state='running' AND "
                                 "owner IS DISTINCT FROM %s", (owner,)).rowcount)
            if n:
                conn.execute("NOTIFY omnicore_jobs, 'jobs'")
            return n
        return self._s._write(run)

    def retry(self, task_id: int, now: float) -> bool:
        def run(conn: Any) -> bool:
            cur = conn.execute("UPDATE tasks SET state='queued', attempts=0, run_at=%s, "
                               "finished_at=NULL WHERE id=%s AND state IN ('dead','cancelled')",
                               (now, task_id))
            return bool(cur.rowcount == 1)
        return self._s._write(run)

    def cancel(self, task_id: int, now: float, plugin: str | None = None) -> bool | None:
        def run(conn: Any) -> bool | None:
            row = conn.execute("SELECT state, plugin FROM tasks WHERE id=%s FOR UPDATE",
                               (task_id,)).fetchone()
            if row is None or (plugin is not None and row[1] != plugin):
                return None
            if row[0] != "queued":
                return False
            conn.execute("UPDATE tasks SET state='cancelled', finished_at=%s WHERE id=%s",
                         (now, task_id))
            return True
        return self._s._write(run)

    def next_due(self) -> float | None:
        rows = self._s._read("SELECT MIN(run_at) FROM tasks WHERE state='queued'")
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    def counts(self) -> dict[tuple[str, TaskState], int]:
        rows = self._s._read("SELECT plugin, state, COUNT(*) FROM tasks GROUP BY plugin, state")
        return {(plugin, state): int(n) for plugin, state, n in rows}

    def purge_finished(self, before: float) -> int:
        return self._s._write(lambda conn: int(conn.execute(
            "DELETE FROM tasks WHERE state IN ('succeeded','cancelled') AND finished_at<%s",
            (before,)).rowcount))


class PgSchedules(Schedules):
    def __init__(self, storage: PostgresStorage) -> None:
        self._s = storage

    def next_fire(self, plugin: str, name: str) -> float | None:
        rows = self._s._read("SELECT next_fire FROM schedules WHERE plugin=%s AND name=%s",
                             (plugin, name))
        return float(rows[0][0]) if rows else None

    def advance(self, plugin: str, name: str, expected: float | None, new_next: float,
                fire: TaskSpec | None) -> bool:
        def run(conn: Any) -> bool:
            if expected is None:
                cur = conn.execute("INSERT INTO schedules(plugin, name, next_fire) VALUES "
                                   "(%s,%s,%s) ON CONFLICT DO NOTHING",
                                   (plugin, name, new_next))
            else:
                cur = conn.execute("UPDATE schedules SET next_fire=%s WHERE plugin=%s AND "
                                   "name=%s AND next_fire=%s",
                                   (new_next, plugin, name, expected))
            if cur.rowcount != 1:
                return False
            if fire is not None:
                conn.execute(_INSERT, _args(fire, time.time()))
            return True
        return self._s._write(run)
