"""The job queue and schedules, on any backend: leased rows of ``jobs`` (stores/leases.py).

An enqueue wakes the idle workers of every host (:meth:`~omnicore.storage.backend.Tx.wake`).
A plugin's enqueues take a lock on the plugin first, so two hosts cannot both see room under
``max_queued``. Schedules advance by compare-and-set on ``next_fire`` in the same transaction
as the fire's insert, so a period fires once across all hosts.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from omnicore.storage.backend import Backend, Tx, bounded_delete, marks, where
from omnicore.storage.base import (
    ENDED,
    FINISHED,
    Job,
    JobQueue,
    JobSpec,
    JobState,
    PluginJobs,
    QuotaExceeded,
    Schedules,
)
from omnicore.storage.stores.leases import JOBS, Among

__all__ = ["RESULT_KEEP", "JobSchedules", "Jobs", "PluginJobRows", "insert_job"]

#: The first bytes of a job's output that its row keeps (its ``result``).
RESULT_KEEP = 64 * 1024

_COLS = ("id, plugin, handler, payload, state, attempts, max_attempts, backoff_ms, run_at, "
         "created_at, started_at, finished_at, last_error, source, hops, owner, runs, result, "
         "digest, trace")
_INSERT = ("INSERT INTO jobs(plugin, handler, payload, state, attempts, max_attempts, "
           "backoff_ms, run_at, created_at, source, hops, digest, trace) "
           "VALUES (?,?,?,'queued',0,?,?,?,?,?,?,?,?) RETURNING id")
_LIVE = "FROM jobs WHERE plugin=? AND state IN ('queued','running')"  # a plugin's pending jobs
_PENDING = f"SELECT COUNT(*) {_LIVE}"
#: Later than any job is due (next_due asks for any time).
_NEVER = 1e300


def _job(row: Sequence[Any]) -> Job:
    r = list(row)
    r[3] = bytes(r[3])
    r[16] = tuple(r[16].split())  # runs
    r[17] = None if r[17] is None else bytes(r[17])  # result
    return Job(*r)


def _args(spec: JobSpec, now: float) -> tuple[Any, ...]:
    return (spec.plugin, spec.handler, spec.payload, spec.max_attempts, spec.backoff_ms,
            spec.run_at, now, spec.source, spec.hops, spec.digest, spec.trace)


def insert_job(tx: Tx, spec: JobSpec, now: float) -> int:
    """Insert ``spec`` as a queued job in ``tx`` (waking the workers at commit); its id."""
    new = int(tx.execute(_INSERT, _args(spec, now)).fetchone()[0])
    tx.wake(JOBS.queue)
    return new


def _insert(tx: Tx, spec: JobSpec) -> int:
    return insert_job(tx, spec, time.time())


class PluginJobRows(PluginJobs):
    """One plugin's jobs."""

    __slots__ = ("_db", "_queue", "plugin")

    def __init__(self, db: Backend, queue: Jobs, plugin: str) -> None:
        self._db = db
        self._queue = queue
        self.plugin = plugin

    def enqueue(self, handler: str, payload: bytes, run_at: float, *, max_attempts: int,
                backoff_ms: int, max_queued: int, source: str = "call", hops: int = 0,
                digest: str | None = None, trace: str | None = None) -> int:
        spec = JobSpec(self.plugin, handler, bytes(payload), run_at, max_attempts, backoff_ms,
                       source, hops, digest, trace)

        def run(tx: Tx) -> int:
            # The lock's old name: a host of the previous version sharing the database
            # takes the same one, so the two cannot both see room under max_queued.
            tx.lock(f"tasks:{self.plugin}")
            pending = tx.execute(_PENDING, (self.plugin,)).fetchone()[0]
            if pending >= max_queued:
                raise QuotaExceeded(f"plugin '{self.plugin}' has {pending} jobs pending, "
                                    f"max_queued is {max_queued}")
            return _insert(tx, spec)
        return self._db.write(run)

    def cancel(self, job_id: int) -> bool | None:
        return self._queue.cancel(job_id, time.time(), plugin=self.plugin)

    def get(self, job_id: int) -> Job | None:
        return self._db.read_row(_job, f"SELECT {_COLS} FROM jobs WHERE id=? AND plugin=?",
                                 (job_id, self.plugin))

    def pending(self) -> int:
        return int(self._db.read(_PENDING, (self.plugin,))[0][0])


