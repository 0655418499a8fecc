"""``omnicore:tasks`` (specs/abi.md §4.6) and ``app.jobs``, the durable queue that runs them.

A plugin enqueues ``handler(payload)`` of its own; the job is a row in the app's storage, so
it survives a restart or a ``kill -9``. Worker threads lease due jobs (a lease the scheduler
renews while the call runs; an expired lease — a dead host — makes the job due again: at
least once, with ``attempts`` counting deliveries), call the plugin through
``app.plugins.call`` (the plugin's deadline holds), and on failure requeue it after an
exponential backoff with full jitter until ``max_attempts``, then mark it ``dead`` with the
error kept. Schedules (``every`` or ``cron`` with a timezone) from the plugin's manifest or
``capabilities.tasks.schedules`` enqueue a job once per period, across restarts and hosts.

The in-memory :class:`~omnicore.core.tasks.TaskEngine` (``app.tasks``) is a different thing:
it runs Python coroutines of this process and forgets them at exit.
"""

from __future__ import annotations

import builtins
import collections
import contextvars
import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from omnicore.capabilities.manifest_entries import handler_entries
from omnicore.config import OmniConfig
from omnicore.core.events import Event, EventBus
from omnicore.errors import ConfigError, PluginNotFound
from omnicore.logging import get_logger
from omnicore.sandbox.capability import Capability, GuestMemory, HostFunction, PluginContext, Status
from omnicore.storage import QuotaExceeded, Storage, StorageError, Task, TaskSpec

if TYPE_CHECKING:
    from omnicore.plugins.host import PluginHost

__all__ = ["CAPABILITY", "JobDead", "JobFailed", "JobQueued", "JobStarted", "JobSucceeded",
           "Jobs", "Schedule", "TaskGrant", "at_hops", "capability", "check_manifest",
           "current_hops", "for_app", "grant_defaults", "manifest_schedules",
           "parse_schedule"]

log = get_logger("omnicore.jobs")

#: The event hop count of the call running on this thread (events.py raises it per hop).
current_hops: contextvars.ContextVar[int] = contextvars.ContextVar("omnicore_hops", default=0)


# -- events on the app's bus ----------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class JobQueued(Event):
    topic: ClassVar[str] = "job.queued"
    job_id: int
    plugin: str
    handler: str
    source: str
    hops: int = 0  # event hops that led here, plus one (cycle guard)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStarted(Event):
    topic: ClassVar[str] = "job.started"
    job_id: int
    plugin: str
    handler: str
    attempt: int
    hops: int = 0  # event hops that led here, plus one (cycle guard)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSucceeded(Event):
    topic: ClassVar[str] = "job.succeeded"
    job_id: int
    plugin: str
    handler: str
    attempt: int
    duration_s: float
    hops: int = 0  # event hops that led here, plus one (cycle guard)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobFailed(Event):
    """One attempt failed; it runs again at ``retry_at``."""

    topic: ClassVar[str] = "job.failed"
    job_id: int
    plugin: str
    handler: str
    attempt: int
    error: str
    retry_at: float
    hops: int = 0  # event hops that led here, plus one (cycle guard)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobDead(Event):
    """The last attempt failed; the job stays ``dead`` until an operator retries it."""

    topic: ClassVar[str] = "job.dead"
    job_id: int
    plugin: str
    handler: str
    attempt: int
    error: str
    hops: int = 0  # event hops that led here, plus one (cycle guard)


# -- grant ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TaskGrant:
    """Grant options of ``tasks`` (defaults from ``capabilities.tasks``)."""

    max_queued: int = 1000
    max_attempts: int = 5
    backoff_ms: int = 1000
    max_payload_bytes: int = 1024 * 1024
    max_delay_ms: int = 30 * 24 * 3600 * 1000

    @classmethod
    def parse(cls, options: Mapping[str, Any], where: str = "grant.tasks",
              base: TaskGrant | None = None) -> TaskGrant:
        base = base or cls()
        known = cls.__dataclass_fields__
        unknown = set(options) - set(known)
        if unknown:
            first = sorted(unknown)[0]
            raise ConfigError(f"unknown option {first!r} for {where}; known: "
                              f"{', '.join(known)}", key=f"{where}.{first}")
        values = {}
        for name in known:
            value = options.get(name, getattr(base, name))
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{where}.{name} must be a positive integer, got {value!r}",
                                  key=f"{where}.{name}", value=value)
            values[name] = value
        return cls(**values)


