"""Questions to the client on 2026-07-28 (SEP-2322, multi-round-trip requests): a revision
with no server-to-client requests. A plugin's ``ask`` that the request's answers do not cover
is recorded, the call is answered ``{"resultType": "input_required", "inputRequests": {...},
"requestState": "..."}``, and the client retries the same call with ``inputResponses``; the
call then runs again from the start and each ``ask`` the answers cover returns its answer.

The answers of earlier rounds travel in ``requestState``, signed with this process's key and
bound to the caller, the tool and its arguments: a state that was altered, belongs to another
call or comes from another process is refused with -32602 (the client starts the call over).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from mcp.shared.exceptions import MCPError

__all__ = ["INVALID_PARAMS", "open_state", "seal_state"]

INVALID_PARAMS = -32602
#: How long a round's state stays good: a person answers a form in minutes, not days.
STATE_TTL_S = 3600
#: The state is signed with a key that lives as long as this process.
_KEY = secrets.token_bytes(32)


def _binding(caller: str, tool: str, arguments: object) -> str:
    args = json.dumps(arguments or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{caller}\0{tool}\0{args}".encode()).hexdigest()


def _mac(body: bytes) -> str:
    digest = hmac.new(_KEY, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def seal_state(answers: dict[str, Any], caller: str, tool: str, arguments: object) -> str:
    """The ``requestState`` carrying ``answers`` (by question key) to the next round."""
    body = json.dumps({"a": answers, "b": _binding(caller, tool, arguments),
                       "t": int(time.time())}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + _mac(body)


def open_state(state: str, caller: str, tool: str, arguments: object) -> dict[str, Any]:
    """The answers ``state`` (a ``requestState`` from :func:`seal_state`) carries; -32602
    when it was altered, is another call's or another process's, or is too old."""
    data, _, mac = state.partition(".")
    try:
        body = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except ValueError:
        body = b""
    if not body or not hmac.compare_digest(mac.encode(), _mac(body).encode()):
        raise MCPError(INVALID_PARAMS, "requestState failed its integrity check (altered, or "
                                       "from another host): call the tool again without it")
    sealed = json.loads(body)
    if sealed.get("b") != _binding(caller, tool, arguments):
        raise MCPError(INVALID_PARAMS, "requestState belongs to another call (caller, tool "
                                       "or arguments differ)")
    if time.time() - sealed.get("t", 0) > STATE_TTL_S:
        raise MCPError(INVALID_PARAMS, "requestState has expired: call the tool again "
                                       "without it")
    answers: dict[str, Any] = sealed.get("a") or {}
    return answers
