"""``app.workflows``: start, advance, run and steer workflow runs.

A run is rows in the app's storage (:mod:`omnicore.storage.workflows`); the engine holds no
state that a crash could lose. *Advancing* a run looks at its step rows and creates the rows
of the steps whose ``needs`` are done (evaluating ``if``, ``for_each`` and ``with`` then, so
each step's input is recorded before it runs), and ends the run when every step is done.
Steps that do work (plugin, connector, sub-workflow, sleep) are queued rows that worker
threads lease like durable jobs; approvals and event waits are ``waiting`` rows that an
operator or an event completes. Every outcome is written first and the run advanced after,
so advancing is idempotent and a host that restarts simply advances every running run again.

Runs are pinned to the content hash of the definition they started with: a changed file
makes a new version for new runs; ``restart(..., latest=True)`` moves a failed run over.
"""

from __future__ import annotations

import fnmatch
import getpass
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import jsonschema

from omnicore.capabilities import guestjson
from omnicore.capabilities.tasks import Schedule
from omnicore.config import OmniConfig
from omnicore.core.events import Event, EventBus
from omnicore.errors import OmniError
from omnicore.logging import get_logger
from omnicore.storage import Storage, StorageError
from omnicore.storage.workflows import (
    FINAL_STEP_STATES,
    NewStep,
    RunRecord,
    StepRecord,
    WorkflowStore,
)
from omnicore.workflows.connector import ConnectorFailed, call_connector, record_request
from omnicore.workflows.definition import Step, Workflow, from_document
from omnicore.workflows.errors import (
    ExpressionError,
    InputInvalid,
    RunStateError,
    WorkflowError,
)
from omnicore.workflows.registry import Registry

if TYPE_CHECKING:
    from omnicore.egress import Connector, Egress
    from omnicore.plugins.host import PluginHost
    from omnicore.storage.secrets import SecretStore

__all__ = ["SIGNATURE_HEADER", "WebhookAnswer", "WorkflowRunChanged", "Workflows",
           "sign_webhook"]

log = get_logger("omnicore.workflows")

SIGNATURE_HEADER = "X-Omnicore-Signature"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRunChanged(Event):
    """A run started, or ended (``state`` succeeded, failed, cancelled, skipped)."""

    topic: ClassVar[str] = "workflow.run_changed"
    run_id: int
    workflow: str
    state: str
    error: str | None = None


class WorkflowsApp(Protocol):
    """What the engine needs of an app (``OmniApp`` has it)."""

    config: OmniConfig
    events: EventBus
    runtime_id: str

    @property
    def storage(self) -> Storage: ...

    @property
    def plugins(self) -> PluginHost: ...

    @property
    def secrets(self) -> SecretStore: ...

    @property
    def connectors(self) -> dict[str, Connector]: ...

    @property
    def egress(self) -> Egress: ...


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int
    body: dict[str, Any]