class Jobs(JobQueue):
    """The whole queue."""

    def __init__(self, db: Backend) -> None:
        self._db = db

    def add(self, spec: JobSpec) -> int:
        rows = self._db.write_one(_INSERT, _args(spec, time.time()), returning=True,
                                  wake=JOBS.queue)[1]
        return int(rows[0][0])

    def add_many(self, specs: Sequence[JobSpec]) -> list[int]:
        def run(tx: Tx) -> list[int]:
            now = time.time()
            ids = [int(tx.execute(_INSERT, _args(spec, now)).fetchone()[0]) for spec in specs]
            if ids:
                tx.wake(JOBS.queue)
            return ids
        return self._db.write(run)

    def add_keyed(self, spec: JobSpec, key: str, digest: str, now: float,
                  keep_s: float) -> tuple[int, str, bool]:
        def run(tx: Tx) -> tuple[int, str, bool]:
            tx.execute("DELETE FROM job_keys WHERE created_at < ?", (now - keep_s,))
            # The key first: a second host inserting the same key waits for this transaction
            # and then finds the job it made (PostgreSQL), or runs after it (SQLite).
            made = tx.execute("INSERT INTO job_keys(key, digest, created_at) VALUES (?,?,?) "
                              "ON CONFLICT DO NOTHING", (key, digest, now)).rowcount
            if not made:
                job_id, first = tx.execute("SELECT job_id, digest FROM job_keys WHERE key=?",
                                           (key,)).fetchone()
                return int(job_id), str(first), False
            job_id = _insert(tx, spec)
            tx.execute("UPDATE job_keys SET job_id=? WHERE key=?", (job_id, key))
            return job_id, digest, True
        return self._db.write(run)

    def get(self, job_id: int) -> Job | None:
        return self._db.read_row(_job, f"SELECT {_COLS} FROM jobs WHERE id=?", (job_id,))

    def list(self, *, plugin: str | None = None, states: Sequence[str] = (),
             limit: int = 100) -> list[Job]:
        found, args = where(plugin=plugin, state=tuple(states))
        rows = self._db.read(f"SELECT {_COLS} FROM jobs{found} ORDER BY id DESC LIMIT ?",
                             [*args, limit])
        return [_job(r) for r in rows]

    def claim(self, owner: str, now: float, lease_s: float,
              plugins: Among = None) -> Job | None:
        row = JOBS.claim(self._db, owner, now, lease_s, _COLS, among=plugins)
        return None if row is None else _job(row)

    def renew(self, owner: str, job_ids: Sequence[int], lease_until: float) -> None:
        JOBS.renew(self._db, owner, job_ids, lease_until)

    def finish(self, job_id: int, owner: str, now: float, result: bytes | None = None) -> bool:
        count, _ = self._db.write_one(JOBS.ended("state='succeeded', finished_at=?, result=?"),
                                      (now, None if result is None else result[:RESULT_KEEP],
                                       job_id, owner))
        return count == 1

    def fail(self, job_id: int, owner: str, now: float, error: str,
             retry_at: float | None) -> JobState | None:
        state: JobState = "queued" if retry_at is not None else "dead"
        count, _ = self._db.write_one(
            JOBS.ended("state=?, last_error=?, run_at=COALESCE(?, run_at), finished_at=?"),
            (state, error[:4096], retry_at, None if retry_at is not None else now, job_id,
             owner))
        return state if count == 1 else None

    def release(self, owner: str, job_ids: Sequence[int]) -> None:
        JOBS.release(self._db, owner, job_ids)

    def release_others(self, owner: str) -> int:
        return JOBS.release_others(self._db, owner)

    def retry(self, job_id: int, now: float) -> bool:
        count, _ = self._db.write_one(
            "UPDATE jobs SET state='queued', attempts=0, run_at=?, finished_at=NULL "
            "WHERE id=? AND state IN ('dead','cancelled')", (now, job_id))
        return count == 1

    def cancel(self, job_id: int, now: float, plugin: str | None = None) -> bool | None:
        for_update = self._db.dialect.for_update

        def run(tx: Tx) -> bool | None:
            row = tx.execute(f"SELECT state, plugin FROM jobs WHERE id=?{for_update}",
                             (job_id,)).fetchone()
            if row is None or (plugin is not None and row[1] != plugin):
                return None
            if row[0] != "queued":
                return False
            tx.execute("UPDATE jobs SET state='cancelled', finished_at=? WHERE id=?",
                       (now, job_id))
            return True
        return self._db.write(run)

    def next_due(self, plugins: Among = None) -> float | None:
        if plugins is None:
            found = self._db.read_value("SELECT MIN(run_at) FROM jobs WHERE state='queued'")
            return None if found is None else float(found)
        if not plugins:
            return None
        # The claim's due probe (stores/leases.py), at any time, without its locks.
        sql, args = JOBS.due(replace(self._db.dialect, skip_locked=""), "run_at", plugins,
                             _NEVER)
        found = self._db.read_value(sql, args)
        return None if found is None else float(found)

    def counts(self) -> dict[tuple[str, JobState], int]:
        rows = self._db.read("SELECT plugin, state, COUNT(*) FROM jobs GROUP BY plugin, state")
        return {(plugin, state): int(n) for plugin, state, n in rows}

    def purge_finished(self, before: float, *, states: Sequence[JobState] = FINISHED,
                       limit: int | None = None) -> int:
        if not states:
            return 0
        if not set(states) <= set(ENDED):
            raise ValueError(f"purge_finished deletes ended jobs only ({', '.join(ENDED)}), "
                             f"not {', '.join(sorted(set(states) - set(ENDED)))}")
        return self._db.write_one(*bounded_delete(
            "jobs", "id", f"state IN ({marks(len(states))}) AND finished_at<?",
            [*states, before], limit))[0]


