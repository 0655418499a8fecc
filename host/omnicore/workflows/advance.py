"""Advancing a run, as pure functions: from a run's step rows and its definition to the rows
of the steps that became ready, and to the run's outcome once every step has ended.

Nothing here reads or writes storage or starts threads; :class:`~omnicore.workflows.service.
Workflows` feeds in the rows it read and writes what these functions return, so the rules of
``needs``, ``if``, ``for_each``, ``with``, ``continue_on_error`` and ``on_failure`` can be
tested on plain records.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omnicore.storage.workflows import FINAL_STEP_STATES, NewStep, RunRecord, StepRecord
from omnicore.workflows.connector import record_request
from omnicore.workflows.definition import Step, Workflow
from omnicore.workflows.errors import ExpressionError

__all__ = ["Context", "Outcome", "begin", "encode", "idempotency_key", "items_outcome",
           "outcome", "ready", "truthy"]


def truthy(value: Any) -> bool:
    """An ``if``/filter result as a condition: the strings "false" and "0" are false too."""
    return bool(value) and value not in ("false", "0")


def encode(value: Any) -> bytes:
    """A step output or input as the compact JSON bytes the store keeps."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def idempotency_key(run: RunRecord, step: str, index: int) -> str:
    """The idempotency key of one step (item) of one run: the same on every delivery."""
    return f"{run.workflow}/{run.id}/{step}" + (f"/{index}" if index >= 0 else "") + \
        (f"/r{run.restarts}" if run.restarts else "")


class Context:
    """The data expressions see: the run, its ended steps, and (in on_failure) the error.

    ``rows`` may have been read without their outputs (cheap: most advances only compare
    states); the names of those rows are ``unloaded``, and the first :meth:`data` that needs
    them calls ``load()`` for the rows with their outputs, once.
    """

    def __init__(self, run: RunRecord, rows: dict[str, StepRecord],
                 load: Callable[[], Mapping[str, StepRecord]] | None = None,
                 unloaded: Iterable[str] = ()) -> None:
        self.run = run
        self.rows = rows
        self.error: str | None = None
        self._load = load
        self._unloaded = set(unloaded)

    def data(self, **extra: Any) -> dict[str, Any]:
        r = self.run
        if self._unloaded and self._load is not None:
            full = self._load()
            for sid in self._unloaded:
                if sid in full and sid in self.rows:
                    self.rows[sid] = full[sid]
            self._unloaded.clear()
        steps = {sid: {"output": row.output, "state": row.state, "error": row.error}
                 for sid, row in self.rows.items() if row.state in FINAL_STEP_STATES}
        return {"inputs": r.inputs, "trigger": r.trigger, "steps": steps,
                "run": {"id": r.id, "workflow": r.workflow, "version": r.version,
                        "started_by": r.started_by, "error": self.error,
                        "restarts": r.restarts},
                **extra}


def ready(steps: Sequence[Step], rows: Mapping[str, StepRecord]
          ) -> list[tuple[Step, list[StepRecord]]]:
    """The steps without a row whose ``needs`` have all ended, with those rows."""
    found = []
    for s in steps:
        if s.id in rows:
            continue
        needs = [rows.get(n) for n in s.needs]
        if all(n is not None and n.state in FINAL_STEP_STATES for n in needs):
            found.append((s, [n for n in needs if n is not None]))
    return found


