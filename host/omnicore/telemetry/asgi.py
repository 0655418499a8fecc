"""The console's request spans (REST, pages, ``/mcp``): an ASGI middleware the console adds
only while tracing is on. An incoming W3C ``traceparent`` (and ``tracestate``) is continued."""

from __future__ import annotations

from collections.abc import Awaitable
from contextvars import Token
from operator import itemgetter
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TraceRequests"]

#: A header's name, of its ``(name, value)`` pair.
_name = itemgetter(0)


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
        headers = scope["headers"]
        if b"traceparent" in map(_name, headers):  # (looked for in C: most requests have none)
            for key, value in headers:
                if key == b"traceparent":
                    state = next((v.decode("latin-1") for k, v in headers
                                  if k == b"tracestate"), None)
                    parent = _spans.parse_traceparent(value.decode("latin-1"), state)
                    break
        method = scope["method"]
        current = _spans.CURRENT
        if parent is None:
            parent = current.get()
            if parent is None and (_sdk._OTEL_CONTEXT is None or _sdk._OTEL_CONTEXT.get()):
                parent = _sdk._outer()
        # What the request's work sees as its parent: the span's context alone, not the span.
        # A context copied during a request can outlive it: a task or timer made then keeps
        # it until the loop drops it, a cancelled timer seconds later. The console's own are
        # made in an empty context (console/bodies.py); Hypercorn's keep-alive wait is kept
        # off it below, a streamed answer's too (its task's copy is set back at its last
        # send). What such a copy holds is this context, not the span and its attributes.
        context = _spans.new_context(parent, _sdk._sampler)
        token: Token[Any] | None = current.set(context)
        # A span sampled out is its context alone, for what the request calls. A kept one is
        # never current (its context is) and nothing else holds it: its fields stay locals
        # here, made into its record (_spans.ended) once the response is sent.
        start_ns = _spans._now() if context.flags else 0
        status = 0
        error: str | None = None

        def sending(message: Message) -> Awaitable[None]:
            # Not a coroutine of its own: ``send``'s awaitable, handed back to be awaited (a
            # frame less for each message of every response).
            nonlocal status, token
            kind = message["type"]
            if kind == "http.response.start":
                status = int(message["status"])
            elif kind == "http.response.body" and not message.get("more_body") and \
                    token is not None:
                # The request's context current no more for its last message: Hypercorn's
                # send of it starts the connection's keep-alive wait, a task made in the
                # context current then, whose timer (cancelled by the next request) stays in
                # the loop's heap for 5 s. Holding the request's, it kept three objects a
                # request for seconds, and the young collections they brought on ran at 9
                # per thousand requests against none untraced (issue 62).
                held = token
                try:
                    current.reset(held)
                    token = None
                except ValueError:
                    # Sent from a task of its own (a streamed answer's: Starlette's task
                    # group), whose context is a copy: the token is not that context's to
                    # reset, so the copy is set back to what was current before the request,
                    # and the wait copies that. (The request's own is reset below.)
                    old = held.old_value
                    current.set(None if old is Token.MISSING else old)
            return send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException as exc:
            error = type(exc).__name__  # (its class, never its message)
            raise
        finally:
            if token is not None:
                current.reset(token)
            if start_ns:
                route = getattr(scope.get("route"), "path", None)
                name, shared = _sdk.served(method, scope.get("scheme", "http"),
                                           route if isinstance(route, str) else None, status)
                attributes: dict[str, Any] = {"url.path": scope["path"]}
                if error is not None:
                    attributes["error.type"] = error
                _sdk.queue(_spans.ended(
                    context, parent, name, _spans.SERVER, start_ns, attributes, shared,
                    _spans.ERROR if error is not None or status >= 500 else _spans.UNSET,
                    error))
