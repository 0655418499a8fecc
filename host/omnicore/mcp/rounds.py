"""Questions to the client on 2026-07-28 (SEP-2322, multi-round-trip requests): a revision
with no server-to-client requests. A plugin's ``ask`` that the request's answers do not cover
is recorded, the call is answered ``{"resultType": "input_required", "inputRequests": {...},
"requestState": "..."}``, and the client retries the same call with ``inputResponses``; the
call then runs again from the start and each ``ask`` the answers cover returns its answer.

The answers of earlier rounds travel in ``requestState``, signed and bound to the caller, the
tool and its arguments: a state that was altered or belongs to another call is refused with
-32602 (the client starts the call over). The key is the app's (:class:`StateKey`): made once
and kept in its database, so a retry that reaches another host of the cluster is accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.shared.exceptions import MCPError

from omnicore.storage.mcp_task_rows import McpTaskRows

if TYPE_CHECKING:
    from omnicore.mcp.callclient import CallClient

__all__ = ["INVALID_PARAMS", "MODERN", "Rounds", "StateKey", "open_state", "seal_state"]

#: The first protocol revision without a handshake or server-to-client requests: a question
#: goes back to the client in an input_required result.
MODERN = "2026-07-28"

#: A request that may be answered input_required: a tool call or a prompt.
Asked = types.CallToolRequestParams | types.GetPromptRequestParams

INVALID_PARAMS = -32602
#: How long a round's state stays good: a person answers a form in minutes, not days.
STATE_TTL_S = 3600
#: The name of the key among the MCP server's secrets in the database.
_SECRET = "mcp.request-state"


class StateKey:
    """The key ``requestState`` is signed with: the app's, made by the first host that needed
    it and kept in its database (``storage.mcp_tasks``), so every host of one database signs
    and checks with the same; read once per process."""

    def __init__(self, rows: Callable[[], McpTaskRows]) -> None:
        self._rows = rows
        self._key: bytes | None = None

    async def get(self) -> bytes:
        if self._key is None:  # two first calls at once read the same key twice: harmless
            self._key = await anyio.to_thread.run_sync(
                lambda: self._rows().secret(_SECRET, secrets.token_bytes(32)))
        return self._key


def _binding(caller: str, tool: str, arguments: object) -> str:
    args = json.dumps(arguments or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{caller}\0{tool}\0{args}".encode()).hexdigest()


def _mac(key: bytes, body: bytes) -> str:
    digest = hmac.new(key, body, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def seal_state(key: bytes, answers: dict[str, Any], caller: str, tool: str,
               arguments: object) -> str:
    """The ``requestState`` carrying ``answers`` (by question key) to the next round, signed
    with ``key``."""
    body = json.dumps({"a": answers, "b": _binding(caller, tool, arguments),
                       "t": int(time.time())}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(body).decode().rstrip("=") + "." + _mac(key, body)


def open_state(key: bytes, state: str, caller: str, tool: str,
               arguments: object) -> dict[str, Any]:
    """The answers ``state`` (a ``requestState`` from :func:`seal_state` with ``key``)
    carries; -32602 when it was altered, is another call's, or is too old."""
    data, _, mac = state.partition(".")
    try:
        body = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except ValueError:
        body = b""
    if not body or not hmac.compare_digest(mac.encode(), _mac(key, body).encode()):
        raise MCPError(INVALID_PARAMS, "requestState failed its integrity check (altered, or "
                                       "signed by another app): call the tool again without "
                                       "it")
    sealed = json.loads(body)
    if sealed.get("b") != _binding(caller, tool, arguments):
        raise MCPError(INVALID_PARAMS, "requestState belongs to another call (caller, tool "
                                       "or arguments differ)")
    if time.time() - sealed.get("t", 0) > STATE_TTL_S:
        raise MCPError(INVALID_PARAMS, "requestState has expired: call the tool again "
                                       "without it")
    answers: dict[str, Any] = sealed.get("a") or {}
    return answers


class Rounds:
    """The ``input_required`` rounds of the requests one server answers (tool calls and
    prompts): a request's answers so far, and the result that asks the rest. ``kind`` names
    what the request gets (``tool``, ``prompt``): a state is good for the same kind only."""

    def __init__(self, key: StateKey) -> None:
        self.key = key

    async def answers(self, params: Asked, caller: str, kind: str) -> dict[str, Any]:
        """The client's answers to the request's questions, by key: those of earlier rounds
        (its signed ``requestState``) and this request's ``inputResponses``."""
        answers: dict[str, Any] = {}
        if params.request_state is not None:
            answers.update(open_state(await self.key.get(), params.request_state, caller,
                                      f"{kind}:{params.name}", params.arguments))
        for key, answer in (params.input_responses or {}).items():
            answers[key] = answer.model_dump(by_alias=True, mode="json", exclude_none=True) \
                if hasattr(answer, "model_dump") else answer
        return answers

    async def input_required(self, client: CallClient, params: Asked, caller: str,
                             kind: str) -> types.InputRequiredResult:
        """The questions of ``client`` that its answers did not cover, back to the client,
        which retries the request with its answers; those so far ride in the signed state."""
        state = seal_state(await self.key.get(), {**(client.answers or {}), **client.used},
                           caller, f"{kind}:{params.name}", params.arguments)
        return types.InputRequiredResult.model_validate(
            {"inputRequests": client.pending, "requestState": state}, by_name=False)
