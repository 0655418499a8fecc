"""The services behind the capabilities in a test: in memory, recording what a test reads back.

Each stands where an app's service stands for the real capability code (``capabilities/``):
the job queue and the event bus record what a plugin enqueued and published; secrets are what
the test set; :class:`Answers` holds what the test scripted for the next HTTP request and SQL
statement (served by :mod:`.connectors`). Nothing here leaves the process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Answers", "Jobs", "Secrets", "Subscriptions", "sql_answer_problem"]


def sql_answer_problem(text: str) -> str | None:
    """Why a query's answer is not shaped as the host's (``{"columns": [{"name", "type"}...],
    "rows": [[one value per column]...]}``), or None: a plugin tested on another shape would
    pass its tests and fail live."""
    try:
        doc = json.loads(text)
    except ValueError:
        return "it is not JSON"
    if not isinstance(doc, dict):
        return "it is not an object"
    for key in ("columns", "rows"):
        if key not in doc:
            return f"it has no {key}"
    columns, rows = doc["columns"], doc["rows"]
    if not isinstance(columns, list) or not isinstance(rows, list):
        return "columns and rows are arrays"
    for column in columns:
        if not isinstance(column, dict):
            return 'a column is an object {"name", "type"}, never a bare name'
        for key in ("name", "type"):
            if key not in column:
                return f"a column has a {key}"
        if not isinstance(column["name"], str) or not isinstance(column["type"], str):
            return "a column's name and type are strings"
    for row in rows:
        if not isinstance(row, list):
            return "a row is an array of the columns' values"
        if len(row) != len(columns):
            return "a row has one value per column"
    return None


@dataclass
class Answers:
    """What the test scripted for the next HTTP request and SQL statement (one each: the
    SDK's test module sets it just before the plugin's call reaches the host)."""

    http: tuple[bytes, bytes, bool] | None = None  # (head JSON or failure, body, failed)
    sql: tuple[str, bool] | None = None  # (answer JSON or failure, failed)


class Jobs:
    """The job service's door as the tasks capability uses it: ``[id, handler, payload,
    delay_ms, cancelled]`` per job, ids from 1."""

    def __init__(self) -> None:
        self.jobs: list[list[Any]] = []

    @property
    def options(self) -> Any:
        """The app-wide defaults of a tasks grant: the config's own."""
        from omnicore.config.schema import JobsConfig

        return JobsConfig()

    def enqueue(self, plugin: str, handler: str, payload: bytes, *, delay_s: float,
                **_options: Any) -> int:
        self.jobs.append([len(self.jobs) + 1, handler, payload, round(delay_s * 1000), False])
        return len(self.jobs)

    def cancel(self, job_id: int, plugin: str) -> bool | None:
        if not 0 < job_id <= len(self.jobs):
            return None
        job = self.jobs[job_id - 1]
        was_queued = not job[4]
        job[4] = True
        return was_queued


class Subscriptions:
    """The event bus's door as the events capability uses it: ``(topic, payload)`` as the
    plugin named the topic (the host's ``plugin.<name>.`` prefix is not part of it)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def publish(self, plugin: str, topic: str, size: int, payload: Callable[[], bytes]) -> None:
        self.published.append((topic, payload()))


class Secrets:
    """The secret store: name -> value the test set (None: exposed, not set)."""

    def __init__(self) -> None:
        self.values: dict[str, bytes | None] = {}

    def get(self, name: str) -> bytes | None:
        return self.values.get(name)