#: ``capabilities.tasks`` options of the service, not of the grant.
_SERVICE_OPTIONS = ("workers", "lease_s", "poll_s", "misfire_grace_s", "max_backoff_ms",
                    "schedules")


def grant_defaults(options: Mapping[str, Any]) -> TaskGrant:
    """The app-wide grant defaults in ``capabilities.tasks`` (its other keys are skipped)."""
    return TaskGrant.parse({k: v for k, v in options.items() if k not in _SERVICE_OPTIONS},
                           where="capabilities.tasks")


# -- schedules --------------------------------------------------------------------------------

_EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule of one plugin: ``every`` seconds, or a ``cron`` expression in ``tz``."""

    plugin: str
    name: str
    handler: str
    every: float | None = None
    cron: str | None = None
    tz: str = "UTC"
    catch_up: Literal["none", "one"] = "one"
    payload: bytes = b""

    def next_after(self, t: float) -> float:
        if self.every is not None:
            return t + self.every
        start = datetime.fromtimestamp(t, ZoneInfo(self.tz))
        return float(croniter(self.cron or "", start).get_next(float))

    def describe(self) -> str:
        return f"every {self.every:g}s" if self.every is not None else \
            f"cron {self.cron!r} ({self.tz})"


def parse_schedule(plugin: str, raw: Any, where: str) -> Schedule:
    """A :class:`Schedule` from a manifest or config entry; ConfigError says what is wrong."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a schedule is an object like "
                          '{"handler": "tick", "every": "30s"}', key=where)
    handler = raw.get("handler")
    if not isinstance(handler, str) or not handler:
        raise ConfigError(f"{where}: 'handler' must be a handler name", key=f"{where}.handler")
    unknown = set(raw) - {"handler", "every", "cron", "tz", "catch_up", "name", "payload"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", key=where)
    every, cron = raw.get("every"), raw.get("cron")
    if (every is None) == (cron is None):
        raise ConfigError(f"{where}: give exactly one of 'every' or 'cron'", key=where)
    seconds = None
    if every is not None:
        match = _EVERY.fullmatch(str(every).strip())
        if isinstance(every, bool) or match is None or float(match[1]) * _UNITS[match[2]] < 1:
            raise ConfigError(f"{where}.every must be a period of at least 1s like '30s', "
                              f"'5m', '2h', got {every!r}", key=f"{where}.every", value=every)
        seconds = float(match[1]) * _UNITS[match[2]]
    tz = raw.get("tz", "UTC")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{where}.tz: unknown time zone {tz!r}", key=f"{where}.tz",
                          value=tz) from None
    if cron is not None and (not isinstance(cron, str) or not croniter.is_valid(cron)):
        raise ConfigError(f"{where}.cron: {cron!r} is not a valid cron expression "
                          "(five fields: minute hour day month weekday)",
                          key=f"{where}.cron", value=cron)
    catch_up = raw.get("catch_up", "one")
    if catch_up not in ("none", "one"):
        raise ConfigError(f"{where}.catch_up must be 'none' or 'one', got {catch_up!r}",
                          key=f"{where}.catch_up", value=catch_up)
    payload = raw.get("payload", "")
    return Schedule(plugin, str(raw.get("name") or handler), handler, seconds, cron, str(tz),
                    catch_up, payload.encode() if isinstance(payload, str) else
                    json.dumps(payload).encode())


def manifest_schedules(plugin: str, manifest: Mapping[str, Any],
                       handlers: Sequence[str] = ()) -> list[Schedule]:
    """The schedules of ``plugin``'s manifest; ConfigError names the first bad one."""
    return handler_entries(manifest, "schedules",
                           lambda item, where: parse_schedule(plugin, item, where), handlers)


