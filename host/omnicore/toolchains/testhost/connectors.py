"""The outbound services in a test: HTTP and SQL answer what the test scripted for the next
request (:class:`~.services.Answers`), Redis is
:class:`~omnicore.toolchains.testredis.MemoryRedis`. Of the real egress and connector code,
what runs is what needs no network: the request's reading (``egress.Request``,
``SqlBackend.request``), the statements a connector refuses, the refusals' statuses.
Imported when a program first uses http, sql or redis (the egress package is not small).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from omnicore.egress import Policy, Refused, Request, Response
from omnicore.egress.db.sql import SqlBackend
from omnicore.egress.db.statements import judge
from omnicore.egress.db.values import cell
from omnicore.toolchains.testhost.services import Answers, sql_answer_problem
from omnicore.toolchains.testredis import MemoryRedis

__all__ = ["SQL_KINDS", "Everything", "TestDatabases", "TestEgress"]

#: The SQL connectors' kinds (config's ``connectors.<name>.kind``).
SQL_KINDS = ("postgres", "mysql")


def _refused(message: str) -> Refused:
    """A scripted failure (``"UNAVAILABLE: why"``) as the host's refusal of that status."""
    status, sep, why = message.partition(": ")
    if sep and status in ("NOT_FOUND", "DENIED", "INVALID", "QUOTA", "UNAVAILABLE",
                          "TOO_LARGE"):
        return Refused(status, why)
    return Refused("UNAVAILABLE", message)


class _Client:
    def __init__(self, answers: Answers) -> None:
        self._answers = answers
        self.policy = Policy()

    def send(self, request: Request, deadline: float) -> Response:
        answer, self._answers.http = self._answers.http, None
        if answer is None:
            raise Refused("UNAVAILABLE", "the test gave no answer for this HTTP request "
                                         "(Rust: testing::on_http, Go: TestHost.HTTP, Zig: "
                                         "Host.setHttp, AssemblyScript: setHttp, Kotlin: "
                                         "Host.setHttp)")
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

    def __init__(self, name: str, answers: Answers, log: list[list[Any]],
                 kinds: dict[str, str]) -> None:
        # No pool, dialect or secret: nothing is connected to.
        self.connector = _Connector(name, "postgres")  # type: ignore[assignment]
        self.name = name
        self._answers = answers
        self._log = log
        self._kinds = kinds  # the test's, as the operator's connectors.<name>.kind

    def run(self, plugin: str, query: bool, sql: str, args: list[Any], deadline: float,
            conn: Any = None) -> bytes:
        # The host's own gate, so a plugin's test hears what the host would answer.
        kind = self._kinds.get(self.name, self.connector.kind)
        verdict = judge(sql, kind, conn is not None, self.connector.read_only)
        if verdict.reason is not None:
            raise Refused(verdict.status, verdict.message(self.name))
        # The parameters as the SDK sent them (tagged JSON: the test reads them back).
        self._log.append([self.name, sql, [cell(arg) for arg in args], conn])
        answer, self._answers.sql = self._answers.sql, None
        if answer is None:
            raise Refused("UNAVAILABLE", f"connector {self.name}: the test gave no answer "
                                         "(Rust: testing::on_sql, Go: TestHost.SQL, Zig: "
                                         "Host.setSql, AssemblyScript: setSql, Kotlin: "
                                         "Host.setSql)")
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
    #: A SQL connector's kind, as the operator's ``connectors.<name>.kind``: whose grammar
    #: judges its statements (PostgreSQL's unless the test names another).
    kinds: dict[str, str] = field(default_factory=dict)
    _backends: dict[tuple[str, bool], Any] = field(default_factory=dict)

    def backend(self, name: str, kinds: tuple[str, ...]) -> Any:
        # One backend per name, as the app's: a transaction belongs to the one it began on.
        key = (name, "redis" in kinds)
        found = self._backends.get(key)
        if found is None:
            found = self._backends[key] = (_Redis(name, self.redis) if key[1]
                                           else _Sql(name, self.answers, self.statements,
                                                     self.kinds))
        return found

    def set_kind(self, name: str, kind: str) -> None:
        """Connector ``name`` is a ``kind`` ("postgres" or "mysql") one; ValueError if not."""
        if kind not in SQL_KINDS:
            raise ValueError(f"connector {name}: kind {kind!r} is not a SQL connector's "
                             f"({', '.join(SQL_KINDS)})")
        self.kinds[name] = kind
