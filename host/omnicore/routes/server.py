""":class:`RoutesServer`: the ASGI app the console mounts at ``serve.prefix`` (specs/
http-routes.md). One request: match a route, check its caps, rate and concurrency, read the
body within the deadline, authenticate, call the handler on a worker thread with the
envelope, answer its response. Whatever the request sends or the handler does, the answer is
a status (§3.1), never a host fault."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote

from omnicore.config.routes import ServeConfig
from omnicore.egress import Refused as EgressRefused
from omnicore.egress import Request as EgressRequest
from omnicore.errors import (
    CircuitOpen,
    ConfigError,
    DeadlineExceeded,
    HandlerNotFound,
    NeedsGrant,
    OmniError,
    OutputTooLarge,
    PluginCallError,
    PluginError,
    PluginNotFound,
)
from omnicore.routes.envelope import (
    SANDBOX,
    Response,
    _BadResponse,
    _without_console_cookies,
    decode_response,
    encode_request,
    query_params,
)
from omnicore.routes.proxy import (
    THREADS,
    ProxyComponent,
    _ProxyFailed,
    announced_trailers,
    exports_handler,
    trailer_fields,
)
from omnicore.routes.signatures import check_github, check_stripe
from omnicore.routes.table import Route, RouteTable, SourceRoutes, build, clean_path
from omnicore.routes.wasihttp import BodyFeed, Exchange, Send, _OutgoingDenied

__all__ = ["RouteStats", "RoutesServer", "TokenUser"]

log = logging.getLogger("omnicore.routes")

#: How often the table looks for edited sidecars and plugins loaded or gone (the app
#: config's own change is seen on the next request).
REFRESH_S = 0.25
#: egress's refusals as the wasi:http error-code a proxy component gets.
_ERROR_CASES = {"DENIED": "HTTP-request-denied", "INVALID": "HTTP-request-URI-invalid",
                "QUOTA": "connection-limit-reached", "TOO_LARGE": "HTTP-request-body-size",
                "UNAVAILABLE": "destination-unavailable"}
#: A proxy component's call still running this long after it began, its response set, has
#: its body streamed (.proxy); one that ends sooner is answered whole.
STREAM_AFTER_S = 0.1
_BODY_CAP = "omnicore.body_cap"  # the console's BodyLimits reads it (console/bodies.py)


class _Streamed(Response):
    """A proxy component's answer whose body is still being written."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                 stream: _ProxyStream) -> None:
        super().__init__(status, headers, body)
        object.__setattr__(self, "chunks", stream.chunks)  # (Response is frozen)
        object.__setattr__(self, "stream", stream)

    if TYPE_CHECKING:
        def chunks(self) -> AsyncIterator[bytes]: ...


class _StreamBroken(Exception):
    """The body cannot be finished: the connection is ended without its end."""


@dataclass
class _ProxyStream:
    exchange: Exchange
    call: asyncio.Future[Any]
    moved: asyncio.Event
    deadline: float
    route: Route
    server: RoutesServer
    st: RouteStats
    #: The request body as the guest reads it (closed once the answer is sent), or None.
    feed: BodyFeed | None = None
    #: The trailer names the guest announced (its ``trailer`` header), when the server and
    #: the client take trailers (HTTP/2 with ``te: trailers``): the head declares them.
    trailing: list[bytes] = field(default_factory=list)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks():
                yield chunk
        finally:
            if self.feed is not None:
                self.feed.close()

    async def _chunks(self) -> AsyncIterator[bytes]:
        ex, sent = self.exchange, 0
        while True:
            self.moved.clear()
            if self.feed is not None and self.feed.failure is not None:
                # its status cannot be the answer now: the answer ends unfinished
                raise self._broken(f"the request body failed ({self.feed.failure[1]}), "
                                   "after the response's head was sent")
            if ex.over:
                raise self._broken(f"a response over max_response_bytes "
                                   f"({ex.cap}), after its head was sent")
            while sent < len(ex.chunks):
                yield ex.chunks[sent]
                sent += 1
            if self.call.done():
                break
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise self._broken("its body not finished within the route's deadline")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.moved.wait(), left)
        if self.feed is not None and self.feed.failure is not None:
            raise self._broken(f"the request body failed ({self.feed.failure[1]}), after "
                               "the response's head was sent")
        if ex.over:
            raise self._broken(f"a response over max_response_bytes ({ex.cap}), after its "
                               "head was sent")
        while sent < len(ex.chunks):
            yield ex.chunks[sent]
            sent += 1
        exc = self.call.exception()
        if exc is not None:
            raise self._broken(f"{exc}, after its head was sent")
        if not ex.finished:
            raise self._broken("its body not finished")

    def _broken(self, why: str) -> _StreamBroken:
        self.server._warn(self.route, self.st, why)
        return _StreamBroken(why)


