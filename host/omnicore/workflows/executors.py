"""Running one leased step row: a plugin call, a connector call, a due sleep, a sub-workflow.

:class:`StepExecutor` is what the workers run for each claimed row. It records the outcome
(succeeded, failed with a retry time, or ``waiting`` on a sub-run) and then has the run
advanced. Approvals and event waits are never leased: an operator or an event completes them
(:meth:`Workflows.approve <omnicore.workflows.service.Workflows.approve>`,
:mod:`omnicore.workflows.triggers`).

A step runs on its worker's thread: a connector call carries the step's deadline to the egress
client, and a plugin call is bound by the plugin's own deadline. Only a plugin step whose
``timeout`` is shorter than that deadline hands its call to one of the service's call threads,
since the plugin host has no per-call deadline to pass: the step's timeout is kept by waiting
for that thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, Protocol

from omnicore import telemetry
from omnicore.capabilities import guestjson
from omnicore.config.schema import WorkflowsConfig
from omnicore.errors import OmniError
from omnicore.logging import get_logger
from omnicore.storage import StorageError
from omnicore.storage.workflows import RunRecord, StepRecord, WorkflowStore
from omnicore.workflows.advance import encode, idempotency_key
from omnicore.workflows.connector import ConnectorFailed, call_connector, run_statement
from omnicore.workflows.definition import Step, Workflow
from omnicore.workflows.errors import WorkflowError
from omnicore.workflows.references import connector_mismatch

if TYPE_CHECKING:
    from omnicore.egress import Egress
    from omnicore.egress.db import Databases
    from omnicore.plugins.host import PluginHost

__all__ = ["Runs", "StepExecutor"]

log = get_logger("omnicore.workflows")


class Runs(Protocol):
    """What an executor needs of the workflow service."""

    owner: str
    settings: WorkflowsConfig

    @property
    def store(self) -> WorkflowStore: ...

    def version(self, digest: str) -> Workflow: ...

    def advance(self, run_id: int) -> None: ...

    def wake(self) -> None: ...

    def start(self, name: str, inputs: Mapping[str, Any] | None = None, *,
              started_by: str = "api", trigger: Any = None,
              parent: tuple[int, str, int] | None = None) -> RunRecord: ...

    def run_ended(self, run_id: int) -> None: ...


class _Permanent(Exception):
    """A failure that no retry can fix (an output over the limit, a missing connector)."""


class StepExecutor:
    """Runs claimed step rows for ``runs``; ``interrupted`` is the workers' flag that a
    stop ended the calls still running (such a failure records nothing)."""

    def __init__(self, runs: Runs, plugins: Callable[[], PluginHost],
                 egress: Callable[[], Egress], interrupted: threading.Event,
                 calls: ThreadPoolExecutor,
                 persist: Callable[[Callable[[], object]], object],
                 databases: Callable[[], Databases] | None = None) -> None:
        self._runs = runs
        self._plugins = plugins
        self._egress = egress
        self._databases = databases if databases is not None else _no_databases
        self._interrupted = interrupted
        self._calls = calls
        #: Writes an outcome through an outage of the storage (the workers' ``persist``): a
        #: step that ran is recorded when the database returns, not run again.
        self._persist = persist

    def execute(self, row: StepRecord) -> None:
        """Run ``row``, record its outcome, advance its run."""
        if not telemetry.ON:
            self._execute(row)
            return
        # A consumer span in the trace of the span that started the run, on whichever host.
        run = self._runs.store.run(row.run_id)
        with telemetry.span(f"workflow step {row.step}", {
                "omnicore.workflow.run_id": row.run_id, "omnicore.workflow.step": row.step,
                "omnicore.workflow.index": row.index, "omnicore.workflow.attempt": row.attempt},
                kind="consumer", parent=run.trace if run is not None else None):
            self._execute(row)

    def _execute(self, row: StepRecord) -> None:
        runs, store, owner = self._runs, self._runs.store, self._runs.owner
        run = store.run(row.run_id)
        if run is None or run.state != "running":
            store.complete(row.run_id, row.step, row.index, owner=owner,
                           state="cancelled", error="the run is not running")
            return
        s = runs.version(run.version).step(row.step)
        if s.kind == "plugin" and not self._serves(s.target, row.pin):
            # The host unloaded the plugin or swapped versions since the claim: back to the
            # queue, uncounted, for a host that serves what the step calls.
            log.info("run %d step %s calls %s, which this host no longer serves; it is "
                     "queued again for a host that does", row.run_id, row.step,
                     (row.pin or s.target)[:80])
            store.release(owner, [(row.run_id, row.step, row.index)])
            return
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
            data = encode(output)
            limit = runs.settings.max_output_bytes
            if len(data) > limit:
                raise _Permanent(f"the output of step {s.id} is {len(data)} bytes, over "
                                 f"workflows.max_output_bytes ({limit})")
        except StorageError:
            raise  # not the step's failure: its worker gives the row back
        except Exception as exc:
            if self._interrupted.is_set():
                # The stop ended this call: its worker gives the lease back, uncounted.
                log.info("run %d step %s was interrupted by the stop; it runs again",
                         row.run_id, row.step)
                return
            retry = not isinstance(exc, _Permanent) and not (
                isinstance(exc, ConnectorFailed) and not exc.retryable)
            error = str(exc) if isinstance(exc, (_Permanent, ConnectorFailed)) else \
                f"{type(exc).__name__}: {exc}"
            retry_at = None
            if retry and row.attempt < s.retry.max_attempts:
                retry_at = time.time() + s.retry.delay(row.attempt)
            duration = time.perf_counter() - started
            self._persist(lambda: store.complete(
                row.run_id, row.step, row.index, owner=owner, state="failed",
                error=error[:4000], retry_at=retry_at, duration_s=duration))
            if retry_at is not None:
                runs.wake()
                return
        else:
            duration = time.perf_counter() - started
            self._persist(lambda: store.complete(
                row.run_id, row.step, row.index, owner=owner, state="succeeded", output=data,
                inline_limit=runs.settings.inline_output_bytes, duration_s=duration))
        runs.advance(row.run_id)

    def _serves(self, plugin: str, pin: str | None) -> bool:
        """Whether this host serves ``plugin`` now, at the version ``pin`` names
        (``plugin@sha256:<hex>``) when it names one."""
        try:
            serving = self._plugins().serving_digests()
        except AttributeError:  # an app without a plugin host
            return True
        if plugin not in serving:
            return False
        return pin is None or serving[plugin] == pin.rpartition("@")[2]

    def _call_plugin(self, s: Step, row: StepRecord) -> Any:
        payload = row.input if isinstance(row.input, (bytes, str)) else encode(row.input)
        if isinstance(payload, str):
            payload = payload.encode()
        plugins = self._plugins()
        if s.timeout >= _deadline_s(plugins, s.target):
            raw = plugins.call(s.target, s.handler, payload)
        else:
            future = self._calls.submit(plugins.call, s.target, s.handler, payload)
            try:
                raw = future.result(timeout=s.timeout)
            except FutureTimeout:
                raise TimeoutError(f"step {s.id} timed out after {s.timeout:g}s") from None
        try:
            return guestjson.loads(raw) if raw else None
        except ValueError:
            return raw.decode("utf-8", "replace")

    def _call_connector(self, s: Step, run: RunRecord, row: StepRecord) -> Any:
        if s.handler:  # connector:NAME/query or /execute: a statement on a database
            return run_statement(self._databases(), s.target, s.handler == "query",
                                 row.input, time.monotonic() + s.timeout)
        try:
            database = self._databases().connectors.get(s.target)
        except OmniError:  # a bad database config: the HTTP connectors still work
            database = None
        if database is not None:  # a definition loaded before the connector changed kind
            raise ConnectorFailed(connector_mismatch(s.id, s.target, database.kind, "")
                                  or f"connector {s.target!r} is not an HTTP connector",
                                  retryable=False)
        return call_connector(self._egress(), s.target, row.input or {},
                              idempotency_key=idempotency_key(run, s.id, row.index),
                              timeout_s=s.timeout,
                              max_bytes=self._runs.settings.max_output_bytes)

    def _sub_run(self, s: Step, run: RunRecord, row: StepRecord) -> None:
        runs, store, owner = self._runs, self._runs.store, self._runs.owner
        # A delivery after a crash finds the sub-run it started before, not a second one.
        child = store.child_run((run.id, s.id, row.index))
        if child is None:
            try:
                child = runs.start(s.target, row.input if isinstance(row.input, dict) else {},
                                   started_by=f"run {run.id}", parent=(run.id, s.id, row.index))
            except StorageError:
                raise  # not the step's failure: its worker gives the row back
            except (WorkflowError, OmniError) as exc:
                store.complete(run.id, s.id, row.index, owner=owner, state="failed",
                               error=f"cannot start workflow {s.target}: {exc}")
                runs.advance(run.id)
                return
        store.complete(run.id, s.id, row.index, owner=owner, state="waiting", actor=owner)
        store.note(run.id, "step.sub_run", step=s.id, index=row.index, data={"run": child.id})
        finished = store.run(child.id)
        if finished is not None and finished.state not in ("queued", "running"):
            runs.run_ended(child.id)


def _deadline_s(plugins: PluginHost, name: str) -> float:
    """How long a call of plugin ``name`` can take at most: its deadline, plus a second for a
    host function that returns late (infinite when unknown, so the step's timeout is kept)."""
    try:
        limits = plugins.get(name).limits
    except OmniError:
        return 0.0      # not loaded: the call itself raises the error at once
    return float("inf") if limits is None else limits.timeout_ms / 1000 + 1.0


def _no_databases() -> Databases:
    from omnicore.egress.db import Databases

    return Databases()
