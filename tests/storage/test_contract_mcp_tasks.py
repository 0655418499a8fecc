"""MCP tasks' rows' contract (storage/mcp_task_rows.py), on every backend."""

from __future__ import annotations

import time

from omnicore.storage import Storage
from omnicore.storage.mcp_task_rows import TaskRow


def _task(task_id: str, owner: str, now: float, expires: float | None = None) -> TaskRow:
    return TaskRow(task_id, owner, "p.h", None, "working", None, None, now, now, expires)


def test_a_task_settles_or_cancels_once(storage: Storage) -> None:
    rows = storage.mcp_tasks
    now = time.time()
    rows.add(_task("t1", "ada", now, now + 60))
    rows.set_job("t1", 42)
    row = rows.get("t1")
    assert row is not None and row.job_id == 42 and row.status == "working"
    assert rows.settle("t1", b"\x00out", None, now + 1) is True
    assert rows.settle("t1", b"again", None, now + 2) is False  # a second delivery
    assert rows.cancel("t1", now + 3) is False  # terminal stays terminal
    row = rows.get("t1")
    assert row is not None and (row.status, row.output, row.updated_at) == (
        "done", b"\x00out", now + 1)

    rows.add(_task("t2", "ada", now))
    assert rows.cancel("t2", now + 1) is True
    assert rows.settle("t2", None, "late", now + 2) is False  # the cancel came first
    assert rows.get("t2").status == "cancelled"  # type: ignore[union-attr]
    assert rows.get("nope") is None


def test_pages_are_the_owners_own_newest_first(storage: Storage) -> None:
    rows = storage.mcp_tasks
    now = time.time()
    for i in range(5):
        rows.add(_task(f"a{i}", "ada", now))
    rows.add(_task("b0", "bob", now))
    first, cursor = rows.page("ada", None, 2)
    assert [r.id for r in first] == ["a4", "a3"] and cursor is not None
    second, cursor = rows.page("ada", cursor, 2)
    assert [r.id for r in second] == ["a2", "a1"] and cursor is not None
    last, cursor = rows.page("ada", cursor, 2)
    assert [r.id for r in last] == ["a0"] and cursor is None
    assert [r.id for r in rows.page("bob", None, 10)[0]] == ["b0"]


def test_expired_tasks_go_when_a_task_is_added(storage: Storage) -> None:
    rows = storage.mcp_tasks
    now = time.time()
    rows.add(_task("old", "ada", now - 100, now - 1))
    rows.add(_task("keep", "ada", now, None))
    rows.add(_task("new", "ada", now, now + 60))
    assert rows.get("old") is None
    assert rows.get("keep") is not None and rows.get("new") is not None


def test_a_task_parks_for_answers_and_works_again_once(storage: Storage) -> None:
    rows = storage.mcp_tasks
    now = time.time()
    rows.add(_task("t", "ada", now, now + 60))
    rows.set_job("t", 7)
    assert rows.park("t", b"asked", now + 1) is True
    assert rows.park("t", b"again", now + 2) is False  # only a working task parks
    assert rows.settle("t", b"late", None, now + 2) is False  # a parked round is no outcome
    row = rows.get("t")
    assert row is not None and (row.status, row.output) == ("input_required", b"asked")
    # An answer kept against a stale read is refused: the caller reads again.
    assert rows.answer("t", b"half", now, now + 3, resume=False) is False
    assert rows.answer("t", b"half", now + 1, now + 3, resume=False) is True
    assert rows.answer("t", b"all", now + 3, now + 4, resume=True) is True
    row = rows.get("t")
    assert row is not None and (row.status, row.job_id, row.output) == ("working", None, b"all")
    assert rows.settle("t", b"out", None, now + 5) is True

    rows.add(_task("c", "ada", now, now + 60))
    rows.park("c", b"asked", now + 1)
    assert rows.cancel("c", now + 2) is True  # a waiting task can be cancelled
    assert rows.answer("c", b"all", now + 2, now + 3, resume=True) is False


def test_a_secret_is_made_once_and_shown_as_no_ones_task(storage: Storage) -> None:
    rows = storage.mcp_tasks
    assert rows.secret("k", b"first") == b"first"
    assert rows.secret("k", b"second") == b"first"
    assert rows.secret("other", b"x") == b"x"
    assert rows.page("", None, 10)[0][0].owner == ""  # owned by no principal
    assert rows.page("ada", None, 10) == ([], None)