def check_manifest(plugin: str, manifest: Mapping[str, Any], handlers: Sequence[str]) -> None:
    """Plugin host hook: a schedule that cannot run fails the load (with the reason)."""
    manifest_schedules(plugin, manifest, handlers)


# -- the service ------------------------------------------------------------------------------

class JobsApp(Protocol):
    """What :class:`Jobs` needs of an app (``OmniApp`` has it)."""

    config: OmniConfig
    events: EventBus
    runtime_id: str

    @property
    def storage(self) -> Storage: ...

    @property
    def plugins(self) -> PluginHost: ...


class Jobs:
    """``app.jobs``: durable plugin tasks — enqueue, inspect, retry, cancel — and the workers.

    Options (``capabilities.tasks``): ``workers`` (2), ``lease_s`` (30), ``poll_s`` (1),
    ``misfire_grace_s`` (5), ``max_backoff_ms`` (300000), ``schedules`` ({plugin: [...]}),
    and the grant defaults of :class:`TaskGrant`.
    """

    def __init__(self, app: JobsApp) -> None:
        self._app = app
        opts = dict(app.config.capabilities.get("tasks", {}))
        self.defaults = grant_defaults(opts)
        self.workers = int(opts.pop("workers", 2))
        self.lease_s = float(opts.pop("lease_s", 30.0))
        self.poll_s = float(opts.pop("poll_s", 1.0))
        self.misfire_grace_s = float(opts.pop("misfire_grace_s", 5.0))
        self.max_backoff_ms = int(opts.pop("max_backoff_ms", 300_000))
        configured = opts.pop("schedules", {}) or {}
        if self.workers < 1 or self.lease_s <= 0 or self.poll_s <= 0:
            raise ConfigError("capabilities.tasks: workers, lease_s and poll_s must be positive",
                              key="capabilities.tasks")
        if not isinstance(configured, Mapping):
            raise ConfigError("capabilities.tasks.schedules must map plugin names to lists",
                              key="capabilities.tasks.schedules")
        self._configured = {
            plugin: [parse_schedule(plugin, s, f"capabilities.tasks.schedules.{plugin}[{i}]")
                     for i, s in enumerate(items or [])]
            for plugin, items in configured.items()}
        self._schedules: dict[tuple[str, str], Schedule] = {}
        self.owner = f"{app.runtime_id}"
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._running: dict[int, Task] = {}
        self._idle = threading.Condition()
        self._subs: list[Any] = []
        #: Attempts that ended, by (plugin, outcome: succeeded | failed | dead), since start.
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()

    # -- embedder and operator API --

    def enqueue(self, plugin: str, handler: str, payload: bytes = b"", *, delay_s: float = 0.0,
                max_attempts: int | None = None, backoff_ms: int | None = None,
                source: str = "operator", hops: int = 0) -> int:
        """Queue ``handler(payload)`` of ``plugin``; the job id. No queue quota (operator)."""
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        spec = TaskSpec(plugin, handler, bytes(payload), time.time() + delay_s,
                        max_attempts or self.defaults.max_attempts,
                        backoff_ms or self.defaults.backoff_ms, source, hops)
        job_id = self._app.storage.queue.add(spec)
        self.queued(job_id, plugin, handler, source, hops)
        return job_id

    def get(self, job_id: int) -> Task | None:
        return self._app.storage.queue.get(job_id)

    def list(self, *, plugin: str | None = None, state: str | None = None,
             limit: int = 100) -> list[Task]:
        """Newest first; ``state`` is queued, running, succeeded, dead or cancelled."""
        return self._app.storage.queue.list(plugin=plugin, states=(state,) if state else (),
                                            limit=limit)

    def retry(self, job_id: int) -> bool:
        """Queue a dead or cancelled job again with fresh attempts."""
        done = self._app.storage.queue.retry(job_id, time.time())
        if done:
            self.wake()
        return done

    def cancel(self, job_id: int) -> bool | None:
        """True cancelled, False running or finished, None unknown."""
        return self._app.storage.queue.cancel(job_id, time.time())

    def schedules(self) -> builtins.list[Schedule]:
        return sorted(self._schedules.values(), key=lambda s: (s.plugin, s.name))

    def queued(self, job_id: int, plugin: str, handler: str, source: str,
               hops: int = 0) -> None:
        """Tell the workers and the bus a job was added (called by every enqueue path)."""
        self._app.events.publish(JobQueued(job_id=job_id, plugin=plugin, handler=handler,
                                           source=source, hops=hops + 1))
        self.wake()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    # -- lifecycle --

    def start(self) -> None:
        """Start the workers and the scheduler; load schedules of plugins already loaded."""
        if self._threads:
            return
        try:
            host = self._app.plugins
        except AttributeError:
            return  # an app without a plugin host has nothing to call
        self._stopping.clear()
        self._subs = [self._app.events.subscribe(t, self._on_plugin_event)
                      for t in ("plugin.loaded", "plugin.reloaded", "plugin.unloaded")]
        for info in list(host):
            self.sync_schedules(info.name)
        for plugin in self._configured:
            if plugin not in host:
                self.sync_schedules(plugin)
        for i in range(self.workers):
            self._spawn(self._work, f"omnicore-job-worker-{i}")
        self._spawn(self._tick, "omnicore-job-scheduler")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, grace: float) -> None:
        """Stop taking jobs; wait up to ``grace`` s for running ones; the rest stay queued."""
        self._stopping.set()
        self.wake()
        for sub in self._subs:
            self._app.events.unsubscribe(sub)
        deadline = time.monotonic() + grace
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
            left = list(self._running)
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()) if left else 1.0)
        self._threads = []
        if left:
            log.warning("stopped with %d job(s) still running after %.3gs: %s; their leases "
                        "expire and they run again", len(left), grace, left)

    # -- schedules --

    def _on_plugin_event(self, event: Any) -> None:
        self.sync_schedules(event.plugin)

    def sync_schedules(self, plugin: str) -> None:
        """(Re)read ``plugin``'s schedules: manifest (if granted ``tasks``) + app config."""
        for key in [k for k in self._schedules if k[0] == plugin]:
            del self._schedules[key]
        found = list(self._configured.get(plugin, []))
        try:
            info = self._app.plugins.get(plugin)
        except PluginNotFound:
            info = None
        if info is not None and info.state == "loaded" and info.manifest.get("schedules"):
            if "tasks" not in info.granted:
                log.warning("plugin '%s' declares schedules but is not granted 'tasks'; "
                            "they do not run", plugin)
            else:
                try:
                    found += manifest_schedules(plugin, info.manifest, info.handlers)
                except ConfigError as exc:  # a host built without the manifest checks
                    log.error("plugin '%s' %s; its schedules do not run", plugin, exc)
        for sched in found:
            self._schedules[(plugin, sched.name)] = sched
        self.wake()

    def _fire_due(self, now: float) -> float:
        """Fire what is due; return when the next schedule is due."""
        store = self._app.storage.schedules
        soonest = now + self.poll_s
        for sched in list(self._schedules.values()):
            if sched.plugin not in self._app.plugins:
                continue
            due = store.next_fire(sched.plugin, sched.name)
            if due is None:
                store.advance(sched.plugin, sched.name, None, sched.next_after(now), None)
                due = store.next_fire(sched.plugin, sched.name)
            elif due <= now:
                missed = now - due > self.misfire_grace_s
                fire = None if missed and sched.catch_up == "none" else TaskSpec(
                    sched.plugin, sched.handler, sched.payload, now,
                    self.defaults.max_attempts, self.defaults.backoff_ms,
                    f"schedule:{sched.name}")
                nxt = sched.next_after(now)
                if store.advance(sched.plugin, sched.name, due, nxt, fire) and fire:
                    self.wake()
                due = nxt
            if due is not None:
                soonest = min(soonest, due)
        return soonest

    def _tick(self) -> None:
        last_renew = time.monotonic()
        while not self._stopping.is_set():
            now = time.time()
            try:
                soonest = self._fire_due(now)
                if time.monotonic() - last_renew > self.lease_s / 3:
                    self._app.storage.queue.renew(self.owner, list(self._running),
                                                  time.time() + self.lease_s)
                    last_renew = time.monotonic()
            except StorageError as exc:
                log.error("scheduler: %s", exc)
                soonest = now + self.poll_s
            wait = min(max(soonest - time.time(), 0.01), self.poll_s, self.lease_s / 3)
            self._stopping.wait(wait)

    # -- workers --

    def _work(self) -> None:
        queue = self._app.storage.queue
        while not self._stopping.is_set():
            try:
                task = queue.claim(self.owner, time.time(), self.lease_s)
            except StorageError as exc:
                log.error("job worker: %s", exc)
                task = None
            if task is None:
                with self._wake:
                    if self._stopping.is_set():
                        return
                    due = queue.next_due()
                    wait = self.poll_s if due is None else min(self.poll_s,
                                                               max(due - time.time(), 0.0))
                    if wait > 0:
                        self._wake.wait(wait)
                continue
            self._run(task)

    def _run(self, task: Task) -> None:
        with self._idle:
            self._running[task.id] = task
        events = self._app.events
        events.publish(JobStarted(job_id=task.id, plugin=task.plugin, handler=task.handler,
                                  attempt=task.attempts, hops=task.hops + 1))
        started = time.perf_counter()
        error = None
        try:
            with at_hops(task.hops):
                self._app.plugins.call(task.plugin, task.handler, task.payload)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        queue = self._app.storage.queue
        now = time.time()
        outcome = "succeeded" if error is None else \
            "dead" if task.attempts >= task.max_attempts else "failed"
        with self._idle:  # counted before the bus hears of it
            self.outcomes[(task.plugin, outcome)] += 1
        try:
            if error is None:
                queue.finish(task.id, self.owner, now)
                events.publish(JobSucceeded(job_id=task.id, plugin=task.plugin,
                                            handler=task.handler, attempt=task.attempts,
                                            duration_s=time.perf_counter() - started,
                                            hops=task.hops + 1))
            elif task.attempts >= task.max_attempts:
                queue.fail(task.id, self.owner, now, error, None)
                log.warning("job %d %s.%s is dead after %d attempt(s): %s", task.id,
                            task.plugin, task.handler, task.attempts, error)
                events.publish(JobDead(job_id=task.id, plugin=task.plugin,
                                       handler=task.handler, attempt=task.attempts,
                                       error=error, hops=task.hops + 1))
            else:
                # Full jitter: a uniform wait up to the exponential cap spreads retries out.
                cap_ms = min(self.max_backoff_ms, task.backoff_ms * 2 ** (task.attempts - 1))
                retry_at = now + random.uniform(0, cap_ms) / 1000
                queue.fail(task.id, self.owner, now, error, retry_at)
                events.publish(JobFailed(job_id=task.id, plugin=task.plugin,
                                         handler=task.handler, attempt=task.attempts,
                                         error=error, retry_at=retry_at,
                                         hops=task.hops + 1))
        except StorageError as exc:
            log.error("job %d: cannot record its outcome: %s (it runs again when its lease "
                      "expires)", task.id, exc)
        finally:
            with self._idle:
                self._running.pop(task.id, None)
                self._idle.notify_all()

    def collector(self) -> Collector:
        """Prometheus metrics of the queue (read at scrape time) and of this host's workers."""
        return _JobMetrics(self)