class JobSchedules(Schedules):
    def __init__(self, db: Backend) -> None:
        self._db = db

    def next_fire(self, plugin: str, name: str) -> float | None:
        found = self._db.read_value("SELECT next_fire FROM schedules WHERE plugin=? AND name=?",
                                    (plugin, name))
        return None if found is None else float(found)

    def advance(self, plugin: str, name: str, expected: float | None, new_next: float,
                fire: JobSpec | None, *, alone: bool = False) -> bool:
        def run(tx: Tx) -> bool:
            if expected is None:
                cur = tx.execute("INSERT INTO schedules(plugin, name, next_fire) VALUES "
                                 "(?,?,?) ON CONFLICT DO NOTHING", (plugin, name, new_next))
            else:
                cur = tx.execute("UPDATE schedules SET next_fire=? WHERE plugin=? AND name=? "
                                 "AND next_fire=?", (new_next, plugin, name, expected))
            if cur.rowcount != 1:
                return False
            # One seek of (plugin, state): a plugin's live jobs are bounded by max_queued.
            # The same source's run now (``<source>:now``, the console's "Run now" of a
            # schedule) is a run of it too: the fire must not start a second one beside it.
            if fire is not None and not (alone and tx.execute(
                    f"SELECT 1 {_LIVE} AND source IN (?,?) LIMIT 1",
                    (plugin, fire.source, f"{fire.source}:now")).fetchone()):
                _insert(tx, fire)
            return True
        return self._db.write(run)
