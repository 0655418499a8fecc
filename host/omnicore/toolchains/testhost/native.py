"""The test host's door for a caller in this process: the Python SDK's TestHost, whose plugin
runs natively under pytest in omnicore's own interpreter (``omnicore test``), not in wasm.

Where a test program's calls arrive through the linker (:func:`.host.link`), a native one
calls :meth:`NativeHost.call` with a capability's ``omnicore:plugin/<name>`` function and its
arguments in the WIT JSON mapping (``list<u8>`` as bytes, an enum as its case name); the
answer is the capability's own, in the same mapping (``{"ok": v}`` or ``{"err": case}``). The
capability code and the in-memory services are :class:`~.host.TestHost`'s, unchanged.

What a wasm test scripts through ``omnicore:testing`` one answer ahead (``http_answer``,
``sql_answer``), a native caller answers when the host asks: ``http(request, body)`` and
``sql(statement, query)`` are called at the moment the connector would reach the network.
"""

from __future__ import annotations

import atexit
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omnicore.sandbox.capability import WitFunction
from omnicore.sandbox.component import hostcalls
from omnicore.toolchains.testhost.host import TestHost
from omnicore.toolchains.testhost.program import TIMEOUT_MS
from omnicore.toolchains.testhost.services import Answers

__all__ = ["HttpAnswer", "NativeHost", "SqlAnswer"]

#: ``(request JSON, body) -> (head JSON or "STATUS: why", body, failed)``, as ``http_answer``.
HttpAnswer = Callable[[dict[str, Any], bytes], tuple[bytes, bytes, bool]]
#: ``([connector, sql, params, tx], query) -> (answer JSON or "STATUS: why", failed)``.
SqlAnswer = Callable[[list[Any], bool], tuple[str, bool]]


class _Asked(Answers):
    """The next SQL answer asked of the caller when the connector takes it (the statement
    it answers is the one just recorded, after the host's own checks passed)."""

    def __init__(self, host: TestHost, answer: SqlAnswer) -> None:
        self._host = host
        self._answer = answer
        self.http = None
        self.query = True

    @property
    def sql(self) -> tuple[str, bool] | None:
        return self._answer(self._host.databases.statements[-1], self.query)

    @sql.setter
    def sql(self, _value: tuple[str, bool] | None) -> None:
        pass  # taken: the connector clears it after each statement


class _Store:
    """One SQLite store and folder for every native test host of the process (each host's
    kv, memory and vectors are under a plugin name of its own), as a Program has one."""

    def __init__(self) -> None:
        from omnicore.storage import open_storage

        self.dir = tempfile.TemporaryDirectory(prefix="omnicore-test-")
        self.storage = open_storage(self.dir.name)
        self.shared: dict[str, Any] = {}
        atexit.register(self.close)

    def close(self) -> None:
        self.storage.close()
        self.dir.cleanup()


_store: list[_Store] = []


class NativeHost:
    """One test's host for a native plugin with ``handlers``: :attr:`host` is the
    :class:`TestHost` (its log, kv, jobs, events, statements, Redis), :meth:`call` its door."""

    def __init__(self, handlers: tuple[str, ...], *, http: HttpAnswer, sql: SqlAnswer) -> None:
        if not _store:
            _store.append(_Store())
        store = _store[0]
        self.host = TestHost(store.storage, Path(store.dir.name), handlers, store.shared)
        # Before the connectors and the HTTP client are made: they keep the answers they get.
        self._asked = self.host.answers = _Asked(self.host, sql)
        self._http = http
        self._wit: dict[str, dict[str, WitFunction]] = {}

    def configure(self, config: dict[str, Any], secrets: dict[str, bytes | None],
                  log_level: str) -> None:
        """The plugin's config section, the secrets exposed to it (None: exposed, not set)
        and the level its log keeps, as ``omnicore:testing``'s setters make them."""
        host = self.host
        host.config = config
        host.secrets.values.update(secrets)
        host.grants["secrets"] = {"expose": sorted(host.secrets.values)}
        host.grants["log"] = {"level": log_level}
        for name in ("config", "secrets", "log"):
            host.rebind(name)

    def call(self, capability: str, function: str, args: tuple[Any, ...]) -> Any:
        """``omnicore:plugin/<capability>#<function>(*args)``, answered by the capability's
        code; an exception in it propagates (a component's call would trap)."""
        functions = self._wit.get(capability)
        if functions is None:  # imported at first use: some capabilities pull in a lot
            functions = self._wit[capability] = {
                f.name: f for f in self.host.capability(capability).wit}
        fn = functions[function]
        state = self.host.state(capability)
        if capability == "http":
            try:
                request = json.loads(args[0])
            except ValueError:
                request = None  # the host refuses it before any answer is wanted
            if isinstance(request, dict):
                self._asked.http = self._http(request, bytes(args[1]))
        elif capability == "sql":
            self._asked.query = function == "query"
        try:
            if fn.timed:
                return fn.impl(state, time.monotonic() + TIMEOUT_MS / 1000, *args)
            return fn.impl(state, *args)
        finally:
            self._asked.http = None

    @staticmethod
    def enter() -> None:
        """A handler's call begins (what its host functions leave for its end is kept)."""
        hostcalls.enter(time.monotonic() + TIMEOUT_MS / 1000)

    @staticmethod
    def leave() -> None:
        """A handler's call ended: its open SQL transactions are rolled back, as a
        component's are."""
        hostcalls.leave()
