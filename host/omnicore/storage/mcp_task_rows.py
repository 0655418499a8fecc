"""The interface of MCP tasks' durable state (omnicore.mcp.tasks): one row per task, the
durable job that runs it, and what the call answered.

A task belongs to the principal that created it (``owner``: the console user behind the
token). Its row is made before its job is queued, so the job's outcome always finds it; the
outcome is the handler's raw output or the error that ended the call, kept until the task's
time to live runs out. ``status`` is ``working`` until the outcome or a cancel moves it, once,
to ``done`` or ``cancelled``: whichever comes first wins, and neither is undone. A call that
asks its client something not yet answered moves it to ``input_required`` (:meth:`park`)
until the answers come (:meth:`resume`, back to ``working`` for a new job); before the task
is ``done``, ``output`` holds those rounds (the questions and answers, omnicore.mcp's JSON).

The same table keeps the MCP server's secrets shared by every host of the database
(:meth:`secret`): rows no principal owns, under ids no task id can take.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

__all__ = ["McpTaskRows", "TaskRow", "TaskState"]

TaskState = Literal["working", "input_required", "done", "cancelled"]


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: str
    owner: str
    tool: str
    job_id: int | None
    status: TaskState
    #: The handler's output when the call returned (``error`` is None then); before the
    #: task is done, its rounds of questions and answers (None: none yet).
    output: bytes | None
    #: The one-line reason the call failed.
    error: str | None
    created_at: float
    updated_at: float
    #: When the row may be deleted (None: kept until deleted).
    expires_at: float | None


class McpTaskRows(abc.ABC):
    """MCP tasks' rows. Thread-safe."""

    @abc.abstractmethod
    def add(self, row: TaskRow) -> None:
        """Keep a new task (and delete the tasks whose time ran out)."""

    @abc.abstractmethod
    def set_job(self, task_id: str, job_id: int) -> None:
        """Name the job that runs the task."""

    @abc.abstractmethod
    def get(self, task_id: str) -> TaskRow | None: ...

    @abc.abstractmethod
    def page(self, owner: str, after: int | None, limit: int) -> tuple[list[TaskRow], int | None]:
        """``owner``'s tasks, newest first, from past the cursor ``after`` (None: the
        newest); the page and the cursor of the next one (None: that was the last)."""

    @abc.abstractmethod
    def settle(self, task_id: str, output: bytes | None, error: str | None, at: float) -> bool:
        """Record how the call ended; False when the task was settled or cancelled already
        (a job delivered twice, or a cancel that came first: the first word stays)."""

    @abc.abstractmethod
    def cancel(self, task_id: str, at: float) -> bool:
        """Move a working or input_required task to cancelled; False when it was neither."""

    @abc.abstractmethod
    def park(self, task_id: str, rounds: bytes, at: float) -> bool:
        """Move a working task to input_required with its ``rounds``; False when it was not
        working (cancelled meanwhile)."""

    @abc.abstractmethod
    def answer(self, task_id: str, rounds: bytes, seen: float, at: float, *,
               resume: bool) -> bool:
        """Keep the new ``rounds`` of an input_required task last updated at ``seen``, and
        with ``resume`` move it back to working, its job not yet named; False when the task
        changed since ``seen`` (another answer, a cancel: read it again)."""

    @abc.abstractmethod
    def secret(self, name: str, make: bytes) -> bytes:
        """The secret ``name`` every host of the database shares: ``make`` if none was kept
        yet, else the one kept (the first host to keep one wins a race)."""