class _JobMetrics(Collector):
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        jobs = self.jobs
        counts: list[tuple[tuple[str, str], int]] = []
        if jobs._threads:  # a stopped app's storage is closed: a scrape must not reopen it
            try:
                counts = sorted(jobs._app.storage.queue.counts().items())
            except StorageError as exc:
                log.warning("metrics: cannot count jobs: %s", exc)
        stored = GaugeMetricFamily("omnicore_jobs", "Durable plugin jobs in the queue, by state.",
                                   labels=["plugin", "state"])
        for (plugin, state), n in counts:
            stored.add_metric([plugin, state], float(n))
        yield stored
        with jobs._idle:
            outcomes = sorted(jobs.outcomes.items())
        ended = CounterMetricFamily("omnicore_job_attempts",
                                    "Job attempts this host finished, by outcome (failed: "
                                    "retried later; dead: the last attempt failed).",
                                    labels=["plugin", "outcome"])
        for (plugin, outcome), n in outcomes:
            ended.add_metric([plugin, outcome], float(n))
        yield ended


@contextmanager
def at_hops(n: int) -> Iterator[None]:
    """Run with ``current_hops`` set to ``n`` (event deliveries count their hops)."""
    token = current_hops.set(n)
    try:
        yield
    finally:
        current_hops.reset(token)


