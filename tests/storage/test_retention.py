"""The purges the retention sweep runs (omnicore.storage.retention), held as a contract: every
backend deletes exactly the ended rows older than the cut, in bounded batches, and never work
still to do.

Rows get their times from the store (``finish(now=...)``, ``append(at=...)``) where its API
takes one, and otherwise from when they were written: rows written before :func:`_cut` are
older than it, rows written after it are not (no sleeps: the clock is only watched move).
"""

from __future__ import annotations

import time

import pytest

from omnicore.storage import JobSpec, Storage
from omnicore.storage.workflows import NewStep, WorkflowStore


def _cut() -> float:
    """A time after every row written so far and before every row written next."""
    before = time.time()
    while (now := time.time()) <= before:
        pass
    return now


def _job(store: Storage, plugin: str = "p") -> int:
    return store.queue.add(JobSpec(plugin, "h", b"{}", 0.0, 1, 10))


def _ended(store: Storage, state: str, at: float) -> int:
    """A job that ended in ``state`` at ``at`` (its ``finished_at``)."""
    job_id = _job(store)
    if state == "cancelled":
        assert store.queue.cancel(job_id, at) is True
        return job_id
    claimed = store.queue.claim("w", time.time(), 30)
    assert claimed is not None and claimed.id == job_id
    if state == "succeeded":
        assert store.queue.finish(job_id, "w", at) is True
    else:
        assert store.queue.fail(job_id, "w", at, "boom", None) == "dead"
    return job_id


# -- jobs and the dead letter -----------------------------------------------------------------

def test_finished_jobs_older_than_the_cut_go_and_work_still_to_do_stays(
        storage: Storage) -> None:
    queue = storage.queue
    old = [_ended(storage, s, 100.0) for s in ("succeeded", "cancelled")]
    dead = _ended(storage, "dead", 100.0)
    new = [_ended(storage, s, 300.0) for s in ("succeeded", "cancelled", "dead")]
    running = _job(storage)
    assert queue.claim("w", time.time(), 30) is not None  # running, created long before
    queued = _job(storage)
    assert queue.purge_finished(200.0) == 2
    assert all(queue.get(i) is None for i in old)
    kept = [dead, *new, running, queued]
    assert all(queue.get(i) is not None for i in kept)
    assert queue.purge_finished(200.0) == 0
    # The dead letter is its own purge.
    assert queue.purge_finished(200.0, states=("dead",)) == 1
    assert queue.get(dead) is None
    assert queue.purge_finished(1e12, states=("dead",)) == 1  # the new dead one, later on
    assert {(j.id, j.state) for j in queue.list()} == {
        (new[0], "succeeded"), (new[1], "cancelled"), (running, "running"),
        (queued, "queued")}


def test_a_purge_never_takes_queued_or_running_jobs(storage: Storage) -> None:
    queued = _job(storage)
    for states in (("queued",), ("running",), ("succeeded", "running")):
        with pytest.raises(ValueError, match="ended jobs only"):
            storage.queue.purge_finished(1e12, states=states)  # type: ignore[arg-type]
    assert storage.queue.purge_finished(1e12, states=()) == 0
    assert storage.queue.get(queued) is not None


def test_jobs_are_purged_oldest_first_in_bounded_batches(storage: Storage) -> None:
    ids = [_ended(storage, "succeeded", 100.0 + i) for i in range(5)]
    assert storage.queue.purge_finished(1000.0, limit=2) == 2
    assert [storage.queue.get(i) is None for i in ids] == [True, True, False, False, False]
    assert storage.queue.purge_finished(1000.0, limit=2) == 2
    assert storage.queue.purge_finished(1000.0, limit=2) == 1
    assert storage.queue.purge_finished(1000.0, limit=2) == 0


# -- the event log ----------------------------------------------------------------------------

def test_events_older_than_the_cut_go_in_batches(storage: Storage) -> None:
    events = storage.events
    old = [events.append("plugin.p.x", "p", b"%d" % i, retain=10_000) for i in range(3)]
    cut = _cut()
    new = [events.append("plugin.p.x", "p", b"new%d" % i, retain=10_000) for i in range(2)]
    assert events.purge(cut, limit=2) == 2
    assert events.purge(cut, limit=2) == 1
    assert events.purge(cut, limit=2) == 0
    assert events.get_many(old) == []
    assert [e.id for e in events.recent()] == new[::-1]
    assert events.purge(cut) == 0  # unbounded: the same rows


# -- the audit log ----------------------------------------------------------------------------

@pytest.mark.store("audit")
def test_audit_entries_older_than_the_cut_go_in_batches(storage: Storage) -> None:
    log = storage.audit
    for at in (1.0, 2.0, 3.0, 4.0, 5.0):
        log.append("ada", "grant.add", "p", None, None, None, at)
    assert log.purge(3.5, limit=2) == 2
    assert [e.at for e in log.entries()] == [5.0, 4.0, 3.0]
    assert log.purge(3.5, limit=2) == 1
    assert log.purge(3.5, limit=2) == 0
    assert [e.at for e in log.entries()] == [5.0, 4.0]


# -- workflow runs ----------------------------------------------------------------------------

def _run(store: WorkflowStore, parent: tuple[int, str, int] | None = None) -> int:
    made = store.create_run("wf", "v1", {"x": 1}, None, "test", parent=parent)
    assert made is not None
    rid = made[0]
    store.add_steps(rid, [NewStep("a", -1, "queued", input={"n": 1}, run_at=time.time())])
    return rid


@pytest.mark.store("workflows")
def test_ended_runs_older_than_the_cut_go_with_their_steps_and_history(
        storage: Storage) -> None:
    store = storage.workflows
    done, failed, cancelled = _run(store), _run(store), _run(store)
    assert store.finish_run(done, "succeeded", outputs={"y": 1})
    assert store.finish_run(failed, "failed", error="boom")
    assert store.cancel_run(cancelled, "ada") is True
    running = _run(store)  # created long ago, still running
    parent = _run(store)  # a running parent's finished child is kept: the parent reads it
    child = _run(store, parent=(parent, "a", -1))
    assert store.finish_run(child, "succeeded")
    ended_parent = _run(store)  # an ended parent's child goes with it
    ended_child = _run(store, parent=(ended_parent, "a", -1))
    assert store.finish_run(ended_child, "succeeded")
    assert store.finish_run(ended_parent, "succeeded")
    cut = _cut()
    new = _run(store)
    assert store.finish_run(new, "succeeded")

    assert store.purge_runs(cut, limit=2) == 2
    assert store.purge_runs(cut, limit=2) == 2
    assert store.purge_runs(cut, limit=2) == 1
    assert store.purge_runs(cut, limit=2) == 0
    for gone in (done, failed, cancelled, ended_parent, ended_child):
        assert store.run(gone) is None
        assert store.steps(gone) == [] and store.history(gone) == []
    for kept in (running, parent, child, new):
        assert store.run(kept) is not None
        assert store.steps(kept) and store.history(kept)
    assert store.child_run((parent, "a", -1)) is not None
    # Once the parent ends (and is old enough), both go.
    assert store.finish_run(parent, "succeeded")
    later = _cut()
    assert store.purge_runs(later) == 3  # the parent, its child and the new run
    assert [r.id for r in store.runs()] == [running]
