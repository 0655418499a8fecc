"""``app.jobs``: the durable job service.

A job is ``handler(payload)`` of one plugin, stored as a row of the app's storage, so it
survives a restart or a ``kill -9``. :meth:`Jobs.enqueue` is the one door in: it inserts
the row, tells the bus (``job.queued``) and wakes the workers. The workers
(:class:`~omnicore.core.workers.LeasedWorkers`) lease due jobs, and a
:class:`~omnicore.jobs.worker.JobRunner` calls the plugin and records the outcome: at least
once, ``attempts`` counting deliveries, retried by the job's
:class:`~omnicore.jobs.retry.RetryPolicy`, then ``dead``. The workers' ticker also fires the
schedules (:mod:`omnicore.jobs.schedules`).

The service runs whether or not any plugin holds the ``tasks`` grant: operators, schedules
and durable event subscriptions enqueue too. ``omnicore:tasks`` is the plugins' door onto it.
"""

from __future__ import annotations

import builtins
import hashlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from omnicore import telemetry
from omnicore.config.schema import JobsConfig
from omnicore.core.events import EventBus, Subscription
from omnicore.core.workers import LeasedWorkers
from omnicore.errors import HandlerNotFound, PluginNotFound, Refused
from omnicore.jobs.events import JobQueued
from omnicore.jobs.plugins import JobPlugins
from omnicore.jobs.retry import RetryPolicy
from omnicore.jobs.schedules import Schedule, Scheduler, configured_schedules
from omnicore.jobs.worker import JobRunner
from omnicore.logging import get_logger
from omnicore.storage import Job, JobSpec, Storage, StorageError
from omnicore.storage.base import JobState
from omnicore.storage.catalog_rows import version_digest

__all__ = ["IDEMPOTENCY_KEEP_S", "Jobs", "KeyReused", "check_digest"]

#: How long an idempotency key of :meth:`Jobs.enqueue_once` names its job.
IDEMPOTENCY_KEEP_S = 24 * 3600.0

#: Plugin states without a module, so without the list of handlers it exports.
_UNKNOWN_HANDLERS = frozenset({"failed", "compiling"})
#: The handler that runs a command plugin as a command (``plugins.commands.EXEC``; the plugin
#: host answers for it), and the export that makes a plugin one.
_EXEC, _START = "@exec", "_start"

log = get_logger("omnicore.jobs")


def check_digest(store: Storage, plugin: str, digest: str, also: Sequence[str] = ()) -> str:
    """``digest`` as a job asks for a version of ``plugin`` (``sha256:<64 hex>``, any case,
    the prefix optional) in the catalog's form, checked: a version the plugin catalog keeps of
    the plugin, one a host sharing ``store`` reports serving it, or one of ``also`` (this
    host's own). PluginNotFound names a digest no host could ever claim the job for;
    ValueError a malformed one."""
    full = version_digest(digest)
    known = {v.digest for v in store.catalog.versions(plugin)} | set(also)
    known |= {str(report.get("digest")) for i in store.instances.all()
              if isinstance(report := i.plugins.get(plugin), dict)}
    if full not in known:
        raise PluginNotFound(f"cannot queue a job for plugin '{plugin}' version {full}: no "
                             "version of it the catalog keeps and no host serves has that "
                             "digest, so no host would ever claim it (see omnicore plugins "
                             f"versions {plugin})", plugin=plugin)
    return full


class KeyReused(Refused):
    """An idempotency key came again with another job than the one it made."""


