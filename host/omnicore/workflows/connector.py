"""A connector step's request: the app's connector, its credentials, the step's secrets.

The connector (``connectors.<name>`` in the app config) gives the base URL and how to
authenticate; the host adds the credentials from the secret store at send time, plus the
step's ``headers`` with any ``secrets.NAME`` filled in. None of those values is ever written
to the run's state, history or logs: the recorded input shows ``[secret NAME]``, and every
secret value is cut out of the answer and of error messages. Redirects are not followed (a
redirect off the base URL would carry the credentials elsewhere); the answer is bounded in
bytes (counted as it streams) and the whole exchange in time. Every request carries the
step's ``Idempotency-Key`` so an upstream can drop the repeat of an at-least-once delivery.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import urllib3

if TYPE_CHECKING:
    from omnicore.capabilities.http import Connector

__all__ = ["SECRET_MARK", "ConnectorFailed", "call_connector", "secret_placeholder"]

SECRET_MARK = re.compile(r"\[secret ([A-Za-z_][A-Za-z0-9_.-]*)\]")
_POOL = urllib3.PoolManager(num_pools=16, maxsize=8)
_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def secret_placeholder(name: str) -> str:
    """What a ``secrets.NAME`` reference evaluates to while recording (and in every log)."""
    return f"[secret {name}]"


class ConnectorFailed(Exception):
    """The request failed; ``retryable`` when trying again may help (5xx, 429, I/O)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def _cut(text: str, values: list[str]) -> str:
    for v in values:
        if len(v) >= 4:
            text = text.replace(v, "[REDACTED]")
    return text


def call_connector(connector: Connector, request: Mapping[str, Any], *,
                   secret: Callable[[str], bytes | None], idempotency_key: str,
                   timeout_s: float, max_bytes: int) -> dict[str, Any]:
    """Send one recorded request; ``{"status", "headers", "body"}`` (body JSON when it is)."""
    cut: list[str] = []

    def reveal(name: str) -> str:
        value = secret(name)
        if value is None:
            raise ConnectorFailed(f"secret {name!r} is not set (omnicore secrets set {name})",
                                  retryable=False)
        text = value.decode("utf-8", "replace")
        cut.append(text)
        return text

    headers = dict(connector.headers)
    for k, v in (request.get("headers") or {}).items():
        headers[str(k)] = SECRET_MARK.sub(lambda m: reveal(m[1]), str(v))
    params: dict[str, str] = {str(k): str(v) for k, v in (request.get("query") or {}).items()}
    if connector.auth != "none" and connector.secret:
        add, extra, more = connector.credentials(reveal(connector.secret).encode())
        headers.update(add)
        params.update(extra)
        cut.extend(more)
    headers["Idempotency-Key"] = idempotency_key
    try:
        url = connector.url(str(request.get("path") or "/"))
    except Exception as exc:  # the connector refuses paths that would leave its base URL
        raise ConnectorFailed(str(exc), retryable=False) from None
    if params:
        url += ("&" if "?" in url else "?") + urlencode(params)
    body = request.get("body")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers.setdefault("Content-Type", "application/json")
    deadline = time.monotonic() + timeout_s
    try:
        resp = _POOL.request(str(request.get("method", "GET")), url, body=data, headers=headers,
                             redirect=False, retries=False, preload_content=False,
                             timeout=urllib3.Timeout(connect=timeout_s, read=timeout_s))
    except urllib3.exceptions.HTTPError as exc:
        raise ConnectorFailed(_cut(f"connector {connector.name!r}: {type(exc).__name__}: "
                                   f"{exc}", cut)[:500], retryable=True) from None
    try:
        chunks, total = [], 0
        for chunk in resp.stream(64 * 1024):
            total += len(chunk)
            if total > max_bytes:
                raise ConnectorFailed(f"connector {connector.name!r}: the answer is over "
                                      f"{max_bytes} bytes (workflows.max_output_bytes)",
                                      retryable=False)
            if time.monotonic() > deadline:
                raise ConnectorFailed(f"connector {connector.name!r}: timed out after "
                                      f"{timeout_s:g}s reading the answer", retryable=True)
            chunks.append(chunk)
    except urllib3.exceptions.HTTPError as exc:
        raise ConnectorFailed(f"connector {connector.name!r}: reading the answer failed: "
                              f"{type(exc).__name__}", retryable=True) from None
    finally:
        resp.release_conn()
    text = _cut(b"".join(chunks).decode("utf-8", "replace"), cut)
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = text
    if resp.status >= 400:
        raise ConnectorFailed(f"connector {connector.name!r}: {request.get('method', 'GET')} "
                              f"{request.get('path')} answered {resp.status}: {text[:300]}",
                              retryable=resp.status in _RETRYABLE)
    kept = {k.lower(): _cut(v, cut) for k, v in resp.headers.items()
            if k.lower() in ("content-type", "etag", "location", "last-modified")}
    return {"status": resp.status, "headers": kept, "body": parsed}
