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
refused as ``DENIED``. Memories (``host.memories``) are recalled by shared words, vectors
(``host.vectors``) searched exhaustively by cosine; the secrets given
(``secrets={name: value}``, None for exposed but unset) are the exposed ones. Handlers are
called with :meth:`TestHost.call`, the same dispatch the component uses.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from omnicore_plugin._binding import STAND_INS
from omnicore_plugin._handlers import dispatch

__all__ = ["TestHost"]


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


class TestHost:
    """Stand-ins for the host while it is entered (a context manager)."""

    __test__ = False  # not a pytest test class

    def __init__(self, config: Mapping[str, Any] | None = None,
                 kv: Mapping[str, bytes] | None = None,
                 http: Mapping[str, tuple[int, bytes]] | None = None,
                 secrets: Mapping[str, bytes | None] | None = None) -> None:
        self.kv: dict[str, bytes] = dict(kv or {})
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
            "secrets": _Secrets(dict(secrets or {}))}

    def __enter__(self) -> TestHost:
        STAND_INS.update(self._stand_ins)
        return self

    def __exit__(self, *exc: object | TracebackType) -> None:
        for name in self._stand_ins:
            STAND_INS.pop(name, None)

    def call(self, handler: str, data: bytes | str = b"") -> bytes:
        """Run ``handler`` on ``data`` as the host would; its exception propagates."""
        return dispatch(handler, data.encode() if isinstance(data, str) else data)