def sign_webhook(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Omnicore-Signature`` value for ``body``: ``t=<unix>,v1=<hex HMAC-SHA256>``
    of ``"<t>." + body`` keyed with the secret."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def _truthy(value: Any) -> bool:
    return bool(value) and value not in ("false", "0")


class Workflows:
    """The workflow service of an app: definitions (:attr:`registry`), runs, workers.

    Options (``workflows.*``): ``dir``, ``watch``, ``workers``, ``lease_s``, ``poll_s``,
    ``max_output_bytes``, ``inline_output_bytes``, ``max_items``, ``webhook_window_s``.
    """

    def __init__(self, app: WorkflowsApp) -> None:
        self._app = app
        self.settings = app.config.workflows
        self.registry = Registry(self._refs, self._save_version)
        self.owner = app.runtime_id
        self._store: WorkflowStore | None = None
        self._store_lock = threading.Lock()
        self._versions: dict[str, Workflow] = {}
        self._locks = [threading.RLock() for _ in range(64)]
        self._wake = threading.Condition()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[tuple[int, str, int], float] = {}
        self._running_lock = threading.Lock()
        self._calls: ThreadPoolExecutor | None = None
        self._subs: list[Any] = []
        self._live = False          # workers started: plugin references can be checked
        self._wait_topics: frozenset[str] = frozenset()

    # -- storage and versions --

    @property
    def store(self) -> WorkflowStore:
        found = self._store
        if found is None:
            with self._store_lock:
                found = self._store
                if found is None:
                    found = self._store = self._app.storage.workflows
        return found

    def _save_version(self, wf: Workflow) -> None:
        self._versions[wf.version] = wf
        try:
            self.store.save_version(wf.version, wf.name, wf.canonical)
        except StorageError as exc:
            log.error("cannot record workflow %s version %s: %s", wf.name, wf.version[:12], exc)

    def version(self, digest: str) -> Workflow:
        """The definition a run is pinned to (from memory, else from storage)."""
        wf = self._versions.get(digest)
        if wf is None:
            text = self.store.version(digest)
            if text is None:
                raise WorkflowError(f"workflow version {digest[:12]} is not in the storage")
            wf = self._versions[digest] = from_document(json.loads(text), f"version {digest}")
        return wf

    def _refs(self) -> tuple[Mapping[str, list[str]] | None, list[str] | None]:
        try:
            host = self._app.plugins
        except AttributeError:
            plugins = None
        else:
            plugins = {info.name: list(info.handlers) for info in host} if self._live \
                else None
        try:
            connectors = list(self._app.connectors)
        except (OmniError, AttributeError):  # bad connector config / an app without them
            connectors = None
        return plugins, connectors

    # -- definitions --

    def load_folder(self) -> None:
        """Read ``workflows.dir`` (what start does; the CLI calls it without starting)."""
        self.registry.scan(self.settings.dir)

    def add(self, text: str, source: str = "<code>") -> Workflow:
        """Add a workflow from YAML/JSON text (DefinitionError lists every problem)."""
        entry = self.registry.add(text, source)
        assert entry.workflow is not None
        return entry.workflow

    # -- runs: start, inspect, steer --

    def start(self, name: str, inputs: Mapping[str, Any] | None = None, *,
              started_by: str = "api", trigger: Any = None,
              parent: tuple[int, str, int] | None = None) -> RunRecord:
        """Start a run of the loaded workflow ``name``; InputInvalid names the bad field."""
        wf = self.registry.get(name)
        return self._start(wf, dict(inputs or {}), started_by, trigger, parent)

    def _start(self, wf: Workflow, inputs: dict[str, Any], started_by: str, trigger: Any,
               parent: tuple[int, str, int] | None,
               fire: tuple[str, float | None, float] | None = None) -> RunRecord:
        check_inputs(wf, inputs)
        key, limit, mode = None, 0, "queue"
        if wf.concurrency is not None:
            value = wf.concurrency.key.evaluate({"inputs": inputs, "trigger": trigger})
            key = value if isinstance(value, str) else json.dumps(value)
            limit, mode = wf.concurrency.limit, wf.concurrency.on_conflict
        created = self.store.create_run(wf.name, wf.version, inputs, trigger, started_by,
                                        key=key, limit=limit, on_conflict=mode, parent=parent,
                                        fire=fire)
        if created is None:
            raise RunStateError("another host fired this trigger first")
        run_id, state, cancelled = created
        for other in cancelled:
            self._ended(other)
        self._publish(run_id, wf.name, state)
        if state == "running":
            self.advance(run_id)
        elif state == "skipped":
            self._ended(run_id)
        run = self.store.run(run_id)
        assert run is not None
        return run

    def get_run(self, run_id: int) -> RunRecord:
        run = self.store.run(run_id)
        if run is None:
            raise RunStateError(f"no workflow run {run_id}")
        return run

    def runs(self, workflow: str | None = None, state: str | None = None, limit: int = 50,
             offset: int = 0) -> list[RunRecord]:
        return self.store.runs(workflow=workflow, states=(state,) if state else (),
                               limit=limit, offset=offset)

    def steps(self, run_id: int) -> list[StepRecord]:
        return self.store.steps(run_id)

    def approve(self, run_id: int, step: str, by: str, *, approve: bool = True,
                comment: str = "") -> StepRecord:
        """Decide a waiting approval; who and when are recorded. RunStateError otherwise."""
        row = self.store.step(run_id, step)
        wait = row.wait if row else None
        if row is None or row.state != "waiting" or not isinstance(wait, dict) \
                or wait.get("kind") != "approval":
            raise RunStateError(f"run {run_id} has no step {step!r} waiting for an approval"
                                + (f" (it is {row.state})" if row else ""))
        now = time.time()
        output = {"approved": approve, "by": by, "at": now, "comment": comment}
        done = self.store.complete(run_id, step, -1, owner=None,
                                   state="succeeded" if approve else "failed",
                                   output=_encode(output), expect=("waiting",), actor=by,
                                   error=None if approve else f"rejected by {by}"
                                   + (f": {comment}" if comment else ""))
        if not done:
            raise RunStateError(f"step {step!r} of run {run_id} was decided meanwhile")
        self.advance(run_id)
        found = self.store.step(run_id, step)
        assert found is not None
        return found

    def cancel(self, run_id: int, by: str) -> bool:
        """Cancel a queued or running run (and its sub-runs); False when it had ended."""
        done = self.store.cancel_run(run_id, by, f"cancelled by {by}")
        if done is None:
            raise RunStateError(f"no workflow run {run_id}")
        if done:
            self._ended(run_id)
        return done

    def restart(self, run_id: int, by: str, *, latest: bool = False) -> RunRecord:
        """Run a failed or cancelled run again from the steps that did not succeed, keeping
        the outputs of those that did; ``latest`` moves it to the current definition."""
        run = self.get_run(run_id)
        version = None
        if latest:
            version = self.registry.get(run.workflow).version
        done = self.store.restart(run_id, by, version)
        if not done:
            raise RunStateError(f"run {run_id} is {run.state}; only a failed or cancelled run "
                                "can be restarted")
        self._publish(run_id, run.workflow, "running")
        self.advance(run_id)
        return self.get_run(run_id)

    def wait(self, run_id: int, timeout: float | None = None) -> RunRecord:
        """Block until the run has ended (or ``timeout``); the run as it is then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.state not in ("queued", "running"):
                return run
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return run
            with self._changed:
                # Another process (the CLI, a second host) writes without notifying us.
                self._changed.wait(min(self.settings.poll_s, left if left is not None
                                       else self.settings.poll_s))

    # -- advancing --

    def advance(self, run_id: int) -> None:
        """Create the rows of steps that became ready; end the run when all are done."""
        with self._locks[run_id % len(self._locks)]:
            try:
                self._advance(run_id)
            except StorageError as exc:
                log.error("run %d: cannot advance: %s (it advances again on the next event "
                          "or restart)", run_id, exc)
        with self._changed:
            self._changed.notify_all()
        self.wake()

    def _advance(self, run_id: int) -> None:
        run = self.store.run(run_id)
        if run is None or run.state != "running":
            return
        wf = self.version(run.version)
        rows = {r.step: r for r in self.store.steps(run_id, parents=True)}
        ctx = _Context(run, rows)
        self._progress(run, wf.steps, rows, ctx)
        main_done = all(s.id in rows and rows[s.id].state in FINAL_STEP_STATES
                        for s in wf.steps)
        if not main_done:
            return
        failed = [s for s in wf.steps if rows[s.id].state in ("failed", "cancelled")
                  and not s.continue_on_error]
        if failed:
            first = rows[failed[0].id]
            error = f"step {failed[0].id} {first.state}: {first.error or ''}".rstrip(": ")
            if wf.on_failure:
                ctx.error = error
                self._progress(run, wf.on_failure, rows, ctx)
                if not all(s.id in rows and rows[s.id].state in FINAL_STEP_STATES
                           for s in wf.on_failure):
                    return
            if self.store.finish_run(run_id, "failed", error=error):
                self._ended(run_id)
            return
        try:
            outputs = wf.outputs.evaluate(ctx.data())
        except ExpressionError as exc:
            if self.store.finish_run(run_id, "failed", error=f"outputs: {exc}"):
                self._ended(run_id)
            return
        if self.store.finish_run(run_id, "succeeded", outputs=outputs):
            self._ended(run_id)

    def _progress(self, run: RunRecord, steps: tuple[Step, ...], rows: dict[str, StepRecord],
                  ctx: _Context) -> None:
        created = True
        while created:  # a skipped step can make its dependants ready at once
            created = False
            for s in steps:
                row = rows.get(s.id)
                if row is not None:
                    if row.state == "running" and s.for_each is not None:
                        ended = self._items(run, s, row)
                        if ended is not None:
                            rows[s.id] = ended
                            created = True
                    continue
                needs = [rows.get(n) for n in s.needs]
                if any(n is None or n.state not in FINAL_STEP_STATES for n in needs):
                    continue
                new = self._begin(run, s, needs, ctx)
                self.store.add_steps(run.id, new)
                fresh = self.store.step(run.id, s.id)
                if fresh is not None:
                    rows[s.id] = fresh
                    created = True
                    if s.wait is not None and s.wait.kind == "event":
                        self._wait_topics |= {str(s.wait.topic)}

    def _begin(self, run: RunRecord, s: Step, needs: list[StepRecord | None],
               ctx: _Context) -> list[NewStep]:
        for n in needs:
            assert n is not None
            dep = self.version(run.version).step(n.step)
            if n.state in ("failed", "cancelled") and not dep.continue_on_error:
                return [NewStep(s.id, -1, "skipped", error=f"needed step {n.step} {n.state}")]
            if n.state == "skipped":
                return [NewStep(s.id, -1, "skipped", error=f"needed step {n.step} was skipped")]
        data = ctx.data(step={"id": s.id, "index": -1, "idempotency_key": _key(run, s.id, -1)})
        try:
            if s.if_ is not None and not _truthy(s.if_.evaluate(data)):
                return [NewStep(s.id, -1, "skipped", error=None, wait={"reason": "if was false"})]
            if s.for_each is None:
                return [self._row(run, s, -1, data)]
            items = s.for_each.evaluate(data)
            if not isinstance(items, list):
                raise ExpressionError(f"for_each must give a list, got {type(items).__name__}")
            if len(items) > self.settings.max_items:
                raise ExpressionError(f"for_each gave {len(items)} items; the limit is "
                                      f"{self.settings.max_items} (workflows.max_items)")
            rows = [NewStep(s.id, -1, "running", wait={"items": len(items)})]
            for i, item in enumerate(items):
                item_data = dict(data, item=item, index=i,
                                 step={"id": s.id, "index": i,
                                       "idempotency_key": _key(run, s.id, i)})
                row = self._row(run, s, i, item_data)
                rows.append(NewStep(s.id, i, "pending", row.input, wait=row.wait))
            return rows
        except ExpressionError as exc:
            return [NewStep(s.id, -1, "failed", error=str(exc))]

    def _row(self, run: RunRecord, s: Step, index: int, data: dict[str, Any]) -> NewStep:
        if s.wait is not None:
            if s.wait.kind == "approval":
                return NewStep(s.id, index, "waiting",
                               wait={"kind": "approval", "message": s.wait.message})
            if s.wait.kind == "sleep":
                return NewStep(s.id, index, "queued", run_at=time.time() + (s.wait.seconds or 0),
                               wait={"kind": "sleep", "seconds": s.wait.seconds})
            until = time.time() + s.wait.seconds if s.wait.seconds else None
            return NewStep(s.id, index, "waiting",
                           wait={"kind": "event", "topic": s.wait.topic, "until": until})
        if s.kind == "connector":
            return NewStep(s.id, index, "queued", record_request(s, data))
        return NewStep(s.id, index, "queued", s.with_.evaluate(data))

    def _items(self, run: RunRecord, s: Step, parent: StepRecord) -> StepRecord | None:
        """Queue a for_each's next items; end the step when every item has ended."""
        self.store.promote_items(run.id, s.id, s.parallelism)
        counts = self.store.counts(run.id, s.id)
        total = (parent.wait or {}).get("items", 0)
        done = sum(n for st, n in counts.items() if st in FINAL_STEP_STATES)
        if done < total:
            return None
        outputs = self.store.outputs(run.id, s.id)
        failed = counts.get("failed", 0) + counts.get("cancelled", 0)
        if failed and not s.continue_on_error:
            items = [r for r in self.store.steps(run.id, outputs=False)
                     if r.step == s.id and r.index >= 0 and r.state == "failed"]
            first = items[0] if items else None
            error = f"{failed} of {total} items failed" + (
                f"; item {first.index}: {first.error}" if first else "")
            self.store.complete(run.id, s.id, -1, owner=None, state="failed", error=error,
                                output=_encode(outputs))
        else:
            self.store.complete(run.id, s.id, -1, owner=None, state="succeeded",
                                output=_encode(outputs),
                                inline_limit=self.settings.inline_output_bytes)
        return self.store.step(run.id, s.id)

    def _ended(self, run_id: int) -> None:
        """After a run ended: waiters, events, queued runs of its key, its parent step."""
        run = self.store.run(run_id)
        if run is None:
            return
        with self._changed:
            self._changed.notify_all()
        self._publish(run.id, run.workflow, run.state, run.error)
        try:
            wf = self.version(run.version)
        except WorkflowError:
            wf = None
        if wf is not None and wf.concurrency is not None:
            for started in self.store.promote(run.workflow, run.concurrency_key,
                                              wf.concurrency.limit):
                self._publish(started, run.workflow, "running")
                self.advance(started)
        if run.parent_run is not None and run.parent_step is not None:
            index = run.parent_index if run.parent_index is not None else -1
            if run.state == "succeeded":
                self.store.complete(run.parent_run, run.parent_step, index, owner=None,
                                    state="succeeded", output=_encode(run.outputs),
                                    expect=("waiting",), actor=f"run {run.id}")
            else:
                self.store.complete(run.parent_run, run.parent_step, index, owner=None,
                                    state="failed", expect=("waiting",), actor=f"run {run.id}",
                                    error=f"sub-run {run.id} of {run.workflow} {run.state}: "
                                          f"{run.error or ''}".rstrip(": "))
            self.advance(run.parent_run)

    def _publish(self, run_id: int, workflow: str, state: str, error: str | None = None) -> None:
        self._app.events.publish(WorkflowRunChanged(run_id=run_id, workflow=workflow,
                                                    state=state, error=error))

    # -- executing steps --

    def _execute(self, row: StepRecord) -> None:
        run = self.store.run(row.run_id)
        if run is None or run.state != "running":
            self.store.complete(row.run_id, row.step, row.index, owner=self.owner,
                                state="cancelled", error="the run is not running")
            return
        wf = self.version(run.version)
        s = wf.step(row.step)
        started = time.perf_counter()
        output: Any = None
        try:
            if s.wait is not None:                     # a sleep that is due
                output = {"slept": s.wait.seconds}
            elif s.kind == "plugin":
                output = self._call_plugin(s, row)
            elif s.kind == "connector":
                output = self._call_connector(s, run, row)
            else:
                self._sub_run(s, run, row)
                return
            data = _encode(output)
            if len(data) > self.settings.max_output_bytes:
                raise _Permanent(f"the output of step {s.id} is {len(data)} bytes, over "
                                 f"workflows.max_output_bytes ({self.settings.max_output_bytes})")
            self.store.complete(row.run_id, row.step, row.index, owner=self.owner,
                                state="succeeded", output=data,
                                inline_limit=self.settings.inline_output_bytes,
                                duration_s=time.perf_counter() - started)
        except Exception as exc:
            retry = not isinstance(exc, _Permanent) and not (
                isinstance(exc, ConnectorFailed) and not exc.retryable)
            error = str(exc) if isinstance(exc, (_Permanent, ConnectorFailed)) else \
                f"{type(exc).__name__}: {exc}"
            retry_at = None
            if retry and row.attempt < s.retry.max_attempts:
                retry_at = time.time() + s.retry.delay(row.attempt)
            self.store.complete(row.run_id, row.step, row.index, owner=self.owner,
                                state="failed", error=error[:4000], retry_at=retry_at,
                                duration_s=time.perf_counter() - started)
            if retry_at is not None:
                self.wake()
                return
        self.advance(row.run_id)

    def _timed(self, fn: Callable[[], Any], s: Step) -> Any:
        assert self._calls is not None
        future = self._calls.submit(fn)
        try:
            return future.result(timeout=s.timeout)
        except FutureTimeout:
            raise TimeoutError(f"step {s.id} timed out after {s.timeout:g}s") from None

    def _call_plugin(self, s: Step, row: StepRecord) -> Any:
        payload = row.input if isinstance(row.input, (bytes, str)) else _encode(row.input)
        if isinstance(payload, str):
            payload = payload.encode()
        raw = self._timed(lambda: self._app.plugins.call(s.target, s.handler, payload), s)
        try:
            return guestjson.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _call_connector(self, s: Step, run: RunRecord, row: StepRecord) -> Any:
        egress = self._app.egress
        return self._timed(lambda: call_connector(
            egress, s.target, row.input or {}, idempotency_key=_key(run, s.id, row.index),
            timeout_s=s.timeout, max_bytes=self.settings.max_output_bytes), s)

    def _sub_run(self, s: Step, run: RunRecord, row: StepRecord) -> None:
        # A delivery after a crash finds the sub-run it started before, not a second one.
        existing = [r for r in self.store.runs(workflow=s.target, limit=1000)
                    if (r.parent_run, r.parent_step, r.parent_index) == (run.id, s.id, row.index)]
        if existing:
            child = existing[0]
        else:
            try:
                child = self.start(s.target, row.input if isinstance(row.input, dict) else {},
                                   started_by=f"run {run.id}", parent=(run.id, s.id, row.index))
            except (WorkflowError, OmniError) as exc:
                self.store.complete(run.id, s.id, row.index, owner=self.owner, state="failed",
                                    error=f"cannot start workflow {s.target}: {exc}")
                self.advance(run.id)
                return
        self.store.complete(run.id, s.id, row.index, owner=self.owner, state="waiting",
                            actor=self.owner)
        self.store.note(run.id, "step.sub_run", step=s.id, index=row.index,
                        data={"run": child.id})
        finished = self.store.run(child.id)
        if finished is not None and finished.state not in ("queued", "running"):
            self._ended(child.id)

    # -- events, webhooks, triggers --

    def _on_event(self, event: Event) -> None:
        if isinstance(event, WorkflowRunChanged) and event.state in ("queued", "running"):
            return
        entries = [e.workflow for e in self.registry if e.workflow is not None]
        triggers = [(wf, t) for wf in entries for t in wf.triggers
                    if t.kind == "event" and fnmatch.fnmatchcase(event.topic, t.topic)]
        waits = self._event_waits(event.topic) if any(
            fnmatch.fnmatchcase(event.topic, t) for t in self._wait_topics) else []
        if not triggers and not waits:
            return
        from omnicore.capabilities.events import event_body
        body = json.loads(event_body(event))
        if self._calls is not None:
            self._calls.submit(self._deliver, body, triggers, waits)

    def _deliver(self, body: dict[str, Any], triggers: list[Any],
                 waits: list[StepRecord]) -> None:
        for wf, t in triggers:
            try:
                if t.filter is not None and not _truthy(t.filter.evaluate({"trigger": body})):
                    continue
                inputs = t.inputs.evaluate({"trigger": body})
                self._start(wf, inputs or {}, f"event:{body['topic']}", body, None)
            except OmniError as exc:
                log.error("workflow %s: event trigger %s: %s", wf.name, t.name, exc)
        for row in waits:
            try:
                wf = self.version(self.get_run(row.run_id).version)
                s = wf.step(row.step)
                if s.wait is not None and s.wait.filter is not None and \
                        not _truthy(s.wait.filter.evaluate({"trigger": body})):
                    continue
            except OmniError as exc:
                log.error("run %d step %s: event filter: %s", row.run_id, row.step, exc)
                continue
            if self.store.complete(row.run_id, row.step, row.index, owner=None,
                                   state="succeeded", output=_encode(body),
                                   expect=("waiting",), actor=f"event:{body['topic']}"):
                self.advance(row.run_id)

    def _event_waits(self, topic: str) -> list[StepRecord]:
        return [r for r in self.store.waiting()
                if isinstance(r.wait, dict) and r.wait.get("kind") == "event"
                and fnmatch.fnmatchcase(topic, str(r.wait.get("topic")))]

    def webhook(self, path: str, body: bytes, signature: str | None) -> WebhookAnswer:
        """A POST to ``/hooks/<path>``: the signature checked, then a run started (202)."""
        matches = [(wf, t) for e in self.registry if (wf := e.workflow) is not None
                   for t in wf.triggers if t.kind == "webhook" and t.path == path]
        if not matches:
            return WebhookAnswer(404, {"error": f"no webhook at {path!r}"})
        wf, trig = matches[0]
        secret = self._app.secrets.get(trig.secret)
        if secret is None:
            log.error("workflow %s: webhook secret %r is not set", wf.name, trig.secret)
            return WebhookAnswer(503, {"error": "this webhook's secret is not set on the host"})
        try:
            why = self._check_signature(secret, body, signature)
        except StorageError as exc:
            log.error("workflow %s: webhook %s: cannot record the delivery: %s", wf.name,
                      path, exc)
            return WebhookAnswer(503, {"error": f"the host cannot record this delivery now "
                                                f"({exc}); send it again later"})
        if why:
            return WebhookAnswer(401, {"error": why})
        try:
            data = guestjson.loads(body, max_depth=guestjson.MAX_DEPTH) if body.strip() else {}
        except ValueError as exc:
            return WebhookAnswer(400, {"error": f"the body is not JSON: {str(exc)[:200]}"})
        trigger = {"topic": f"webhook.{path}", "path": path, "data": data}
        try:
            inputs = trig.inputs.evaluate({"trigger": trigger}) if trig.inputs.value else data
            if not isinstance(inputs, dict):
                return WebhookAnswer(422, {"error": "the inputs must be a JSON object",
                                           "field": ""})
            run = self._start(wf, inputs, f"webhook:{path}", trigger, None)
        except InputInvalid as exc:
            return WebhookAnswer(422, {"error": str(exc), "field": exc.field})
        except ExpressionError as exc:
            return WebhookAnswer(422, {"error": str(exc)})
        return WebhookAnswer(202, {"run": run.id, "state": run.state})

    def _check_signature(self, secret: bytes, body: bytes, header: str | None) -> str | None:
        """Why the delivery is refused (None: accepted, and recorded against a replay).

        Everything in the header is the sender's text: the time must be a plain decimal
        number of at most 12 digits (a 310-digit one overflows float arithmetic) and the MAC
        plain ASCII hex, before either is used.
        """
        if not header:
            return f"missing {SIGNATURE_HEADER} header"
        parts = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in
                                                        header.split(","))}
        stamp, mac = parts.get("t", ""), parts.get("v1", "")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12) or \
                not (mac.isascii() and 0 < len(mac) <= 128):
            return f"bad {SIGNATURE_HEADER} header: want t=<unix time>,v1=<hex>"
        t = int(stamp)
        window = self.settings.webhook_window_s
        now = time.time()
        if abs(now - t) > window:
            return f"the signature's time is outside the replay window ({window}s)"
        expected = sign_webhook(secret, body, t).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, mac):
            return "bad signature"
        # In storage, not memory: a delivery seen before a restart is still a replay after.
        if not self.store.first_delivery(expected, now, window):
            return "this signature was already used (replay)"
        return None

    def _fire_crons(self, now: float) -> None:
        for entry in self.registry:
            wf = entry.workflow
            if wf is None:
                continue
            for t in wf.triggers:
                if t.kind != "cron":
                    continue
                sched = Schedule("", t.name, "", cron=t.cron, tz=t.timezone)
                due = self.store.next_fire(wf.name, t.name)
                if due is None:
                    self.store.set_fire(wf.name, t.name, None, sched.next_after(now))
                elif due <= now:
                    trigger = {"topic": f"cron.{t.name}", "scheduled_at": due, "data": None}
                    try:
                        inputs = t.inputs.evaluate({"trigger": trigger}) or {}
                        self._start(wf, inputs, f"cron:{t.name}", trigger, None,
                                    fire=(t.name, due, sched.next_after(now)))
                    except RunStateError:
                        pass  # another host fired it
                    except OmniError as exc:
                        log.error("workflow %s: cron trigger %s: %s", wf.name, t.name, exc)
                        self.store.set_fire(wf.name, t.name, due, sched.next_after(now))

    def _expire_waits(self, now: float) -> None:
        waiting = self.store.waiting()
        self._wait_topics = frozenset(str(r.wait.get("topic")) for r in waiting
                                      if isinstance(r.wait, dict) and r.wait.get("kind") == "event")
        for row in waiting:
            wait = row.wait if isinstance(row.wait, dict) else {}
            until = wait.get("until")
            if wait.get("kind") == "event" and until is not None and until <= now:
                if self.store.complete(row.run_id, row.step, row.index, owner=None,
                                       state="failed", expect=("waiting",), actor="engine",
                                       error=f"no {wait.get('topic')} event before the "
                                             f"timeout"):
                    self.advance(row.run_id)

    # -- lifecycle --

    def start_workers(self) -> None:
        """Load the folder, recover runs a previous host left, start workers and triggers."""
        if self._threads:
            return
        self._stopping.clear()
        self._calls = ThreadPoolExecutor(max_workers=self.settings.workers * 2 + 2,
                                         thread_name_prefix="omnicore-wf-call")
        self._live = True
        self.load_folder()
        self._subs = [self._app.events.subscribe("*", self._on_event)]
        for topic in ("plugin.loaded", "plugin.unloaded", "plugin.reloaded"):
            self._subs.append(self._app.events.subscribe(topic, lambda _e: self.registry.recheck()))
        for i in range(self.settings.workers):
            self._spawn(self._work, f"omnicore-wf-worker-{i}")
        self._spawn(self._tick, "omnicore-wf-scheduler")
        self._recover()

    def _recover(self) -> None:
        for run in self.store.runs(states=("running",), limit=100_000):
            for row in self.store.steps(run.id, outputs=False):
                if row.state == "waiting" and row.wait is None:   # a sub-run step
                    for child in self.store.runs(limit=100_000):
                        if (child.parent_run, child.parent_step, child.parent_index) == \
                                (run.id, row.step, row.index) and \
                                child.state not in ("queued", "running"):
                            self._ended(child.id)
            self.advance(run.id)

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, grace: float) -> None:
        """Stop claiming; wait ``grace`` s for running steps; give the others' leases back."""
        self._stopping.set()
        self.wake()
        for sub in self._subs:
            self._app.events.unsubscribe(sub)
        self._subs = []
        deadline = time.monotonic() + grace
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        self._live = False
        with self._running_lock:
            left = list(self._running)
        if left:
            self.store.release(self.owner, left)
        if self._calls is not None:
            self._calls.shutdown(wait=False, cancel_futures=True)
            self._calls = None

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def _work(self) -> None:
        while not self._stopping.is_set():
            try:
                row = self.store.claim(self.owner, time.time(), self.settings.lease_s)
            except StorageError as exc:
                log.error("workflow worker: %s", exc)
                row = None
            if row is None:
                with self._wake:
                    if self._stopping.is_set():
                        return
                    due = self.store.next_due()
                    wait = self.settings.poll_s if due is None else \
                        min(self.settings.poll_s, max(due - time.time(), 0.0))
                    if wait > 0:
                        self._wake.wait(wait)
                continue
            key = (row.run_id, row.step, row.index)
            with self._running_lock:
                self._running[key] = time.time()
            try:
                self._execute(row)
            except Exception:
                log.exception("run %d step %s: the engine failed (its lease expires and it "
                              "runs again)", row.run_id, row.step)
            finally:
                with self._running_lock:
                    self._running.pop(key, None)

    def _tick(self) -> None:
        last_renew = time.monotonic()
        while not self._stopping.is_set():
            now = time.time()
            try:
                self._fire_crons(now)
                self._expire_waits(now)
                if time.monotonic() - last_renew > self.settings.lease_s / 3:
                    with self._running_lock:
                        keys = list(self._running)
                    self.store.renew(self.owner, keys, time.time() + self.settings.lease_s)
                    last_renew = time.monotonic()
                if self.settings.watch and self.registry.scan():
                    self.wake()
            except StorageError as exc:
                log.error("workflow scheduler: %s", exc)
            self._stopping.wait(min(self.settings.poll_s, self.settings.lease_s / 3))


