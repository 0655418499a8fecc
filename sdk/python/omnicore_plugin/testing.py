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
database runs), each statement kept in ``host.sql_calls``; Redis is an in-memory server with
the host's command list and key prefix (``host.redis``: full key -> str, dict, list or set;
``host.redis_ttl``: seconds set, the clock does not move). Memories (``host.memories``) are
recalled by shared words, vectors (``host.vectors``) searched exhaustively by cosine; the
secrets given (``secrets={name: value}``, None for exposed but unset) are the exposed ones.
Handlers are called with :meth:`TestHost.call`, the same dispatch the component uses.
"""

from __future__ import annotations

import base64
import enum
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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


def _contract() -> dict[str, Any]:
    """The host's answers as one table (sdk/contract/host.json, beside this SDK in a checkout
    and in omnicore's wheel alike): the command list below is the host's, not a copy."""
    table = Path(__file__).resolve().parents[2] / "contract" / "host.json"
    if not table.is_file():
        raise RuntimeError(f"omnicore_plugin.testing: {table} is missing: the SDK folder "
                           "(sdk/python) must sit beside sdk/contract, as in omnicore's wheel")
    return dict(json.loads(table.read_text()))


#: specs/abi.md §4.11's commands, each ``[least args, most args or None, keys]``: anything
#: else is DENIED, as on the host.
_REDIS_COMMANDS: dict[str, list[Any]] = _contract()["redis"]["commands"]
_WRONGTYPE = "INVALID: WRONGTYPE Operation against a key holding the wrong kind of value"


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise _Failed("INVALID", "INVALID: value is not an integer or out of range") from None


class _Redis:
    """An in-memory Redis: keys under the prefix, the host's commands and refusals."""

    def __init__(self, host: TestHost) -> None:
        self._host = host

    def command(self, connector: str, request: str) -> str:
        req = json.loads(request)
        cmd = str(req.get("cmd", "")).upper()
        if cmd not in _REDIS_COMMANDS:
            raise _Failed("DENIED", f"DENIED: redis command {cmd!r} is not allowed")
        given = req.get("args") if req.get("args") is not None else []
        if not isinstance(given, list):
            raise _Failed("INVALID", "INVALID: args must be an array")
        least, most, _keys = _REDIS_COMMANDS[cmd]
        if len(given) < least or (most is not None and len(given) > most):
            raise _Failed("INVALID", f"INVALID: {cmd} takes {least}"
                          + ("" if most == least else f" to {most}" if most else " or more")
                          + f" arguments, got {len(given)}")
        args = []
        for a in given:
            if isinstance(a, dict):
                args.append(base64.b64decode(a["$bytes"]).decode("utf-8", "replace"))
            else:
                args.append(str(a))
        return json.dumps(self._run(cmd, args))

    def _run(self, cmd: str, args: list[str]) -> Any:
        db, ttl, prefix = self._host.redis, self._host.redis_ttl, self._host.redis_prefix
        key = prefix + args[0]

        def typed(kind: type) -> Any:
            value = db.get(key)
            if value is not None and not isinstance(value, kind):
                raise _Failed("INVALID", _WRONGTYPE)
            return value

        def store(value: Any) -> None:
            if value:
                db[key] = value
            else:
                db.pop(key, None)
                ttl.pop(key, None)

        if cmd in ("GET", "GETDEL"):
            value = typed(str)
            if cmd == "GETDEL":
                store(None)
            return value
        if cmd in ("SET", "SETNX"):
            nx, xx, keep, ex = cmd == "SETNX", False, False, None
            options = iter(a.upper() for a in args[2:])
            for option in options:
                if option in ("EX", "PX"):
                    n = _int(next(options, ""))
                    ex = n if option == "EX" else -(-n // 1000)
                elif option in ("NX", "XX", "KEEPTTL"):
                    nx, xx, keep = nx or option == "NX", xx or option == "XX", \
                        keep or option == "KEEPTTL"
                else:
                    raise _Failed("INVALID", "INVALID: syntax error")
            if (nx and key in db) or (xx and key not in db):
                return 0 if cmd == "SETNX" else None
            db[key] = args[1]
            if ex is not None:
                ttl[key] = ex
            elif not keep:
                ttl.pop(key, None)
            return 1 if cmd == "SETNX" else "OK"
        if cmd == "MGET":
            return [v if isinstance(v := db.get(prefix + a), str) else None for a in args]
        if cmd in ("DEL", "EXISTS"):
            found = [prefix + a for a in args if prefix + a in db]
            if cmd == "DEL":
                for k in found:
                    db.pop(k)
                    ttl.pop(k, None)
            return len(found)
        if cmd in ("INCR", "DECR", "INCRBY", "DECRBY"):
            by = {"INCR": 1, "DECR": -1}.get(cmd) or _int(args[1]) * (-1 if cmd == "DECRBY"
                                                                      else 1)
            value = _int(typed(str) or "0") + by
            db[key] = str(value)
            return value
        if cmd in ("EXPIRE", "PEXPIRE"):
            seconds = _int(args[1]) if cmd == "EXPIRE" else -(-_int(args[1]) // 1000)
            if key not in db:
                return 0
            if seconds <= 0:
                store(None)
            else:
                ttl[key] = seconds
            return 1
        if cmd in ("TTL", "PTTL"):
            if key not in db:
                return -2
            return -1 if key not in ttl else ttl[key] * (1 if cmd == "TTL" else 1000)
        if cmd == "PERSIST":
            return 1 if ttl.pop(key, None) is not None else 0
        if cmd == "PUBLISH":
            self._host.events.append((f"redis:{key}", args[1].encode()))
            return 0
        if cmd.startswith("H"):
            h: dict[str, str] = typed(dict) or {}
            try:
                if cmd == "HGET":
                    return h.get(args[1])
                if cmd == "HEXISTS":
                    return int(args[1] in h)
                if cmd == "HLEN":
                    return len(h)
                if cmd == "HGETALL":
                    return dict(h)
                if cmd == "HSET":
                    pairs = list(zip(args[1::2], args[2::2], strict=False))
                    new = sum(f not in h for f, _ in pairs)
                    h.update(pairs)
                    return new
                if cmd == "HDEL":
                    return sum(h.pop(f, None) is not None for f in args[1:])
                h[args[1]] = str(_int(h.get(args[1], "0")) + _int(args[2]))  # HINCRBY
                return int(h[args[1]])
            finally:
                store(h)
        if cmd.startswith("S"):
            members: set[str] = typed(set) or set()
            try:
                if cmd == "SADD":
                    new = len(set(args[1:]) - members)
                    members.update(args[1:])
                    return new
                if cmd == "SREM":
                    gone = len(set(args[1:]) & members)
                    members.difference_update(args[1:])
                    return gone
                if cmd == "SISMEMBER":
                    return int(args[1] in members)
                if cmd == "SCARD":
                    return len(members)
                return sorted(members)
            finally:
                store(members)
        items: list[str] = typed(list) or []
        try:
            if cmd in ("LPUSH", "RPUSH"):
                for v in args[1:]:
                    items.insert(0, v) if cmd == "LPUSH" else items.append(v)
                return len(items)
            if cmd in ("LPOP", "RPOP"):
                return items.pop(0 if cmd == "LPOP" else -1) if items else None
            if cmd == "LLEN":
                return len(items)
            n = len(items)
            start, stop = (i + n if i < 0 else i for i in (_int(args[1]), _int(args[2])))
            span = items[max(start, 0):stop + 1]
            if cmd == "LRANGE":
                return span
            items[:] = span  # LTRIM
            return "OK"
        finally:
            store(items)


class TestHost:
    """Stand-ins for the host while it is entered (a context manager)."""

    __test__ = False  # not a pytest test class

    def __init__(self, config: Mapping[str, Any] | None = None,
                 kv: Mapping[str, bytes] | None = None,
                 http: Mapping[str, tuple[int, bytes]] | None = None,
                 secrets: Mapping[str, bytes | None] | None = None,
                 sql: Callable[[SqlCall], Any] | None = None,
                 redis_prefix: str = "omnicore:plugin:") -> None:
        self.kv: dict[str, bytes] = dict(kv or {})
        #: The statements run, in order.
        self.sql_calls: list[SqlCall] = []
        #: The fake Redis: full key (prefix included) -> str, dict, list or set.
        self.redis: dict[str, Any] = {}
        #: Seconds to live set per full key (the fake's clock does not move).
        self.redis_ttl: dict[str, int] = {}
        self.redis_prefix = redis_prefix
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

    def __enter__(self) -> TestHost:
        STAND_INS.update(self._stand_ins)
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        for name in self._stand_ins:
            STAND_INS.pop(name, None)

    def call(self, handler: str, data: bytes | str = b"") -> bytes:
        """Run ``handler`` on ``data`` as the host would; its exception propagates."""
        return dispatch(handler, data.encode() if isinstance(data, str) else data)
