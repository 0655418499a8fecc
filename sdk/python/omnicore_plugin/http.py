"""Outbound HTTP (``omnicore:http``; needs the ``http`` grant, whose ``allow_hosts`` says
where). Refusals and failures raise :class:`~omnicore_plugin.HostError` with ``code``
``DENIED``, ``INVALID``, ``TOO_LARGE``, ``QUOTA`` or ``UNAVAILABLE`` and the host's reason
in ``detail``; an answer with any HTTP status is a :class:`Response`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from omnicore_plugin._binding import Binding

__all__ = ["Response", "get", "post", "request"]

_host = Binding("http")


@dataclass(frozen=True)
class Response:
    """An answer: header names lower-case."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        """The body as UTF-8 text."""
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


def request(method: str, url: str = "", *, headers: dict[str, str] | None = None,
            body: bytes | str = b"", timeout_ms: int | None = None,
            connector: str | None = None, path: str = "") -> Response:
    """Send a request to ``url``, or to ``path`` on the app's ``connector``."""
    req: dict[str, Any] = {"method": method, "headers": headers or {}}
    if connector is not None:
        req.update(connector=connector, path=path)
    else:
        req["url"] = url
    if timeout_ms is not None:
        req["timeout_ms"] = timeout_ms
    data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    answer = _host.call("request", json.dumps(req), data)
    return Response(int(answer.status), dict(answer.headers), bytes(answer.body))


def get(url: str, **options: Any) -> Response:
    """``request("GET", url, ...)``."""
    return request("GET", url, **options)


def post(url: str, body: bytes | str = b"", **options: Any) -> Response:
    """``request("POST", url, body=body, ...)``."""
    return request("POST", url, body=body, **options)