class _Permanent(Exception):
    """A failure that no retry can fix (an output over the limit, a missing connector)."""


class _Context:
    """The data expressions see, built once per advance."""

    def __init__(self, run: RunRecord, rows: dict[str, StepRecord]) -> None:
        self.run = run
        self.rows = rows
        self.error: str | None = None

    def data(self, **extra: Any) -> dict[str, Any]:
        r = self.run
        steps = {sid: {"output": row.output, "state": row.state, "error": row.error}
                 for sid, row in self.rows.items() if row.state in FINAL_STEP_STATES}
        return {"inputs": r.inputs, "trigger": r.trigger, "steps": steps,
                "run": {"id": r.id, "workflow": r.workflow, "version": r.version,
                        "started_by": r.started_by, "error": self.error,
                        "restarts": r.restarts},
                **extra}


def _key(run: RunRecord, step: str, index: int) -> str:
    """The idempotency key of one step (item) of one run: the same on every delivery."""
    return f"{run.workflow}/{run.id}/{step}" + (f"/{index}" if index >= 0 else "") + \
        (f"/r{run.restarts}" if run.restarts else "")


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def check_inputs(wf: Workflow, inputs: Mapping[str, Any]) -> None:
    """InputInvalid naming the first field that fails the workflow's input schema."""
    if not wf.inputs:
        return
    validator = jsonschema.Draft202012Validator(wf.inputs)
    errors = sorted(validator.iter_errors(dict(inputs)), key=lambda e: list(map(str, e.path)))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path)
        if err.validator == "required" and isinstance(err.validator_value, list):
            missing = [f for f in err.validator_value if f not in (err.instance or {})]
            where = "/".join([*map(str, err.absolute_path), missing[0]]) if missing else where
        raise InputInvalid(f"workflow {wf.name}: input {where or '(root)'}: {err.message}",
                           field=where)


def default_actor() -> str:
    """Who the CLI acts as: ``cli:<login>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"
