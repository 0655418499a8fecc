"""The workflow store's interface: versions, runs, steps (the step queue), history, blobs.

A step row is also the step's durable job: workers *claim* due rows with a lease owned by
them (renewed while the step runs); a row whose lease expired — its host died — is due again,
so a crash or ``kill -9`` loses nothing and a step runs at least once (``attempt`` counts
deliveries). Every change that matters to an operator appends to the run's history in the
same transaction: the audit trail is never behind the state it explains. Runs, steps and the
cron triggers that start runs change together in one transaction where the workflow service
needs it (``create_run(fire=...)``, ``cancel_run`` with its steps and child runs).

Values (inputs, outputs, trigger data) are JSON. An output above the inline threshold is
stored once as a blob by its sha256 and the step row keeps the reference.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

__all__ = ["ACTIVE_RUN_STATES", "FINAL_RUN_STATES", "FINAL_STEP_STATES", "HistoryRecord",
           "NewStep", "RunRecord", "RunState", "StepRecord", "StepState", "WorkflowStore",
           "from_json", "to_json"]

RunState = Literal["queued", "running", "succeeded", "failed", "cancelled", "skipped"]
StepState = Literal["pending", "queued", "running", "waiting", "succeeded", "failed",
                    "skipped", "cancelled"]
ACTIVE_RUN_STATES = ("queued", "running")
FINAL_RUN_STATES = ("succeeded", "failed", "cancelled", "skipped")
FINAL_STEP_STATES = ("succeeded", "failed", "skipped", "cancelled")


class _Record:
    """A row read back: ``as_dict`` is the JSON the console and the CLI show (shallow: inputs
    and outputs stay the values they are)."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class RunRecord(_Record):
    id: int
    workflow: str
    version: str
    state: RunState
    inputs: Any
    trigger: Any
    outputs: Any
    error: str | None
    concurrency_key: str | None
    started_by: str
    parent_run: int | None
    parent_step: str | None
    parent_index: int | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    restarts: int
    #: The W3C ``traceparent`` of the span that started it (omnicore.telemetry): its steps
    #: continue that trace on whichever host runs them. None: tracing was off.
    trace: str | None = None


@dataclass(frozen=True, slots=True)
class StepRecord(_Record):
    run_id: int
    step: str
    index: int           # -1: the step itself; 0..n-1: the items of a for_each
    state: StepState
    attempt: int
    input: Any
    output: Any          # resolved from the blob store when it was stored by reference
    output_ref: str | None
    output_bytes: int | None
    error: str | None
    run_at: float
    started_at: float | None
    finished_at: float | None
    owner: str | None
    wait: Any
    decided_by: str | None
    decided_at: float | None
    #: The plugin version the step asks for (``name@sha256:<hex>``), None: any.
    pin: str | None = None
    #: The plugin a plugin step calls (only a host serving it claims the row), None: a step
    #: any host runs.
    plugin: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRecord(_Record):
    id: int
    run_id: int
    at: float
    kind: str
    step: str | None
    index: int | None
    attempt: int | None
    actor: str | None
    data: Any


@dataclass(frozen=True, slots=True)
class NewStep:
    """A step row to create: ``state`` queued (due at ``run_at``), pending, waiting, skipped."""

    step: str
    index: int
    state: StepState
    input: Any = None
    run_at: float = 0.0
    wait: Any = None
    error: str | None = None
    #: The plugin version the row must run on (``name@sha256:<hex>``): only a host serving
    #: that module claims it. None: any version.
    pin: str | None = None
    #: The plugin the row calls: only a host serving it claims the row. None: any host.
    plugin: str | None = None


