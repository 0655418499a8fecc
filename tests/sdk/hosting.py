"""The SDK tests' host: the real one, and a real loopback HTTP server for ``omnicore:http``.

:class:`HostedProbe` loads a plugin into a real :class:`PluginHost` on a real
:class:`OmniApp` whose capabilities are the built-ins bound to that app: kv, memory and
vectors in the app's SQLite database (vectors' indexes beside it), secrets in its encrypted
store (set through ``app.secrets``), http to :class:`Upstream` on 127.0.0.1 through the grant's
``allow_addresses`` and a ``local`` connector, tasks in its durable queue and events in its
event log. The app is never started, so an enqueued task stays queued and a published event
stays in the log, exactly as the SDK sent them. The tests assert what the guest saw (its
output) or what the SDK sent (the upstream's requests, the queue, the log, the stores).

:attr:`HostedProbe.calls` counts host-function calls by ``namespace.function`` (the real
functions, counted on the way through), for asserting the SDKs' buffer protocols: a
§3.2 read that did not fit is exactly one more call.
"""

from __future__ import annotations

import http.server
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omnicore.app import OmniApp
from omnicore.capabilities import builtin
from omnicore.capabilities import kv as kv_capability
from omnicore.capabilities.builtin import builtin_registry
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import (
    Capability,
    CapabilityRegistry,
    HostFunction,
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
)
from omnicore.sandbox.capability import DeferredCapability
from omnicore.storage import Job, SQLiteStorage
from tests.compiler import ENVIRON

__all__ = ["CONNECTOR_TOKEN", "SECRET", "HostedProbe", "Upstream", "call_text", "probe_grants",
           "runtime"]

#: The value of the secret ``token`` (exposed to probes) and of ``api_token`` (not exposed:
#: only the ``local`` connector uses it, as a bearer token).
SECRET = b"s3cr3t"
CONNECTOR_TOKEN = "conn-t0ken"