# -- the capability ---------------------------------------------------------------------------

class _State:
    __slots__ = ("grant", "handlers", "jobs", "plugin", "tasks")

    def __init__(self, jobs: Jobs, plugin: str, grant: TaskGrant) -> None:
        self.jobs = jobs
        self.plugin = plugin
        self.grant = grant
        self.tasks = jobs._app.storage.tasks(plugin)
        self.handlers: frozenset[str] | None = None

    def known(self, handler: str) -> bool:
        if self.handlers is None:
            # A runtime (and so this state) serves one version: its handlers never change.
            self.handlers = frozenset(self.jobs._app.plugins.get(self.plugin).handlers)
        return handler in self.handlers


def _enqueue(state: _State, mem: GuestMemory, hptr: int, hlen: int, pptr: int, plen: int,
             delay_ms: int) -> int:
    mem.check(pptr, plen, "task payload")
    if hlen > 256:
        mem.check(hptr, hlen, "task handler")
        return Status.NOT_FOUND
    try:
        handler = mem.read(hptr, hlen, "task handler").decode()
    except UnicodeDecodeError:
        return Status.INVALID
    if delay_ms < 0 or delay_ms > state.grant.max_delay_ms:
        return Status.INVALID
    if plen > state.grant.max_payload_bytes:
        return Status.TOO_LARGE
    if not state.known(handler):
        return Status.NOT_FOUND
    try:
        job_id = state.tasks.enqueue(handler, mem.read(pptr, plen, "task payload"),
                                     time.time() + delay_ms / 1000,
                                     max_attempts=state.grant.max_attempts,
                                     backoff_ms=state.grant.backoff_ms,
                                     max_queued=state.grant.max_queued,
                                     hops=current_hops.get())
    except QuotaExceeded:
        return Status.QUOTA
    except StorageError:
        return Status.UNAVAILABLE
    state.jobs.queued(job_id, state.plugin, handler, "call", current_hops.get())
    return job_id


