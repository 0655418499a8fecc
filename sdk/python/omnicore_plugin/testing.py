"""A test host: run a plugin's handlers in CPython, under pytest (``omnicore test``).

    from omnicore_plugin.testing import TestHost
    import plugin

    def test_count():
        with TestHost(config={"greeting": "Hi"}) as host:
            assert host.call("count", b"") == b"1"
            assert host.kv["n"] == b"1"

Every host function the plugin calls is answered by omnicore's own test host, in this
process (``omnicore.toolchains.testhost``): the host's capability code, every capability
granted, over in-memory stores, the one host every language's tests run on. What the plugin
did is read back from it: the kv (``host.kv``), the log lines kept (``host.logs``:
``(level, message)``; the host keeps ``info`` and above unless ``log_level=`` says
otherwise), the tasks enqueued (``host.tasks``), the events published (``host.events``), the
memories (``host.memories``), the SQL statements (``host.sql_calls``) and Redis
(``host.redis``); it runs no task and delivers no event. HTTP answers only the URLs given
(``http={url: (status, body)}``); any other request is refused as ``DENIED``. SQL answers
come from the function given (``sql=fn``: it gets a :class:`SqlCall` and returns rows as a
list of dicts, or ``(columns, rows)``, for a query, and ``rows_affected`` or an
:class:`~omnicore_plugin.sql.Executed` for an execute; no database runs). The secrets given
(``secrets={name: value}``, None for exposed but unset) are the exposed ones.
Handlers are called with :meth:`TestHost.call`, the same dispatch the component uses; a
call's open transactions are rolled back at its end, as the host does.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from omnicore_plugin._binding import NATIVE
from omnicore_plugin._handlers import dispatch, handlers

__all__ = ["SqlCall", "TestHost"]


@dataclass
class SqlCall:
    """One statement the plugin ran: its connector, text and decoded parameters."""

    connector: str
    sql: str
    params: list[Any] = field(default_factory=list)
    query: bool = True
    #: The transaction it ran in (1, 2, ... in the order begun); BEGIN, COMMIT and ROLLBACK
    #: are recorded as statements.
    tx: int | None = None


class _Kv(MutableMapping[str, bytes]):
    """The plugin's kv in the test host's store."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getitem__(self, key: str) -> bytes:
        value = self._store.get(key)
        if value is None:
            raise KeyError(key)
        return bytes(value)

    def __setitem__(self, key: str, value: bytes) -> None:
        self._store.set(key, bytes(value))

    def __delitem__(self, key: str) -> None:
        if not self._store.delete(key):
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._store.list(""))

    def __len__(self) -> int:
        return len(self._store.list(""))


def _host() -> Any:
    try:
        from omnicore.toolchains.testhost.native import NativeHost
    except ImportError:
        raise RuntimeError("the TestHost is omnicore's test host: run the tests with "
                           "`omnicore test` (or with omnicore importable)") from None
    return NativeHost


class TestHost:
    """The host while it is entered (a context manager)."""

    __test__ = False  # not a pytest test class

    def __init__(self, config: Mapping[str, Any] | None = None,
                 kv: Mapping[str, bytes] | None = None,
                 http: Mapping[str, tuple[int, bytes]] | None = None,
                 secrets: Mapping[str, bytes | None] | None = None,
                 sql: Callable[[SqlCall], Any] | None = None,
                 log_level: str = "info") -> None:
        self._routes = dict(http or {})
        self._sql = sql
        self._queries: dict[int, bool] = {}
        self._native = _host()(tuple(handlers()), http=self._answer_http,
                               sql=self._answer_sql)
        self._native.configure(dict(config or {}), dict(secrets or {}), log_level)
        self._t = self._native.host
        self.kv: MutableMapping[str, bytes] = _Kv(self._t.storage.kv(self._t.owner))
        self.kv.update(kv or {})

    @property
    def logs(self) -> list[tuple[str, str]]:
        """``(level, message)`` of each line the log kept."""
        return [(line.level, line.message) for line in self._t.log.lines()]

    @property
    def tasks(self) -> list[tuple[str, bytes, int]]:
        """``(handler, payload, delay_ms)`` of each task enqueued; the id is index + 1."""
        return [(handler, payload, delay) for _, handler, payload, delay, _ in self._t.jobs.jobs]

    @property
    def events(self) -> list[tuple[str, bytes]]:
        """``(topic, payload)`` of each event published."""
        return list(self._t.subscriptions.published)

    @property
    def memories(self) -> dict[int, dict[str, Any]]:
        """The memories kept, by id: ``{"id", "tier" (0-2), "text", "metadata", ...}``."""
        memory = self._t.state("memory")
        return {m.id: m.as_dict() for m in memory.recall("", limit=memory.policy.max_limit)}

    @property
    def redis(self) -> Any:
        """The Redis the plugin's commands run on: omnicore's in-memory one
        (``omnicore.toolchains.testredis.MemoryRedis``; keys as the plugin names them:
        ``host.redis.value("hits")``, ``host.redis.ttl("hits")``, ``host.redis.put(k, v)``,
        every key in ``host.redis.data``). The clock does not move."""
        return self._t.databases.redis

    @property
    def sql_calls(self) -> list[SqlCall]:
        """The statements run, in order."""
        from omnicore_plugin import sql

        # The host records the parameters as the plugin sent them (§4.10's JSON).
        return [SqlCall(connector, text, [sql.decode(v) for v in args],
                        self._queries.get(i, False), tx)
                for i, (connector, text, args, tx) in enumerate(self._t.databases.statements)]

    def _answer_http(self, request: dict[str, Any], body: bytes) -> tuple[bytes, bytes, bool]:
        url = request.get("url", "")
        if url not in self._routes:
            return (f"DENIED: the TestHost has no answer for {url or 'this request'} "
                    "(TestHost(http={url: (status, body)}))").encode(), b"", True
        status, answer = self._routes[url]
        return json.dumps({"status": status, "headers": []}).encode(), bytes(answer), False

    def _answer_sql(self, statement: list[Any], query: bool) -> tuple[str, bool]:
        from omnicore_plugin import sql

        self._queries[len(self._t.databases.statements) - 1] = query
        if self._sql is None:
            return f"UNAVAILABLE: connector {statement[0]}: the TestHost has no sql function", True
        call = self.sql_calls[-1]
        answer = self._sql(call)
        if not query:
            if isinstance(answer, sql.Executed):
                return json.dumps({"rows_affected": answer.rows_affected,
                                   "last_insert_id": answer.last_insert_id}), False
            return json.dumps({"rows_affected": int(answer or 0)}), False
        if isinstance(answer, tuple):
            names, rows = list(answer[0]), [list(r) for r in answer[1]]
        else:
            names = list(answer[0]) if answer else []
            rows = [[r[n] for n in names] for r in answer or []]
        # A row of another length than the columns is refused by the host's own check.
        return json.dumps({"columns": [{"name": n, "type": ""} for n in names],
                           "rows": [[sql.encode(v) for v in r] for r in rows]}), False

    def __enter__(self) -> TestHost:
        NATIVE.append(self._native.call)
        return self

    def __exit__(self, *exc: object) -> None:
        NATIVE.remove(self._native.call)

    def call(self, handler: str, data: bytes | str = b"") -> bytes:
        """Run ``handler`` on ``data`` as the host would; its exception propagates."""
        self._native.enter()
        try:
            return dispatch(handler, data.encode() if isinstance(data, str) else data)
        finally:
            self._native.leave()
