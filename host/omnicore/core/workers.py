"""Leased workers: threads that claim due items from a durable queue, run them, and keep
their leases alive while they run.

The queue is anything with the four methods of :class:`LeasedQueue` (the durable job queue,
the workflow step queue). A claim leases an item to this host for ``lease_s``; a ticker
thread renews the leases of the items still running every ``lease_s / 3``, so only a dead
host's items come due again (at least once). :meth:`LeasedWorkers.wake` ends an idle
worker's wait at once, so whoever adds work wakes the workers instead of waiting a poll.

An outage of the queue's storage stops no thread (:mod:`omnicore.core.outage`): claims,
renewals and ticks fail quietly after one log line and back off; a run that cannot record
how its item ended keeps it (and its lease, renewed) and records it through
:meth:`LeasedWorkers.persist` once the storage answers; a run that failed on a
``transient`` error before its end gives the item back then. When the storage returns, the
leases still held are renewed at once and the idle workers woken, so nothing this host holds
waits for its lease to expire.

Stopping is bounded: :meth:`LeasedWorkers.stop` stops claiming, waits the grace for running
items, then :meth:`LeasedWorkers.interrupt` ends the calls still running (so may the app, for
every call at once), waits a moment for their workers to come back, and gives their leases
back without counting an attempt. A ``run`` whose call fails once
:attr:`LeasedWorkers.interrupted` is set must record nothing: its worker releases the item.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Generic, Protocol, TypeVar

from omnicore.core.outage import Outage
from omnicore.errors import OmniError
from omnicore.logging import get_logger

__all__ = ["INTERRUPT_SETTLE_S", "LeasedQueue", "LeasedWorkers"]

log = get_logger("omnicore.workers")

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
T_co = TypeVar("T_co", covariant=True)
K_contra = TypeVar("K_contra", contravariant=True)

#: How long :meth:`LeasedWorkers.stop` waits for interrupted items to come back: an
#: interrupted wasm call ends within one epoch tick, so this is ample and keeps a stop
#: within its grace plus one second.
INTERRUPT_SETTLE_S = 0.5


class LeasedQueue(Protocol[T_co, K_contra]):
    """A durable queue whose items are leased to one owner at a time."""

    def claim(self, owner: str, now: float, lease_s: float) -> T_co | None:
        """Lease the oldest due item to ``owner`` until ``now + lease_s`` (None: none due)."""

    def next_due(self) -> float | None:
        """When the earliest queued item is due (epoch seconds), or None."""

    def renew(self, owner: str, keys: Sequence[K_contra], lease_until: float) -> None:
        """Extend the leases ``owner`` still holds."""

    def release(self, owner: str, keys: Sequence[K_contra]) -> None:
        """Give leases back without counting an attempt."""


@dataclass(eq=False)
class LeasedWorkers(Generic[T, K]):
    """``workers`` threads running ``run(item)`` for items claimed from ``queue``.

    ``key(item)`` names an item to the queue's ``renew``/``release``. ``tick(now)``, if
    given, runs on the ticker thread every ``poll_s`` at most (schedules, timeouts) and
    returns when it next wants to run (None: a poll from now). ``run`` should not raise; if it
    raises one of ``transient`` (the queue's storage failing) the item is given back as soon
    as the storage answers; anything else is logged and the lease left to expire, so the item
    runs again.
    """

    name: str
    queue: LeasedQueue[T, K]
    run: Callable[[T], None]
    key: Callable[[T], K]
    _: KW_ONLY
    owner: str
    workers: int
    lease_s: float
    poll_s: float
    tick: Callable[[float], float | None] | None = None
    transient: tuple[type[Exception], ...] = (OmniError,)
    _wake: threading.Condition = field(default_factory=threading.Condition, init=False,
                                       repr=False)
    #: Counts wake-ups: a worker that saw the count before its claim found nothing
    #: does not sleep if it moved since, so a wake during the claim is never lost and
    #: nobody holds the condition while it asks the database when work is due.
    _wakes: int = field(default=0, init=False, repr=False)
    _idle: threading.Condition = field(default_factory=threading.Condition, init=False,
                                       repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    #: Set when a stop's grace ended with items still running and ``interrupt`` was
    #: called: a failed call then means "interrupted", and records nothing.
    interrupted: threading.Event = field(default_factory=threading.Event, init=False)
    _running: dict[K, T] = field(default_factory=dict, init=False, repr=False)
    _threads: list[threading.Thread] = field(default_factory=list, init=False, repr=False)
    _last_renew: float = field(default_factory=time.monotonic, init=False, repr=False)

    def __post_init__(self) -> None:
        #: The queue's storage as the workers see it: claims, renewals, releases, outcomes.
        self.outage = Outage(f"{self.name} queue", log, transient=self.transient)
        self.outage.on_resume(self._resumed)
        self._ticking = Outage(f"{self.name} ticker", log, transient=self.transient)

    @property
    def started(self) -> bool:
        """Whether the threads run (between :meth:`start` and :meth:`stop`)."""
        return bool(self._threads)

    def running(self) -> list[T]:
        """The items this host runs now."""
        with self._idle:
            return list(self._running.values())

    def start(self) -> None:
        """Start the worker threads and the ticker (idempotent)."""
        if self._threads:
            return
        self._stopping.clear()
        self.interrupted.clear()
        for i in range(self.workers):
            self._spawn(self._work, f"omnicore-{self.name}-worker-{i}")
        self._spawn(self._ticker, f"omnicore-{self.name}-ticker")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def wake(self) -> None:
        """End idle workers' waits: an item was added or came due."""
        with self._wake:
            self._wakes += 1
            self._wake.notify_all()

    def persist(self, step: Callable[[], R]) -> R:
        """``step()`` (a run recording how its item ended), tried again through an outage of
        the storage until it works or the workers stop (then its error is raised: the lease
        expires and the item runs again)."""
        return self.outage.persist(step, self._stopping)

    def _resumed(self) -> None:
        self._renew()
        self.wake()

    def _renew(self) -> None:
        with self._idle:
            keys = list(self._running)
        if not keys:
            # Nothing held: no statement, so none to count as the storage answering.
            self._last_renew = time.monotonic()
            return

        def renew() -> bool:
            self.queue.renew(self.owner, keys, time.time() + self.lease_s)
            return True

        if self.outage.call(renew, False):
            self._last_renew = time.monotonic()

    def interrupt(self, interrupt: Callable[[], None]) -> None:
        """Mark the running items interrupted, then ``interrupt()`` their calls: a run that
        fails from now on records nothing, and :meth:`stop` releases the item."""
        self.interrupted.set()
        try:
            interrupt()
        except Exception:
            log.exception("%s: interrupting the running items failed", self.name)

    def stop(self, grace: float, interrupt: Callable[[], None] | None = None) -> list[K]:
        """Stop claiming; wait up to ``grace`` s for running items; then ``interrupt()`` the
        rest, and release their leases. The keys that were still running after the grace."""
        self._stopping.set()
        self.wake()
        deadline = time.monotonic() + grace
        with self._idle:
            while self._running and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
            left = list(self._running)
        if left and interrupt is not None:
            self.interrupt(interrupt)
            settle = time.monotonic() + INTERRUPT_SETTLE_S
            with self._idle:
                while self._running and time.monotonic() < settle:
                    self._idle.wait(max(0.0, settle - time.monotonic()))
        for thread in self._threads:
            # Nothing left running: a thread may still be in a claim or a tick (a storage
            # statement, a pool's connect after an outage), so it has what is left of the
            # grace, not a fixed second (a loaded host's claim took longer and the thread
            # outlived the stop).
            thread.join(max(0.0 if left else 1.0, deadline - time.monotonic()))
        self._threads = []
        # Whatever still runs after that is abandoned: its lease goes back too.
        with self._idle:
            abandoned = list(self._running)
        self._release(abandoned)
        return left

    def _release(self, keys: list[K]) -> None:
        # Conditional on the lease: an item whose run recorded an end keeps it.
        if not keys:
            return
        try:
            self.queue.release(self.owner, keys)
        except Exception as exc:
            log.error("%s: cannot release %s (their leases expire and they run again): %s",
                      self.name, keys, exc)

    def _work(self) -> None:
        queue, outage = self.queue, self.outage
        while not self._stopping.is_set():
            seen = self._wakes
            item = outage.call(lambda: queue.claim(self.owner, time.time(), self.lease_s), None)
            if item is None:
                self._idle_wait(seen)
                continue
            key = self.key(item)
            with self._idle:
                self._running[key] = item
            try:
                self.run(item)
            except outage.transient as exc:
                # The storage failed before the run recorded an end: nothing was recorded, so
                # the item goes back as soon as the storage answers, not when its lease ends.
                outage.failed(exc)
                try:
                    self.persist(functools.partial(queue.release, self.owner, [key]))
                except outage.transient:
                    pass  # stopping in the outage: the lease expires, the item runs again
            except Exception:
                log.exception("%s: running %r failed (its lease expires and it runs again)",
                              self.name, key)
            finally:
                if self.interrupted.is_set():
                    self._release([key])
                with self._idle:
                    self._running.pop(key, None)
                    self._idle.notify_all()

    def _idle_wait(self, seen: int) -> None:
        due = self.outage.call(self.queue.next_due, None)
        wait = self.poll_s if due is None else min(self.poll_s, max(due - time.time(), 0))
        wait = self.outage.pause(wait)
        with self._wake:
            if wait > 0 and self._wakes == seen and not self._stopping.is_set():
                self._wake.wait(wait)

    def _ticker(self) -> None:
        self._last_renew = time.monotonic()
        while not self._stopping.is_set():
            soonest: float | None = None
            if self.tick is not None:
                soonest = self._ticking.call(functools.partial(self.tick, time.time()), None)
            if time.monotonic() - self._last_renew > self.lease_s / 3:
                self._renew()
            wait = self.poll_s if soonest is None else max(soonest - time.time(), 0.01)
            wait = min(wait, self.poll_s, self.lease_s / 3)
            self._stopping.wait(max(self._ticking.pause(wait), self.outage.pause(wait)))
