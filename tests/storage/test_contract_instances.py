"""The instance table's contract (storage/instance_rows.py), on every backend."""

from __future__ import annotations

import time

from omnicore.storage import JobSpec, Storage
from omnicore.storage.instance_rows import KEEP_LOST_S, Instance
from omnicore.storage.workflows import NewStep


def _me(rid: str, beat: float) -> Instance:
    return Instance(rid, "host-1", 4242, "0.1.0", beat - 5, beat, f"http://127.0.0.1/{rid}")


def test_register_heartbeat_drain_and_leave(storage: Storage) -> None:
    now = time.time()
    storage.instances.register(_me("rt-a", now))
    (row,) = storage.instances.all()
    assert (row.runtime_id, row.pid, row.hostname, row.draining) == ("rt-a", 4242, "host-1",
                                                                      False)
    beat = storage.instances.heartbeat("rt-a", now + 1, 2, "http://127.0.0.1:9/")
    assert beat is not None and beat.jobs_held == 2
    # The time given, moved on by what the write waited (never more than has passed).
    assert 0 <= beat.heartbeat_at - (now + 1) <= time.time() - now
    assert beat.console_url == "http://127.0.0.1:9/"
    assert storage.instances.set_draining("rt-a", True) is True
    assert storage.instances.set_draining("rt-missing", True) is False
    beat = storage.instances.heartbeat("rt-a", now + 2, 0)
    assert beat is not None and beat.draining is True
    assert beat.console_url == "http://127.0.0.1:9/"  # kept when not given
    storage.instances.remove("rt-a")
    assert storage.instances.all() == []
    assert storage.instances.heartbeat("rt-a", now + 3, 0) is None  # must register again


def _dead_holding_leases(storage: Storage, now: float, jobs: int) -> tuple[list[int], int]:
    """Instance rt-dead, its last heartbeat 10 s ago, holding the lease of the first of
    ``jobs`` new jobs and of a workflow run's step: the jobs' ids and the run's."""
    ids = [storage.queue.add(JobSpec("p", "h", b"x", now)) for _ in range(jobs)]
    assert storage.queue.claim("rt-dead", now, 3600) is not None
    created = storage.workflows.create_run("wf", "v1", {}, None, "test")
    assert created is not None
    storage.workflows.add_steps(created[0], [NewStep("s", -1, "queued")])
    assert storage.workflows.claim("rt-dead", time.time() + 1, 3600) is not None
    storage.instances.register(_me("rt-dead", now - 10))
    return ids, created[0]


def test_a_stale_instance_is_reaped_and_its_job_and_step_leases_are_due_at_once(
        storage: Storage) -> None:
    now = time.time()
    (job,), _ = _dead_holding_leases(storage, now, 1)
    storage.instances.register(_me("rt-fresh", now - 0.1))  # a heartbeat ago: alive
    storage.instances.register(_me("rt-me", now))
    # (A backend may know sooner than the heartbeat that an instance died, as PostgreSQL does
    # from its liveness lock; a stale heartbeat is enough everywhere.)
    assert storage.instances.reap("rt-me", now, 3.0) == ["rt-dead"]
    assert storage.instances.reap("rt-me", now, 3.0) == []  # once
    assert sorted(i.runtime_id for i in storage.instances.all()) == ["rt-fresh", "rt-me"]
    task = storage.queue.claim("rt-me", time.time(), 30)
    assert task is not None and task.id == job and task.attempts == 2
    step = storage.workflows.claim("rt-me", time.time(), 30)
    assert step is not None and step.step == "s" and step.attempt == 2


def test_an_instance_never_reaps_itself(storage: Storage) -> None:
    now = time.time()
    storage.instances.register(_me("rt-me", now - 100))
    assert storage.instances.reap("rt-me", now, 3.0) == []
    assert [i.runtime_id for i in storage.instances.all()] == ["rt-me"]


def test_a_reaped_instance_stays_listed_as_lost_a_day_with_its_reaper_and_what_it_held(
        storage: Storage) -> None:
    now = time.time()
    jobs, run = _dead_holding_leases(storage, now, 2)
    storage.instances.register(_me("rt-me", now))
    assert storage.instances.lost(now) == []
    assert storage.instances.reap("rt-me", now, 3.0) == ["rt-dead"]
    (lost,) = storage.instances.lost(now + 1)
    assert (lost.runtime_id, lost.hostname, lost.pid) == ("rt-dead", "host-1", 4242)
    assert 0 <= lost.heartbeat_at - (now - 10) <= time.time() - now  # when it stopped
    assert (lost.lost_at, lost.reaped_by) == (now, "rt-me")
    assert lost.jobs == (jobs[0],) and lost.steps == (f"{run}/s/-1",)
    assert lost.as_dict()["jobs"] == [jobs[0]]
    assert storage.instances.lost(now + KEEP_LOST_S + 1) == []  # a day later: gone
    storage.instances.register(_me("rt-dead", now + 2))  # it came back after a pause
    assert storage.instances.lost(now + 3) == []


def test_a_host_reports_its_plugins_on_its_row(storage: Storage) -> None:
    now = time.time()
    assert storage.instances.report("rt-a", {"echo": {"digest": None}}) is False  # no row yet
    storage.instances.register(_me("rt-a", now))
    assert storage.instances.all()[0].plugins == {}
    report = {"echo": {"digest": "sha256:" + "a" * 64, "state": "loaded", "origin": "catalog",
                       "wanted": "sha256:" + "a" * 64}}
    assert storage.instances.report("rt-a", report) is True
    (row,) = storage.instances.all()
    assert row.plugins == report and row.as_dict()["plugins"] == report
    beat = storage.instances.heartbeat("rt-a", now + 1, 0)
    assert beat is not None and beat.plugins == report  # a heartbeat keeps it
    storage.instances.register(_me("rt-a", now + 2))  # registered again: the row stays
    assert storage.instances.all()[0].plugins == report
