"""The console's request spans (REST, pages, ``/mcp``): an ASGI middleware the console adds
only while tracing is on. An incoming W3C ``traceparent`` (and ``tracestate``) is continued."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TraceRequests"]


class TraceRequests:
    """A server span per HTTP request: ``http.request.method``, ``url.path``, ``http.route``
    (the route's template once routed) and ``http.response.status_code``; never the query
    string or a header but the trace context's."""

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
        parent = state = None
        for key, value in scope["headers"]:
            if key == b"traceparent":
                parent = value.decode("latin-1")
            elif key == b"tracestate":
                state = value.decode("latin-1")
        method = scope["method"]
        attributes: dict[str, Any] = {"http.request.method": method,
                                      "url.path": scope["path"],
                                      "url.scheme": scope.get("scheme", "http")}
        made = _sdk.start(method, attributes, _spans.SERVER,
                          _spans.parse_traceparent(parent, state) if parent else None)
        token = _spans.CURRENT.set(made)
        if not made.flags & 0x01:  # sampled out: its context alone, for what it calls
            try:
                await self.app(scope, receive, send)
            finally:
                _spans.CURRENT.reset(token)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                attributes["http.response.status_code"] = status
                if status >= 500:
                    made.status = _spans.ERROR
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException as exc:
            made.set_error(type(exc).__name__, type(exc).__name__)
            raise
        finally:
            _spans.CURRENT.reset(token)
            route = getattr(scope.get("route"), "path", None)
            if isinstance(route, str):
                attributes["http.route"] = route
                made.name = f"{method} {route}"
            _sdk.end(made)
