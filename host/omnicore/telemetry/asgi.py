"""The console's request spans (REST, pages, ``/mcp``): an ASGI middleware the console adds
only while tracing is on. An incoming W3C ``traceparent`` (and ``tracestate``) is continued."""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TraceRequests"]


class TraceRequests:
    """A server span per HTTP request: ``http.request.method``, ``url.path``, ``http.route``
    (the route's template once routed) and ``http.response.status_code``; never the query
    string or a header but the trace context's. All but the path are shared by the spans of
    one route and status (``Span.shared``: made and encoded once)."""

    def __init__(self, app: ASGIApp) -> None:
        import omnicore.telemetry as door
        from omnicore.telemetry import _sdk, _spans

        self.app = app
        self._door = door
        self._sdk = _sdk
        self._spans = _spans

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._door.ON:  # (off again: a test's reset)
            await self.app(scope, receive, send)
            return
        _sdk, _spans = self._sdk, self._spans
        parent = None
        for key, value in scope["headers"]:
            if key == b"traceparent":
                state = next((v.decode("latin-1") for k, v in scope["headers"]
                              if k == b"tracestate"), None)
                parent = _spans.parse_traceparent(value.decode("latin-1"), state)
                break
        method = scope["method"]
        made = _sdk.start(method, {"url.path": scope["path"]}, _spans.SERVER, parent)
        current = _spans.CURRENT
        # What the request's work sees as its parent: the span's context alone, not the span.
        # Contexts copied during a request outlive it (a cancelled timeout's timer keeps its
        # context until the loop drops it, seconds later), and with them what they hold:
        # every request's span and attributes, thousands at a time, each walked by the young
        # collections they brought on (in process, 10 per 1000 requests; 4 with this).
        token = current.set(_spans.Parent(made.trace_id, made.span_id, made.flags,
                                          made.state, False))
        if not made.flags & 0x01:  # sampled out: its context alone, for what it calls
            try:
                await self.app(scope, receive, send)
            finally:
                current.reset(token)
            return
        status = 0

        def sending(message: Message) -> Awaitable[None]:
            # Not a coroutine of its own: ``send``'s awaitable, handed back to be awaited (a
            # frame less for each message of every traced response).
            if message["type"] == "http.response.start":
                nonlocal status
                status = int(message["status"])
            return send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException as exc:
            made.set_error(type(exc).__name__, type(exc).__name__)
            raise
        finally:
            current.reset(token)
            route = getattr(scope.get("route"), "path", None)
            made.name, made.shared = _sdk.served(method, scope.get("scheme", "http"),
                                                 route if isinstance(route, str) else None,
                                                 status)
            if status >= 500:
                made.status = _spans.ERROR
            _sdk.end(made)
