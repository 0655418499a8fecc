""":class:`RoutesServer`: the ASGI app the console mounts at ``serve.prefix`` (specs/
http-routes.md). One request: match a route, check its caps, rate and concurrency, read the
body within the deadline, authenticate, call the handler on a worker thread with the
envelope, answer its response; a route whose plugin is a ``wasi:http/proxy`` component is
served by proxy.py's :class:`~omnicore.routes.proxy.ProxyRoutes` instead. Whatever the
request sends or the handler does, the answer is a status (§3.1), never a host fault."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol

from omnicore.config.routes import ServeConfig
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
from omnicore.filestamp import stamp as file_stamp
from omnicore.plugins.sidecar import read_sidecar, sidecar_stat
from omnicore.routes.answer import Answer, RouteStats, release, warn, within
from omnicore.routes.envelope import (
    SANDBOX,
    Response,
    _BadResponse,
    _without_console_cookies,
    decode_response,
    encode_request,
    query_params,
)
from omnicore.routes.proxy import ProxyRoutes, _Streamed
from omnicore.routes.signatures import check_github, check_stripe
from omnicore.routes.table import (
    Route,
    RouteTable,
    ServedRoute,
    SourceRoutes,
    build,
    clean_path,
)

__all__ = ["RouteStats", "RoutesServer", "TokenUser"]

log = logging.getLogger("omnicore.routes")

#: How often the table looks for edited sidecars and plugins loaded or gone (the app
#: config's own change is seen on the next request).
REFRESH_S = 0.25
_BODY_CAP = "omnicore.body_cap"  # the console's BodyLimits reads it (console/bodies.py)


class TokenUser(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...




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
        self._served: dict[tuple[str, str], ServedRoute] = {}
        #: The routes whose plugin is a proxy component are served there (.proxy).
        self.proxies = ProxyRoutes(app, self.prefix)
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
        """What the table is built from, and its key: what changing rebuilds it. Every
        REFRESH_S of a host serving: the sources themselves (the config's routes dumped, the
        plugins' proposals) are made only when the key moved (:meth:`table` builds them then);
        the key is the plugins' snapshots and one stat per sidecar name."""
        infos = sorted(self.app.plugins, key=lambda i: i.name)
        key: list[Any] = [id(serve)]
        sidecars: list[tuple[str, dict[str, Any], str]] = []
        for info in infos:
            # (its module's digest: a new version of the same name, file and handlers may
            # propose other routes, which an accepted proposal serves)
            key.append((info.name, info.state, info.source, tuple(info.handlers),
                        info.sha256))
            if info.source:
                routes, where, stamp = self._sidecar_routes(info.source)
                key.append((where, stamp))
                if routes:
                    sidecars.append((info.name, routes, where))
        found = tuple(key)
        if found == self._key and serve is self._serve:
            return [], {}, found  # (table() keeps the table it has)
        sources = [SourceRoutes("omnicore.yaml serve.routes", None,
                                {n: r.model_dump(exclude_unset=True)
                                 for n, r in serve.routes.items()})]
        sources += [SourceRoutes(where, name, routes) for name, routes, where in sidecars]
        proposals: dict[str, dict[str, Any]] = {}
        for info in infos:
            offered = info.manifest.get("routes") if isinstance(info.manifest, dict) else None
            proposals[info.name] = {str(p["name"]): p for p in offered
                                    if isinstance(p, dict) and "name" in p} \
                if isinstance(offered, list) else {}
        return sources, proposals, found

    def _sidecar_routes(self, source: str) -> tuple[dict[str, Any], str, Any]:
        """The routes of the sidecar of the plugin file ``source``, its path and stamp (found by
        ``sidecar_stat``: this runs every REFRESH_S for every plugin file)."""
        found = sidecar_stat(source)
        if found is None:
            return {}, "", None
        path, st = found
        stamp = file_stamp(st)
        cached = self._sidecars.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1], path, stamp
        try:
            routes = dict(read_sidecar(Path(source)).routes)
        except (ConfigError, OSError) as exc:
            log.warning("routes: ignoring the sidecar %s: %s", path, exc)
            routes = {}
        self._sidecars[path] = (stamp, routes, path)
        return routes, path, stamp

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
                raise Answer(400, "the path does not decode to one this host serves "
                                   "(NUL, '.', '..' or an empty segment)")
            method = scope["method"].upper()
            found = table.match(method, clean)
            if found.route is None:
                if found.allowed:
                    raise Answer(405, f"{method} is not served at {clean}", "not_allowed",
                                  [(b"allow", ", ".join(found.allowed).encode())])
                raise Answer(404, f"no route at {clean}")
            route = found.route
            # The route's template, for whoever reads the matched route after the answer
            # (the request's span: http.route), in place of the mount's own /http (one
            # object per template and mount, not one made per request).
            served = self._served.get((root, route.pattern.text))
            if served is None:
                if len(self._served) >= 1024:  # (templates come and go with the table)
                    self._served.clear()
                served = self._served[(root, route.pattern.text)] = route.served_as(root)
            scope["route"] = served
            # (table() made every served route's stats; a default made here for setdefault
            # was two dicts and a dataclass thrown away on every request.)
            st = self.stats.get(route.name) or self.stats.setdefault(route.name, RouteStats())
            response = await self._serve_route(scope, receive, route, st, found.params,
                                               clean, started)
        except Answer as answer:
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
            await response.send(send, head_only=head_only)
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
            raise Answer(503, f"route '{route.name}' has {s.max_concurrent} calls in flight; "
                               "try again", "busy", [(b"retry-after", b"1")])
        st.in_flight += 1
        released = False
        try:
            # A proxy component reads the body as it arrives (.proxy: its reads pull it in),
            # unless a signature must be checked over the whole body first. (A core module
            # serving now has no proxy instances: proxies.component would say None.)
            module = self.app.plugins.serving_module(route.plugin)
            early = None if signed or module is None or \
                getattr(module, "world", None) is None else self.proxies.component(route.plugin)
            if "content-length" not in headers and "transfer-encoding" not in headers and \
                    scope.get("http_version", "1.1") in ("1.0", "1.1"):
                body: bytes | None = b""  # (_body's answer, without its coroutine)
            else:
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
                warn(route, st, f"plugin still loading after {s.timeout_ms} ms")
                raise Answer(504, f"plugin '{route.plugin}' is still loading (waited "
                                   f"{s.timeout_ms} ms)", "deadline")
            # A core module serving now (no component world, nothing awaited since it was
            # read) has no proxy instances: _proxy would read the module again to say None.
            proxy = early or (None if module is not None and getattr(module, "world", None)
                              is None else self.proxies.component(route.plugin))
            if proxy is not None:
                return await self.proxies.serve(proxy, route, st, head, body, deadline,
                                                scope, receive)
            if body is None:  # (the plugin was replaced by one that is not a proxy meanwhile)
                body = await self._body(scope, receive, headers, s.max_body_bytes, deadline)
            body = body or b""
            data = body if s.mode == "body" else encode_request(head, body)
            call = self.app.plugins.submit(route.plugin, route.handler, data)
            if not await within(call, deadline):
                # A call still queued for a worker never runs (its client has its 504, and it
                # would hold a worker and this route's slot to the plugin's own deadline);
                # one running keeps its slot until it ends.
                if not self.app.plugins.withdraw(route.plugin, call):
                    released = True
                    call.add_done_callback(lambda fut: release(fut, st))
                warn(route, st, f"no answer within {s.timeout_ms} ms")
                raise Answer(504, f"the handler did not answer within {s.timeout_ms} ms",
                              "deadline")
            out = self._outcome(call, route, st)
        finally:
            if not released:
                st.in_flight -= 1
        if len(out) > s.max_response_bytes:
            warn(route, st, f"a response of {len(out)} bytes (max_response_bytes "
                                  f"{s.max_response_bytes})")
            raise Answer(502, f"the handler's response is over {s.max_response_bytes} bytes")
        try:
            return decode_response(out, mode=s.mode or "envelope")
        except _BadResponse as exc:
            warn(route, st, f"a malformed response: {exc}")
            raise Answer(502, "the handler's response is malformed") from None

    def _outcome(self, call: asyncio.Future[bytes], route: Route, st: RouteStats) -> bytes:
        try:
            return call.result()
        except (PluginNotFound, NeedsGrant, CircuitOpen, HandlerNotFound) as exc:
            warn(route, st, f"unavailable: {exc}")
            raise Answer(503, f"plugin '{route.plugin}' cannot answer now",
                          "unavailable", [(b"retry-after", b"1")]) from None
        except OutputTooLarge as exc:
            warn(route, st, str(exc))
            raise Answer(502, "the handler's response is over the plugin's output limit") \
                from None
        except DeadlineExceeded as exc:
            warn(route, st, str(exc))
            raise Answer(500, "the handler ran past the plugin's own deadline") from None
        except (PluginCallError, PluginError, OmniError) as exc:
            warn(route, st, f"{type(exc).__name__}: {exc}")
            raise Answer(500, "the handler failed") from None

    @staticmethod
    def _headers(raw: list[tuple[bytes, bytes]], max_bytes: int,
                 max_count: int) -> dict[str, str]:
        if len(raw) > max_count:
            raise Answer(431, f"more than {max_count} headers", "headers")
        size = 0
        out: dict[str, str] = {}
        for k, v in raw:
            size += len(k) + len(v)
            if size > max_bytes:
                raise Answer(431, f"the headers are over {max_bytes} bytes", "headers")
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
            raise Answer(429, f"route '{route.name}' takes {route.settings.rate_limit}",
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
                raise Answer(400, "both Content-Length and Transfer-Encoding", "body",
                              [(b"connection", b"close")])
            if not declared.isascii() or not declared.isdecimal():
                raise Answer(400, "Content-Length is not a number")
            if int(declared) > cap:
                raise Answer(413, f"the body is {declared} bytes; this route takes at most "
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
                raise Answer(408, "the body did not arrive before the route's deadline",
                              "deadline") from None
            except Exception as exc:  # the console's BodyLimits refusing: 408 or 413
                status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
                raise Answer(int(status or 400), str(exc), "body") from None
            if message["type"] == "http.disconnect":
                raise Answer(400, "the client went away before its body arrived")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise Answer(413, f"the body is over {cap} bytes", "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if declared is not None and size != int(declared):
            raise Answer(400, f"the body is {size} bytes, not its Content-Length {declared}")
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
                raise Answer(401, "send 'Authorization: Bearer <API token>'", "auth",
                              [(b"www-authenticate", b"Bearer")])
            if s.role == "admin" and not user.is_admin:
                raise Answer(403, f"user '{user.name}' is a viewer; this route needs an admin",
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
            raise Answer(503, "this route's secret is not set on the host", "unavailable")
        if s.auth == "github":
            why = check_github(secret, body, headers.get("x-hub-signature-256"))
            if why is not None:
                self._auth_log(route, why)
                raise Answer(401, why, "auth")
            return {"mode": "github"}
        why, stamp = check_stripe(secret, body, headers.get("stripe-signature"),
                                  s.tolerance_s)
        if why is not None:
            self._auth_log(route, why)
            raise Answer(401, why, "auth")
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
            raise Answer(401, why, "auth")

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
