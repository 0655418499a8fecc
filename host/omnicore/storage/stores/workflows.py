"""Workflow runs, on any backend: versions, runs, steps (the step queue), history, triggers.

``wf_steps`` is a leased queue (stores/leases.py, the job queue's SQL): a claim leases the
oldest due row to its owner and is recorded in ``wf_history`` in the same transaction, as is
each change. Rows of ``wf_steps`` come back in the order they were created
(:attr:`~omnicore.storage.backend.Dialect.insertion_order`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx, marks, where
from omnicore.storage.stores.leases import STEPS
from omnicore.storage.workflows import (
    FINAL_RUN_STATES,
    FINAL_STEP_STATES,
    HistoryRecord,
    NewStep,
    RunRecord,
    RunState,
    StepRecord,
    StepState,
    WorkflowStore,
    from_json,
    to_json,
)

__all__ = ["Workflows"]


_RUN_COLS = ("id, workflow, version, state, inputs, trigger, outputs, error, concurrency_key, "
             "started_by, parent_run, parent_step, parent_index, created_at, started_at, "
             "finished_at, restarts, trace")
_STEP_COLS = ("run_id, step, idx, state, attempt, input, output, output_ref, output_bytes, "
              "error, run_at, started_at, finished_at, owner, wait, decided_by, decided_at, pin, "
              "plugin")


def _run(row: Sequence[Any]) -> RunRecord:
    r = list(row)
    r[4], r[5], r[6] = from_json(r[4]), from_json(r[5]), from_json(r[6])
    return RunRecord(*r)


class Workflows(WorkflowStore):
    """:class:`WorkflowStore` in the app's database (the ``workflows`` component)."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        self._d = db.dialect
        db.prepare("workflows")

    # -- versions and blobs --

    def save_version(self, digest: str, name: str, definition: str) -> None:
        self._db.write(lambda c: c.execute(
            "INSERT INTO wf_versions VALUES (?,?,?,?) ON CONFLICT DO NOTHING",
            (digest, name, definition, time.time())))

    def version(self, digest: str) -> str | None:
        rows = self._db.read("SELECT definition FROM wf_versions WHERE hash=?", (digest,))
        return str(rows[0][0]) if rows else None

    def blob(self, digest: str) -> bytes | None:
        rows = self._db.read("SELECT data FROM wf_blobs WHERE hash=?", (digest,))
        return bytes(rows[0][0]) if rows else None

    # -- runs --

    def create_run(self, workflow: str, version: str, inputs: Any, trigger: Any,
                   started_by: str, *, key: str | None = None, limit: int = 0,
                   on_conflict: str = "queue", parent: tuple[int, str, int] | None = None,
                   fire: tuple[str, float | None, float] | None = None,
                   trace: str | None = None,
                   ) -> tuple[int, RunState, list[int]] | None:
        def run(conn: Tx) -> tuple[int, RunState, list[int]] | None:
            now = time.time()
            if fire is not None and not _advance(conn, workflow, *fire):
                return None
            state: RunState = "running"
            cancelled: list[int] = []
            if limit > 0:
                active = [r[0] for r in conn.execute(
                    f"SELECT id FROM wf_runs WHERE workflow=? AND concurrency_key {self._d.same} ? "
                    f"AND state IN ('queued','running') ORDER BY id{self._d.for_update}",
                    (workflow, key))]
                if len(active) >= limit:
                    if on_conflict == "skip":
                        state = "skipped"
                    elif on_conflict == "queue":
                        state = "queued"
                    else:
                        cancelled = active
                        for rid in active:
                            _cancel(conn, rid, f"cancelled by a newer run (concurrency "
                                               f"key {key!r})", "engine", now)
            new = int(conn.execute(
                "INSERT INTO wf_runs(workflow, version, state, inputs, trigger, concurrency_key, "
                "started_by, parent_run, parent_step, parent_index, created_at, started_at, "
                "finished_at, trace) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?) RETURNING id",
                (workflow, version, state, to_json(inputs), to_json(trigger), key, started_by,
                 *(parent or (None, None, None)), now, now if state == "running" else None,
                 now if state == "skipped" else None, trace)).fetchone()[0])
            _hist(conn, new, "run.created", actor=started_by,
                  data={"state": state, "version": version, "inputs": inputs,
                        "trigger": trigger, "concurrency_key": key})
            return new, state, cancelled
        return self._db.write(run)

    def run(self, run_id: int) -> RunRecord | None:
        return self._db.read_row(_run, f"SELECT {_RUN_COLS} FROM wf_runs WHERE id=?", (run_id,))

    def runs(self, *, workflow: str | None = None, states: Sequence[str] = (),
             limit: int = 100, offset: int = 0) -> list[RunRecord]:
        """Newest first."""
        found, args = where(workflow=workflow, state=tuple(states))
        rows = self._db.read(f"SELECT {_RUN_COLS} FROM wf_runs{found} ORDER BY id DESC "
                              f"LIMIT ? OFFSET ?", [*args, limit, offset])
        return [_run(r) for r in rows]

    def child_run(self, parent: tuple[int, str, int]) -> RunRecord | None:
        return self._db.read_row(_run, f"SELECT {_RUN_COLS} FROM wf_runs WHERE parent_run=? AND "
                                 "parent_step=? AND parent_index=? ORDER BY id LIMIT 1", parent)

    def count_runs(self, *, workflow: str | None = None, states: Sequence[str] = ()) -> int:
        found, args = where(workflow=workflow, state=tuple(states))
        return int(self._db.read(f"SELECT COUNT(*) FROM wf_runs{found}", args)[0][0])

    def finish_run(self, run_id: int, state: RunState, *, outputs: Any = None,
                   error: str | None = None, actor: str = "engine") -> bool:
        """A running run ends; False when it was not running (cancelled meanwhile)."""
        def run(conn: Tx) -> bool:
            cur = conn.execute("UPDATE wf_runs SET state=?, outputs=?, error=?, finished_at=? "
                               "WHERE id=? AND state='running'",
                               (state, to_json(outputs), error, time.time(), run_id))
            if cur.rowcount != 1:
                return False
            _hist(conn, run_id, f"run.{state}", actor=actor,
                  data={"outputs": outputs} if error is None else {"error": error})
            return True
        return self._db.write(run)

    def promote(self, workflow: str, key: str | None, limit: int) -> list[int]:
        """Start queued runs of ``key`` while fewer than ``limit`` run; their ids."""
        def run(conn: Tx) -> list[int]:
            active = conn.execute(f"SELECT COUNT(*) FROM wf_runs WHERE workflow=? AND "
                                  f"concurrency_key {self._d.same} ? AND state='running'",
                                  (workflow, key)).fetchone()[0]
            free = max(0, limit - active)
            ids = [r[0] for r in conn.execute(
                f"SELECT id FROM wf_runs WHERE workflow=? AND concurrency_key {self._d.same} ? AND "
                f"state='queued' ORDER BY id LIMIT ?{self._d.for_update}", (workflow, key, free))]
            for rid in ids:
                conn.execute("UPDATE wf_runs SET state='running', started_at=? WHERE id=?",
                             (time.time(), rid))
                _hist(conn, rid, "run.started", actor="engine",
                      data={"reason": "a concurrency slot freed"})
            return ids
        return self._db.write(run)

    def cancel_run(self, run_id: int, actor: str, reason: str = "cancelled") -> bool | None:
        """True cancelled, False already finished, None unknown."""
        def run(conn: Tx) -> bool | None:
            row = conn.execute(f"SELECT state FROM wf_runs WHERE id=?{self._d.for_update}",
                               (run_id,)).fetchone()
            if row is None:
                return None
            if row[0] in FINAL_RUN_STATES:
                return False
            _cancel(conn, run_id, reason, actor, time.time())
            return True
        return self._db.write(run)

    def restart(self, run_id: int, actor: str, version: str | None) -> bool | None:
        """A failed or cancelled run runs again from its failed steps, keeping the rows that
        succeeded; ``version`` moves it to another version. None unknown, False not ended."""
        def run(conn: Tx) -> bool | None:
            row = conn.execute("SELECT state, version FROM wf_runs WHERE id=?",
                               (run_id,)).fetchone()
            if row is None:
                return None
            if row[0] not in ("failed", "cancelled"):
                return False
            dropped = [r[0] for r in conn.execute(
                "SELECT DISTINCT step FROM wf_steps WHERE run_id=? AND state!='succeeded'",
                (run_id,))]
            # A for_each whose items did not all succeed runs again as a whole step; its
            # succeeded items are kept and not run again.
            conn.execute("DELETE FROM wf_steps WHERE run_id=? AND state!='succeeded'",
                         (run_id,))
            conn.execute("UPDATE wf_runs SET state='running', error=NULL, outputs=NULL, "
                         "finished_at=NULL, restarts=restarts+1, version=? WHERE id=?",
                         (version or row[1], run_id))
            _hist(conn, run_id, "run.restarted", actor=actor,
                  data={"steps": dropped, "version": version or row[1],
                        "previous_version": row[1]})
            return True
        return self._db.write(run)

    # -- steps --

    def add_steps(self, run_id: int, steps: Sequence[NewStep]) -> int:
        """Create step rows (an existing row is left alone); how many were new."""
        def run(conn: Tx) -> int:
            row = conn.execute(f"SELECT state FROM wf_runs WHERE id=?{self._d.for_update}",
                               (run_id,)).fetchone()
            if row is None or row[0] != "running":
                return 0
            now = time.time()
            added = 0
            for s in steps:
                cur = conn.execute(
                    "INSERT INTO wf_steps(run_id, step, idx, state, input, run_at, wait, error, "
                    "finished_at, pin, plugin) VALUES (?,?,?,?,?,?,?,?,?,?,?) "
                    "ON CONFLICT DO NOTHING",
                    (run_id, s.step, s.index, s.state, to_json(s.input), s.run_at or now,
                     to_json(s.wait), s.error, now if s.state in FINAL_STEP_STATES else None,
                     s.pin, s.plugin))
                if cur.rowcount == 1:
                    added += 1
                    if s.index < 0 or s.state != "pending":
                        _hist(conn, run_id, f"step.{s.state}", s.step, s.index,
                              data={"input": s.input, "wait": s.wait, "error": s.error})
            return added
        return self._db.write(run)

    def steps(self, run_id: int, *, outputs: bool = True,
              parents: bool = False) -> list[StepRecord]:
        """A run's step rows; ``parents``: only the steps themselves, not for_each items."""
        cols = _STEP_COLS if outputs else _STEP_COLS.replace("input, output,", "NULL, NULL,")
        only = " AND idx=-1" if parents else ""
        rows = self._db.read(f"SELECT {cols} FROM wf_steps WHERE run_id=?{only} ORDER BY "
                             f"{self._d.insertion_order}", (run_id,))
        return [self._step(r, outputs) for r in rows]

    def step(self, run_id: int, step: str, index: int = -1) -> StepRecord | None:
        return self._db.read_row(self._step, f"SELECT {_STEP_COLS} FROM wf_steps WHERE "
                                 "run_id=? AND step=? AND idx=?", (run_id, step, index))

    def outputs(self, run_id: int, step: str) -> list[Any]:
        """The outputs of a for_each's items, in item order."""
        rows = self._db.read("SELECT output, output_ref FROM wf_steps WHERE run_id=? AND "
                              "step=? AND idx>=0 ORDER BY idx", (run_id, step))
        return [self._output(r[0], r[1]) for r in rows]

    def _output(self, text: str | None, ref: str | None) -> Any:
        if ref is not None:
            data = self.blob(ref)
            return None if data is None else json.loads(data)
        return from_json(text)

    def _step(self, row: Sequence[Any], outputs: bool = True) -> StepRecord:
        r = list(row)
        r[5] = from_json(r[5])
        # Without outputs the blob of an output stored by reference is not read either.
        r[6] = self._output(r[6], r[7]) if outputs else None
        r[14] = from_json(r[14])
        return StepRecord(*r)

    def promote_items(self, run_id: int, step: str, parallelism: int) -> int:
        """Queue pending items of a for_each while fewer than ``parallelism`` are active."""
        def run(conn: Tx) -> int:
            active = conn.execute("SELECT COUNT(*) FROM wf_steps WHERE run_id=? AND step=? AND "
                                  "idx>=0 AND state IN ('queued','running')",
                                  (run_id, step)).fetchone()[0]
            free = max(0, parallelism - active)
            if not free:
                return 0
            row = self._d.insertion_order
            return int(conn.execute(
                f"UPDATE wf_steps SET state='queued', run_at=? WHERE {row} IN (SELECT {row} "
                f"FROM wf_steps WHERE run_id=? AND step=? AND idx>=0 AND state='pending' "
                f"ORDER BY idx LIMIT ?)", (time.time(), run_id, step, free)).rowcount)
        return self._db.write(run)

    def counts(self, run_id: int, step: str) -> dict[str, int]:
        """States of a for_each's items: {state: n}."""
        rows = self._db.read("SELECT state, COUNT(*) FROM wf_steps WHERE run_id=? AND step=? "
                              "AND idx>=0 GROUP BY state", (run_id, step))
        return {r[0]: int(r[1]) for r in rows}

    def claim(self, owner: str, now: float, lease_s: float,
              serving: Mapping[str, str | None] | None = None) -> StepRecord | None:
        """Lease the oldest due step (queued, or running with an expired lease); a plugin
        step only if ``serving`` has its plugin, at the version it pins if it pins one
        (stores/leases.py)."""
        def run(tx: Tx) -> Sequence[Any] | None:
            row: Sequence[Any] | None = STEPS.claim(self._db, owner, now, lease_s, _STEP_COLS,
                                                    tx, among=serving)
            if row is None:
                return None
            _hist(tx, row[0], "step.started", row[1], row[2], row[4], owner)
            return row
        row = self._db.write(run)
        return None if row is None else self._step(row)

    def renew(self, owner: str, keys: Sequence[tuple[int, str, int]], until: float) -> None:
        STEPS.renew(self._db, owner, keys, until)

    def release(self, owner: str, keys: Sequence[tuple[int, str, int]]) -> None:
        """Give leases back without counting the attempt (graceful stop)."""
        STEPS.release(self._db, owner, keys)

    def release_others(self, owner: str) -> int:
        return STEPS.release_others(self._db, owner)

    def complete(self, run_id: int, step: str, index: int, *, owner: str | None,
                 state: StepState, output: bytes | None = None, inline_limit: int = 1 << 16,
                 error: str | None = None, retry_at: float | None = None,
                 expect: Sequence[str] = ("running",), actor: str | None = None,
                 duration_s: float | None = None) -> bool:
        def run(conn: Tx) -> bool:
            text, ref = None, None
            if output is not None:
                if len(output) > inline_limit:
                    ref = hashlib.sha256(output).hexdigest()
                    conn.execute("INSERT INTO wf_blobs VALUES (?,?) ON CONFLICT DO NOTHING",
                                 (ref, output))
                else:
                    text = output.decode()
            new = "queued" if retry_at is not None else state
            now = time.time()
            owned = " AND owner=?" if owner is not None else ""
            cur = conn.execute(
                f"UPDATE wf_steps SET state=?, output=?, output_ref=?, output_bytes=?, "
                f"error=?, run_at=COALESCE(?, run_at), finished_at=?, owner=NULL, "
                f"lease_until=NULL, decided_by=COALESCE(?, decided_by), "
                f"decided_at=CASE WHEN CAST(? AS TEXT) IS NULL THEN "
                f"decided_at ELSE ? END WHERE run_id=? AND step=? AND idx=? AND state IN "
                f"({marks(len(expect))}){owned}",
                (new, text, ref, None if output is None else len(output), error, retry_at,
                 None if retry_at is not None else now, actor, actor, now, run_id, step, index,
                 *expect, *([owner] if owner is not None else [])))
            if cur.rowcount != 1:
                return False
            attempt = conn.execute("SELECT attempt FROM wf_steps WHERE run_id=? AND step=? "
                                   "AND idx=?", (run_id, step, index)).fetchone()[0]
            data: dict[str, Any] = {"error": error} if error else {}
            if output is not None:
                data["output"] = json.loads(output) if ref is None else {"$ref": ref}
            if retry_at is not None:
                data["retry_at"] = retry_at
            if duration_s is not None:
                data["duration_s"] = round(duration_s, 6)
            _hist(conn, run_id, "step.retrying" if retry_at is not None else f"step.{state}",
                  step, index, attempt, actor or owner, data)
            return True
        return self._db.write(run)

    def waiting(self) -> list[StepRecord]:
        """Steps waiting for an approval, an event or a sub-workflow."""
        rows = self._db.read(f"SELECT {_STEP_COLS} FROM wf_steps WHERE state='waiting'")
        return [self._step(r) for r in rows]

    def next_due(self, serving: Mapping[str, str | None] | None = None) -> float | None:
        only, pins = STEPS.only(self._d, serving)
        rows = self._db.read(f"SELECT MIN(run_at) FROM wf_steps WHERE state='queued'{only}",
                             pins)
        return float(rows[0][0]) if rows and rows[0][0] is not None else None

    # -- history and triggers --

    def history(self, run_id: int, limit: int = 1000) -> list[HistoryRecord]:
        rows = self._db.read("SELECT id, run_id, at, kind, step, idx, attempt, actor, data "
                              "FROM wf_history WHERE run_id=? ORDER BY id LIMIT ?",
                    (run_id, limit))
        return [HistoryRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], from_json(r[8]))
                for r in rows]

    def note(self, run_id: int, kind: str, *, step: str | None = None, index: int | None = None,
             actor: str | None = None, data: Any = None) -> None:
        self._db.write(lambda c: _hist(c, run_id, kind, step, index, None, actor, data))

    def first_delivery(self, signature: str, now: float, window_s: float) -> bool:
        def run(conn: Tx) -> bool:
            conn.execute("DELETE FROM wf_webhook_seen WHERE at < ?", (now - window_s,))
            return bool(conn.execute("INSERT INTO wf_webhook_seen VALUES (?, ?) ON CONFLICT "
                                     "DO NOTHING", (signature, now)).rowcount == 1)
        return bool(self._db.write(run))

    def purge_runs(self, before: float, *, limit: int | None = None) -> int:
        final = marks(len(FINAL_RUN_STATES))
        # A sub-workflow's run is kept while its parent has not ended: the parent's step
        # reads it (child_run) when it resumes.
        condition = (f"r.state IN ({final}) AND r.finished_at < ? AND (r.parent_run IS NULL "
                     f"OR NOT EXISTS (SELECT 1 FROM wf_runs p WHERE p.id = r.parent_run AND "
                     f"p.state NOT IN ({final})))")
        args = [*FINAL_RUN_STATES, before, *FINAL_RUN_STATES]

        def run(conn: Tx) -> int:
            bound = "" if limit is None else " LIMIT ?"
            ids = [int(r[0]) for r in conn.execute(
                f"SELECT r.id FROM wf_runs r WHERE {condition} ORDER BY r.id{bound}"
                f"{self._d.for_update}", [*args, *([] if limit is None else [limit])])]
            for at in range(0, len(ids), 500):
                chunk = ids[at:at + 500]
                for table, column in (("wf_steps", "run_id"), ("wf_history", "run_id")):
                    conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks(len(chunk))})",
                                 chunk)
                conn.execute(f"DELETE FROM wf_runs WHERE id IN ({marks(len(chunk))})", chunk)
            return len(ids)
        return int(self._db.write(run))

    def next_fire(self, workflow: str, name: str) -> float | None:
        rows = self._db.read("SELECT next_fire FROM wf_triggers WHERE workflow=? AND name=?",
                    (workflow, name))
        return float(rows[0][0]) if rows else None

    def set_fire(self, workflow: str, name: str, expected: float | None, new: float) -> bool:
        return self._db.write(lambda c: _advance(c, workflow, name, expected, new))


