"""Serving an unmodified ``wasi:http/proxy`` component on a route (issue 65, deliverable 1;
specs/http-routes.md "Proxy components").

A route whose plugin is a component exporting ``wasi:http/incoming-handler`` is answered by
calling its ``handle(request, response-out)`` with a request the host made of the HTTP
request (.wasihttp's host resources), then reading back the response the guest set: its
status, headers and body (within the route's ``max_response_bytes``).

Instances are the proxy's own (linked to the host's ``wasi:http``, never to wasmtime's WASI):
one per call in flight, kept for the next request when the call ended well (a
componentize-py component serves many; at most :data:`THREADS` kept idle: a new instance
per request costs 1-4 ms of CPU), discarded after any failure. A component whose
``producers`` section names a toolchain of :data:`ONE_REQUEST_PER_INSTANCE` (componentize-js:
StarlingMonkey answers the first request an instance gets and returns from every later
``handle`` without setting a response) gets a fresh instance for every request. Each call's epoch
deadline is the plugin's ``limits.timeout_ms``, armed through the deadline's door
(sandbox/deadline.py); the route's own deadline answers 504 at once.

:class:`ProxyRoutes` is the route server's side (server.py hands it the routes whose plugin
is a proxy component): the request made into an exchange (the path as the client wrote it,
its fields as sent, its body pulled in as the guest reads it), the call on a thread of
its own, and the answer: whole when the call ends within :data:`STREAM_AFTER_S`, else
streamed as the guest writes it, every failure a status or, once the head is out, an
answer ended without the body's end (HTTP/1.1: the connection; HTTP/2: the stream, reset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import wasmtime
from wasmtime import component as cm

from omnicore.egress import Refused as EgressRefused
from omnicore.egress import Request as EgressRequest
from omnicore.plugins.door import CallDoor
from omnicore.routes import wasihttp
from omnicore.routes.answer import Answer, RouteStats, release, warn, within
from omnicore.routes.bodyfeed import BodyFeed
from omnicore.routes.envelope import (
    SANDBOX,
    Response,
    _BadResponse,
    decode_response,
    encode_request,
)
from omnicore.routes.table import Route
from omnicore.routes.wasihttp import Exchange, Send, Table, _OutgoingDenied
from omnicore.sandbox.deadline import arm
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.pluginlog import PluginLog

__all__ = ["HANDLER", "ONE_REQUEST_PER_INSTANCE", "REQUEST_TRAILERS", "STREAM_AFTER_S", "THREADS",
           "ProxyComponent", "ProxyRoutes", "exports_handler",
           "one_request_per_instance", "request_trailer_fields", "trailer_fields"]

log = logging.getLogger("omnicore.routes")

#: Threads that run one proxy plugin's calls, so its calls in flight at once.
THREADS = 16
#: The interface a proxy component exports (any 0.2.x version).
HANDLER = "wasi:http/incoming-handler@0.2"


def exports_handler(exports: list[str] | tuple[str, ...]) -> str | None:
    """The exported ``wasi:http/incoming-handler`` name among ``exports``, or None."""
    for name in exports:
        if name.startswith(HANDLER):
            return name
    return None


#: Toolchains (a ``producers`` section's ``processed-by`` name) whose proxy components answer
#: one request per instance: componentize-js (0.23: StarlingMonkey's fetch event is dispatched
#: once; a later ``handle`` on the same instance returns without setting a response).
ONE_REQUEST_PER_INSTANCE = frozenset({"ComponentizeJS"})


def one_request_per_instance(processed_by: tuple[str, ...]) -> str | None:
    """The toolchain of :data:`ONE_REQUEST_PER_INSTANCE` among a component's ``producers``
    tools (:attr:`ComponentModule.processed_by`, read from the bytes it was compiled from),
    or None."""
    return next((t for t in processed_by if t in ONE_REQUEST_PER_INSTANCE), None)


#: Fields a trailer may not carry (RFC 9110 §6.5.1: framing, routing, authentication,
#: response control, content metadata) and hop-by-hop ones: dropped from a guest's trailers.
NOT_TRAILERS = frozenset({
    "age", "authorization", "cache-control", "connection", "content-encoding",
    "content-length", "content-range", "content-type", "date", "expect", "expires", "host",
    "keep-alive", "location", "max-forwards", "pragma", "proxy-authenticate",
    "proxy-authorization", "proxy-connection", "range", "retry-after", "set-cookie", "te",
    "trailer", "transfer-encoding", "upgrade", "vary", "www-authenticate"})


def trailer_fields(trailers: wasihttp.Fields | None) -> list[tuple[bytes, bytes]]:
    """A guest's response trailers as the server sends them: names lower-case, the fields a
    trailer may not carry dropped (none: an empty list)."""
    if trailers is None:
        return []
    return [(name.lower().encode("ascii"), value) for name, value in trailers.entries
            if name.lower() not in NOT_TRAILERS]


#: The scope extension the console's server fills with a request's trailer fields (its dict's
#: ``"headers"``, before the body's last message: omnicore/console/http1.py).
REQUEST_TRAILERS = "http.request.trailers"
#: Request trailer fields a proxy component is not given: those a trailer may not carry
#: (RFC 9110 §6.5.1), and ``cookie`` (the route hands a request's cookies on only as its
#: rules left them, without the console's).
NOT_REQUEST_TRAILERS = NOT_TRAILERS | {"cookie"}


def request_trailer_fields(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, bytes]]:
    """A request's trailer fields as a proxy component gets them (``future-trailers.get``):
    names lower-case, those of :data:`NOT_REQUEST_TRAILERS` dropped."""
    return [(name, bytes(value)) for key, value in raw
            if (name := bytes(key).decode("latin-1").lower()) not in NOT_REQUEST_TRAILERS]


class _TrailersOver(Exception):
    """A request's trailers past its route's header caps: the body fails with 431 (as
    bodyfeed.BodyFeed takes an exception's ``status``)."""

    status = 431


def _trailers_over(headers: list[tuple[bytes, bytes]], trailers: list[tuple[bytes, bytes]],
                   max_bytes: int, max_count: int) -> str | None:
    """Why a request's headers and trailers together are over its route's caps (a
    client must not pass the header caps by sending its fields as trailers), or None."""
    if len(headers) + len(trailers) > max_count:
        return f"more than {max_count} headers and trailers"
    size = sum(len(k) + len(v) for k, v in headers) + sum(len(k) + len(v) for k, v in trailers)
    if size > max_bytes:
        return f"the headers and trailers are over {max_bytes} bytes"
    return None


class _ProxyFailed(Exception):
    """The call failed: ``status`` 500 (a trap, an error) or 504 (the plugin's deadline)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Instance:
    store: wasmtime.Store
    handle: Any
    table: Table


class ProxyComponent:
    """A proxy component's instances, and :meth:`serve` to answer one request. Thread-safe."""

    def __init__(self, name: str, engine: SandboxEngine, component: cm.Component,
                 limits: Limits, log: PluginLog, send: wasihttp.Send | None = None,
                 *, processed_by: tuple[str, ...] = ()) -> None:
        self.name = name
        #: The toolchain whose components answer one request per instance (of the
        #: component's producers, ``processed_by``); None: instances are reused.
        self.one_shot = one_request_per_instance(processed_by)
        #: Outgoing requests (the plugin's ``http`` grant); None: each one refused.
        self.send = send
        self.engine = engine
        self.component = component
        self.limits = limits
        self.log = log
        eng = engine.components
        ctype = component.type
        imports = list(ctype.imports(eng))
        exports = list(ctype.exports(eng))
        handler = exports_handler(exports)
        if handler is None:
            raise ValueError(f"plugin {name!r} exports no wasi:http/incoming-handler")
        self.interface = handler
        self.linker = cm.Linker(eng)
        wasihttp.link_proxy(self.linker, imports, self._stdout, self._stderr)
        # What the host does not define (another WASI interface, a socket's functions) is
        # linked, and traps if used.
        self.linker.define_unknown_imports_as_traps(component)
        self._idle: list[_Instance] = []
        self._lock = threading.Lock()
        self._ticks = engine.deadline_ticks(limits.timeout_ms)
        self.instances_made = 0

    def _stdout(self, data: bytes) -> bool:
        self.log.write("info", data.decode("utf-8", "replace").rstrip("\n"))
        return True

    def _stderr(self, data: bytes) -> bool:
        self.log.write("warn", data.decode("utf-8", "replace").rstrip("\n"))
        return True

    def _new(self, cap: int) -> _Instance:
        store = wasmtime.Store(self.engine.components)
        store.set_limits(memory_size=self.limits.max_memory_bytes,
                         table_elements=self.limits.max_table_elements)
        table = Table(cap, self.log.write)
        table.send = self.send
        table.deadline = time.monotonic() + self.limits.timeout_ms / 1000
        arm(self.engine, store, self._ticks)
        wasihttp.enter(table)
        try:
            instance = self.linker.instantiate(store, self.component)
        except Exception as exc:  # a trap, or a host function's refusal as itself
            raise _ProxyFailed(500, f"the component did not start: {_first_line(exc)}") \
                from None
        finally:
            wasihttp.enter(None)
        idx = instance.get_export_index(store, self.interface)
        fidx = instance.get_export_index(store, "handle", idx) if idx is not None else None
        func = instance.get_func(store, fidx) if fidx is not None else None
        if func is None:
            raise _ProxyFailed(500, f"{self.interface} has no function 'handle'")
        self.instances_made += 1
        return _Instance(store, func, table)

    def serve(self, exchange: Exchange) -> Exchange:
        """Call ``handle`` with ``exchange``'s request; the exchange, answered or not.
        Raises _ProxyFailed when the call failed."""
        if time.monotonic() >= exchange.deadline:
            raise _ProxyFailed(504, "the route's deadline passed before a thread was free")
        with self._lock:
            inst = self._idle.pop() if self._idle else None
        if inst is None:
            inst = self._new(exchange.cap)
        table = inst.table
        table.cap = exchange.cap
        table.field_bytes = 0  # a budget per request (wasihttp.MAX_FIELD_BYTES)
        mark = table.next
        request, outparam = wasihttp.new_request(table, exchange)
        start = self.engine.epoch
        table.deadline = time.monotonic() + self.limits.timeout_ms / 1000
        arm(self.engine, inst.store, self._ticks)
        wasihttp.enter(table)
        keep = False
        try:
            inst.handle(inst.store, request, outparam)
            inst.handle.post_return(inst.store)
            keep = True
        except (wasmtime.WasmtimeError, wasihttp._Trap) as exc:
            # (A host function's refusal comes back as itself: wasmtime-py re-raises the
            # Python exception a host function raised, not the trap it made of it.)
            late = self.engine.epoch - start >= self._ticks - 1 or \
                time.monotonic() >= table.deadline
            if late:
                raise _ProxyFailed(504, f"the handler ran past the plugin's deadline "
                                       f"({self.limits.timeout_ms} ms)") from None
            raise _ProxyFailed(500, f"the handler trapped: {_first_line(exc)}") from None
        except Exception as exc:  # a host function of ours failed: the guest trapped on it
            log.exception("plugin %r: a wasi:http host function failed", self.name)
            raise _ProxyFailed(500, f"a host function failed: {type(exc).__name__}") from None
        finally:
            wasihttp.enter(None)
            # What this request made and the guest still holds is dropped with it: nothing
            # of one request reaches the next; an instance whose guest hoards the handles is
            # retired (wasihttp.Table.forget).
            if keep and self.one_shot is None and table.forget(mark):
                with self._lock:  # at most THREADS kept idle (one per call in flight)
                    if len(self._idle) < THREADS:
                        self._idle.append(inst)
            else:
                inst.table.objects.clear()  # the store goes; its handles with it
        return exchange

    def close(self) -> None:
        with self._lock:
            self._idle.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    cause = text.rfind("Caused by:")
    if cause >= 0:
        return text[cause + len("Caused by:"):].strip().splitlines()[0].strip()
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


# -- serving a request with one ------------------------------------------------------------

#: A call still running this long after it began, its response set, has its body streamed;
#: one that ends sooner is answered whole.
STREAM_AFTER_S = 0.1
#: egress's refusals as the wasi:http error-code a proxy component gets.
_ERROR_CASES = {"DENIED": "HTTP-request-denied", "INVALID": "HTTP-request-URI-invalid",
                "QUOTA": "connection-limit-reached", "TOO_LARGE": "HTTP-request-body-size",
                "UNAVAILABLE": "destination-unavailable"}


class _Streamed(Response):
    """A proxy component's answer whose body is still being written."""

    stream: _ProxyStream

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                 stream: _ProxyStream) -> None:
        super().__init__(status, headers, body)
        object.__setattr__(self, "stream", stream)  # (Response is frozen)

    async def send(self, send: Any, *, head_only: bool) -> None:
        """A proxy component's body as it writes it (no content-length: chunked). A failure
        after the head (a trap, the cap, the deadline) ends the answer without the body's
        end (the server ends an HTTP/1.1 connection, resets an HTTP/2 stream), so the
        client sees an incomplete answer, never a complete wrong one."""
        stream = self.stream
        trailing = stream.trailing and not head_only
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [*self.headers, SANDBOX], "trailers": trailing})
        if head_only:
            if stream.feed is not None:
                stream.feed.close()
            await send({"type": "http.response.body", "body": b""})
            return
        try:
            async for chunk in stream.chunks():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except _StreamBroken:
            return  # the server ends the answer unfinished: the body's end never comes
        await send({"type": "http.response.body", "body": b""})
        if trailing:  # (none given: an empty section, which the server sends as none)
            await send({"type": "http.response.trailers", "more_trailers": False,
                        "headers": trailer_fields(stream.exchange.trailers)})


