"""What a caller asks the egress client for (:class:`Request`) and gets back (:class:`Response`).

A plugin's ``omnicore:http`` request and an Extism plugin's ``http_request`` arrive as JSON
(:meth:`Request.from_json`); a workflow's connector step builds its request in Python, with
header values that hold references to secrets (:class:`SecretRef`) written in the workflow's
definition. The client resolves those references itself, so a caller never holds a secret
value and data that merely *looks* like a reference is sent as the text it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["MAX_REQUEST_JSON", "HeaderValue", "Request", "Response", "SecretRef"]

#: The largest request description (method, URL or path, headers) the host parses or sends.
MAX_REQUEST_JSON = 64 * 1024


@dataclass(frozen=True, slots=True)
class SecretRef:
    """The value of the secret ``name``, read from the secret store when the request is sent."""

    name: str


#: A header's value: text, or text and secret references to be joined at send time.
HeaderValue = str | tuple[str | SecretRef, ...]


@dataclass(frozen=True)
class Request:
    """One outbound request: to ``url``, or to ``path`` under the granted ``connector``."""

    method: str = "GET"
    url: str | None = None
    connector: str | None = None
    path: str = "/"
    headers: Mapping[str, HeaderValue] = field(default_factory=dict)
    body: bytes = b""
    timeout_ms: int | None = None

    @classmethod
    def from_json(cls, req: Any, body: bytes) -> Request:
        """A request from parsed JSON ``{"method", "url" | "connector" + "path", "headers",
        "timeout_ms"}``; :class:`Refused` ``INVALID`` when its shape is wrong."""
        if not isinstance(req, dict):
            raise Refused("INVALID", "request must be a JSON object")
        method = req.get("method", "GET")
        if not isinstance(method, str):
            raise Refused("INVALID", f"unsupported method {str(method)[:20]!r}")
        headers = req.get("headers") or {}
        if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise Refused("INVALID", "headers must be an object of strings")
        timeout_ms = req.get("timeout_ms")
        if timeout_ms is not None and (isinstance(timeout_ms, bool)
                                       or not isinstance(timeout_ms, int) or timeout_ms <= 0):
            raise Refused("INVALID", "timeout_ms must be a positive integer")
        if "connector" in req:
            path = req.get("path", "/")
            if not isinstance(path, str):
                raise Refused("INVALID", "path must be a string")
            name = req["connector"]
            return cls(method, None, name if isinstance(name, str) else repr(name)[:100], path,
                       headers, body, timeout_ms)
        url = req.get("url")
        if not isinstance(url, str):
            raise Refused("INVALID", "request needs a 'url' (or a 'connector' and 'path')")
        return cls(method, url, None, "/", headers, body, timeout_ms)


@dataclass(frozen=True)
class Response:
    """An answer, already redacted: header names lower-cased (repeats joined by ", "), and
    the ``redactor`` that cut this exchange's secrets, for whatever the caller decodes from
    the body (a JSON answer parsed into values is redacted again after decoding)."""

    status: int
    headers: dict[str, str]
    body: bytes
    redactor: Redactor = field(default_factory=Redactor, repr=False)
