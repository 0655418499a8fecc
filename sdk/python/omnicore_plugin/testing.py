"""A test host: run a plugin's handlers in plain CPython, under pytest, without omnicore.

    from omnicore_plugin.testing import TestHost
    import plugin

    def test_count():
        with TestHost(config={"greeting": "Hi"}) as host:
            assert host.call("count", b"") == b"1"
            assert host.kv["n"] == b"1"

It stands in for the host's capabilities: an in-memory kv (``host.kv``), the config given,
the log lines written (``host.logs``: ``(level, message)``), the tasks enqueued
(``host.tasks``) and the events published (``host.events``); it runs no task and delivers
no event. HTTP answers only the URLs given (``http={url: (status, body)}``); any other is
refused as ``DENIED``. SQL answers come from the function given (``sql=fn``: it gets a
:class:`SqlCall` and returns rows as a list of dicts, or ``(columns, rows)``, for a query,
and ``rows_affected`` or an :class:`~omnicore_plugin.sql.Executed` for an execute; no
database runs), each statement kept in ``host.sql_calls``; Redis is omnicore's in-memory one
(``host.redis``: the host's commands, replies and refusals; the clock does not move).
Memories (``host.memories``) are recalled by shared words, vectors (``host.vectors``)
searched exhaustively by cosine; the secrets given (``secrets={name: value}``, None for
exposed but unset) are the exposed ones.
Handlers are called with :meth:`TestHost.call`, the same dispatch the component uses.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace, TracebackType
from typing import Any

from omnicore_plugin._binding import STAND_INS
from omnicore_plugin._handlers import dispatch

__all__ = ["SqlCall", "TestHost"]


class _Refused(Exception):
    """What componentize-py raises for a WIT ``err``: the code in ``value``."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.value = enum.Enum("Error", [code])[code]


class _Level(enum.Enum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4


class _Log:
    Level = _Level

    def __init__(self, host: TestHost) -> None:
        self._host = host

    def write(self, level: _Level, message: str) -> None:
        self._host.logs.append((level.name.lower(), message))

    def enabled(self, level: _Level) -> bool:
        return True


class _Config:
    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = config

    def get(self, key: str) -> str | None:
        value: Any = self._config
        for part in key.split(".") if key else []:
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


class _KV:
    def __init__(self, data: dict[str, bytes]) -> None:
        self._data = data

    @staticmethod
    def _check(key: str) -> None:
        if not 0 < len(key.encode()) <= 512:
            raise _Refused("INVALID")

    def get(self, key: str) -> bytes | None:
        self._check(key)
        return self._data.get(key)

    def set(self, key: str, value: bytes) -> None:
        self._check(key)
        self._data[key] = bytes(value)

    def delete(self, key: str) -> bool:
        self._check(key)
        return self._data.pop(key, None) is not None

    def incr(self, key: str, delta: int) -> int:
        self._check(key)
        try:
            value = int(self._data.get(key, b"0")) + delta
        except ValueError:
            raise _Refused("INVALID") from None
        self._data[key] = str(value).encode()
        return value

    def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self._data if k.startswith(prefix))[:1000]


class _Tasks:
    def __init__(self, host: TestHost) -> None:
        self._host = host
        self._cancelled: set[int] = set()

    def enqueue(self, handler: str, payload: bytes, delay_ms: int) -> int:
        from omnicore_plugin._handlers import handlers

        if handler not in handlers():
            raise _Refused("NOT_FOUND")
        self._host.tasks.append((handler, bytes(payload), delay_ms))
        return len(self._host.tasks)

    def cancel(self, task_id: int) -> bool:
        if not 0 < task_id <= len(self._host.tasks):
            raise _Refused("NOT_FOUND")
        first = task_id not in self._cancelled
        self._cancelled.add(task_id)
        return first


class _Events:
    def __init__(self, host: TestHost) -> None:
        self._host = host

    def publish(self, topic: str, payload: bytes) -> None:
        self._host.events.append((topic, bytes(payload)))


class _Tier(enum.Enum):
    WORKING = 0
    SHORT_TERM = 1
    LONG_TERM = 2