def _cancel(state: _State, _mem: GuestMemory, job_id: int) -> int:
    try:
        done = state.tasks.cancel(job_id)
    except StorageError:
        return Status.UNAVAILABLE
    return Status.NOT_FOUND if done is None else int(done)


def _check_grant(options: Mapping[str, Any]) -> None:
    TaskGrant.parse(options)


def capability(jobs_for: Callable[[PluginContext], Jobs]) -> Capability:
    """The tasks capability over the :class:`Jobs` service ``jobs_for(ctx)`` returns."""
    def bind(ctx: PluginContext) -> _State:
        jobs = jobs_for(ctx)
        return _State(jobs, ctx.plugin, TaskGrant.parse(ctx.grant, base=jobs.defaults))

    return Capability(
        name="tasks",
        description="durable background calls of the plugin's own handlers (retries, "
                    "schedules)",
        functions=(
            HostFunction("enqueue", ("ptr", "len", "ptr", "len", "i64"), ("i64",), _enqueue),
            HostFunction("cancel", ("i64",), ("i32",), _cancel),
        ),
        bind=bind,
        check_grant=_check_grant,
        check_manifest=check_manifest,
    )


def _no_app(ctx: PluginContext) -> Jobs:
    raise ConfigError(f"plugin '{ctx.plugin}' is granted tasks, which run in an app "
                      "(omnicore run, or OmniApp): this plugin host has no job workers",
                      key="grant.tasks")


#: For plugin hosts without an app: granting ``tasks`` there is a clear error.
CAPABILITY = capability(_no_app)


class _JobsHolder(Protocol):
    @property
    def jobs(self) -> Jobs: ...


def for_app(app: _JobsHolder) -> Capability:
    """The tasks capability on ``app.jobs``."""
    return capability(lambda _ctx: app.jobs)
