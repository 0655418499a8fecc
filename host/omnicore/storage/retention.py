"""The retention sweep: finished work older than ``retention.*`` deleted, so nothing grows for
ever.

What each table keeps is :class:`~omnicore.config.retention.RetentionConfig`'s; the stores
delete (each purge is one store method, held by the storage contract tests). What is swept:

======================  =================================================  ==================
``retention`` key       rows                                               by
======================  =================================================  ==================
``jobs``                succeeded and cancelled jobs                       ``finished_at``
``dead_letter``         dead jobs (every attempt failed)                   ``finished_at``
``audit``               audit entries                                      ``at``
``events``              the event log                                      ``created_at``
``workflow_runs``       ended runs, their steps and history                ``finished_at``
======================  =================================================  ==================

Work still to do is never deleted: the purges take only jobs and runs that ended (a finished
sub-workflow run whose parent still runs is kept too).

**One host of a cluster at a time.** The sweep's period is claimed the way a schedule's period
is fired (``storage.schedules.advance``: a compare-and-set of its next time, here under the
name :data:`CLAIM`): the host whose compare-and-set moves it sweeps, the others find it moved
and wait for the next period. A sweep stops starting batches at the end of the period it
claimed, so two hosts never sweep at once; what it left is the next sweep's. On SQLite one
host holds the database anyway.

**Bounded batches.** Each purge deletes at most ``retention.batch`` rows in one transaction;
the sweep repeats it until a batch comes back short, so a table of millions never holds a
long transaction or lock, and the job workers' writes go on between batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import KW_ONLY, dataclass, field

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from omnicore.config.retention import RetentionConfig
from omnicore.core.background import Background
from omnicore.core.outage import Outage
from omnicore.errors import ConfigError
from omnicore.logging import get_logger
from omnicore.storage.base import Storage, StorageError

__all__ = ["CLAIM", "PURGES", "RetentionMetrics", "Sweeper"]

log = get_logger("omnicore.retention")

#: The ``(plugin, name)`` of the sweep's period in the schedules table. No plugin has this
#: name (a plugin's name has no ``:``), so no plugin's schedule meets it.
CLAIM = ("omnicore:host", "retention")

#: How each table is purged: ``(storage, before, limit) -> rows deleted``, by its key.
PURGES: dict[str, Callable[[Storage, float, int], int]] = {
    "jobs": lambda s, before, n: s.queue.purge_finished(before, limit=n),
    "dead_letter": lambda s, before, n: s.queue.purge_finished(before, states=("dead",),
                                                               limit=n),
    "audit": lambda s, before, n: s.audit.purge(before, limit=n),
    "events": lambda s, before, n: s.events.purge(before, limit=n),
    "workflow_runs": lambda s, before, n: s.workflows.purge_runs(before, limit=n),
}


@dataclass(eq=False)
class Sweeper:
    """Sweeps ``storage`` by ``settings`` every ``settings.sweep_every`` once :meth:`start`
    ran, on one host of those sharing it at a time, until :meth:`stop`.

    ``clock`` is the wall clock the ages are measured by (a test moves it); ``between`` is
    called after each batch with the key swept and the rows it deleted (a test's gate)."""

    storage: Callable[[], Storage]
    settings: RetentionConfig
    _: KW_ONLY
    clock: Callable[[], float] = time.time
    between: Callable[[str, int], None] = lambda key, deleted: None
    #: Rows deleted by this host's sweeps, by key (``omnicore_retention_deleted_total``).
    deleted: dict[str, int] = field(default_factory=dict, init=False)
    _sweeping: Background = field(default_factory=lambda: Background("omnicore-retention"),
                                  init=False, repr=False)
    _outage: Outage = field(init=False, repr=False, default_factory=lambda: Outage(
        "retention sweep", log, transient=(StorageError,)))

    def start(self) -> None:
        """Sweep in a thread: at once if no host swept this period, then every period."""
        if not any(v is not None for v in self.settings.keep().values()):
            log.info("retention: every table is kept for ever (retention.*): no sweep")
            return
        self._sweeping.start(self._run)

    def stop(self) -> None:
        """Stop sweeping (a sweep under way stops after its batch)."""
        self._sweeping.stop(10)

    def _run(self) -> None:
        # Check often enough that a period a dead host claimed is swept soon after it ends.
        check_s = min(self.settings.sweep_every, 60.0)
        stopping = self._sweeping.stopping
        while not stopping.is_set():
            self._outage.call(self.tick, None)
            if stopping.wait(self._outage.pause(check_s)):
                return

    def tick(self) -> dict[str, int] | None:
        """Sweep if this period is due and this host claims it: the rows deleted by key;
        None when it was not due or another host claimed it."""
        now = self.clock()
        until = self._claim(now)
        return None if until is None else self.sweep(now, until)

    def _claim(self, now: float) -> float | None:
        """Claim the period that is due at ``now``: when it ends, or None."""
        schedules = self.storage().schedules
        due = schedules.next_fire(*CLAIM)
        if due is not None and due > now:
            return None
        until = now + self.settings.sweep_every
        return until if schedules.advance(*CLAIM, due, until, None) else None

    def sweep(self, now: float, until: float = float("inf")) -> dict[str, int]:
        """Delete what is older than its retention at ``now``, in batches, starting none
        after ``until`` (by :attr:`clock`); the rows deleted by key (logged)."""
        storage = self.storage()
        batch = self.settings.batch
        swept: dict[str, int] = {}
        started = time.monotonic()
        for key, keep in self.settings.keep().items():
            if keep is None:
                continue
            purge = PURGES[key]
            total = 0
            while not self._sweeping.stopping.is_set() and self.clock() < until:
                try:
                    n = purge(storage, now - keep, batch)
                except ConfigError:
                    break  # a backend that does not serve this store has no rows of it
                total += n
                self.between(key, n)
                if n < batch:
                    break
            if total:
                swept[key] = total
                self.deleted[key] = self.deleted.get(key, 0) + total
        if swept:
            log.info("retention: deleted %s in %.1fs", ", ".join(
                f"{n} {_NOUNS[k][n == 1]}" for k, n in swept.items()),
                time.monotonic() - started)
        else:
            log.debug("retention: nothing older than its retention")
        return swept


#: Each table's rows in the sweep's log line: (plural, singular).
_NOUNS = {"jobs": ("finished jobs", "finished job"), "dead_letter": ("dead jobs", "dead job"),
          "audit": ("audit entries", "audit entry"), "events": ("events", "event"),
          "workflow_runs": ("workflow runs", "workflow run")}


class RetentionMetrics(Collector):
    """``omnicore_retention_deleted_total{table}``: rows this host's sweeps deleted."""

    def __init__(self, sweeper: Callable[[], Sweeper | None]) -> None:
        self.sweeper = sweeper

    def collect(self) -> Iterator[Metric]:
        found = self.sweeper()
        deleted = CounterMetricFamily(
            "omnicore_retention_deleted",
            "Rows this host's retention sweeps deleted, by retention key (retention.*).",
            labels=["table"])
        for key in PURGES:
            deleted.add_metric([key], float(0 if found is None else found.deleted.get(key, 0)))
        yield deleted
