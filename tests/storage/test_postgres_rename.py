"""The job queue's table rename on PostgreSQL (schema step 10): a database of the previous
version migrates forward with its rows, and a host of the previous version sharing it during
a rolling upgrade still runs its statements, which name ``tasks``, through the view that the
step leaves: the insert with its id, the claim with ``FOR UPDATE SKIP LOCKED``, the lease's
updates and the purge, on a real server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from omnicore.storage import JobSpec
from omnicore.storage.backend import Tx
from omnicore.storage.postgres import PostgresStorage
from omnicore.storage.postgres.schema import SCHEMA_VERSION
from omnicore.storage.stores.leases import LeasedTable

#: The schema version before the rename, and the previous version's statements, verbatim.
BEFORE = 9
OLD = LeasedTable("tasks", ("id",), "attempts", "jobs")
OLD_COLS = ("id, plugin, handler, payload, state, attempts, max_attempts, backoff_ms, run_at, "
            "created_at, started_at, finished_at, last_error, source, hops, owner")
OLD_INSERT = ("INSERT INTO tasks(plugin, handler, payload, state, attempts, max_attempts, "
              "backoff_ms, run_at, created_at, source, hops) "
              "VALUES (?,?,?,'queued',0,?,?,?,?,?,?) RETURNING id")


def _old_add(old: PostgresStorage, handler: str, run_at: float) -> int:
    rows = old.backend.write_one(OLD_INSERT, ("p", handler, b"x", 5, 1000, run_at, time.time(),
                                              "call", 0), returning=True, wake="jobs")[1]
    return int(rows[0][0])


@pytest.fixture
def hosts(pg_url: str) -> Iterator[tuple[PostgresStorage, PostgresStorage]]:
    """A host of the previous version that made the database, then one of this version."""
    old = PostgresStorage(pg_url, upto=BEFORE)
    first = _old_add(old, "made-before", time.time() - 1)
    assert old.backend.schema_version == BEFORE
    new = PostgresStorage(pg_url)
    assert new.backend.schema_version == SCHEMA_VERSION
    found = new.queue.get(first)
    assert found is not None and found.handler == "made-before"  # the row moved with its id
    try:
        yield old, new
    finally:
        old.close()
        new.close()


def _names(s: PostgresStorage, kind: str) -> set[str]:
    return {r[0] for r in s.backend.read(
        "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace "
        "AND relkind = ?", (kind,))}


def test_the_table_its_indexes_and_sequence_are_renamed_and_tasks_is_a_view(
        hosts: tuple[PostgresStorage, PostgresStorage]) -> None:
    _, new = hosts
    assert {"jobs"} <= _names(new, "r") and "tasks" not in _names(new, "r")
    assert "tasks" in _names(new, "v")
    assert {"jobs_pkey", "jobs_due", "jobs_leased", "jobs_plugin_state"} <= _names(new, "i")
    assert "jobs_id_seq" in _names(new, "S")
    assert not any(n.startswith("tasks") for n in _names(new, "i") | _names(new, "S"))


def test_the_previous_versions_enqueue_claim_and_finish_run_through_the_view(
        hosts: tuple[PostgresStorage, PostgresStorage]) -> None:
    old, new = hosts
    made = _old_add(old, "h", time.time() - 0.5)
    # Ids come from the one identity sequence, whichever host inserts.
    assert new.queue.add(JobSpec("p", "h2", b"y", time.time() + 3600)) > made
    claimed = OLD.claim(old.backend, "old-host", time.time(), 30, OLD_COLS)
    assert claimed is not None and claimed[0] < made  # the oldest due row first
    second = OLD.claim(old.backend, "old-host", time.time(), 30, OLD_COLS)
    assert second is not None and second[0] == made and second[4] == "running"
    OLD.renew(old.backend, "old-host", [made], time.time() + 60)
    assert old.backend.write_one(OLD.ended("state='succeeded', finished_at=?"),
                                 (time.time(), made, "old-host"))[0] == 1
    job = new.queue.get(made)
    assert job is not None and job.state == "succeeded" and job.attempts == 1
    OLD.release(old.backend, "old-host", [claimed[0]])
    back = new.queue.get(claimed[0])
    assert back is not None and back.state == "queued" and back.attempts == 0
    # This version claims what the previous one enqueued, and the other way round.
    again = new.queue.claim("new-host", time.time(), 30)
    assert again is not None and again.id == claimed[0]
    assert new.queue.fail(again.id, "new-host", time.time(), "boom", None) == "dead"


def test_the_previous_versions_cancel_retry_and_purge_run_through_the_view(
        hosts: tuple[PostgresStorage, PostgresStorage]) -> None:
    old, new = hosts
    made = _old_add(old, "h", time.time() + 3600)

    def cancel(tx: Tx) -> Any:
        row = tx.execute("SELECT state, plugin FROM tasks WHERE id=? FOR UPDATE",
                         (made,)).fetchone()
        tx.execute("UPDATE tasks SET state='cancelled', finished_at=? WHERE id=?",
                   (time.time() - 10, made))
        return row

    assert old.backend.write(cancel) == ("queued", "p")
    job = new.queue.get(made)
    assert job is not None and job.state == "cancelled"
    assert old.backend.write_one(
        "UPDATE tasks SET state='queued', attempts=0, run_at=?, finished_at=NULL "
        "WHERE id=? AND state IN ('dead','cancelled')", (time.time(), made))[0] == 1
    assert new.queue.cancel(made, time.time() - 10) is True
    assert old.backend.write_one("DELETE FROM tasks WHERE state IN ('succeeded','cancelled') "
                                 "AND finished_at<?", (time.time(),))[0] == 1
    assert new.queue.get(made) is None
    assert old.backend.read("SELECT COUNT(*) FROM tasks WHERE plugin=? AND "
                            "state IN ('queued','running')", ("p",)) == [(1,)]


def _holding(s: PostgresStorage, table: str, job_id: int,
             then: Any) -> Any:
    """Run ``then()`` while another transaction of ``s`` holds ``job_id``'s row lock taken
    through ``table``; what ``then`` returned."""
    held, done = threading.Event(), threading.Event()

    def hold(tx: Tx) -> None:
        tx.execute(f"SELECT id FROM {table} WHERE id=? FOR UPDATE", (job_id,))
        held.set()
        assert done.wait(30)

    t = threading.Thread(target=s.backend.write, args=(hold,))
    t.start()
    try:
        assert held.wait(30)
        return then()
    finally:
        done.set()
        t.join(30)


def test_a_row_lock_through_the_view_and_one_on_the_table_are_the_same_lock(
        hosts: tuple[PostgresStorage, PostgresStorage]) -> None:
    old, new = hosts
    first = new.queue.claim("new-host", time.time(), 30)  # the row made before the upgrade
    assert first is not None and new.queue.finish(first.id, "new-host", time.time())
    a = _old_add(old, "a", time.time() - 2)
    b = _old_add(old, "b", time.time() - 1)
    # The previous version's claim skips the row this version holds, and takes the next.
    got = _holding(new, "jobs", a, lambda: OLD.claim(old.backend, "old-host", time.time(), 30,
                                                     OLD_COLS))
    assert got is not None and got[0] == b
    OLD.release(old.backend, "old-host", [b])
    # And this version's claim skips a row the previous version holds through the view.
    job = _holding(old, "tasks", a, lambda: new.queue.claim("new-host", time.time(), 30))
    assert job is not None and job.id == b
