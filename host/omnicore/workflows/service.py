"""``app.workflows``: start, advance, run and steer workflow runs.

A run is rows in the app's storage (:mod:`omnicore.storage.workflows`); the service holds no
state that a crash could lose. *Advancing* a run reads its step rows, asks
:mod:`omnicore.workflows.advance` which steps became ready (their inputs evaluated then, so
each step's input is recorded before it runs) and how the run stands, and writes that.
Steps that do work (plugin, connector, sub-workflow, sleep) are queued rows that
:class:`~omnicore.core.workers.LeasedWorkers` lease like durable jobs and
:class:`~omnicore.workflows.executors.StepExecutor` runs; approvals and event waits are
``waiting`` rows that an operator or an event completes (:mod:`omnicore.workflows.triggers`).
Every outcome is written first and the run advanced after, so advancing is idempotent and a
host that restarts simply advances every running run again.

Runs are pinned to the content hash of the definition they started with: a changed file
makes a new version for new runs; ``restart(..., latest=True)`` moves a failed run over.
"""

from __future__ import annotations

import getpass
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import jsonschema

from omnicore import telemetry
from omnicore.capabilities.types import AppServices
from omnicore.core.events import Event
from omnicore.core.once import Once
from omnicore.core.outage import Outage
from omnicore.core.workers import LeasedWorkers
from omnicore.errors import OmniError, PluginNotFound
from omnicore.logging import get_logger
from omnicore.storage import StorageError
from omnicore.storage.workflows import RunRecord, StepRecord, WorkflowStore
from omnicore.workflows import advance as plan
from omnicore.workflows.definition import Step, Workflow, from_document
from omnicore.workflows.entries import WorkflowEntries
from omnicore.workflows.errors import ExpressionError, InputInvalid, RunStateError, WorkflowError
from omnicore.workflows.executors import StepExecutor
from omnicore.workflows.files import WorkflowFiles
from omnicore.workflows.triggers import Triggers, WebhookAnswer

if TYPE_CHECKING:
    from omnicore.egress import Connector
    from omnicore.plugins.host import PluginHost

__all__ = ["WorkflowRunChanged", "Workflows", "WorkflowsApp", "check_inputs", "default_actor"]

log = get_logger("omnicore.workflows")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowRunChanged(Event, topic="workflow.run_changed"):
    """A run started, or ended (``state`` succeeded, failed, cancelled, skipped)."""

    run_id: int
    workflow: str
    state: str
    error: str | None = None


class WorkflowsApp(AppServices, Protocol):
    """What the service needs of an app (``OmniApp`` has it): the services the built-in
    capabilities open onto (storage, secrets, egress, databases), its plugin host and its
    connectors."""

    @property
    def plugins(self) -> PluginHost: ...

    @property
    def connectors(self) -> dict[str, Connector]: ...