class _Memory:
    """Memories ranked by the query words they share (the host ranks by relevance,
    recency and importance; tests should not depend on ties)."""

    Tier = _Tier

    def __init__(self, host: TestHost) -> None:
        self._host = host
        self._next = 0

    def remember(self, tier: _Tier, item: str) -> int:
        obj = json.loads(item)
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise _Refused("INVALID")
        self._next += 1
        self._host.memories[self._next] = {
            "id": self._next, "tier": tier.value, "text": obj["text"],
            "metadata": obj.get("metadata") or {}, "score": 0.0, "created_at": 0.0}
        return self._next

    def recall(self, query: str) -> str:
        q = json.loads(query)
        words = set(str(q.get("query", "")).lower().split())
        tiers = q.get("tiers", [0, 1, 2])
        flt = q.get("filter") or {}
        found = []
        for m in self._host.memories.values():
            if m["tier"] not in tiers or any(m["metadata"].get(k) != v for k, v in flt.items()):
                continue
            score = len(words & set(m["text"].lower().split()))
            if score or not words:
                found.append({**m, "score": float(score)})
        found.sort(key=lambda m: (-m["score"], -m["id"]))
        return json.dumps(found[:int(q.get("limit", 10))])

    def forget(self, memory_id: int) -> bool:
        return self._host.memories.pop(memory_id, None) is not None


class _Vectors:
    """Collections searched exhaustively by cosine similarity."""

    def __init__(self, host: TestHost) -> None:
        self._host = host

    def upsert(self, collection: str, vector_id: str, vector: list[float],
               metadata: str) -> None:
        coll = self._host.vectors.setdefault(collection, {})
        others = [v for vid, (v, _) in coll.items() if vid != vector_id]
        if not vector or (others and len(others[0]) != len(vector)):
            raise _Refused("INVALID")  # a collection has one dimension
        coll[vector_id] = (list(vector), json.loads(metadata) if metadata else {})

    def search(self, collection: str, vector: list[float], k: int, filter: str) -> str:
        if collection not in self._host.vectors:
            raise _Refused("NOT_FOUND")
        flt = json.loads(filter) if filter else {}

        def cosine(v: list[float]) -> float:
            dot = sum(a * b for a, b in zip(v, vector, strict=False))
            norm = (sum(a * a for a in v) * sum(b * b for b in vector)) ** 0.5
            return dot / norm if norm else 0.0

        found = [{"id": vid, "score": round(cosine(v), 6), "metadata": meta}
                 for vid, (v, meta) in self._host.vectors[collection].items()
                 if all(meta.get(key) == val for key, val in flt.items())]
        found.sort(key=lambda m: -m["score"])
        return json.dumps(found[:k])

    def delete(self, collection: str, vector_id: str) -> bool:
        if collection not in self._host.vectors:
            raise _Refused("NOT_FOUND")
        return self._host.vectors[collection].pop(vector_id, None) is not None


class _Secrets:
    """The secrets given are the exposed ones; any other name is DENIED."""

    def __init__(self, secrets: Mapping[str, bytes | None]) -> None:
        self._secrets = secrets

    def get(self, name: str) -> bytes:
        if name not in self._secrets:
            raise _Refused("DENIED")
        value = self._secrets[name]
        if value is None:
            raise _Refused("NOT_FOUND")
        return value


class _Answer:
    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.headers, self.body = status, [], body


class _Http:
    def __init__(self, routes: Mapping[str, tuple[int, bytes]]) -> None:
        self._routes = routes

    def request(self, request: str, body: bytes) -> _Answer:
        url = json.loads(request).get("url", "")
        if url not in self._routes:
            raise _Refused("DENIED")
        status, answer = self._routes[url]
        return _Answer(status, answer)


