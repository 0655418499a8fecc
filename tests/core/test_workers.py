"""core.workers.LeasedWorkers on a real queue (the SQLite job queue): claim and run, a wake
that ends an idle wait, leases renewed while an item runs, a bounded stop that interrupts
and releases, a failing run left to its lease."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omnicore.core.workers import LeasedWorkers
from omnicore.storage import Job, JobSpec, SQLiteStorage


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


def _wait(pred: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


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
        _wait(lambda: ran == [job], "the woken worker to run the job")
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
        _wait(lambda: ran == [job], "the job added during the query to run", timeout=10)
    finally:
        go_on.set()
        workers.stop(1)


def test_leases_are_renewed_while_an_item_runs(store: SQLiteStorage) -> None:
    release = threading.Event()
    workers = _workers(store, lambda t: release.wait(20), lease_s=0.6, poll_s=0.1)
    job = store.queue.add(JobSpec("p", "h", b"", time.time()))
    workers.start()
    try:
        _wait(lambda: bool(workers.running()), "the item to run")
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
    _wait(lambda: len(workers.running()) == 2, "both items to run")
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
    _wait(lambda: bool(workers.running()), "the item to run")
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
        _wait(lambda: (store.queue.get(job).attempts or 0) >= 2,  # type: ignore[union-attr]
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
        _wait(lambda: len(ticks) >= 5, "the tick to run at the time it asked for")
    finally:
        workers.stop(1)
