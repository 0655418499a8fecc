"""The console's request spans (REST, pages, ``/mcp``): an ASGI middleware the console adds
only while tracing is on. An incoming W3C ``traceparent`` is continued."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TraceRequests"]


class TraceRequests:
    """A server span per HTTP request: ``http.request.method``, ``url.path``, ``http.route``
    (the route's template once routed) and ``http.response.status_code``; never the query
    string or a header but the trace context's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import StatusCode

        from omnicore.telemetry import _sdk

        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]
                   if k in (b"traceparent", b"tracestate")}
        method = scope["method"]
        attributes: dict[str, Any] = {"http.request.method": method,
                                      "url.path": scope["path"],
                                      "url.scheme": scope.get("scheme", "http")}
        with _sdk.span(method, attributes, "server", carrier=carrier) as made:
            async def sending(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    made.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        made.set_status(StatusCode.ERROR)
                await send(message)

            try:
                await self.app(scope, receive, sending)
            finally:
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    made.set_attribute("http.route", route)
                    made.update_name(f"{method} {route}")