@dataclass
class Seen:
    """One request the upstream received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Upstream:
    """A loopback HTTP server: GET answers 200 ``hello <path>``, any other method 201
    ``echo: <body>``; both with ``x-method`` and ``text/plain``. :attr:`seen` records every
    request as it arrived."""

    url: str = ""
    seen: list[Seen] = field(default_factory=list)

    def serve(self) -> Iterator[Upstream]:
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(size)
                upstream.seen.append(Seen(self.command, self.path,
                                          {k.lower(): v for k, v in self.headers.items()}, body))
                status, reply = ((200, b"hello " + self.path.encode()) if self.command == "GET"
                                 else (201, b"echo: " + body))
                self.send_response(status)
                self.send_header("content-type", "text/plain")
                self.send_header("x-method", self.command)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()


def probe_grants(upstream: Upstream | None = None, *, publish: tuple[str, ...] = ("*",),
                 max_value_bytes: int = 1500, log_level: str = "info") -> dict[str, Any]:
    """Every capability granted, as an operator would: kv with a small value limit (so the
    SDKs' TOO_LARGE path is reachable), events publishing only ``publish``, secrets exposing
    ``token`` (set) and ``unset`` (not set), http to loopback only (and, with ``upstream``, its
``local`` connector)."""
    grants: dict[str, Any] = {
        "log": {"level": log_level}, "config": {}, "kv": {"max_value_bytes": max_value_bytes},
        "memory": {}, "vectors": {}, "tasks": {}, "events": {"publish": list(publish)},
        "secrets": {"expose": ["token", "unset"]},
        "http": {"allow_hosts": ["http://127.0.0.1:*"], "allow_addresses": ["127.0.0.1/32"]},
        "mcp": {"ask": ["elicitation"]}}
    if upstream is not None:  # its app defines the connector
        grants["http"]["connectors"] = ["local"]
    return grants


def _counted(cap: Capability, calls: Counter[str]) -> Capability:
    def spy(fn: HostFunction) -> HostFunction:
        key, impl = f"{cap.name}.{fn.name}", fn.impl

        def counted(state: object, mem: object, *args: int) -> Any:
            calls[key] += 1
            return impl(state, mem, *args)

        return replace(fn, impl=counted)

    return replace(cap, functions=tuple(spy(fn) for fn in cap.functions))


class HostedProbe:
    """A plugin in a real :class:`PluginHost` on a never-started :class:`OmniApp`.

    Quacks like the :class:`PluginRuntime` the tests call: ``call`` goes through the host,
    the rest is the serving runtime's.
    """

    def __init__(self, engine: SandboxEngine, path: Path, *, upstream: Upstream | None = None,
                 grants: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None, limits: Limits | None = None,
                 connectors: Mapping[str, Any] | None = None,
                 secrets: Mapping[str, bytes] | None = None) -> None:
        """``connectors``: more of the app's connectors (a database's, beside upstream's
        ``local``); ``secrets``: more secrets in its store (their passwords)."""
        self._data_dir = tempfile.mkdtemp(prefix="sdk-probe-")
        overrides: dict[str, Any] = {"data_dir": self._data_dir}
        if upstream is not None:
            overrides["connectors"] = {"local": {"base_url": upstream.url, "auth": "bearer",
                                                 "secret": "api_token"}}
        if connectors:
            overrides["connectors"] = {**overrides.get("connectors", {}), **connectors}
        self.app = OmniApp("sdk-probe", builtin_extensions=[builtin.__name__],
                           entry_points=False, default_modules=False, environ=ENVIRON,
                           overrides=overrides)
        self.app.secrets.set("token", SECRET)
        self.app.secrets.set("api_token", CONNECTOR_TOKEN.encode())
        for name, value in (secrets or {}).items():
            self.app.secrets.set(name, value)
        self.calls: Counter[str] = Counter()
        caps = [_counted(c.load() if isinstance(c, DeferredCapability) else c, self.calls)
                for c in self.app.extensions.capabilities()]
        # Tests make a handler fail on purpose, again and again: no breaker in the way.
        self.host = PluginHost(engine=engine, capabilities=lambda: caps,
                               events=self.app.events.publish, failure_threshold=1 << 30)
        self.app.plugins = self.host
        self.name = self.host.load(path, grants=dict(grants or probe_grants(upstream)),
                                   config=config, limits=limits).name

    def call(self, handler: str, data: bytes = b"") -> bytes:
        return self.host.call(self.name, handler, data)

    @property
    def log(self) -> Any:
        return self.host.logs(self.name)

    def __getattr__(self, name: str) -> Any:
        # Everything else (limits, stats(), instances_discarded...) is the serving runtime's:
        # the host reports calls, not instances, and the tests look at both.
        version = self.host._entries.require(self.name).version
        assert version is not None, self.host.get(self.name).last_error
        return getattr(version.runtime, name)

    def kv(self, key: str) -> bytes | None:
        """The plugin's stored value at ``key``."""
        return self.app.kv.for_plugin(self.name).get(key)

    def tasks(self) -> list[Job]:
        """What the plugin enqueued, oldest first."""
        return list(reversed(self.app.jobs.list(plugin=self.name)))

    def events(self) -> list[tuple[str, bytes]]:
        """What the plugin published, oldest first, as the guest named it (without the
        ``plugin.<name>.`` the host puts in front)."""
        prefix = f"plugin.{self.name}."
        recent = self.app.storage.events.recent(1000, topic_prefix=prefix)
        return [(r.topic.removeprefix(prefix), r.payload) for r in reversed(recent)]

    def close(self) -> None:
        self.host.close()
        self.app.data.close()  # the app never started, so stop() would refuse
        shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> HostedProbe:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def runtime(engine: SandboxEngine, path: Path, config: Mapping[str, Any] | None = None,
            limits: Limits | None = None, grants: Any = None) -> PluginRuntime:
    """A bare sandbox runtime of an example plugin (no app): the built-in capabilities with kv
    on a fresh SQLite storage in a temporary folder (never the working directory); ``config``
    and ``kv`` granted unless ``grants``."""
    store = SQLiteStorage(Path(tempfile.mkdtemp(prefix="omnicore-kv-")) / "omnicore.db")
    registry = CapabilityRegistry([*(c for c in builtin_registry() if c.name != "kv"),
                                   kv_capability.capability(lambda _ctx: store)])
    module = PluginModule.load(engine, path)
    return PluginRuntime(engine, module, registry,
                         grants={"config": {}, "kv": {}} if grants is None else grants,
                         config=config or {}, limits=limits or Limits())


def call_text(rt: PluginRuntime | HostedProbe, handler: str, data: bytes = b"") -> str:
    return rt.call(handler, data).decode()
