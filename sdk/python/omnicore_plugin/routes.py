"""HTTP routes: a handler that answers the requests an operator maps to it
(specs/http-routes.md §2, §3, §8). Needs no grant::

    from omnicore_plugin import routes
    from omnicore_plugin.routes import Request, Response

    @routes.handler
    def hello(req: Request) -> Response:
        return Response.text(f"hello {req.params.get('name', 'world')}")

The handler gets the host's request envelope decoded as a :class:`Request` and answers a
:class:`Response`, sent as the response block. A malformed envelope is answered ``400`` and
an exception the function raises ``500`` (its text logged, never sent): the call itself
never fails, so the route answers whatever happens.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload
from urllib.parse import parse_qsl

from omnicore_plugin import log
from omnicore_plugin._handlers import _register

__all__ = ["MalformedRequest", "Request", "Response", "decode", "encode", "handler"]

F = TypeVar("F", bound=Callable[..., Any])


class MalformedRequest(ValueError):
    """The input is not a request envelope (the message says why)."""


def _strings(value: Any) -> dict[str, str]:
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    return {}


def _lists(value: Any) -> dict[str, list[str]] | None:
    if isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in value.values()):
        return {str(k): list(v) for k, v in value.items()}
    return None


@dataclass(frozen=True)
class Request:
    """An HTTP request on a route: header names lower-case, the body raw bytes."""

    method: str
    path: str
    query: str = ""
    query_params: dict[str, list[str]] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    route: str = ""
    url: str = ""
    remote: str = ""
    auth: dict[str, Any] = field(default_factory=lambda: {"mode": "public"})

    def header(self, name: str, default: str | None = None) -> str | None:
        """A header's value (the name in any case), or ``default``."""
        return self.headers.get(name.lower(), default)

    def query_param(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``, or ``default``."""
        values = self.query_params.get(name)
        return values[0] if values else default

    def query_all(self, name: str) -> list[str]:
        """Every value of query parameter ``name``, in order (``[]`` when absent)."""
        return list(self.query_params.get(name, []))

    @property
    def text(self) -> str:
        """The body as UTF-8 text (invalid bytes replaced)."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` when it is not)."""
        return json.loads(self.body)


@dataclass
class Response:
    """A route's answer: a status, headers (name -> value, or a list of values sent once
    each, as ``set-cookie`` needs) and the body bytes."""

    status: int = 200
    headers: dict[str, str | list[str]] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        """``text/plain; charset=utf-8``."""
        return cls(status, {"content-type": "text/plain; charset=utf-8"}, text.encode("utf-8"))

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        """``application/json``, ``value`` serialised."""
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return cls(status, {"content-type": "application/json"}, data)

    @classmethod
    def of_status(cls, status: int) -> Response:
        """A status with an empty body."""
        return cls(status)

    def header(self, name: str, value: str | list[str]) -> Response:
        """Set header ``name``; returns the response, so calls chain."""
        self.headers[name.lower()] = value
        return self


def decode(data: bytes) -> Request:
    """The request envelope ``data`` as a :class:`Request`; :class:`MalformedRequest` when it
    is not one."""
    if len(data) < 4:
        raise MalformedRequest(f"{len(data)} bytes is too short for a request envelope")
    (n,) = struct.unpack_from("<I", data)
    if n > len(data) - 4:
        raise MalformedRequest(f"the head is {n} bytes but only {len(data) - 4} follow")
    try:
        head = json.loads(data[4:4 + n])
    except ValueError as exc:   # UnicodeDecodeError is a ValueError
        raise MalformedRequest(f"the head is not JSON ({exc})") from None
    if not isinstance(head, dict):
        raise MalformedRequest("the head is not a JSON object")
    method, path = head.get("method"), head.get("path")
    if not isinstance(method, str) or not isinstance(path, str):
        raise MalformedRequest('the head has no "method" and "path" strings')
    query = head.get("query") if isinstance(head.get("query"), str) else ""
    # The host always sends query_params; a hand-made envelope (omnicore call) may not.
    parsed = _lists(head.get("query_params"))
    if parsed is None:
        parsed = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            parsed.setdefault(name, []).append(value)
    auth = head.get("auth")
    return Request(
        method=method, path=path, query=query, query_params=parsed,
        params=_strings(head.get("params")),
        headers={k.lower(): v for k, v in _strings(head.get("headers")).items()},
        body=bytes(data[4 + n:]),
        route=head["route"] if isinstance(head.get("route"), str) else "",
        url=head["url"] if isinstance(head.get("url"), str) else "",
        remote=head["remote"] if isinstance(head.get("remote"), str) else "",
        auth=auth if isinstance(auth, dict) else {"mode": "public"})


def encode(response: Response) -> bytes:
    """``response`` as the response block: head length (u32 LE), head JSON, body."""
    head = json.dumps({"status": response.status, "headers": response.headers},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return struct.pack("<I", len(head)) + head + bytes(response.body)


def _answer(fn: Callable[[Request], Response], data: bytes) -> bytes:
    try:
        req = decode(data)
    except MalformedRequest as exc:
        return encode(Response.text(f"malformed request envelope: {exc}", 400))
    try:
        res = fn(req)
        if not isinstance(res, Response):
            raise TypeError(f"a route handler returns a Response, got {type(res).__name__}")
        return encode(res)
    except Exception as exc:  # every failure is the route's 500, never a failed call
        log.error(f"route handler failed: {type(exc).__name__}: {exc}")
        return encode(Response.text("internal error", 500))


@overload
def handler(fn: F) -> F: ...
@overload
def handler(fn: None = None, *, name: str | None = None, title: str | None = None,
            description: str | None = None) -> Callable[[F], F]: ...


def handler(fn: Any = None, *, name: str | None = None, title: str | None = None,
            description: str | None = None) -> Any:
    """Make ``fn(request: Request) -> Response`` the handler ``name`` (default: the
    function's name), answering HTTP requests. Use bare (``@routes.handler``) or with a name
    (``@routes.handler(name="hook")``); ``omnicore build`` finds it as it finds ``@handler``."""
    def register(f: F) -> F:
        _register(name or f.__name__, lambda data: _answer(f, data))
        return f

    return register(fn) if fn is not None else register
