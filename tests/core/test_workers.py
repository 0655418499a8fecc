"""core.workers.LeasedWorkers on a real queue (the SQLite job queue): claim and run, a wake
that ends an idle wait, leases renewed while an item runs, a bounded stop that interrupts
and releases, a failing run left to its lease."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omnicore.core.workers import LeasedWorkers
from omnicore.errors import OmniError
from omnicore.storage import Job, JobSpec, SQLiteStorage
from tests.waiting import eventually


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "omnicore.db")
    yield s
    s.close()


def _workers(store: SQLiteStorage, run: Callable[[Job], None], **kw: float) -> \
        LeasedWorkers[Job, int]:
    opts = {"workers": 2, "lease_s": 30.0, "poll_s": 30.0, **kw}
    return LeasedWorkers("test", store.queue, run, lambda t: t.id, owner="host-a",
                         workers=int(opts["workers"]), lease_s=opts["lease_s"],
                         poll_s=opts["poll_s"])


def test_a_wake_ends_the_idle_wait_of_a_long_poll(store: SQLiteStorage) -> None:
    ran: list[int] = []
    workers = _workers(store, lambda t: (ran.append(t.id), store.queue.finish(
        t.id, "host-a", time.time()))[0])
    workers.start()
    try:
        time.sleep(0.2)  # both workers are idle in a 30 s poll
        job = store.queue.add(JobSpec("p", "h", b"", time.time()))
        started = time.monotonic()
        workers.wake()
        eventually(lambda: ran == [job], "the woken worker to run the job")
        assert time.monotonic() - started < 10  # far below the 30 s poll
    finally:
        workers.stop(1)


def test_a_wake_neither_waits_for_an_idle_workers_query_nor_is_lost(
        store: SQLiteStorage) -> None:
    # An idle worker asks the database when work is next due before it sleeps. A wake sent
    # meanwhile (the PostgreSQL listener's thread sends them) must not queue behind that
    # query, and must not be lost: the job added with it runs now, not after the 30 s poll.
    in_query, go_on = threading.Event(), threading.Event()

    class SlowFirstQuery:
        def __init__(self) -> None:
            self.first = True

        def next_due(self) -> float | None:
            if self.first:
                self.first = False
                in_query.set()
                go_on.wait(10)
                return None  # what it saw before the job was added
            return store.queue.next_due()

        def __getattr__(self, name: str) -> object:
            return getattr(store.queue, name)

    ran: list[int] = []
    workers = LeasedWorkers("test", SlowFirstQuery(), lambda t: (
        ran.append(t.id), store.queue.finish(t.id, "host-a", time.time()))[0],
        lambda t: t.id, owner="host-a", workers=1, lease_s=30.0, poll_s=30.0)
    workers.start()
    try:
        assert in_query.wait(10)
        job = store.queue.add(JobSpec("p", "h", b"", time.time()))
        waker = threading.Thread(target=workers.wake)
        waker.start()
        waker.join(5)
        assert not waker.is_alive(), "wake() waited for the worker's query"
        go_on.set()
        eventually(lambda: ran == [job], "the job added during the query to run", timeout=10)
    finally:
        go_on.set()
        workers.stop(1)


def test_leases_are_renewed_while_an_item_runs(store: SQLiteStorage) -> None:
    release = threading.Event()
    workers = _workers(store, lambda t: release.wait(20), lease_s=0.6, poll_s=0.1)
    job = store.queue.add(JobSpec("p", "h", b"", time.time()))
    workers.start()
    try:
        eventually(lambda: bool(workers.running()), "the item to run")
        time.sleep(1.5)  # two and a half leases
        assert store.queue.claim("host-b", time.time(), 1.0) is None  # still ours
        assert store.queue.get(job).owner == "host-a"  # type: ignore[union-attr]
    finally:
        release.set()
        workers.stop(2)


def test_stop_interrupts_after_the_grace_and_releases_uncounted(store: SQLiteStorage) -> None:
    interrupted = threading.Event()
    calls: list[float] = []
    why: list[bool] = []

    def run(task: Job) -> None:
        interrupted.wait(30)  # "a call" that only the interrupt ends
        why.append(workers.interrupted.is_set())  # the run sees why: it records nothing

    workers = _workers(store, run)
    jobs = [store.queue.add(JobSpec("p", "h", b"", time.time())) for _ in range(2)]
    workers.start()
    workers.wake()
    eventually(lambda: len(workers.running()) == 2, "both items to run")
    started = time.monotonic()
    left = workers.stop(0.5, interrupt=lambda: (calls.append(time.monotonic() - started),
                                                interrupted.set()))
    took = time.monotonic() - started
    assert sorted(left) == sorted(jobs)
    assert len(calls) == 1 and calls[0] >= 0.5  # only once the grace was over
    assert took < 0.5 + 1.5
    assert why == [True, True]
    for job in jobs:
        task = store.queue.get(job)
        assert task is not None and task.state == "queued" and task.attempts == 0


def test_stop_waits_for_items_that_end_within_the_grace(store: SQLiteStorage) -> None:
    def run(task: Job) -> None:
        time.sleep(0.3)
        store.queue.finish(task.id, "host-a", time.time())

    calls: list[int] = []
    workers = _workers(store, run)
    job = store.queue.add(JobSpec("p", "h", b"", time.time()))
    workers.start()
    workers.wake()
    eventually(lambda: bool(workers.running()), "the item to run")
    assert workers.stop(10, interrupt=lambda: calls.append(1)) == []
    assert calls == []  # nothing left to interrupt
    assert store.queue.get(job).state == "succeeded"  # type: ignore[union-attr]


def test_a_run_that_raises_leaves_the_item_to_its_lease(store: SQLiteStorage) -> None:
    def run(task: Job) -> None:
        raise RuntimeError("a bug in the runner")

    workers = _workers(store, run, lease_s=0.5, poll_s=0.1)
    job = store.queue.add(JobSpec("p", "h", b"", time.time()))
    workers.start()
    try:
        eventually(lambda: (store.queue.get(job).attempts or 0) >= 2,  # type: ignore[union-attr]
                   "the item to come due again when its lease expired")
    finally:
        workers.stop(1)


def test_tick_runs_on_the_ticker_and_says_when_next(store: SQLiteStorage) -> None:
    ticks: list[float] = []
    workers = LeasedWorkers("test", store.queue, lambda t: None, lambda t: t.id,
                            owner="host-a", workers=1, lease_s=30, poll_s=5,
                            tick=lambda now: (ticks.append(now), now + 0.05)[1])
    workers.start()
    try:
        eventually(lambda: len(ticks) >= 5, "the tick to run at the time it asked for")
    finally:
        workers.stop(1)


class Away(OmniError):
    """The queue's storage does not answer (a StorageError, in the host)."""