class _StreamBroken(Exception):
    """The body cannot be finished: the connection is ended without its end."""


@dataclass
class _ProxyStream:
    exchange: Exchange
    call: asyncio.Future[Any]
    moved: asyncio.Event
    deadline: float
    route: Route
    st: RouteStats
    #: The request body as the guest reads it (closed once the answer is sent), or None.
    feed: BodyFeed | None = None
    #: Whether the server takes trailers: the head says they may follow, whatever the guest
    #: announced, since the guest gives them only at its body's end.
    trailing: bool = False

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
        warn(self.route, self.st, why)
        return _StreamBroken(why)


class ProxyRoutes:
    """The route server's side of proxy components (server.py hands them the routes whose
    plugin is one): each plugin's :class:`ProxyComponent`, the threads their calls run on,
    and a request's life with one, from the :class:`~omnicore.routes.wasihttp.Exchange`
    made of it to the answer, whole or streamed."""

    def __init__(self, app: Any, prefix: str) -> None:
        self.app = app
        self.prefix = prefix
        self._lock = threading.Lock()
        #: By plugin: (the module's sha256, its instances, the plugin's limits and granted
        #: capabilities they were made under).
        self._proxies: dict[str, tuple[str, ProxyComponent | None, Any]] = {}
        #: By plugin: the worker threads its calls run on (plugins/door.py), as every other
        #: call into a plugin from async code. Its own: one plugin's calls stuck to their
        #: deadlines hold no thread another plugin's routes need.
        self._doors: dict[str, CallDoor] = {}

    def component(self, plugin: str) -> ProxyComponent | None:
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

    async def serve(self, proxy: ProxyComponent, route: Route, st: RouteStats,
                           head: dict[str, Any], body: bytes | None, deadline: float,
                           scope: MutableMapping[str, Any], receive: Any) -> Response:
        s = route.settings
        query = head["query"]
        scheme = head["url"].partition("://")[0]
        loop = asyncio.get_running_loop()
        feed = None
        # The request's trailers, when the server hands them on (a dict filled before the
        # body's last message), within the route's header caps with its headers.
        holder = (scope.get("extensions") or {}).get(REQUEST_TRAILERS)
        trailers_in = None
        if isinstance(holder, dict):
            raw_trailers: list[tuple[bytes, bytes]] = holder.setdefault("headers", [])

            def trailers_in() -> list[tuple[str, bytes]]:
                return request_trailer_fields(raw_trailers)

            if body is not None:  # read already (a signed route): its trailers are in
                over = raw_trailers and _trailers_over(scope["headers"], raw_trailers,
                                                       s.max_header_bytes, s.max_headers)
                if over:
                    raise Answer(431, over, "headers")
            else:
                receive = self._capped(receive, scope["headers"], raw_trailers,
                                       s.max_header_bytes, s.max_headers)
        if body is None:  # the guest's reads pull it in (bodyfeed.BodyFeed)
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
            deadline=deadline, trailers_in=trailers_in)
        # Trailers go to a server that sends them (the ASGI http.response.trailers
        # extension: HTTP/2, and HTTP/1.1 chunked through the console's server,
        # omnicore/console/http1.py), which judges whether the client takes them (te).
        trailing = "http.response.trailers" in (scope.get("extensions") or {}) \
            and scope["method"] != "HEAD"
        streamed = False
        try:
            response = await self._run(proxy, route, st, exchange, deadline, feed,
                                             trailing)
            streamed = isinstance(response, _Streamed)
            return response
        finally:
            if feed is not None and not streamed:
                feed.close()

    @staticmethod
    def _capped(receive: Any, headers: list[tuple[bytes, bytes]],
                trailers: list[tuple[bytes, bytes]], max_bytes: int, max_count: int) -> Any:
        """``receive``, whose body's last message fails (431) when the request's trailers
        (filled by then) and headers are over the route's header caps."""
        async def capped() -> Any:
            message = await receive()
            if trailers and not message.get("more_body", False) and \
                    message["type"] == "http.request":
                over = _trailers_over(headers, trailers, max_bytes, max_count)
                if over:
                    raise _TrailersOver(over)
            return message

        return capped

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

    async def _run(self, proxy: ProxyComponent, route: Route, st: RouteStats,
                         exchange: Exchange, deadline: float, feed: BodyFeed | None,
                         trailing: bool) -> Response:
        s = route.settings
        door = self._doors.get(proxy.name)
        if door is None:
            with self._lock:
                door = self._doors.setdefault(proxy.name, CallDoor(proxy.name, THREADS))
        loop = asyncio.get_running_loop()
        moved = asyncio.Event()
        # A shared pool of THREADS woke a thread a request, each call's host calls fighting
        # the others' for the GIL (49 voluntary switches and 1.7 ms of CPU a request at 16
        # connections); the door runs short calls back to back on one awake worker.
        call = door.submit(proxy.serve, exchange)
        # A call that ends within STREAM_AFTER_S is answered whole (no wake-up of this loop
        # but its end); one still running then, its response set, is streamed. (At 20 ms a
        # loaded host streamed nearly every answer, at ~1.4 ms more CPU each.)
        while not await within(call, min(deadline, time.monotonic() + STREAM_AFTER_S),
                                feed):
            if time.monotonic() >= deadline or (feed is not None and
                                                feed.failure is not None):
                break  # (a failed body is the answer, not a head the guest set)
            # A body finished already is answered whole at the call's end, which is near:
            # streaming it would make the answer's framing, its trailers and what a
            # failure after the finish gives depend on how loaded the host was.
            if exchange.status is None or exchange.over or exchange.finished:
                continue

            def notify() -> None:  # on the guest's thread
                loop.call_soon_threadsafe(moved.set)

            exchange.notify = notify
            call.add_done_callback(lambda _: moved.set())
            if feed is not None:  # a body failing now ends the answer at once
                feed.watch(moved.set)
            st.in_flight += 1  # held until the call ends (the finally gives one back)
            call.add_done_callback(lambda fut: release(fut, st))
            set_head = self._head(exchange, route, st)
            return _Streamed(set_head.status, set_head.headers, b"",
                             _ProxyStream(exchange, call, moved, deadline, route, st,
                                          feed, trailing))
        if not await within(call, deadline, feed):
            st.in_flight += 1  # the finally below gives it back; the call keeps its slot
            call.add_done_callback(lambda fut: release(fut, st))
            if feed is not None and (feed.waiting or feed.failure is not None or (
                    feed.declared is None and not feed.ended)):
                # The body failed (over the cap: answered now, the guest running on, its
                # next read failing), or the guest waits for a body that did not come in
                # time, or one received from the start (no declared length) is not in yet
                # (as §3.1's 408, whichever of the pump and this wait sees the deadline
                # first).
                failure = feed.failure or (408, "the body did not arrive before the "
                                                "route's deadline")
                raise Answer(failure[0], failure[1],
                              "deadline" if failure[0] == 408 else "body")
            warn(route, st, f"no answer within {s.timeout_ms} ms")
            raise Answer(504, f"the handler did not answer within {s.timeout_ms} ms",
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
            raise Answer(status, why, "deadline" if status == 408 else "body")
        # A guest whose body was refused past the cap (its stream closed) often fails
        # then: the cap is the answer.
        if failed is not None and not exchange.over:
            warn(route, st, str(failed))
            raise Answer(failed.status, "the handler did not answer within the plugin's "
                          "deadline" if failed.status == 504 else "the handler failed")
        if exchange.over:
            warn(route, st, f"a response over max_response_bytes "
                                  f"({s.max_response_bytes})")
            raise Answer(502, f"the handler's response is over {s.max_response_bytes} bytes")
        if exchange.error is not None:
            warn(route, st, f"the handler answered the error {exchange.error}")
            raise Answer(502, "the handler answered an error")
        if exchange.status is None:
            warn(route, st, "the handler returned without setting its response")
            raise Answer(502, "the handler did not set its response")
        if not exchange.finished:
            warn(route, st, "the handler did not finish its response body")
            raise Answer(502, "the handler's response is incomplete")
        set_head = self._head(exchange, route, st)
        response = Response(set_head.status, set_head.headers, b"".join(exchange.chunks))
        fields = trailer_fields(exchange.trailers) if trailing else []
        if fields:  # (Response is frozen)
            object.__setattr__(response, "trailers", fields)
        return response

    def _head(self, exchange: Exchange, route: Route, st: RouteStats) -> Response:
        """The status and headers the guest set, through §3's rules."""
        headers: dict[str, list[str]] = {}
        assert exchange.response_headers is not None
        for name, value in exchange.response_headers.entries:
            headers.setdefault(name, []).append(value.decode("utf-8", "replace"))
        try:
            return decode_response(encode_request(
                {"status": exchange.status, "headers": headers}, b""), mode="envelope")
        except _BadResponse as exc:
            warn(route, st, f"a malformed response: {exc}")
            raise Answer(502, "the handler's response is malformed") from None

