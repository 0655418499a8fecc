"""``omnicore:mcp`` in the job of an MCP task (omnicore.mcp.tasks; 2026-07-28, the tasks
extension with SEP-2322's questions): the rounds of questions and answers kept in the task's
row, and the client its job's call asks. Here, below the app, because every host runs MCP
tasks' jobs, whether it serves ``/mcp`` or not.

A task's job has no client waiting on it: it may run on another host, after a restart. So a
question is never sent. The job's call runs with a :class:`TaskClient` that answers from the
answers the row keeps; a question it has no answer for is recorded, and when the call ends the
task is parked ``input_required`` with it (:class:`TaskJobs`, the job's context and outcome
sink on every host); the round's job succeeds. ``tasks/get`` shows the questions still open
as ``inputRequests``; ``tasks/update`` adds the client's answers, and once none is open the
task is ``working`` again under a new job, which calls the handler from the start with every
answer so far — the same model as a call's ``input_required`` rounds (omnicore.mcp.rounds),
kept in the database rather than in a signed ``requestState``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from omnicore.capabilities.mcp import CLIENT, ClientRefused, answer_of, pend, question
from omnicore.storage import Job
from omnicore.storage.mcp_task_rows import McpTaskRows

__all__ = ["TaskClient", "TaskJobs", "TaskRounds"]


@dataclass
class TaskRounds:
    """A task's questions and answers (the row's ``output`` until the task is done).

    ``caps``: the client capabilities the request that made the task declared (a question
    needing another is refused, as on a plain call); ``arguments``: the call's, for the job
    of each round; ``asked``: each question by key, as the SDK's request; ``answers``: the
    client's answers by key."""

    caps: list[str]
    arguments: Mapping[str, Any] | None
    asked: dict[str, Any] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)

    @property
    def open(self) -> dict[str, Any]:
        """The questions not answered yet, by key."""
        return {k: v for k, v in self.asked.items() if k not in self.answers}

    def dump(self) -> bytes:
        return json.dumps({"caps": self.caps, "arguments": self.arguments,
                           "asked": self.asked, "answers": self.answers},
                          separators=(",", ":")).encode()

    @classmethod
    def load(cls, raw: bytes | None) -> TaskRounds | None:
        """The rounds kept in a row's ``output``; None for a task that cannot ask (made by a
        plain call, or on a revision before 2026-07-28)."""
        if not raw:
            return None
        try:
            doc = json.loads(raw)
            return cls(list(doc["caps"]), doc["arguments"], dict(doc["asked"]),
                       dict(doc["answers"]))
        except (ValueError, KeyError, TypeError):
            return None


class TaskClient:
    """The client of a task's job (implements :class:`omnicore.capabilities.mcp.Client`):
    questions are answered from ``rounds`` or recorded in :attr:`pending`; no progress."""

    def __init__(self, rounds: TaskRounds | None) -> None:
        self._rounds = rounds
        self.pending: dict[str, Any] = {}
        self._asked = 0

    def progress(self, progress: float, total: float | None, message: str | None) -> bool:
        return False  # nobody waits on the job's stream: the client polls tasks/get

    def ask(self, method: str, params: Mapping[str, Any], deadline: float,
            key: str | None = None) -> dict[str, Any]:
        self._asked += 1
        key = key or f"{method.partition('/')[0]}-{self._asked}"
        capability, request, result_type = question(method, params)
        rounds = self._rounds
        if rounds is None:
            raise ClientRefused("UNAVAILABLE", "this task's client cannot be asked (it was "
                                               "made without the 2026-07-28 tasks extension)")
        if capability not in rounds.caps:
            raise ClientRefused("UNAVAILABLE", f"the MCP client did not declare the "
                                               f"'{capability}' capability")
        answer = answer_of(rounds.answers.get(key), result_type)
        if answer is not None:
            return answer
        raise pend(self.pending, key, request, "the task is input_required until tasks/update")


class TaskJobs:
    """The job side of MCP tasks, on every host: :meth:`around` is the context a task's job
    calls its handler in, :meth:`sink` takes the call's outcome to the task's row."""

    def __init__(self, rows: Callable[[], McpTaskRows]) -> None:
        self._rows = rows
        #: The job whose call this thread parked (its outcome is then no answer).
        self._parked = threading.local()

    @contextmanager
    def around(self, job: Job) -> Iterator[None]:
        task_id = job.source.partition(":")[2]
        row = self._rows().get(task_id)
        rounds = TaskRounds.load(row.output) if row is not None and row.status == "working" \
            else None
        client = TaskClient(rounds)
        token = CLIENT.set(client)
        try:
            yield
        except Exception:
            if not (client.pending and rounds is not None):
                raise
            # The call failed on its question: the task waits for the answer, and this
            # round's job is done (it succeeds, no output), not dead.
        finally:
            CLIENT.reset(token)
            if client.pending and rounds is not None:
                rounds.asked.update(client.pending)
                self._rows().park(task_id, rounds.dump(), time.time())
                self._parked.job = job.id

    def sink(self, job: Job, output: bytes | None, error: str | None) -> None:
        if getattr(self._parked, "job", None) == job.id:
            return  # the task waits for its client: the call's end is no outcome
        self._rows().settle(job.source.partition(":")[2], output, error, time.time())