class Jobs:
    """Durable plugin jobs: enqueue, inspect, retry, cancel; the workers and the schedules.

    ``options`` is ``capabilities.jobs``; ``storage`` and ``plugins`` give the app's storage
    and plugin host when asked (both are made after the service); ``owner`` names this host
    on the leases (the app's runtime id). A bad ``capabilities.jobs.schedules`` entry is a
    ConfigError here, when the app is built.
    """

    def __init__(self, options: JobsConfig, *, storage: Callable[[], Storage],
                 plugins: Callable[[], JobPlugins], events: EventBus, owner: str) -> None:
        self.options = options
        self.owner = owner
        self._storage = storage
        self._plugins = plugins
        self._events = events
        #: Retries of jobs enqueued without their own attempts/backoff (operator, schedules).
        self.policy = RetryPolicy(options.max_attempts, options.backoff_ms,
                                  options.max_backoff_ms)
        self._workers: LeasedWorkers[Job, int] = LeasedWorkers(
            "job", _Queue(storage, self._serving), self._run, lambda job: job.id, owner=owner,
            workers=options.workers, lease_s=options.lease_s, poll_s=options.poll_s,
            tick=self._tick, transient=(StorageError,))
        self.runner = JobRunner(storage, plugins, events, owner, options.max_backoff_ms,
                                self._workers.interrupted, self._workers.persist)
        self.scheduler = Scheduler(storage, plugins, configured_schedules(options.schedules),
                                   self.policy, options.misfire_grace_s, options.poll_s,
                                   self.wake)
        self._subs: list[Subscription] = []

    # -- the door in --

    def enqueue(self, plugin: str, handler: str, payload: bytes = b"", *, delay_s: float = 0.0,
                max_attempts: int | None = None, backoff_ms: int | None = None,
                max_queued: int | None = None, source: str = "operator",
                hops: int = 0, digest: str | None = None) -> int:
        """Queue ``handler(payload)`` of ``plugin``; the job id.

        ``max_queued`` bounds the plugin's pending jobs (a plugin's own enqueue: QuotaExceeded
        past it); operators, schedules and events enqueue without it. A handler the loaded
        plugin does not export is refused here (HandlerNotFound, naming the handlers it has);
        a job for a plugin not loaded (yet) is accepted. ``digest`` (``sha256:<hex>``) asks
        for that version of the plugin: only a host serving that module claims the job. It
        must be a version the plugin catalog keeps of the plugin, or one a host reports
        serving (:meth:`check_digest`).
        """
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        if digest is not None:
            digest = self.check_digest(plugin, digest)
        self._check_handler(plugin, handler, digest)
        run_at = time.time() + delay_s
        attempts = max_attempts or self.policy.max_attempts
        backoff = backoff_ms or self.policy.backoff_ms
        store = self._storage()
        if max_queued is None:
            job_id = store.queue.add(JobSpec(plugin, handler, bytes(payload), run_at,
                                             attempts, backoff, source, hops, digest,
                                             telemetry.traceparent()))
        else:
            job_id = store.jobs(plugin).enqueue(handler, payload, run_at,
                                                max_attempts=attempts, backoff_ms=backoff,
                                                max_queued=max_queued, source=source,
                                                hops=hops, digest=digest,
                                                trace=telemetry.traceparent())
        self._events.publish(JobQueued(job_id=job_id, plugin=plugin, handler=handler,
                                       source=source, hops=hops + 1))
        self.wake()
        return job_id

    def enqueue_many(self, jobs: Sequence[tuple[str, str, bytes, float]], *,
                     source: str = "operator") -> builtins.list[int]:
        """Queue several ``(plugin, handler, payload, delay_s)`` in one transaction (all or
        none: a handler a loaded plugin lacks refuses the whole batch); their ids."""
        now = time.time()
        for plugin, handler, _payload, delay_s in jobs:
            if delay_s < 0:
                raise ValueError("delay_s must be >= 0")
            self._check_handler(plugin, handler)
        p, trace = self.policy, telemetry.traceparent()
        ids = self._storage().queue.add_many([
            JobSpec(plugin, handler, bytes(payload), now + delay_s, p.max_attempts,
                    p.backoff_ms, source, trace=trace)
            for plugin, handler, payload, delay_s in jobs])
        for job_id, (plugin, handler, _payload, _delay) in zip(ids, jobs, strict=True):
            self._events.publish(JobQueued(job_id=job_id, plugin=plugin, handler=handler,
                                           source=source, hops=1))
        if ids:
            self.wake()
        return ids

    def enqueue_once(self, plugin: str, handler: str, payload: bytes, key: str, *,
                     delay_s: float = 0.0, source: str = "operator",
                     version: str | None = None, hops: int = 0,
                     max_attempts: int | None = None) -> tuple[int, bool]:
        """:meth:`enqueue` under the idempotency ``key``: the same key within a day gives
        the job it made (and False: nothing was queued now), on any host of the database.
        ``max_attempts`` (the app's policy when None) is the new job's own.
        The same key with another plugin, handler, payload or ``version`` (the digest the
        job asks for, as :meth:`enqueue`'s ``digest``) is refused (KeyReused)."""
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        if version is not None:
            version = self.check_digest(plugin, version)
        self._check_handler(plugin, handler, version)
        now = time.time()
        spec, digest = self.keyed(plugin, handler, payload, source=source, hops=hops,
                                  run_at=now + delay_s, version=version,
                                  max_attempts=max_attempts)
        job_id, first, made = self._storage().queue.add_keyed(spec, key, digest, now,
                                                              IDEMPOTENCY_KEEP_S)
        if first != digest:
            raise KeyReused(f"idempotency key {key[:80]!r} was used for job {job_id} with "
                            "another plugin, handler or payload; use a new key")
        if made:
            self.queued([(job_id, spec)])
        return job_id, made

    def keyed(self, plugin: str, handler: str, payload: bytes, *, source: str, hops: int,
              run_at: float | None = None, version: str | None = None,
              max_attempts: int | None = None) -> tuple[JobSpec, str]:
        """The job :meth:`enqueue_once` would queue, and the digest its key is held to (the
        plugin, handler, payload and version): for a store queuing it in a transaction of
        its own (an event's durable deliveries, :meth:`EventLog.append_with_jobs`); then
        :meth:`queued`. Nothing is checked."""
        parts: tuple[bytes, ...] = (plugin.encode(), handler.encode(), bytes(payload))
        if version is not None:
            parts = (*parts, version.encode())
        digest = hashlib.sha256(b"\0".join(parts)).hexdigest()
        spec = JobSpec(plugin, handler, bytes(payload),
                       time.time() if run_at is None else run_at,
                       max_attempts or self.policy.max_attempts, self.policy.backoff_ms, source,
                       hops, version, telemetry.traceparent())
        return spec, digest

    def queued(self, jobs: Sequence[tuple[int, JobSpec]]) -> None:
        """Say that ``jobs`` (id, spec) were queued (``job.queued``) and wake the workers."""
        for job_id, spec in jobs:
            self._events.publish(JobQueued(job_id=job_id, plugin=spec.plugin,
                                           handler=spec.handler, source=spec.source,
                                           hops=spec.hops + 1))
        if jobs:
            self.wake()

    def check_digest(self, plugin: str, digest: str) -> str:
        """``digest`` as a job asks for a version of ``plugin``, checked (:func:`check_digest`,
        this host's own plugin counted too, whether it serves yet or waits for a grant)."""
        local: tuple[str, ...] = ()
        try:
            local = (f"sha256:{getattr(self._plugins().get(plugin), 'sha256', '')}",)
        except (AttributeError, PluginNotFound):
            pass  # no plugin host, or not loaded here
        return check_digest(self._storage(), plugin, digest, local)

    def _check_handler(self, plugin: str, handler: str, digest: str | None = None) -> None:
        # Such a job could only fail max_attempts times and end dead. What a plugin exports
        # is known once its module is: a plugin not loaded yet, still compiling or whose file
        # failed has no list to hold the job against, and its job waits as it always did.
        try:
            plugins = self._plugins()
        except AttributeError:  # an app without the plugin host: nothing is loaded
            return
        try:
            view = plugins.get(plugin)
        except PluginNotFound:
            return
        if digest is not None and f"sha256:{getattr(view, 'sha256', '')}" != digest:
            return  # another version serves here: the one asked for may export it
        if view.state in _UNKNOWN_HANDLERS or handler in view.handlers:
            return
        if handler == _EXEC and _START in view.handlers:  # a WASI command, run as a command
            return
        raise HandlerNotFound(
            f"cannot queue a job for plugin '{plugin}': it has no handler '{handler}'; its "
            f"handlers: {', '.join(view.handlers) or '(none)'}", plugin=plugin, handler=handler)

    def wake(self) -> None:
        """End the idle workers' wait: a job was added or came due."""
        self._workers.wake()

    # -- operators --

    def get(self, job_id: int) -> Job | None:
        """The job ``job_id`` as stored, or None."""
        return self._storage().queue.get(job_id)

    def list(self, *, plugin: str | None = None, state: str | None = None,
             limit: int = 100) -> builtins.list[Job]:
        """Newest first; ``state`` is queued, running, succeeded, dead or cancelled."""
        return self._storage().queue.list(plugin=plugin, states=(state,) if state else (),
                                          limit=limit)

    def retry(self, job_id: int) -> bool:
        """Queue a dead or cancelled job again with fresh attempts."""
        done = self._storage().queue.retry(job_id, time.time())
        if done:
            self.wake()
        return done

    def cancel(self, job_id: int, *, plugin: str | None = None) -> bool | None:
        """True cancelled, False running or finished, None unknown (or, with ``plugin``,
        another plugin's job)."""
        return self._storage().queue.cancel(job_id, time.time(), plugin=plugin)

    def schedules(self) -> builtins.list[Schedule]:
        """The schedules in force, by plugin and name."""
        return self.scheduler.all()

    def counts(self) -> dict[tuple[str, JobState], int]:
        """How many jobs each ``(plugin, state)`` holds in the queue."""
        return self._storage().queue.counts()

    def running(self) -> builtins.list[Job]:
        """The jobs this host runs now."""
        return self._workers.running()

    @property
    def started(self) -> bool:
        """Whether the workers run."""
        return self._workers.started

    # -- lifecycle --

    def start(self) -> None:
        """Start the workers and the schedules of the plugins already loaded."""
        if self._workers.started:
            return
        try:
            plugins = self._plugins()
        except AttributeError:
            return  # an app without a plugin host has nothing to call
        self._subs = [self._events.subscribe(t, self._on_plugin_event)
                      for t in ("plugin.loaded", "plugin.reloaded", "plugin.unloaded")]
        for info in builtins.list(plugins):
            self.scheduler.sync(info.name)
        for plugin in self.scheduler.configured:
            if plugin not in plugins:
                self.scheduler.sync(plugin)
        self._workers.start()

    def stop(self, grace: float) -> None:
        """Stop taking jobs; wait up to ``grace`` s for running ones; then interrupt every
        plugin call still running and give their jobs back to the queue (the attempt not
        counted): they run again at the next start, here or on another host."""
        for sub in self._subs:
            self._events.unsubscribe(sub)
        self._subs = []
        if not self._workers.started:
            return
        left = self._workers.stop(grace, interrupt=self._interrupt_plugins)
        if left:
            log.warning("stopped with %d job(s) still running after %.3gs: %s; interrupted "
                        "and queued again", len(left), grace, left)

    def interrupt(self) -> None:
        """End every plugin call running now, the jobs' and everyone else's (the engines'
        epoch is shared); the jobs among them are queued again when :meth:`stop` ends. For
        the end of a stop's grace."""
        self._workers.interrupt(self._interrupt_plugins)

    @contextmanager
    def interrupt_after(self, grace: float) -> Iterator[None]:
        """:meth:`interrupt` if the block is still running after ``grace`` s (an app's stop:
        a job, an event delivery, a workflow step or a console invoke may be running)."""
        timer = threading.Timer(grace, self.interrupt)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _interrupt_plugins(self) -> None:
        try:
            plugins = self._plugins()
        except AttributeError:
            return  # no plugin host: no call can be running
        plugins.interrupt()

    def _on_plugin_event(self, event: object) -> None:
        self.scheduler.sync(str(getattr(event, "plugin", "")))
        if getattr(event, "topic", "") != "plugin.unloaded":
            # A plugin this host now serves: its jobs, left to hosts that had it, are ours too.
            self.wake()

    def _serving(self) -> Sequence[str] | Mapping[str, str | None] | None:
        """The plugins this host claims jobs of, each with the digest serving it (None: an
        app without a plugin host, which claims every job and fails it, as it always did)."""
        try:
            plugins = self._plugins()
        except AttributeError:
            return None
        by_digest = getattr(plugins, "serving_digests", None)
        return by_digest() if by_digest is not None else plugins.serving()

    def _tick(self, now: float) -> float:
        return self.scheduler.fire_due(now)

    def _run(self, job: Job) -> None:
        self.runner.run(job)


class _Queue:
    """The storage's job queue, found when first used (the storage opens on first use),
    claimed for the plugins this host serves (``serving``: asked at every claim, so a plugin
    loaded or unloaded a moment ago counts)."""

    def __init__(self, storage: Callable[[], Storage],
                 serving: Callable[[], Sequence[str] | Mapping[str, str | None] | None]
                 ) -> None:
        self._storage = storage
        self._serving = serving

    def claim(self, owner: str, now: float, lease_s: float) -> Job | None:
        return self._storage().queue.claim(owner, now, lease_s, self._serving())

    def next_due(self) -> float | None:
        return self._storage().queue.next_due(self._serving())

    def renew(self, owner: str, keys: Sequence[int], lease_until: float) -> None:
        self._storage().queue.renew(owner, keys, lease_until)

    def release(self, owner: str, keys: Sequence[int]) -> None:
        self._storage().queue.release(owner, keys)