def begin(wf: Workflow, s: Step, needs: Sequence[StepRecord], ctx: Context, *,
          max_items: int, now: float) -> list[NewStep]:
    """The rows that start step ``s`` once ``needs`` ended: skipped (a need failed or was
    skipped, or ``if`` was false), failed (an expression failed), or its row(s) with the
    input evaluated now; a ``for_each`` gives a ``running`` parent and one pending row per
    item."""
    run = ctx.run
    for n in needs:
        if n.state in ("failed", "cancelled") and not wf.step(n.step).continue_on_error:
            return [NewStep(s.id, -1, "skipped", error=f"needed step {n.step} {n.state}")]
        if n.state == "skipped":
            return [NewStep(s.id, -1, "skipped", error=f"needed step {n.step} was skipped")]
    data = ctx.data(step={"id": s.id, "index": -1,
                          "idempotency_key": idempotency_key(run, s.id, -1)})
    try:
        if s.if_ is not None and not truthy(s.if_.evaluate(data)):
            return [NewStep(s.id, -1, "skipped", error=None, wait={"reason": "if was false"})]
        if s.for_each is None:
            return [_row(s, -1, data, now)]
        items = s.for_each.evaluate(data)
        if not isinstance(items, list):
            raise ExpressionError(f"for_each must give a list, got {type(items).__name__}")
        if len(items) > max_items:
            raise ExpressionError(f"for_each gave {len(items)} items; the limit is "
                                  f"{max_items} (workflows.max_items)")
        rows = [NewStep(s.id, -1, "running", wait={"items": len(items)})]
        for i, item in enumerate(items):
            item_data = dict(data, item=item, index=i,
                             step={"id": s.id, "index": i,
                                   "idempotency_key": idempotency_key(run, s.id, i)})
            row = _row(s, i, item_data, now)
            rows.append(NewStep(s.id, i, "pending", row.input, wait=row.wait, pin=row.pin,
                                plugin=row.plugin))
        return rows
    except ExpressionError as exc:
        return [NewStep(s.id, -1, "failed", error=str(exc))]


def _row(s: Step, index: int, data: dict[str, Any], now: float) -> NewStep:
    if s.wait is not None:
        if s.wait.kind == "approval":
            return NewStep(s.id, index, "waiting",
                           wait={"kind": "approval", "message": s.wait.message})
        if s.wait.kind == "sleep":
            return NewStep(s.id, index, "queued", run_at=now + (s.wait.seconds or 0),
                           wait={"kind": "sleep", "seconds": s.wait.seconds})
        until = now + s.wait.seconds if s.wait.seconds else None
        return NewStep(s.id, index, "waiting",
                       wait={"kind": "event", "topic": s.wait.topic, "until": until})
    if s.kind == "connector" and not s.handler:  # an HTTP request; a statement is its with
        return NewStep(s.id, index, "queued", record_request(s, data))
    # A plugin step names its plugin: only a host serving it claims the row.
    return NewStep(s.id, index, "queued", s.with_.evaluate(data), pin=s.pin,
                   plugin=s.target if s.kind == "plugin" else None)


def items_outcome(s: Step, total: int, counts: Mapping[str, int],
                  first_failed: StepRecord | None) -> tuple[str, str | None] | None:
    """How a ``for_each`` step ends once its items have: (state, error); None while
    items still run. ``first_failed`` is its first failed item, named in the error."""
    done = sum(n for st, n in counts.items() if st in FINAL_STEP_STATES)
    if done < total:
        return None
    failed = counts.get("failed", 0) + counts.get("cancelled", 0)
    if failed and not s.continue_on_error:
        return "failed", f"{failed} of {total} items failed" + (
            f"; item {first_failed.index}: {first_failed.error}" if first_failed else "")
    return "succeeded", None


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a run stands after its rows were brought up to date.

    ``state`` is ``running`` (steps still to end), ``on_failure`` (a step failed: run the
    ``on_failure`` steps with ``error`` in the context), ``failed`` or ``succeeded``."""

    state: str
    error: str | None = None


def outcome(wf: Workflow, rows: Mapping[str, StepRecord]) -> Outcome:
    """The run's :class:`Outcome` from its step rows (``on_failure`` until the
    ``on_failure`` steps have all ended, then ``failed``)."""
    if not _ended(wf.steps, rows):
        return Outcome("running")
    failed = [s for s in wf.steps if rows[s.id].state in ("failed", "cancelled")
              and not s.continue_on_error]
    if not failed:
        return Outcome("succeeded")
    first = rows[failed[0].id]
    error = f"step {failed[0].id} {first.state}: {first.error or ''}".rstrip(": ")
    if wf.on_failure and not _ended(wf.on_failure, rows):
        return Outcome("on_failure", error)
    return Outcome("failed", error)


def _ended(steps: Sequence[Step], rows: Mapping[str, StepRecord]) -> bool:
    return all(s.id in rows and rows[s.id].state in FINAL_STEP_STATES for s in steps)
