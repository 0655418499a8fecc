"""One job's delivery: call the plugin's handler, then record how it ended (a success with
the handler's output, the job's ``result``).

``claim -> call -> finish | fail``: the lease and the claim are the leased workers' part
(:mod:`omnicore.core.workers`); this is what runs in between. A failure is retried by the
job's :class:`~omnicore.jobs.retry.RetryPolicy` until its last attempt, then the job is
``dead`` with the error kept. A call that failed because a stop interrupted it records
nothing: the stop gives the job back to the queue without counting the attempt. An outcome
that cannot be written (the database is away) is written when it returns: the job stays held
by this host meanwhile, its lease renewed, and is not delivered again.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable

from omnicore.core.events import EventBus
from omnicore.jobs.events import JobDead, JobFailed, JobStarted, JobSucceeded, at_hops
from omnicore.jobs.plugins import JobPlugins
from omnicore.jobs.retry import RetryPolicy
from omnicore.logging import get_logger
from omnicore.storage import Job, Storage, StorageError

__all__ = ["JobRunner"]

log = get_logger("omnicore.jobs")


class JobRunner:
    """Runs one claimed job at a time per calling thread; counts the outcomes.

    ``persist(write)`` writes an outcome through an outage of the storage (the workers'
    :meth:`~omnicore.core.workers.LeasedWorkers.persist`)."""

    def __init__(self, storage: Callable[[], Storage], plugins: Callable[[], JobPlugins],
                 events: EventBus, owner: str, max_backoff_ms: int,
                 interrupted: threading.Event,
                 persist: Callable[[Callable[[], object]], object]) -> None:
        self._storage = storage
        self._plugins = plugins
        self._events = events
        self._owner = owner
        self._max_backoff_ms = max_backoff_ms
        self._interrupted = interrupted
        self._persist = persist
        self._lock = threading.Lock()
        #: Attempts that ended, by (plugin, outcome: succeeded | failed | dead), since start.
        self.outcomes: collections.Counter[tuple[str, str]] = collections.Counter()

    def policy(self, job: Job) -> RetryPolicy:
        """The retry policy of ``job``: its own attempts and backoff, the service's cap."""
        return RetryPolicy(job.max_attempts, job.backoff_ms, self._max_backoff_ms)

    def counts(self) -> list[tuple[tuple[str, str], int]]:
        """The outcome counters, sorted."""
        with self._lock:
            return sorted(self.outcomes.items())

    def run(self, job: Job) -> None:
        """Deliver ``job`` (claimed by this host) and record how it ended."""
        events = self._events
        hops = job.hops + 1
        events.publish(JobStarted(job_id=job.id, plugin=job.plugin, handler=job.handler,
                                  attempt=job.attempts, hops=hops))
        started = time.perf_counter()
        error = None
        output = b""
        try:
            with at_hops(job.hops):
                output = self._plugins().call(job.plugin, job.handler, job.payload)
        except Exception as exc:
            if self._interrupted.is_set():
                log.info("job %d %s.%s was interrupted by the stop; it is queued again",
                         job.id, job.plugin, job.handler)
                return
            error = f"{type(exc).__name__}: {exc}"
        now = time.time()
        retry_at = None if error is None else self.policy(job).retry_at(job.attempts, now)
        outcome = "succeeded" if error is None else "failed" if retry_at is not None else "dead"
        with self._lock:  # counted before the bus hears of it
            self.outcomes[(job.plugin, outcome)] += 1
        queue = self._storage().queue
        try:
            if error is None:
                self._persist(lambda: queue.finish(job.id, self._owner, now, output))
                events.publish(JobSucceeded(job_id=job.id, plugin=job.plugin,
                                            handler=job.handler, attempt=job.attempts,
                                            duration_s=time.perf_counter() - started,
                                            hops=hops))
            elif retry_at is None:
                self._persist(lambda: queue.fail(job.id, self._owner, now, error, None))
                log.warning("job %d %s.%s is dead after %d attempt(s): %s", job.id,
                            job.plugin, job.handler, job.attempts, error)
                events.publish(JobDead(job_id=job.id, plugin=job.plugin,
                                       handler=job.handler, attempt=job.attempts,
                                       error=error, hops=hops))
            else:
                self._persist(lambda: queue.fail(job.id, self._owner, now, error, retry_at))
                events.publish(JobFailed(job_id=job.id, plugin=job.plugin,
                                         handler=job.handler, attempt=job.attempts,
                                         error=error, retry_at=retry_at, hops=hops))
        except StorageError as exc:
            # Only when the host stops during an outage: nobody is left to write it.
            log.warning("job %d: cannot record its outcome before the stop: %s (it runs "
                        "again when its lease expires)", job.id, exc)