class TokenUser(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


@dataclass
class RouteStats:
    """One route's counters on this host (the metrics, ``/api/v1/routes``)."""

    codes: dict[int, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    in_flight: int = 0
    #: The token bucket: tokens left and when they were counted.
    tokens: float = 0.0
    counted: float = 0.0
    rate: tuple[float, int] | None = None
    logged: float = -1.0
    warned: float = -1.0
    suppressed: int = 0


async def _within(call: asyncio.Future[Any], deadline: float,
                  feed: BodyFeed | None = None) -> bool:
    """Whether ``call`` is done by ``deadline`` (``time.monotonic``); it is never cancelled
    (a running call ends by its own deadline). With ``feed`` (a proxy's request body), the
    wait ends too when the body fails (over the cap...): False then, the call running on.
    One waiter and one timer: ``asyncio.wait`` on a task of the call made three futures, a
    set and a task per request."""
    if call.done():
        return True
    if feed is not None and feed.failure is not None:
        return False
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    timer = loop.call_at(loop.time() + max(0.0, deadline - time.monotonic()), wake)
    call.add_done_callback(wake)
    if feed is not None:
        feed.watch(wake)
    try:
        await waiter
    finally:
        timer.cancel()
        call.remove_done_callback(wake)
        if feed is not None:
            feed.unwatch(wake)
    return call.done()


class _Answer(Exception):
    """Answer this status now (the host's own JSON error)."""

    def __init__(self, status: int, message: str, reason: str | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.headers = headers or []


class RoutesServer:
    """Plugin routes of ``app`` (an ``OmniApp``) under ``serve.prefix``. ``verify_token``
    is the REST API's: an API token's user, or None."""

    def __init__(self, app: Any, verify_token: Callable[[str], TokenUser | None],
                 reserved: frozenset[str] = frozenset({"api"})) -> None:
        self.app = app
        self.verify_token = verify_token
        self.prefix: str = app.config.serve.prefix
        first = self.prefix.split("/")[1]
        if first in reserved:
            raise ConfigError(f"serve.prefix {self.prefix} collides with the console's own "
                              f"/{first}; choose another (e.g. /http)", key="serve.prefix",
                              value=self.prefix,
                              source=app.config.source_of("serve.prefix"))
        self.stats: dict[str, RouteStats] = {}
        self.unmatched = RouteStats()
        self._lock = threading.Lock()
        self._serve: ServeConfig | None = None
        self._sidecars: dict[str, tuple[Any, dict[str, Any], str]] = {}
        self._key: Any = None
        self._checked = 0.0
        self._problems: list[str] = []
        self._table = RouteTable(())
        self._good = SourceRoutes("omnicore.yaml serve.routes", None, {})
        #: Proxy components by plugin (.proxy): (the module's sha256, its instances, the
        #: plugin's limits and granted capabilities they were made under).
        self._proxies: dict[str, tuple[str, ProxyComponent | None, Any]] = {}
        self._proxy_pool: Any = None
        self.table(strict=True)  # the app config's routes must check at start

    # -- the table --------------------------------------------------------------------

    def table(self, *, strict: bool = False) -> RouteTable:
        """The current routes (rebuilt when the app config, a sidecar or a plugin changed)."""
        serve = self.app.config.serve
        now = time.monotonic()
        if serve is self._serve and now - self._checked < REFRESH_S:
            return self._table
        with self._lock:
            if serve is self._serve and now - self._checked < REFRESH_S:
                return self._table
            self._checked = now
            sources, proposals, key = self._sources(serve)
            if key == self._key and serve is self._serve:
                return self._table
            try:
                table, problems = build(sources, proposals)
            except ConfigError as exc:
                if strict:
                    raise
                if serve is not self._serve:
                    log.error("routes: serve.routes not applied, the routes served stay: %s",
                              exc)
                self._serve = serve
                # keep serving the config's last good routes, with what the sidecars now say
                table, problems = build([self._good, *sources[1:]], proposals,
                                        strict_first=False)
            else:
                self._good = sources[0]
            for problem in problems:
                if problem not in self._problems:
                    log.error("routes: %s; those routes are not served", problem)
            self._problems = problems
            self._serve, self._key, self._table = serve, key, table
            for route in table.routes:
                st = self.stats.setdefault(route.name, RouteStats())
                if st.rate != route.rate:
                    st.rate = route.rate
                    st.tokens = float(route.rate[1]) if route.rate else 0.0
                    st.counted = now
            return table

    def _sources(self, serve: ServeConfig) -> tuple[list[SourceRoutes],
                                                    dict[str, dict[str, Any]], Any]:
        sources = [SourceRoutes("omnicore.yaml serve.routes", None,
                                {n: r.model_dump(exclude_unset=True)
                                 for n, r in serve.routes.items()})]
        proposals: dict[str, dict[str, Any]] = {}
        key: list[Any] = [id(serve)]
        plugins = self.app.plugins
        for info in sorted(plugins, key=lambda i: i.name):
            offered = info.manifest.get("routes") if isinstance(info.manifest, dict) else None
            proposals[info.name] = {str(p["name"]): p for p in offered
                                    if isinstance(p, dict) and "name" in p} \
                if isinstance(offered, list) else {}
            key.append((info.name, info.state, info.source, tuple(info.handlers)))
            if info.source:
                routes, where, stamp = self._sidecar_routes(info.source)
                key.append((where, stamp))
                if routes:
                    sources.append(SourceRoutes(where, info.name, routes))
        return sources, proposals, tuple(key)

    def _sidecar_routes(self, source: str) -> tuple[dict[str, Any], str, Any]:
        """The routes of the sidecar of the plugin file ``source``, its path and stamp."""
        from omnicore.plugins.sidecar import read_sidecar, sidecar_paths

        wasm = Path(source)
        found = sidecar_paths(wasm)
        if len(found) != 1:
            return {}, "", None
        path = found[0]
        try:
            st = path.stat()
        except OSError:
            return {}, "", None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._sidecars.get(str(path))
        if cached is not None and cached[0] == stamp:
            return cached[1], str(path), stamp
        try:
            routes = dict(read_sidecar(wasm).routes)
        except (ConfigError, OSError) as exc:
            log.warning("routes: ignoring the sidecar %s: %s", path, exc)
            routes = {}
        self._sidecars[str(path)] = (stamp, routes, str(path))
        return routes, str(path), stamp

    # -- serving ----------------------------------------------------------------------

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any,
                       send: Any) -> None:
        if scope["type"] != "http":
            return
        started = time.monotonic()
        route: Route | None = None
        st = self.unmatched
        try:
            table = self.table()
            # Mounted, the path is whole and root_path the mount's (Starlette 0.35 on); bare,
            # the prefix is cut here.
            path, root = scope["path"], scope.get("root_path") or self.prefix
            sub = (path[len(root):] if path.startswith(root) else path) or "/"
            clean = clean_path(sub)
            if clean is None:
                raise _Answer(400, "the path does not decode to one this host serves "
                                   "(NUL, '.', '..' or an empty segment)")
            method = scope["method"].upper()
            found = table.match(method, clean)
            if found.route is None:
                if found.allowed:
                    raise _Answer(405, f"{method} is not served at {clean}", "not_allowed",
                                  [(b"allow", ", ".join(found.allowed).encode())])
                raise _Answer(404, f"no route at {clean}")
            route = found.route
            # The route's template, for whoever reads the matched route after the answer
            # (the request's span: http.route), in place of the mount's own /http.
            scope["route"] = route.served_as(root)
            # (table() made every served route's stats; a default made here for setdefault
            # was two dicts and a dataclass thrown away on every request.)
            st = self.stats.get(route.name) or self.stats.setdefault(route.name, RouteStats())
            response = await self._serve_route(scope, receive, route, st, found.params,
                                               clean, started)
        except _Answer as answer:
            if answer.reason:
                st.refused[answer.reason] = st.refused.get(answer.reason, 0) + 1
            body = {"error": str(answer)}
            if route is not None:
                body["route"] = route.name
            response = Response(answer.status, [(b"content-type", b"application/json"),
                                                *answer.headers],
                                json.dumps(body).encode())
        except Exception:  # a bug of ours must still be an answer
            log.exception("routes: %s %s failed", scope.get("method"), scope.get("path"))
            response = Response(500, [(b"content-type", b"application/json")],
                                b'{"error": "internal error in the host"}')
        st.codes[response.status] = st.codes.get(response.status, 0) + 1
        st.seconds += time.monotonic() - started
        await self._send(send, response, head_only=scope["method"] == "HEAD")

    async def _send(self, send: Any, response: Response, *, head_only: bool) -> None:
        if isinstance(response, _Streamed):
            await self._send_streamed(send, response, head_only=head_only)
            return
        headers = [*response.headers, SANDBOX,
                   (b"content-length", str(len(response.body)).encode())]
        # A proxy component's trailers (.proxy), when the server and the client take them.
        trailers = response.trailers
        try:  # (a try, not contextlib.suppress: no context manager made per answer)
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers, "trailers": trailers is not None})
            await send({"type": "http.response.body",
                        "body": b"" if head_only else response.body})
            if trailers is not None:
                await send({"type": "http.response.trailers", "headers": trailers,
                            "more_trailers": False})
        except OSError:
            pass

    async def _send_streamed(self, send: Any, response: _Streamed, *, head_only: bool) -> None:
        """A proxy component's body as it writes it (no content-length: chunked). A failure
        after the head (a trap, the cap, the deadline) ends the connection without the
        body's end, so the client sees an incomplete answer, never a complete wrong one."""
        stream: _ProxyStream = response.stream  # type: ignore[attr-defined]
        trailing = bool(stream.trailing) and not head_only
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [*response.headers, SANDBOX], "trailers": trailing})
        if head_only:
            if stream.feed is not None:
                stream.feed.close()
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            async for chunk in response.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except _StreamBroken:
            return  # the server ends the connection: the body's end never comes
        await send({"type": "http.response.body", "body": b""})
        if trailing:  # (an empty section is none: h2 cannot send an empty header block)
            await send({"type": "http.response.trailers", "more_trailers": False,
                        "headers": trailer_fields(stream.exchange.trailers) or
                        [(name, b"") for name in stream.trailing]})

    async def _serve_route(self, scope: MutableMapping[str, Any], receive: Any, route: Route,
                           st: RouteStats, params: dict[str, str], path: str,
                           started: float) -> Response:
        s = route.settings
        deadline = started + s.timeout_ms / 1000
        headers = self._headers(scope["headers"], s.max_header_bytes, s.max_headers)
        # Only an authenticated request spends the route's rate: a token is checked before
        # anything (no body needed), a signature once the body is read; a caller without
        # either must not starve the callers with one.
        signed = s.auth in ("github", "stripe")
        if not signed:
            auth = self._authenticate(route, headers, b"")
            self._take_rate(route, st)
        else:
            self._signature_shape(route, headers)
        if st.in_flight >= s.max_concurrent:
            raise _Answer(503, f"route '{route.name}' has {s.max_concurrent} calls in flight; "
                               "try again", "busy", [(b"retry-after", b"1")])
        st.in_flight += 1
        released = False
        try:
            # A proxy component reads the body as it arrives (.proxy: its reads pull it in),
            # unless a signature must be checked over the whole body first.
            early = None if signed else self._proxy(route.plugin)
            body = await self._body(scope, receive, headers, s.max_body_bytes, deadline,
                                    read=early is None)
            if signed:
                auth = self._authenticate(route, headers, body or b"")
                self._take_rate(route, st)
            head = self._head(scope, route, path, params, headers, auth)
            # A plugin still loading (a host starting) is waited for within the deadline,
            # where every call waits (plugins.arrivals); then served as it is.
            module = self.app.plugins.serving_module(route.plugin)
            if module is None and not \
                    await self.app.plugins.arrival(route.plugin, deadline - time.monotonic()):
                self._warn(route, st, f"plugin still loading after {s.timeout_ms} ms")
                raise _Answer(504, f"plugin '{route.plugin}' is still loading (waited "
                                   f"{s.timeout_ms} ms)", "deadline")
            # A core module serving now (no component world, nothing awaited since it was
            # read) has no proxy instances: _proxy would read the module again to say None.
            proxy = early or (None if module is not None and getattr(module, "world", None)
                              is None else self._proxy(route.plugin))
            if proxy is not None:
                return await self._serve_proxy(proxy, route, st, head, body, deadline, scope,
                                               receive)
            if body is None:  # (the plugin was replaced by one that is not a proxy meanwhile)
                body = await self._body(scope, receive, headers, s.max_body_bytes, deadline)
            body = body or b""
            data = body if s.mode == "body" else encode_request(head, body)
            call = self.app.plugins.submit(route.plugin, route.handler, data)
            if not await _within(call, deadline):
                released = True
                call.add_done_callback(lambda fut: self._release(fut, st))
                self._warn(route, st, f"no answer within {s.timeout_ms} ms")
                raise _Answer(504, f"the handler did not answer within {s.timeout_ms} ms",
                              "deadline")
            out = self._outcome(call, route, st)
        finally:
            if not released:
                st.in_flight -= 1
        if len(out) > s.max_response_bytes:
            self._warn(route, st, f"a response of {len(out)} bytes (max_response_bytes "
                                  f"{s.max_response_bytes})")
            raise _Answer(502, f"the handler's response is over {s.max_response_bytes} bytes")
        try:
            return decode_response(out, mode=s.mode or "envelope")
        except _BadResponse as exc:
            self._warn(route, st, f"a malformed response: {exc}")
            raise _Answer(502, "the handler's response is malformed") from None

    # -- proxy components (.proxy) ----------------------------------------------------

    def _proxy(self, plugin: str) -> ProxyComponent | None:
        """The plugin's proxy instances when it is a component exporting
        ``wasi:http/incoming-handler`` (made on first use, again when its module changes);
        None for any other plugin."""
        # (A plugin that is not serving now -- unloaded, failed, needing a grant -- is left
        # to the ordinary call, which answers 503 for it.)
        module = self.app.plugins.serving_module(plugin)
        world = getattr(module, "world", None)
        if module is None or world is None:
            return None
        # Made again when the module, the plugin's limits or its grants change (an http
        # grant's options edited alone are seen with the next of those).
        settings = (self.app.plugins.limits_of(plugin), self.app.plugins.granted_to(plugin))
        known = self._proxies.get(plugin)
        if known is not None and known[0] == module.sha256 and known[2][0] is settings[0] \
                and known[2][1] == settings[1]:
            return known[1]
        proxy = None
        eng = self.app.plugins.engine
        if exports_handler(list(module.compiled.type.exports(eng.components))) is not None:
            limits = self.app.plugins.limits_of(plugin)
            proxy = ProxyComponent(plugin, eng, module.compiled, limits,
                                   self.app.plugins.logs(plugin), self._outgoing(plugin),
                                   processed_by=module.processed_by)
        with self._lock:
            self._proxies[plugin] = (module.sha256, proxy, settings)
        return proxy

    def _outgoing(self, plugin: str) -> Send | None:
        """A proxy component's ``wasi:http/outgoing-handler``, through the plugin's ``http``
        grant (its allow-list, address rules, connectors and limits: omnicore.egress); None
        without one (every request refused)."""
        grant = self.app.plugins.get(plugin).granted.get("http")
        if grant is None:
            return None
        client = self.app.egress.client(plugin, grant)

        def send(method: str, url: str, headers: list[tuple[str, bytes]], body: bytes,
                 deadline: float) -> tuple[int, list[tuple[str, bytes]], bytes]:
            joined: dict[str, str] = {}
            for k, v in headers:
                value = v.decode("latin-1")
                joined[k] = f"{joined[k]}, {value}" if k in joined else value
            try:
                resp = client.send(EgressRequest(method=method, url=url, headers=joined,
                                                 body=body), deadline)
            except EgressRefused as exc:
                raise _OutgoingDenied(_ERROR_CASES.get(exc.status, "internal-error"),
                                      f"{exc.status}: {exc}") from None
            return resp.status, [(k, v.encode("latin-1", "replace"))
                                 for k, v in resp.headers.items()], resp.body

        return send

    async def _serve_proxy(self, proxy: ProxyComponent, route: Route, st: RouteStats,
                           head: dict[str, Any], body: bytes | None, deadline: float,
                           scope: MutableMapping[str, Any], receive: Any) -> Response:
        s = route.settings
        query = head["query"]
        scheme = head["url"].partition("://")[0]
        loop = asyncio.get_running_loop()
        feed = None
        if body is None:  # the guest's reads pull it in (wasihttp.BodyFeed)
            declared = head["headers"].get("content-length")
            feed = BodyFeed(receive, s.max_body_bytes, deadline,
                            int(declared) if declared is not None else None, loop)
            if declared is None:
                # No declared length: only counting it as it comes can tell the cap
                # crossed, and that must not wait on the guest's reads (a guest busy, or
                # slow to start on a loaded host, would make a 413 a 504).
                feed.begin()
        exchange = Exchange(
            method=head["method"],
            path_with_query=self._raw_path(scope, head["path"]) + (f"?{query}" if query else ""),
            scheme=scheme or "http", authority=head["headers"].get("host", ""),
            headers=self._fields(scope["headers"], head["headers"]),
            body=feed if feed is not None else body or b"", cap=s.max_response_bytes,
            deadline=deadline)
        # Trailers reach a client that takes them through a server that sends them (the
        # ASGI http.response.trailers extension: Hypercorn's HTTP/2, with te: trailers).
        trailing = "http.response.trailers" in (scope.get("extensions") or {}) and any(
            k.lower() == b"te" and b"trailers" in v.lower() for k, v in scope["headers"]) \
            and scope["method"] != "HEAD"
        streamed = False
        try:
            response = await self._run_proxy(proxy, route, st, exchange, deadline, feed,
                                             trailing)
            streamed = isinstance(response, _Streamed)
            return response
        finally:
            if feed is not None and not streamed:
                feed.close()

    def _raw_path(self, scope: MutableMapping[str, Any], path: str) -> str:
        """``path`` (decoded, after the prefix) as the client wrote it, percent-encoded: a
        proxy's ``path-with-query`` is the request target's, and the decoded path would turn
        ``%3F`` into a query the client never sent (and ``%2523`` into ``%23``). From the
        server's ``raw_path`` when it is that path's, else ``path`` quoted again."""
        raw, root = scope.get("raw_path"), scope.get("root_path") or self.prefix
        if isinstance(raw, bytes):
            text = raw.decode("latin-1")
            sub = (text[len(root):] if text.startswith(root) else text) or "/"
            if unquote(sub) == path:
                return sub
        return quote(path, safe="/:@!$&'()*+,;=-._~")

    @staticmethod
    def _fields(raw: list[tuple[bytes, bytes]], kept: dict[str, str]
                ) -> list[tuple[str, bytes]]:
        """A proxy component's request fields as the client sent them: wasi:http's fields
        are bytes and a name may come more than once, where the envelope's headers
        (``kept``) join repeats and decode values as UTF-8. Only names the route's rules
        left in ``kept`` go (token auth's ``authorization`` is not there); ``cookie`` goes
        once, as those rules left it (without the console's cookies)."""
        out = [(name, value) for key, value in raw
               if (name := key.decode("latin-1").lower()) in kept and name != "cookie"]
        if "cookie" in kept:
            out.append(("cookie", kept["cookie"].encode()))
        return out

    async def _run_proxy(self, proxy: ProxyComponent, route: Route, st: RouteStats,
                         exchange: Exchange, deadline: float, feed: BodyFeed | None,
                         trailing: bool) -> Response:
        s = route.settings
        if self._proxy_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._proxy_pool = ThreadPoolExecutor(THREADS, thread_name_prefix="omnicore-proxy")
        loop = asyncio.get_running_loop()
        moved = asyncio.Event()
        call = asyncio.ensure_future(loop.run_in_executor(self._proxy_pool, proxy.serve,
                                                          exchange))
        # A call that ends within STREAM_AFTER_S is answered whole (no wake-up of this loop
        # but its end); one still running then, its response set, is streamed. (At 20 ms a
        # loaded host streamed nearly every answer, at ~1.4 ms more CPU each.)
        while not await _within(call, min(deadline, time.monotonic() + STREAM_AFTER_S),
                                feed):
            if time.monotonic() >= deadline or (feed is not None and
                                                feed.failure is not None):
                break  # (a failed body is the answer, not a head the guest set)
            if exchange.status is None or exchange.over:
                continue

            def notify() -> None:  # on the guest's thread
                loop.call_soon_threadsafe(moved.set)

            exchange.notify = notify
            call.add_done_callback(lambda _: moved.set())
            if feed is not None:  # a body failing now ends the answer at once
                feed.watch(moved.set)
            st.in_flight += 1  # held until the call ends (the finally gives one back)
            call.add_done_callback(lambda fut: self._release(fut, st))
            set_head = self._proxy_head(exchange, route, st)
            # A streamed head declares trailers before they are known: those the guest
            # announced in its trailer header.
            announced = announced_trailers(exchange.response_headers) if trailing else []
            return _Streamed(set_head.status, set_head.headers, b"",
                             _ProxyStream(exchange, call, moved, deadline, route, self, st,
                                          feed, announced))
        if not await _within(call, deadline, feed):
            st.in_flight += 1  # the finally below gives it back; the call keeps its slot
            call.add_done_callback(lambda fut: self._release(fut, st))
            if feed is not None and (feed.waiting or feed.failure is not None or (
                    feed.declared is None and not feed.ended)):
                # The body failed (over the cap: answered now, the guest running on, its
                # next read failing), or the guest waits for a body that did not come in
                # time, or one received from the start (no declared length) is not in yet
                # (as §3.1's 408, whichever of the pump and this wait sees the deadline
                # first).
                failure = feed.failure or (408, "the body did not arrive before the "
                                                "route's deadline")
                raise _Answer(failure[0], failure[1],
                              "deadline" if failure[0] == 408 else "body")
            self._warn(route, st, f"no answer within {s.timeout_ms} ms")
            raise _Answer(504, f"the handler did not answer within {s.timeout_ms} ms",
                          "deadline")
        failed = None
        try:
            call.result()
        except _ProxyFailed as exc:
            failed = exc
        if feed is not None and feed.failure is not None:
            # The body the guest read failed (over max_body_bytes, too slow, cut short): that
            # is the answer, whatever the guest made of its stream's error.
            status, why = feed.failure
            raise _Answer(status, why, "deadline" if status == 408 else "body")
        # A guest whose body was refused past the cap (its stream closed) often fails
        # then: the cap is the answer.
        if failed is not None and not exchange.over:
            self._warn(route, st, str(failed))
            raise _Answer(failed.status, "the handler did not answer within the plugin's "
                          "deadline" if failed.status == 504 else "the handler failed")
        if exchange.over:
            self._warn(route, st, f"a response over max_response_bytes "
                                  f"({s.max_response_bytes})")
            raise _Answer(502, f"the handler's response is over {s.max_response_bytes} bytes")
        if exchange.error is not None:
            self._warn(route, st, f"the handler answered the error {exchange.error}")
            raise _Answer(502, "the handler answered an error")
        if exchange.status is None:
            self._warn(route, st, "the handler returned without setting its response")
            raise _Answer(502, "the handler did not set its response")
        if not exchange.finished:
            self._warn(route, st, "the handler did not finish its response body")
            raise _Answer(502, "the handler's response is incomplete")
        set_head = self._proxy_head(exchange, route, st)
        response = Response(set_head.status, set_head.headers, b"".join(exchange.chunks))
        fields = trailer_fields(exchange.trailers) if trailing else []
        if fields:  # (Response is frozen)
            object.__setattr__(response, "trailers", fields)
        return response

    def _proxy_head(self, exchange: Exchange, route: Route, st: RouteStats) -> Response:
        """The status and headers the guest set, through §3's rules."""
        headers: dict[str, list[str]] = {}
        assert exchange.response_headers is not None
        for name, value in exchange.response_headers.entries:
            headers.setdefault(name, []).append(value.decode("utf-8", "replace"))
        try:
            return decode_response(encode_request(
                {"status": exchange.status, "headers": headers}, b""), mode="envelope")
        except _BadResponse as exc:
            self._warn(route, st, f"a malformed response: {exc}")
            raise _Answer(502, "the handler's response is malformed") from None

    def _outcome(self, call: asyncio.Future[bytes], route: Route, st: RouteStats) -> bytes:
        try:
            return call.result()
        except (PluginNotFound, NeedsGrant, CircuitOpen, HandlerNotFound) as exc:
            self._warn(route, st, f"unavailable: {exc}")
            raise _Answer(503, f"plugin '{route.plugin}' cannot answer now",
                          "unavailable", [(b"retry-after", b"1")]) from None
        except OutputTooLarge as exc:
            self._warn(route, st, str(exc))
            raise _Answer(502, "the handler's response is over the plugin's output limit") \
                from None
        except DeadlineExceeded as exc:
            self._warn(route, st, str(exc))
            raise _Answer(500, "the handler ran past the plugin's own deadline") from None
        except (PluginCallError, PluginError, OmniError) as exc:
            self._warn(route, st, f"{type(exc).__name__}: {exc}")
            raise _Answer(500, "the handler failed") from None

    @staticmethod
    def _release(fut: asyncio.Future[Any], st: RouteStats) -> None:
        st.in_flight -= 1
        if not fut.cancelled():
            fut.exception()  # retrieved: a late failure is no "never retrieved" warning

    def _warn(self, route: Route, st: RouteStats, what: str) -> None:
        now = time.monotonic()
        if now - st.warned < 1.0:  # a flood of failing requests is one line a second
            st.suppressed += 1
            return
        more = f" ({st.suppressed} more since the last line)" if st.suppressed else ""
        st.warned, st.suppressed = now, 0
        log.warning("route '%s' (plugin %s, handler %s): %s%s", route.name, route.plugin,
                    route.handler, what, more)

    @staticmethod
    def _headers(raw: list[tuple[bytes, bytes]], max_bytes: int,
                 max_count: int) -> dict[str, str]:
        if len(raw) > max_count:
            raise _Answer(431, f"more than {max_count} headers", "headers")
        size = 0
        out: dict[str, str] = {}
        for k, v in raw:
            size += len(k) + len(v)
            if size > max_bytes:
                raise _Answer(431, f"the headers are over {max_bytes} bytes", "headers")
            name = k.decode("latin-1").lower()
            value = v.decode("utf-8", "replace")
            if name in out:
                out[name] += ("; " if name == "cookie" else ", ") + value
            else:
                out[name] = value
        return out

    def _take_rate(self, route: Route, st: RouteStats) -> None:
        if route.rate is None:
            return
        per_s, burst = route.rate
        now = time.monotonic()
        st.tokens = min(float(burst), st.tokens + (now - st.counted) * per_s)
        st.counted = now
        if st.tokens < 1.0:
            wait = max(1, int((1.0 - st.tokens) / per_s + 0.999))
            raise _Answer(429, f"route '{route.name}' takes {route.settings.rate_limit}",
                          "rate", [(b"retry-after", str(wait).encode())])
        st.tokens -= 1.0

    async def _body(self, scope: MutableMapping[str, Any], receive: Any, headers: dict[str, str],
                    cap: int, deadline: float, *, read: bool = True) -> bytes | None:
        """The request body, within ``cap`` and ``deadline``; with ``read`` False only its
        framing and declared length are checked, and None returned when a body follows."""
        declared = headers.get("content-length")
        if declared is not None:
            if "transfer-encoding" in headers:
                # framed two ways (RFC 9112 §6.1): a proxy in front may have read the other
                # one; answer and close, so no second request hides in this one's body
                raise _Answer(400, "both Content-Length and Transfer-Encoding", "body",
                              [(b"connection", b"close")])
            if not declared.isascii() or not declared.isdecimal():
                raise _Answer(400, "Content-Length is not a number")
            if int(declared) > cap:
                raise _Answer(413, f"the body is {declared} bytes; this route takes at most "
                                   f"{cap}", "body")
        elif "transfer-encoding" not in headers and \
                scope.get("http_version", "1.1") in ("1.0", "1.1"):
            return b""  # (HTTP/2 and 3 frame a body without either header)
        scope[_BODY_CAP] = min(int(scope.get(_BODY_CAP, cap)), cap)
        if not read:
            return None
        chunks: list[bytes] = []
        size = 0
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout_at(deadline - time.monotonic() + loop.time()):
                    message = await receive()
            except TimeoutError:
                raise _Answer(408, "the body did not arrive before the route's deadline",
                              "deadline") from None
            except Exception as exc:  # the console's BodyLimits refusing: 408 or 413
                status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
                raise _Answer(int(status or 400), str(exc), "body") from None
            if message["type"] == "http.disconnect":
                raise _Answer(400, "the client went away before its body arrived")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise _Answer(413, f"the body is over {cap} bytes", "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if declared is not None and size != int(declared):
            raise _Answer(400, f"the body is {size} bytes, not its Content-Length {declared}")
        return b"".join(chunks)

    def _authenticate(self, route: Route, headers: dict[str, str],
                      body: bytes) -> dict[str, Any]:
        s = route.settings
        if s.auth == "public":
            return {"mode": "public"}
        if s.auth == "token":
            scheme, _, token = headers.pop("authorization", "").partition(" ")
            user = self.verify_token(token.strip()) if scheme.lower() == "bearer" \
                and token.strip() else None
            if user is None:
                self._auth_log(route, "no valid API token")
                raise _Answer(401, "send 'Authorization: Bearer <API token>'", "auth",
                              [(b"www-authenticate", b"Bearer")])
            if s.role == "admin" and not user.is_admin:
                raise _Answer(403, f"user '{user.name}' is a viewer; this route needs an admin",
                              "auth")
            return {"mode": "token", "user": user.name,
                    "role": "admin" if user.is_admin else "viewer"}
        assert s.secret is not None
        try:
            secret = self.app.secrets.get(s.secret)
        except OmniError as exc:
            log.error("route '%s': cannot read its secret %r: %s", route.name, s.secret, exc)
            secret = None
        if not secret:  # an empty key signs for anybody: it is no secret
            log.error("route '%s': its secret %r is not set (omnicore secrets set %s)",
                      route.name, s.secret, s.secret)
            raise _Answer(503, "this route's secret is not set on the host", "unavailable")
        if s.auth == "github":
            why = check_github(secret, body, headers.get("x-hub-signature-256"))
            if why is not None:
                self._auth_log(route, why)
                raise _Answer(401, why, "auth")
            return {"mode": "github"}
        why, stamp = check_stripe(secret, body, headers.get("stripe-signature"),
                                  s.tolerance_s)
        if why is not None:
            self._auth_log(route, why)
            raise _Answer(401, why, "auth")
        return {"mode": "stripe", "timestamp": stamp}

    def _signature_shape(self, route: Route, headers: dict[str, str]) -> None:
        """401 before the body is read (and a slot held for it) when the signature header is
        missing or malformed, or a Stripe timestamp is out of its tolerance."""
        s = route.settings
        if s.auth == "github":
            why = check_github(b"", b"", headers.get("x-hub-signature-256"))
        else:
            why, _ = check_stripe(b"", b"", headers.get("stripe-signature"), s.tolerance_s)
        if why is not None and why != "bad signature":
            self._auth_log(route, why)
            raise _Answer(401, why, "auth")

    def _auth_log(self, route: Route, why: str) -> None:
        st = self.stats.get(route.name)
        now = time.monotonic()
        if st is not None and now - st.logged >= 1.0:  # a scanner must not flood the log
            st.logged = now
            log.info("route '%s': refused: %s", route.name, why)

    def _head(self, scope: MutableMapping[str, Any], route: Route, path: str,
              params: dict[str, str], headers: dict[str, str],
              auth: dict[str, Any]) -> dict[str, Any]:
        query = scope.get("query_string", b"").decode("latin-1")
        qp = query_params(query)
        if "cookie" in headers:  # the console's session never reaches a plugin
            kept = _without_console_cookies(headers["cookie"])
            if kept:
                headers["cookie"] = kept
            else:
                del headers["cookie"]
        host = headers.get("host", "")
        url = f"{scope.get('scheme', 'http')}://{host}{scope['path']}" + \
            (f"?{query}" if query else "")
        client = scope.get("client")
        return {"method": scope["method"].upper(), "path": path, "query": query,
                "query_params": qp, "params": params, "headers": headers,
                "route": route.name, "url": url, "remote": client[0] if client else None,
                "auth": auth}

    # -- what the console and metrics show ---------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        out = []
        for route in self.table().routes:
            st = self.stats.get(route.name, RouteStats())
            out.append({**route.describe(), "prefix": self.prefix,
                        "requests": sum(st.codes.values()),
                        "codes": {str(k): v for k, v in sorted(st.codes.items())},
                        "refused": dict(st.refused), "in_flight": st.in_flight})
        return out