def to_json(value: Any) -> str | None:
    """A value as the compact JSON text the store keeps (None stays None)."""
    return None if value is None else json.dumps(value, separators=(",", ":"),
                                                  ensure_ascii=False)


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class WorkflowStore(abc.ABC):
    """The workflow tables of one app's storage. Thread-safe."""

    @abc.abstractmethod
    def save_version(self, digest: str, name: str, definition: str) -> None: ...

    @abc.abstractmethod
    def version(self, digest: str) -> str | None: ...

    @abc.abstractmethod
    def blob(self, digest: str) -> bytes | None: ...

    @abc.abstractmethod
    def create_run(self, workflow: str, version: str, inputs: Any, trigger: Any,
                   started_by: str, *, key: str | None = None, limit: int = 0,
                   on_conflict: str = "queue", parent: tuple[int, str, int] | None = None,
                   fire: tuple[str, float | None, float] | None = None,
                   trace: str | None = None,
                   ) -> tuple[int, RunState, list[int]] | None:
        """A new run; (id, state, ids of runs it cancelled); ``trace``: the ``traceparent``
        its steps continue. ``limit`` > 0 caps the active
        runs with the same ``key``: over it the new run is ``queued``, ``skipped``, or starts
        after cancelling the running ones (``cancel_running``), decided in one transaction.
        ``fire`` = (trigger name, expected next fire, new next fire) also advances a cron
        trigger in the same transaction; None when another host fired it first."""

    @abc.abstractmethod
    def run(self, run_id: int) -> RunRecord | None: ...

    @abc.abstractmethod
    def runs(self, *, workflow: str | None = None, states: Sequence[str] = (),
             limit: int = 100, offset: int = 0) -> list[RunRecord]:
        """Newest first."""

    @abc.abstractmethod
    def child_run(self, parent: tuple[int, str, int]) -> RunRecord | None:
        """The run that step ``(run_id, step, index)`` started as its sub-workflow, if any."""

    @abc.abstractmethod
    def count_runs(self, *, workflow: str | None = None, states: Sequence[str] = ()) -> int: ...

    @abc.abstractmethod
    def finish_run(self, run_id: int, state: RunState, *, outputs: Any = None,
                   error: str | None = None, actor: str = "engine") -> bool:
        """A running run ends; False when it was not running (cancelled meanwhile)."""

    @abc.abstractmethod
    def promote(self, workflow: str, key: str | None, limit: int) -> list[int]:
        """Start queued runs of ``key`` while fewer than ``limit`` run; their ids."""

    @abc.abstractmethod
    def cancel_run(self, run_id: int, actor: str, reason: str = "cancelled") -> bool | None:
        """True cancelled, False already finished, None unknown."""

    @abc.abstractmethod
    def restart(self, run_id: int, actor: str, version: str | None) -> bool | None:
        """A failed or cancelled run runs again from its failed steps, keeping the rows that
        succeeded; ``version`` moves it to another version. None unknown, False not ended."""

    @abc.abstractmethod
    def add_steps(self, run_id: int, steps: Sequence[NewStep]) -> int:
        """Create step rows (an existing row is left alone); how many were new."""

    @abc.abstractmethod
    def steps(self, run_id: int, *, outputs: bool = True,
              parents: bool = False) -> list[StepRecord]:
        """A run's step rows; ``parents``: only the steps themselves, not for_each items;
        without ``outputs`` their inputs and outputs are None (no blob is read)."""

    @abc.abstractmethod
    def step(self, run_id: int, step: str, index: int = -1) -> StepRecord | None: ...

    @abc.abstractmethod
    def outputs(self, run_id: int, step: str) -> list[Any]:
        """The outputs of a for_each's items, in item order."""

    @abc.abstractmethod
    def promote_items(self, run_id: int, step: str, parallelism: int) -> int:
        """Queue pending items of a for_each while fewer than ``parallelism`` are active."""

    @abc.abstractmethod
    def counts(self, run_id: int, step: str) -> dict[str, int]:
        """States of a for_each's items: {state: n}."""

    @abc.abstractmethod
    def claim(self, owner: str, now: float, lease_s: float,
              serving: Mapping[str, str | None] | None = None) -> StepRecord | None:
        """Lease the oldest due step (queued, or running with an expired lease). With
        ``serving`` (each plugin this host serves -> the digest serving it), a plugin step
        only where its plugin serves (:attr:`NewStep.plugin`), and one pinning a version
        (:attr:`NewStep.pin`) only where that version serves."""

    @abc.abstractmethod
    def renew(self, owner: str, keys: Sequence[tuple[int, str, int]], until: float) -> None:
        """Extend the leases ``owner`` still holds on the steps ``(run_id, step, index)``."""

    @abc.abstractmethod
    def release(self, owner: str, keys: Sequence[tuple[int, str, int]]) -> None:
        """Give leases back without counting the attempt (graceful stop)."""

    @abc.abstractmethod
    def release_others(self, owner: str) -> int:
        """Make every step leased by anyone but ``owner`` due again at once, as if its lease
        had expired (the attempt stays counted); how many. Only for a host that knows it is
        alone (the SQLite data dir's lock holder): the other owners are dead."""

    @abc.abstractmethod
    def complete(self, run_id: int, step: str, index: int, *, owner: str | None,
                 state: StepState, output: bytes | None = None, inline_limit: int = 1 << 16,
                 error: str | None = None, retry_at: float | None = None,
                 expect: Sequence[str] = ("running",), actor: str | None = None,
                 duration_s: float | None = None) -> bool:
        """Record a step's outcome: ``output`` is JSON bytes; ``retry_at`` requeues it.
        False when the row is not in an ``expect`` state (or ``owner`` lost its lease)."""

    @abc.abstractmethod
    def waiting(self) -> list[StepRecord]:
        """Steps waiting for an approval, an event or a sub-workflow."""

    @abc.abstractmethod
    def next_due(self, serving: Mapping[str, str | None] | None = None) -> float | None:
        """When the earliest queued step (of those ``serving`` may claim, as :meth:`claim`
        takes it) is due, or None."""

    @abc.abstractmethod
    def history(self, run_id: int, limit: int = 1000) -> list[HistoryRecord]: ...

    @abc.abstractmethod
    def note(self, run_id: int, kind: str, *, step: str | None = None, index: int | None = None,
             actor: str | None = None, data: Any = None) -> None:
        """Append an entry to the run's history."""

    @abc.abstractmethod
    def first_delivery(self, signature: str, now: float, window_s: float) -> bool:
        """Record webhook ``signature`` as seen at ``now``; False if it was seen within
        ``window_s`` already (a replay). Older ones are forgotten in the same write."""

    @abc.abstractmethod
    def purge_runs(self, before: float, *, limit: int | None = None) -> int:
        """Delete runs that ended (:data:`FINAL_RUN_STATES`) before ``before``, with their
        steps and history, oldest first, at most ``limit`` runs (None: all) in one
        transaction; how many runs. A run still queued or running is kept, and so is a
        finished sub-workflow run whose parent run has not ended."""

    @abc.abstractmethod
    def next_fire(self, workflow: str, name: str) -> float | None: ...

    @abc.abstractmethod
    def set_fire(self, workflow: str, name: str, expected: float | None, new: float) -> bool:
        """Compare-and-set a trigger's next fire from ``expected`` (None: not set yet) to
        ``new``; False when another host moved it first."""