class Workflows:
    """The workflow service of an app: definitions (:attr:`entries`), runs, workers.

    Options (``workflows.*``): ``dir``, ``watch``, ``workers``, ``lease_s``, ``poll_s``,
    ``max_output_bytes``, ``inline_output_bytes``, ``max_items``, ``webhook_window_s``.
    """

    def __init__(self, app: WorkflowsApp) -> None:
        self._app = app
        self.settings = app.config.workflows
        self.entries = WorkflowEntries(self._refs, self._save_version, self.digest_problem)
        #: The folder's files as the editor writes them (one lock for every save).
        self.files = WorkflowFiles(Path(self.settings.dir))
        self.owner = app.runtime_id
        self._store = Once(lambda: self._app.storage.workflows)
        self._versions: dict[str, Workflow] = {}
        self._locks = [threading.RLock() for _ in range(64)]
        self._changed = threading.Condition()
        self._workers: LeasedWorkers[StepRecord, tuple[int, str, int]] | None = None
        self._calls: ThreadPoolExecutor | None = None
        self._executor: StepExecutor | None = None
        self._subs: list[Any] = []
        self._live = False          # workers started: plugin references can be checked
        #: Runs whose advance failed on the storage: the ticker advances them again.
        self._stalled: set[int] = set()
        self._advancing = Outage("workflow runs", log, transient=(StorageError,))
        self.triggers = Triggers(self.entries, lambda: self.store, self.settings,
                                 self._start, self.version, self.advance,
                                 lambda name: self._app.secrets.get(name))

    # -- storage and versions --

    @property
    def store(self) -> WorkflowStore:
        return self._store.get()

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

    def _refs(self) -> tuple[Mapping[str, list[str]] | None, dict[str, str] | None]:
        try:
            host = self._app.plugins
        except AttributeError:
            plugins = None
        else:
            # A plugin that failed before its module was read has no handlers to check a
            # step against: it counts as absent (a warning), not as lacking the handler.
            plugins = {info.name: list(info.handlers) for info in host
                       if info.handlers or info.state == "loaded"} if self._live else None
        try:
            connectors = self.connector_kinds()
        except (OmniError, AttributeError):  # bad connector config / an app without them
            connectors = None
        return plugins, connectors

    def connector_kinds(self) -> dict[str, str]:
        """The app's connectors and their kinds (``http``, ``postgres``, ``mysql``,
        ``redis``); ConfigError when the connector config is bad."""
        kinds = dict.fromkeys(self._app.connectors, "http")
        kinds.update({name: c.kind for name, c in self._app.databases.connectors.items()})
        return kinds

    # -- definitions --

    def load_folder(self) -> None:
        """Read ``workflows.dir`` (what start does; the CLI calls it without starting)."""
        self.entries.scan(self.settings.dir)

    def add(self, text: str, source: str = "<code>") -> Workflow:
        """Add a workflow from YAML/JSON text (DefinitionError lists every problem)."""
        entry = self.entries.add(text, source)
        assert entry.workflow is not None
        return entry.workflow

    # -- runs: start, inspect, steer --

    def start(self, name: str, inputs: Mapping[str, Any] | None = None, *,
              started_by: str = "api", trigger: Any = None,
              parent: tuple[int, str, int] | None = None) -> RunRecord:
        """Start a run of the loaded workflow ``name``; InputInvalid names the bad field."""
        wf = self.entries.get(name)
        return self._start(wf, dict(inputs or {}), started_by, trigger, None, parent)

    def _start(self, wf: Workflow, inputs: dict[str, Any], started_by: str, trigger: Any,
               fire: tuple[str, float | None, float] | None = None,
               parent: tuple[int, str, int] | None = None) -> RunRecord:
        check_inputs(wf, inputs)
        self.check_digests(wf)
        key, limit, mode = None, 0, "queue"
        if wf.concurrency is not None:
            value = wf.concurrency.key.evaluate({"inputs": inputs, "trigger": trigger})
            key = value if isinstance(value, str) else json.dumps(value)
            limit, mode = wf.concurrency.limit, wf.concurrency.on_conflict
        created = self.store.create_run(wf.name, wf.version, inputs, trigger, started_by,
                                        key=key, limit=limit, on_conflict=mode, parent=parent,
                                        fire=fire, trace=telemetry.traceparent())
        if created is None:
            raise RunStateError("another host fired this trigger first")
        run_id, state, cancelled = created
        for other in cancelled:
            self.run_ended(other)
        self._publish(run_id, wf.name, state)
        if state == "running":
            self.advance(run_id)
        elif state == "skipped":
            self.run_ended(run_id)
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
                                   output=plan.encode(output), expect=("waiting",), actor=by,
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
            self.run_ended(run_id)
        return done

    def restart(self, run_id: int, by: str, *, latest: bool = False) -> RunRecord:
        """Run a failed or cancelled run again from the steps that did not succeed, keeping
        the outputs of those that did; ``latest`` moves it to the current definition."""
        run = self.get_run(run_id)
        version = None
        if latest:
            version = self.entries.get(run.workflow).version
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

    def webhook(self, path: str, body: bytes, signature: str | None) -> WebhookAnswer:
        """A POST to ``/hooks/<path>``: the signature checked, then a run started (202)."""
        return self.triggers.webhook(path, body, signature)

    # -- advancing --

    def advance(self, run_id: int) -> None:
        """Create the rows of steps that became ready; end the run when all are done."""
        with self._locks[run_id % len(self._locks)]:
            try:
                self._advance(run_id)
            except StorageError as exc:
                # Advanced again by the ticker once the storage answers (one line an outage).
                self._stalled.add(run_id)
                self._advancing.failed(exc)
            else:
                self._stalled.discard(run_id)
                self._advancing.succeeded()
        with self._changed:
            self._changed.notify_all()
        self.wake()

    def _advance(self, run_id: int) -> None:
        run = self.store.run(run_id)
        if run is None or run.state != "running":
            return
        wf = self.version(run.version)
        # States first: the outputs (and their blobs) are read only if an expression needs them.
        rows = {r.step: r for r in self.store.steps(run_id, outputs=False, parents=True)}
        ctx = plan.Context(run, rows, lambda: {r.step: r for r in self.store.steps(
            run_id, parents=True)}, unloaded=rows)
        self._progress(run, wf, wf.steps, rows, ctx)
        result = plan.outcome(wf, rows)
        if result.state == "on_failure":
            ctx.error = result.error
            self._progress(run, wf, wf.on_failure, rows, ctx)
            result = plan.outcome(wf, rows)
        if result.state in ("running", "on_failure"):
            return
        if result.state == "failed":
            if self.store.finish_run(run_id, "failed", error=result.error):
                self.run_ended(run_id)
            return
        try:
            outputs = wf.outputs.evaluate(ctx.data())
        except ExpressionError as exc:
            if self.store.finish_run(run_id, "failed", error=f"outputs: {exc}"):
                self.run_ended(run_id)
            return
        if self.store.finish_run(run_id, "succeeded", outputs=outputs):
            self.run_ended(run_id)

    def _progress(self, run: RunRecord, wf: Workflow, steps: tuple[Step, ...],
                  rows: dict[str, StepRecord], ctx: plan.Context) -> None:
        created = True
        while created:  # a skipped step can make its dependants ready at once
            created = False
            for s in steps:
                row = rows.get(s.id)
                if row is not None and row.state == "running" and s.for_each is not None:
                    ended = self._items(run, s, row)
                    if ended is not None:
                        rows[s.id] = ended
                        created = True
            for s, needs in plan.ready(steps, rows):
                self.store.add_steps(run.id, plan.begin(
                    wf, s, needs, ctx, max_items=self.settings.max_items, now=time.time()))
                # Only the step's own row: a concurrent advance may have made it first.
                fresh = self.store.step(run.id, s.id)
                if fresh is not None:
                    rows[s.id] = fresh
                    created = True
                    self.triggers.began(s)

    def _items(self, run: RunRecord, s: Step, parent: StepRecord) -> StepRecord | None:
        """Queue a for_each's next items; end the step when every item has ended."""
        self.store.promote_items(run.id, s.id, s.parallelism)
        counts = self.store.counts(run.id, s.id)
        total = (parent.wait or {}).get("items", 0)
        ended = plan.items_outcome(s, total, counts, None)
        if ended is None:
            return None
        if ended[0] == "failed" and counts.get("failed", 0):
            first = next((r for r in self.store.steps(run.id, outputs=False)
                          if r.step == s.id and r.index >= 0 and r.state == "failed"), None)
            ended = plan.items_outcome(s, total, counts, first) or ended
        state, error = ended
        outputs = plan.encode(self.store.outputs(run.id, s.id))
        if state == "failed":
            self.store.complete(run.id, s.id, -1, owner=None, state="failed", error=error,
                                output=outputs)
        else:
            self.store.complete(run.id, s.id, -1, owner=None, state="succeeded",
                                output=outputs, inline_limit=self.settings.inline_output_bytes)
        return self.store.step(run.id, s.id)

    def run_ended(self, run_id: int) -> None:
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
                                    state="succeeded", output=plan.encode(run.outputs),
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

    # -- lifecycle --

    def start_workers(self) -> None:
        """Load the folder, recover runs a previous host left, start workers and triggers."""
        if self._workers is not None:
            return
        # Plugin steps wait for their call on these threads (see executors); events are
        # delivered on them so a publisher never waits for storage.
        calls = self._calls = ThreadPoolExecutor(max_workers=self.settings.workers * 2 + 2,
                                                 thread_name_prefix="omnicore-wf-call")
        self._live = True
        self.load_folder()
        s = self.settings
        workers = LeasedWorkers("wf", _StepQueue(lambda: self.store, self.serving),
                                self._execute,
                                key=lambda r: (r.run_id, r.step, r.index), owner=self.owner,
                                workers=s.workers, lease_s=s.lease_s, poll_s=s.poll_s,
                                tick=self._tick, transient=(StorageError,))
        self._executor = StepExecutor(self, lambda: self._app.plugins, lambda: self._app.egress,
                                      workers.interrupted, calls, workers.persist,
                                      lambda: self._app.databases)
        self._workers = workers
        self._subs = [self._app.events.subscribe("*", self._on_event)]
        for topic in ("plugin.loaded", "plugin.unloaded", "plugin.reloaded"):
            self._subs.append(self._app.events.subscribe(topic, lambda _e: self.entries.recheck()))
        workers.start()
        self._recover()

    def _recover(self) -> None:
        # A sub-run that ended while no host ran never completed its parent's step.
        for run in self.store.runs(states=("running",), limit=100_000):
            for row in self.store.steps(run.id, outputs=False):
                if row.state == "waiting" and row.wait is None:   # a sub-run step
                    child = self.store.child_run((run.id, row.step, row.index))
                    if child is not None and child.state not in ("queued", "running"):
                        self.run_ended(child.id)
            self.advance(run.id)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, WorkflowRunChanged) and event.state in ("queued", "running"):
            return
        if self._calls is not None:
            self.triggers.on_event(event, self._calls)

    def _execute(self, row: StepRecord) -> None:
        assert self._executor is not None
        self._executor.execute(row)

    def _tick(self, now: float) -> None:
        for run_id in sorted(self._stalled.copy()):
            self.advance(run_id)
        self.triggers.tick(now)
        if self.settings.watch and self.entries.scan():
            self.wake()

    def stop(self, grace: float) -> None:
        """Stop claiming; wait ``grace`` s for running steps; then interrupt the plugin calls
        still running and give those steps' leases back (they run again, uncounted)."""
        for sub in self._subs:
            self._app.events.unsubscribe(sub)
        self._subs = []
        workers, self._workers = self._workers, None
        if workers is not None:
            left = workers.stop(grace, interrupt=self._interrupt_plugins)
            if left:
                log.warning("stopped with %d workflow step(s) still running after %.3gs: %s; "
                            "interrupted and queued again", len(left), grace, left)
        self._live = False
        if self._calls is not None:
            self._calls.shutdown(wait=False, cancel_futures=True)
            self._calls = None

    def serving(self) -> Mapping[str, str | None] | None:
        """Each plugin this host serves -> the digest serving it: a step that asks for a
        plugin version is claimed only where that one serves (None: an app without a plugin
        host, which claims every step)."""
        try:
            plugins = self._app.plugins
        except AttributeError:
            return None
        return plugins.serving_digests()

    def check_digests(self, wf: Workflow) -> None:
        """Refuse a run of ``wf`` with a step asking for a plugin version no host could ever
        claim it for (PluginNotFound naming the step and the digest): one the catalog does
        not keep of that plugin and no host reports serving."""
        for s in (*wf.steps, *wf.on_failure):
            if s.digest is not None and (why := self.digest_problem(s.target, s.digest)):
                raise PluginNotFound(f"workflow {wf.name}: step {s.id!r}: {why}",
                                     plugin=s.target)

    def digest_problem(self, plugin: str, digest: str) -> str | None:
        """Why no host would ever run ``plugin`` at ``digest`` (None: a version the catalog
        keeps or a host serves; also None when the jobs service cannot tell)."""
        try:
            check = self._app.jobs.check_digest
        except AttributeError:
            return None
        try:
            check(plugin, digest)
        except StorageError:
            return None  # cannot tell now: a run is checked again when it starts
        except PluginNotFound:
            return (f"plugin {plugin!r} has no version {digest}: the catalog keeps none with "
                    "that digest and no host serves it, so no host would ever run the step "
                    f"(see omnicore plugins versions {plugin})")
        except ValueError as exc:
            return str(exc)
        return None

    def _interrupt_plugins(self) -> None:
        try:
            plugins = self._app.plugins
        except AttributeError:
            return  # no plugin host: no call can be running
        plugins.interrupt()

    def wake(self) -> None:
        """End idle workers' waits: a step was queued or came due."""
        if self._workers is not None:
            self._workers.wake()


class _StepQueue:
    """The store's step queue as the workers lease it: a claim (and the next due time) only
    of steps this host may run (``serving``: asked at every claim, so a plugin version
    loaded a moment ago counts)."""

    def __init__(self, store: Callable[[], WorkflowStore],
                 serving: Callable[[], Mapping[str, str | None] | None]) -> None:
        self._store = store
        self._serving = serving

    def claim(self, owner: str, now: float, lease_s: float) -> StepRecord | None:
        return self._store().claim(owner, now, lease_s, self._serving())

    def next_due(self) -> float | None:
        return self._store().next_due(self._serving())

    def renew(self, owner: str, keys: Sequence[tuple[int, str, int]], lease_until: float
              ) -> None:
        self._store().renew(owner, keys, lease_until)

    def release(self, owner: str, keys: Sequence[tuple[int, str, int]]) -> None:
        self._store().release(owner, keys)


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
