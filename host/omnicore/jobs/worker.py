"""One job's delivery: call the plugin's handler, then record how it ended (a success with
the handler's output, the job's ``result``).

``claim -> call -> finish | fail``: the lease and the claim are the leased workers' part
(:mod:`omnicore.core.workers`); this is what runs in between. A failure is retried by the
job's :class:`~omnicore.jobs.retry.RetryPolicy` until its last attempt, then the job is
``dead`` with the error kept. A call that failed because a stop interrupted it records
nothing: the stop gives the job back to the queue without counting the attempt. An outcome
that cannot be written (the database is away) is written when it returns: the job stays held
by this host meanwhile, its lease renewed, and is not delivered again.

A job whose ``source`` (up to its first ``:``) has an output sink (:meth:`JobRunner.keep_output`)
hands its output, or the error that ended it, to the sink before it is finished, and is not
retried: the error is the answer its creator asked for (an MCP task's tool call). A sink that
cannot write (the database is away) is retried like the outcome. Its ``around`` (if any) is the
context the call runs in: an MCP task's job answers its plugin's questions to the client there.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from omnicore import telemetry
from omnicore.core.events import EventBus
from omnicore.jobs.events import JobDead, JobFailed, JobStarted, JobSucceeded, at_hops
from omnicore.jobs.plugins import JobPlugins
from omnicore.jobs.retry import RetryPolicy
from omnicore.logging import get_logger
from omnicore.storage import Job, Storage, StorageError

__all__ = ["Around", "JobRunner", "OutputSink"]

#: Where a job's outcome goes: ``sink(job, output, error)``, exactly one of them None.
OutputSink = Callable[[Job, bytes | None, str | None], object]
#: The context a sink's job is called in: ``around(job)``, entered on the calling thread.
Around = Callable[[Job], AbstractContextManager[object]]

log = get_logger("omnicore.jobs")


@dataclass(eq=False)
class JobRunner:
    """Runs one claimed job at a time per calling thread; counts the outcomes.

    ``persist(write)`` writes an outcome through an outage of the storage (the workers'
    :meth:`~omnicore.core.workers.LeasedWorkers.persist`)."""

    storage: Callable[[], Storage]
    plugins: Callable[[], JobPlugins]
    events: EventBus
    owner: str
    max_backoff_ms: int
    interrupted: threading.Event
    persist: Callable[[Callable[[], object]], object]
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    #: Attempts that ended, by (plugin, outcome: succeeded | failed | dead), since start.
    outcomes: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter,
                                                           init=False)
    _sinks: dict[str, OutputSink] = field(default_factory=dict, init=False, repr=False)
    _arounds: dict[str, Around] = field(default_factory=dict, init=False, repr=False)

    def keep_output(self, source: str, sink: OutputSink, around: Around | None = None) -> None:
        """Hand the outcome of every job whose source is ``source`` (or starts with
        ``source:``) to ``sink``; such a job is never retried. ``around(job)``: the context
        its call runs in (exited before the sink hears of the outcome)."""
        self._sinks[source] = sink
        if around is not None:
            self._arounds[source] = around

    def policy(self, job: Job) -> RetryPolicy:
        """The retry policy of ``job``: its own attempts and backoff, the service's cap."""
        return RetryPolicy(job.max_attempts, job.backoff_ms, self.max_backoff_ms)

    def counts(self) -> list[tuple[tuple[str, str], int]]:
        """The outcome counters, sorted."""
        with self._lock:
            return sorted(self.outcomes.items())

    def _serves(self, job: Job) -> bool:
        by_digest = getattr(self.plugins(), "serving_digests", None)
        return by_digest is None or by_digest().get(job.plugin) == job.digest

    def run(self, job: Job) -> None:
        """Deliver ``job`` (claimed by this host) and record how it ended. A job asking for a
        plugin version this host no longer serves (it swapped versions since the claim) is
        given back uncounted, for a host that serves it."""
        if job.digest is not None and not self._serves(job):
            log.info("job %d %s.%s asks for %s, which this host no longer serves; it is "
                     "queued again for a host that does", job.id, job.plugin, job.handler,
                     job.digest[:19])
            self.storage().queue.release(self.owner, [job.id])
            return
        events = self.events
        hops = job.hops + 1
        events.publish(JobStarted(job_id=job.id, plugin=job.plugin, handler=job.handler,
                                  attempt=job.attempts, hops=hops))
        started = time.perf_counter()
        error = None
        output: bytes | None = b""
        sink = self._sinks.get(job.source.partition(":")[0])
        around = self._arounds.get(job.source.partition(":")[0])
        # A consumer span in the trace of the span that queued it, on whichever host.
        traced = telemetry.span(f"job {job.plugin}/{job.handler}", {
            "omnicore.job.id": job.id, "omnicore.job.attempt": job.attempts,
            "omnicore.job.source": job.source.partition(":")[0],
            "omnicore.plugin.name": job.plugin, "omnicore.plugin.handler": job.handler},
            kind="consumer", parent=job.trace) if telemetry.ON else contextlib.nullcontext()
        try:
            with at_hops(job.hops), around(job) if around else contextlib.nullcontext(), traced:
                output = self.plugins().call(job.plugin, job.handler, job.payload)
        except Exception as exc:
            if self.interrupted.is_set():
                log.info("job %d %s.%s was interrupted by the stop; it is queued again",
                         job.id, job.plugin, job.handler)
                return
            error = f"{type(exc).__name__}: {exc}"
            if sink is not None:  # its creator reads it: the message alone, on one line
                error = str(exc).strip().partition("\n")[0]
        now = time.time()
        retry_at = None if error is None or sink is not None else \
            self.policy(job).retry_at(job.attempts, now)
        outcome = "succeeded" if error is None else "failed" if retry_at is not None else "dead"
        with self._lock:  # counted before the bus hears of it
            self.outcomes[(job.plugin, outcome)] += 1
        queue = self.storage().queue
        try:
            if sink is not None:
                self.persist(lambda: sink(job, output if error is None else None, error))
            if error is None:
                self.persist(lambda: queue.finish(job.id, self.owner, now, output))
                events.publish(JobSucceeded(job_id=job.id, plugin=job.plugin,
                                            handler=job.handler, attempt=job.attempts,
                                            duration_s=time.perf_counter() - started,
                                            hops=hops))
            elif retry_at is None:
                self.persist(lambda: queue.fail(job.id, self.owner, now, error, None))
                log.warning("job %d %s.%s is dead after %d attempt(s): %s", job.id,
                            job.plugin, job.handler, job.attempts, error)
                events.publish(JobDead(job_id=job.id, plugin=job.plugin,
                                       handler=job.handler, attempt=job.attempts,
                                       error=error, hops=hops))
            else:
                self.persist(lambda: queue.fail(job.id, self.owner, now, error, retry_at))
                events.publish(JobFailed(job_id=job.id, plugin=job.plugin,
                                         handler=job.handler, attempt=job.attempts,
                                         error=error, retry_at=retry_at, hops=hops))
        except StorageError as exc:
            # Only when the host stops during an outage: nobody is left to write it.
            log.warning("job %d: cannot record its outcome before the stop: %s (it runs "
                        "again when its lease expires)", job.id, exc)