class Flaky:
    """The SQLite queue behind a switch: while ``down``, every call raises :class:`Away`."""

    def __init__(self, queue: object) -> None:
        self.queue = queue
        self.down = False
        self.refused = 0
        self.renewals: list[tuple[float, list[int]]] = []
        #: Set by the first renewal after a refused call: the storage answered again.
        self.renewed_since_outage = threading.Event()
        # A call runs whole on one side of a switch: one begun before the outage cannot end
        # after it began (on a loaded machine that read as the storage answering again).
        self.switching = threading.Lock()

    def switch(self, down: bool) -> None:
        with self.switching:
            self.down = down

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.queue, name)

        def call(*args: object, **kwargs: object) -> object:
            with self.switching:
                if self.down:
                    self.refused += 1
                    raise Away("storage test.db: unreachable")
                if name == "renew":
                    self.renewals.append((time.monotonic(), list(args[1])))  # type: ignore[call-overload]
                    if self.refused:
                        self.renewed_since_outage.set()
                return attr(*args, **kwargs)

        return call


def test_an_outage_holds_the_running_item_and_records_it_when_the_storage_returns(
        store: SQLiteStorage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="omnicore.workers")
    flaky = Flaky(store.queue)
    ran, go = threading.Event(), threading.Event()
    runs: list[int] = []

    def run(task: Job) -> None:
        runs.append(task.id)
        ran.set()
        go.wait(10)

        def finish() -> None:
            # Once the outage began, the outcome waits (5 s at most) for the renewal of the
            # leases the storage's return brings: the test checks that renewal, and an item
            # whose outcome was written first has no lease left to renew (CI saw it so).
            if flaky.refused:
                flaky.renewed_since_outage.wait(5)
            flaky.finish(task.id, "host-a", time.time())

        workers.persist(finish)

    workers = LeasedWorkers("test", flaky, run, lambda t: t.id, owner="host-a", workers=2,
                            lease_s=30.0, poll_s=0.05, tick=lambda now: None)
    job = store.queue.add(JobSpec("p", "h", b"", time.time()))
    workers.start()
    try:
        assert ran.wait(10)
        flaky.switch(True)
        go.set()  # the call ended; its outcome cannot be written now
        eventually(lambda: flaky.refused >= 10, "several claims and writes to fail")
        assert [t.id for t in workers.running()] == [job]  # still held, not dropped
        threads = [t for t in threading.enumerate() if t.name.startswith("omnicore-test-")]
        assert len(threads) == 3 and all(t.is_alive() for t in threads)
        back = time.monotonic()
        flaky.switch(False)
        eventually(lambda: store.queue.get(job).state == "succeeded",  # type: ignore[union-attr]
                   "the held job's outcome to be written")
        took = time.monotonic() - back
        assert took < 5.0, took  # the back-off's bound, not the 30 s lease
        assert runs == [job]  # recorded, not delivered again
        # The leases held are renewed the moment the storage answers, not 10 s later.
        assert any(at >= back for at, _ in flaky.renewals)
        assert min(at for at, _ in flaky.renewals if at >= back) - back < 5.0
    finally:
        workers.stop(1)
    records = [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records
               if r.name == "omnicore.workers"]
    paused = [m for _, m, _ in records if "paused" in m]
    assert paused == ["test queue paused: storage test.db: unreachable; retrying in the "
                      "background"], records
    assert [m for _, m, _ in records if "resumed" in m][:1] and \
        all(exc is None for _, _, exc in records)


def test_a_run_failing_on_the_storage_gives_its_item_back_when_it_returns(
        store: SQLiteStorage) -> None:
    flaky = Flaky(store.queue)
    runs: list[int] = []

    def run(task: Job) -> None:
        runs.append(task.id)
        if len(runs) == 1:
            flaky.switch(True)
            raise Away("storage test.db: unreachable")  # before anything was recorded
        store.queue.finish(task.id, "host-a", time.time())

    workers = LeasedWorkers("test", flaky, run, lambda t: t.id, owner="host-a", workers=1,
                            lease_s=30.0, poll_s=0.05)
    job = store.queue.add(JobSpec("p", "h", b"", time.time()))
    workers.start()
    try:
        eventually(lambda: flaky.refused >= 3, "the release to fail too")
        flaky.switch(False)
        eventually(lambda: runs == [job, job], "the item to run again")  # not after 30 s
        eventually(lambda: store.queue.get(job).state == "succeeded",  # type: ignore[union-attr]
                   "the second delivery to finish")
        assert store.queue.get(job).attempts == 1  # type: ignore[union-attr]  # released
    finally:
        workers.stop(1)
