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