class _Failed(Exception):
    """What componentize-py raises for a WIT ``err`` of a ``failure`` record."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        # The shape Binding reads: value.code.name and value.message.
        self.value = SimpleNamespace(code=SimpleNamespace(name=code), message=message)


@dataclass
class SqlCall:
    """One statement the plugin ran: its connector, text and decoded parameters."""

    connector: str
    sql: str
    params: list[Any] = field(default_factory=list)
    query: bool = True
    #: The transaction it ran in; BEGIN, COMMIT and ROLLBACK are recorded as statements.
    tx: int | None = None


class _Sql:
    def __init__(self, host: TestHost, answer: Callable[[SqlCall], Any] | None) -> None:
        self._host, self._answer = host, answer
        self._open: dict[int, str] = {}

    def begin(self, connector: str) -> int:
        tx = len(self._host.sql_calls) + 1
        self._open[tx] = connector
        self._host.sql_calls.append(SqlCall(connector, "BEGIN", query=False, tx=tx))
        return tx

    def _end(self, tx: int, what: str) -> None:
        if tx not in self._open:
            raise _Failed("NOT_FOUND", f"NOT_FOUND: transaction {tx} is not open")
        self._host.sql_calls.append(SqlCall(self._open.pop(tx), what, query=False, tx=tx))

    def commit(self, tx: int) -> None:
        self._end(tx, "COMMIT")

    def rollback(self, tx: int) -> None:
        self._end(tx, "ROLLBACK")

    def _run(self, connector: str, request: str, query: bool) -> str:
        from omnicore_plugin import sql

        req = json.loads(request)
        call = SqlCall(connector, req["sql"], [sql.decode(p) for p in req.get("params", [])],
                       query, req.get("tx"))
        if call.tx is not None and self._open.get(call.tx) != connector:
            raise _Failed("INVALID", f"INVALID: transaction {call.tx} is not open on "
                                     f"connector {connector}")
        self._host.sql_calls.append(call)
        if self._answer is None:
            raise _Failed("UNAVAILABLE", f"UNAVAILABLE: connector {connector}: the TestHost "
                                         "has no sql function")
        answer = self._answer(call)
        if not query:
            if isinstance(answer, sql.Executed):
                return json.dumps({"rows_affected": answer.rows_affected,
                                   "last_insert_id": answer.last_insert_id})
            return json.dumps({"rows_affected": int(answer or 0)})
        if isinstance(answer, tuple):
            names, rows = list(answer[0]), [list(r) for r in answer[1]]
            for row in rows:
                if len(row) != len(names):
                    # The host never answers so: a test written on it would pass here only.
                    raise ValueError(f"TestHost sql answer: the row {row!r} has {len(row)} "
                                     f"values for {len(names)} columns {names!r}")
        else:
            names = list(answer[0]) if answer else []
            rows = [[r[n] for n in names] for r in answer or []]
        return json.dumps({"columns": [{"name": n, "type": ""} for n in names],
                           "rows": [[sql.encode(v) for v in r] for r in rows]})

    def query(self, connector: str, request: str) -> str:
        return self._run(connector, request, True)

    def execute(self, connector: str, request: str) -> str:
        return self._run(connector, request, False)


class _Redis:
    """omnicore's in-memory Redis (``omnicore.toolchains.testredis``: the host's commands,
    replies and refusals, held to sdk/contract/host.json; C's test runner serves the same)."""

    def __init__(self, host: TestHost) -> None:
        self._host = host

    def command(self, connector: str, request: str) -> str:
        failed, block = self._host.redis.command(request.encode())
        if failed:
            text = block.decode()
            raise _Failed(text.split(":", 1)[0], text)
        return block.decode()


class TestHost:
    """Stand-ins for the host while it is entered (a context manager)."""

    __test__ = False  # not a pytest test class

    def __init__(self, config: Mapping[str, Any] | None = None,
                 kv: Mapping[str, bytes] | None = None,
                 http: Mapping[str, tuple[int, bytes]] | None = None,
                 secrets: Mapping[str, bytes | None] | None = None,
                 sql: Callable[[SqlCall], Any] | None = None) -> None:
        self.kv: dict[str, bytes] = dict(kv or {})
        #: The statements run, in order.
        self.sql_calls: list[SqlCall] = []
        self._redis: Any = None
        #: The memories remembered, by id: ``{"id", "tier" (0-2), "text", "metadata", ...}``.
        self.memories: dict[int, dict[str, Any]] = {}
        #: ``{collection: {id: (vector, metadata)}}``.
        self.vectors: dict[str, dict[str, tuple[list[float], dict[str, Any]]]] = {}
        self.logs: list[tuple[str, str]] = []
        #: ``(handler, payload, delay_ms)`` of each task enqueued; the id is index + 1.
        self.tasks: list[tuple[str, bytes, int]] = []
        #: ``(topic, payload)`` of each event published.
        self.events: list[tuple[str, bytes]] = []
        self._stand_ins: dict[str, Any] = {
            "log": _Log(self), "config": _Config(dict(config or {})), "kv": _KV(self.kv),
            "tasks": _Tasks(self), "events": _Events(self), "http": _Http(dict(http or {})),
            "memory": _Memory(self), "vectors": _Vectors(self),
            "secrets": _Secrets(dict(secrets or {})), "sql": _Sql(self, sql),
            "redis": _Redis(self)}

    @property
    def redis(self) -> Any:
        """The Redis the plugin's commands run on: omnicore's in-memory one
        (``omnicore.toolchains.testredis.MemoryRedis``; keys as the plugin names them:
        ``host.redis.value("hits")``, ``host.redis.ttl("hits")``, ``host.redis.put(k, v)``,
        every key in ``host.redis.data``). The clock does not move."""
        if self._redis is None:
            try:
                from omnicore.toolchains.testredis import MemoryRedis
            except ImportError:
                raise RuntimeError("the TestHost's Redis is omnicore's: run the tests with "
                                   "`omnicore test` (or with omnicore importable)") from None
            self._redis = MemoryRedis()
        return self._redis

    def __enter__(self) -> TestHost:
        STAND_INS.update(self._stand_ins)
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        for name in self._stand_ins:
            STAND_INS.pop(name, None)

    def call(self, handler: str, data: bytes | str = b"") -> bytes:
        """Run ``handler`` on ``data`` as the host would; its exception propagates."""
        return dispatch(handler, data.encode() if isinstance(data, str) else data)
