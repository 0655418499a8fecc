"""The services behind the capabilities in a test: in memory, recording what a test reads back.

Each stands where an app's service stands for the real capability code (``capabilities/``):
the job queue and the event bus record what a plugin enqueued and published; secrets are what
the test set; HTTP and SQL answer what the test scripted for the next request (the request
itself still parsed and checked by the host's code: ``egress.Request``, ``SqlBackend.request``);
Redis is :class:`~omnicore.toolchains.testredis.MemoryRedis`. Nothing here leaves the process.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omnicore.config.schema import JobsConfig
from omnicore.egress import Policy, Refused, Request, Response
from omnicore.egress.db.sql import SqlBackend
from omnicore.egress.db.statements import refusal
from omnicore.toolchains.testredis import MemoryRedis

__all__ = ["Answers", "Everything", "Jobs", "Secrets", "Subscriptions", "TestDatabases",
           "TestEgress", "sql_answer_problem"]


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
    if "columns" not in doc:
        return "it has no columns"
    if "rows" not in doc:
        return "it has no rows"
    columns, rows = doc["columns"], doc["rows"]
    if not isinstance(columns, list) or not isinstance(rows, list):
        return "columns and rows are arrays"
    for column in columns:
        if not isinstance(column, dict):
            return 'a column is an object {"name", "type"}, never a bare name'
        if "name" not in column:
            return "a column has a name"
        if "type" not in column:
            return "a column has a type"
        if not isinstance(column["name"], str) or not isinstance(column["type"], str):
            return "a column's name and type are strings"
    for row in rows:
        if not isinstance(row, list):
            return "a row is an array of the columns' values"
        if len(row) != len(columns):
            return "a row has one value per column"
    return None


def _refused(message: str) -> Refused:
    """A scripted failure (``"UNAVAILABLE: why"``) as the host's refusal of that status."""
    status, sep, why = message.partition(": ")
    if sep and status in ("NOT_FOUND", "DENIED", "INVALID", "QUOTA", "UNAVAILABLE",
                          "TOO_LARGE"):
        return Refused(status, why)
    return Refused("UNAVAILABLE", message)


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
        self.options = JobsConfig()
        self.jobs: list[list[Any]] = []

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


class _Client:
    def __init__(self, answers: Answers) -> None:
        self._answers = answers
        self.policy = Policy()

    def send(self, request: Request, deadline: float) -> Response:
        answer, self._answers.http = self._answers.http, None
        if answer is None:
            raise Refused("UNAVAILABLE", "the test gave no answer for this HTTP request "
                                         "(omnicore::testing::on_http)")
        head, body, failed = answer
        if failed:
            raise _refused(head.decode("utf-8", "replace"))
        doc = json.loads(head)
        return Response(int(doc["status"]), {k.lower(): v for k, v in doc["headers"]}, body)


class TestEgress:
    """The egress service: every plugin's client answers what the test scripted."""

    def __init__(self, answers: Answers) -> None:
        self._answers = answers

    def client(self, plugin: str, grant: Any) -> _Client:
        return _Client(self._answers)


@dataclass(frozen=True)
class _Connector:
    name: str
    kind: str
    max_transactions: int = 2
    read_only: bool = False


class _Sql(SqlBackend):
    """A connector answering what the test scripted. Of the real backend, what runs is what
    needs no server: the request's parsing (``request``) and the statements it refuses."""

    def __init__(self, name: str, answers: Answers, log: list[list[Any]]) -> None:
        # No pool, dialect or secret: nothing is connected to.
        self.connector = _Connector(name, "postgres")  # type: ignore[assignment]
        self.name = name
        self._answers = answers
        self._log = log

    def run(self, plugin: str, query: bool, sql: str, args: list[Any], deadline: float,
            conn: Any = None) -> bytes:
        why = refusal(sql, self.connector.kind, conn is not None)
        if why is not None:
            raise Refused("DENIED", f"connector {self.name}: {why} (specs/abi.md §4.10)")
        self._log.append([self.name, sql, args, conn])
        answer, self._answers.sql = self._answers.sql, None
        if answer is None:
            raise Refused("UNAVAILABLE", f"connector {self.name}: the test gave no answer "
                                         "(omnicore::testing::on_sql)")
        text, failed = answer
        if failed:
            raise _refused(text)
        problem = sql_answer_problem(text) if query else None
        if problem is not None:
            raise Refused("INVALID", f"the test's answer is not shaped as the host's: {problem}")
        return text.encode()

    def begin(self, plugin: str, deadline: float) -> Any:
        # The test's transactions are numbered 1, 2, ... in the statements it reads back.
        tx = sum(1 for entry in self._log if entry[1] == "BEGIN") + 1
        self._log.append([self.name, "BEGIN", [], tx])
        return tx

    def end(self, plugin: str, conn: Any, commit: bool, deadline: float) -> None:
        self._log.append([self.name, "COMMIT" if commit else "ROLLBACK", [], conn])


class _Redis:
    def __init__(self, name: str, redis: MemoryRedis) -> None:
        self.connector = _Connector(name, "redis")
        self.name = name
        self._redis = redis

    def command(self, plugin: str, cmd: Any, args: Any, deadline: float) -> bytes:
        failed, answer = self._redis.command(json.dumps({"cmd": cmd, "args": args}).encode())
        if failed:
            raise _refused(answer.decode())
        return answer


class Everything(frozenset[str]):
    """A grant's connectors in a test: whatever name the plugin uses."""

    def __contains__(self, name: object) -> bool:
        return True


@dataclass
class TestDatabases:
    """The app's connectors: SQL ones answer the script, Redis ones share one MemoryRedis."""

    answers: Answers
    redis: MemoryRedis = field(default_factory=MemoryRedis)
    #: ``[connector, statement, params, tx]``: BEGIN, COMMIT and ROLLBACK too.
    statements: list[list[Any]] = field(default_factory=list)
    connectors: dict[str, Any] = field(default_factory=dict)
    _backends: dict[tuple[str, bool], Any] = field(default_factory=dict)

    def backend(self, name: str, kinds: tuple[str, ...]) -> Any:
        # One backend per name, as the app's: a transaction belongs to the one it began on.
        key = (name, "redis" in kinds)
        found = self._backends.get(key)
        if found is None:
            found = self._backends[key] = (_Redis(name, self.redis) if key[1]
                                           else _Sql(name, self.answers, self.statements))
        return found
