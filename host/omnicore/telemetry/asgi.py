"""The console's request spans (REST, pages, ``/mcp``), begun by the console's one middleware
while tracing is on (:func:`request_spans`). An incoming W3C ``traceparent`` (and
``tracestate``) is continued."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import Token
from functools import partial
from operator import itemgetter
from typing import Any

from starlette.types import Message, Scope, Send

from omnicore.telemetry import _sdk, _spans
from omnicore.telemetry._spans import CURRENT, Parent, Span

__all__ = ["ServerSpan", "request_spans"]

#: A header's name, of its ``(name, value)`` pair.
_name = itemgetter(0)


class ServerSpan:
    """One HTTP request's span, begun with the request (``ServerSpan(scope, send)``): an
    incoming ``traceparent`` continued, its context made and current for what the request
    calls. Called with each of the response's messages, it hands them on to ``send``;
    :meth:`end` ends it. (The Python twin of ``_otlpenc.server_span``, which the middleware
    uses where the extension is built.)"""

    __slots__ = ("context", "method", "parent", "scope", "send", "start_ns", "status", "token")

    def __init__(self, scope: Scope, send: Send) -> None:
        parent: Span | Parent | None = None
        headers = scope["headers"]
        if b"traceparent" in map(_name, headers):  # (looked for in C: most requests have none)
            for key, value in headers:
                if key == b"traceparent":
                    state = next((v.decode("latin-1") for k, v in headers
                                  if k == b"tracestate"), None)
                    parent = _spans.parse_traceparent(value.decode("latin-1"), state)
                    break
        self.scope = scope
        self.send = send
        self.method = scope["method"]
        if parent is None:
            parent = CURRENT.get()
            if parent is None and (_sdk._OTEL_CONTEXT is None or _sdk._OTEL_CONTEXT.get()):
                parent = _sdk._outer()
        self.parent = parent
        # What the request's work sees as its parent: the span's context alone, not the
        # span. A context copied during a request can outlive it: a task or timer made then
        # keeps it until the loop drops it, a cancelled timer seconds later. The console's
        # own are made in an empty context (console/bodies.py); Hypercorn's keep-alive wait
        # is kept off it below, a streamed answer's too (its task's copy is set back at its
        # last send). What such a copy holds is this context, not the span's attributes.
        self.context = _spans.new_context(parent, _sdk._sampler)
        self.token: Token[Any] | None = CURRENT.set(self.context)
        # A span sampled out is its context alone, for what the request calls. A kept one
        # is never current (its context is): its record is made when it ends.
        self.start_ns = _spans._now() if self.context.flags else 0
        self.status = 0

    def __call__(self, message: Message) -> Awaitable[None]:
        # Not a coroutine: ``send``'s awaitable, handed back to be awaited (a frame less
        # for each message of every response).
        kind = message["type"]
        if kind == "http.response.start":
            self.status = int(message["status"])
        elif kind == "http.response.body" and not message.get("more_body") and \
                self.token is not None:
            # The request's context current no more for its last message: Hypercorn's send
            # of it starts the connection's keep-alive wait, a task made in the context
            # current then, whose timer (cancelled by the next request) stays in the loop's
            # heap for 5 s. Holding the request's, it kept three objects a request for
            # seconds, and the young collections they brought on ran at 9 per thousand
            # requests against none untraced (issue 62).
            held = self.token
            try:
                CURRENT.reset(held)
                self.token = None
            except ValueError:
                # Sent from a task of its own (a streamed answer's: Starlette's task group),
                # whose context is a copy: the token is not that context's to reset, so the
                # copy is set back to what was current before the request, and the wait
                # copies that. (The request's own is reset at its end.)
                old = held.old_value
                CURRENT.set(None if old is Token.MISSING else old)
        return self.send(message)

    def end(self, error: BaseException | None) -> None:
        """The request's context reset, and its span, if kept, ended and queued: ``error``
        is what escaped the app (its class is named, never its message), or None."""
        if self.token is not None:
            token, self.token = self.token, None
            CURRENT.reset(token)
        if not self.start_ns:
            return
        start_ns, self.start_ns = self.start_ns, 0  # (once)
        scope = self.scope
        route = getattr(scope.get("route"), "path", None)
        name, shared = _sdk.served(self.method, scope.get("scheme", "http"),
                                   route if isinstance(route, str) else None, self.status)
        attributes: dict[str, Any] = {"url.path": scope["path"]}
        kind = None
        if error is not None:
            kind = attributes["error.type"] = type(error).__name__
        _sdk.queue(_spans.ended(
            self.context, self.parent, name, _spans.SERVER, start_ns, attributes, shared,
            _spans.ERROR if error is not None or self.status >= 500 else _spans.UNSET, kind))


def request_spans() -> Callable[[Scope, Send], Any]:
    """What begins a request's span, ``begin(scope, send)``: ``_otlpenc.server_span`` where
    the extension is built (the span's work in C: in Python it was some 17 thousand
    instructions a request, and a frame for each message), reading the names it uses from
    _sdk as :class:`ServerSpan` does; else that, its Python twin.

    The console begins one per HTTP request in its one middleware's pass
    (:class:`omnicore.console.bodies.BodyLimits`), before anything else, refusals included:
    ``http.request.method``, ``url.path``, ``http.route`` (the route's template once routed)
    and ``http.response.status_code``; never the query string or a header but the trace
    context's. All but the path are shared by the spans of one route and status
    (``Span.shared``: made and encoded once)."""
    if _spans._Sink is not None:
        from omnicore.telemetry._otlpenc import server_span

        return partial(server_span, vars(_sdk))
    return ServerSpan