def _advance(conn: Tx, workflow: str, name: str, expected: float | None,
             new: float) -> bool:
    if expected is None:
        cur = conn.execute("INSERT INTO wf_triggers VALUES (?,?,?) ON CONFLICT DO NOTHING",
                           (workflow, name, new))
    else:
        cur = conn.execute("UPDATE wf_triggers SET next_fire=? WHERE workflow=? AND name=? AND "
                           "next_fire=?", (new, workflow, name, expected))
    return bool(cur.rowcount == 1)


def _cancel(conn: Tx, run_id: int, reason: str, actor: str, now: float) -> None:
    conn.execute("UPDATE wf_runs SET state='cancelled', error=?, finished_at=? WHERE id=?",
                 (reason, now, run_id))
    # A step running right now finishes on its worker; its outcome is then refused.
    conn.execute("UPDATE wf_steps SET state='cancelled', finished_at=? WHERE run_id=? AND "
                 "state IN ('pending','queued','waiting','running')", (now, run_id))
    _hist(conn, run_id, "run.cancelled", actor=actor, data={"reason": reason})
    for (child,) in conn.execute("SELECT id FROM wf_runs WHERE parent_run=? AND state IN "
                                 "('queued','running')", (run_id,)).fetchall():
        _cancel(conn, child, f"parent run {run_id} was cancelled", actor, now)


def _hist(conn: Tx, run_id: int, kind: str, step: str | None = None,
          index: int | None = None, attempt: int | None = None, actor: str | None = None,
          data: Any = None) -> None:
    conn.execute("INSERT INTO wf_history(run_id, at, kind, step, idx, attempt, actor, data) "
                 "VALUES (?,?,?,?,?,?,?,?)",
                 (run_id, time.time(), kind, step, index, attempt, actor, to_json(data)))
