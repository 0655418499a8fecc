"""``omnicore:mcp`` (specs/abi.md §4.13): a handler called as an MCP tool talks to the client
that called it — it reports progress, and asks the client (elicitation, sampling) from inside
the call, within the call's deadline.

``progress(progress: f64, total: f64, msg, msg_len) -> i32``: ``notifications/progress``
against the call's ``_meta.progressToken`` (``total <= 0``: unknown; ``msg_len`` 0: no
message); 0 when sent, ``NOT_FOUND`` when nobody listens (no MCP client, or it asked for no
progress). Cheap to call outside MCP: a plugin never needs to know how it was called.

``ask(req, req_len) -> i64`` (§3.3): ``req`` is JSON ``{"method": "elicitation/create" |
"sampling/createMessage" | "roots/list", "params": {...}, "key"?: NAME}`` (the params as MCP
writes them; the key names the question in a 2026-07-28 ``input_required`` result); the answer is
the client's result as JSON, or ``E = 1`` with ``"DENIED: ..."`` (the grant does not allow
that method), ``"UNAVAILABLE: ..."`` (no MCP client waits on this call, the client does not
offer the capability, or it did not answer before the deadline), ``"INVALID: ..."`` (a
malformed request, or the client answered with an error), ``"TOO_LARGE: ..."``.

The grant: ``mcp: {ask: [elicitation, sampling, roots]}`` — progress needs only ``mcp``; each kind
of question is the operator's to allow (sampling spends the client's model tokens,
elicitation the user's attention). The MCP server (omnicore.mcp) puts the calling client in
:data:`CLIENT` for the call; this module knows nothing of MCP's sessions.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from omnicore.errors import ConfigError, Refused
from omnicore.sandbox import capability as cap

__all__ = ["ASK_METHODS", "CAPABILITY", "CLIENT", "MAX_ASK_BYTES", "MAX_OPEN_QUESTIONS",
           "Client", "ClientRefused", "answer_of", "pend", "question"]

#: What a plugin may ask a client, by grant word.
ASK_METHODS = {"elicitation": "elicitation/create", "sampling": "sampling/createMessage",
               "roots": "roots/list"}
#: A question's own name (its key in a 2026-07-28 ``input_required`` result).
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: A question is a form or a prompt, not a document.
MAX_ASK_BYTES = 64 * 1024
#: Questions one call may leave waiting for the client's answer (2026-07-28: the
#: ``inputRequests`` of one ``input_required`` result, or of a task). A plugin asking in a loop
#: under a new key each time is refused past it, rather than filling the answer (and a task's
#: row) with up to a deadline's worth of 64 KiB questions.
MAX_OPEN_QUESTIONS = 16
#: Longer progress messages are cut.
MAX_MESSAGE_BYTES = 1024


class ClientRefused(Refused):
    """A question to the client could not be asked or answered; ``status`` is the word the
    plugin reads (DENIED, INVALID, UNAVAILABLE, TOO_LARGE, QUOTA)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def pend(pending: dict[str, Any], key: str, request: Any, waits: str) -> ClientRefused:
    """Record question ``key`` among a call's ``pending`` ones (at most
    :data:`MAX_OPEN_QUESTIONS`) and give the refusal that stops the plugin until the client
    answered (``waits``: what waits); QUOTA past the bound, nothing recorded."""
    if key not in pending and len(pending) >= MAX_OPEN_QUESTIONS:
        return ClientRefused("QUOTA", f"a call may leave at most {MAX_OPEN_QUESTIONS} "
                                      "questions waiting for the client's answers")
    pending[key] = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    return ClientRefused("UNAVAILABLE", f"waiting for the client's answer to '{key}' ({waits})")


class Client(Protocol):
    """The MCP client waiting on the running call (omnicore.mcp implements it)."""

    def progress(self, progress: float, total: float | None, message: str | None) -> bool:
        """Send a progress notification; False when the client asked for none."""

    def ask(self, method: str, params: Mapping[str, Any], deadline: float,
            key: str | None = None) -> dict[str, Any]:
        """Send request ``method`` to the client and wait for its result, at most until
        ``deadline`` (``time.monotonic()``); :class:`ClientRefused` when it cannot."""


#: The client of the call running on this thread (set by the MCP server for a tool call).
CLIENT: ContextVar[Client | None] = ContextVar("omnicore.mcp.client", default=None)


@functools.cache
def _sdk() -> tuple[dict[str, tuple[str, type[Any]]], Any]:
    """What the client must have declared to be asked, and the type of its answer, by method;
    the SDK's request adapter. Loaded on the first question (the SDK's types take a third of
    a second to import, and most hosts never ask)."""
    import mcp_types as types
    from pydantic import TypeAdapter

    return ({"elicitation/create": ("elicitation", types.ElicitResult),
             "sampling/createMessage": ("sampling", types.CreateMessageResult),
             "roots/list": ("roots", types.ListRootsResult)},
            TypeAdapter(types.ServerRequest))


def question(method: str, params: Mapping[str, Any]) -> tuple[str, Any, type[Any]]:
    """A plugin's question as the MCP SDK's request: the client capability it needs, the
    request, and the type of its answer; :class:`ClientRefused` ``INVALID`` if malformed."""
    from pydantic import ValidationError

    needs, adapter = _sdk()
    capability, result_type = needs[method]
    try:
        request = adapter.validate_python({"method": method, "params": dict(params)},
                                          by_name=False)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][2:]) or "params"
        raise ClientRefused("INVALID", f"{method}: {where}: {first['msg']}") from None
    return capability, request, result_type


def answer_of(answer: object, result_type: type[Any]) -> dict[str, Any] | None:
    """A client's answer (2026-07-28: from ``inputResponses``) as the method's result, or
    None when it is none (the question is then asked again)."""
    from pydantic import ValidationError

    if answer is None:
        return None
    try:
        dumped: dict[str, Any] = result_type.model_validate(answer, by_name=False).model_dump(
            by_alias=True, mode="json", exclude_none=True)
    except ValidationError:
        return None
    return dumped


@dataclass(frozen=True, slots=True)
class _Bound:
    plugin: str
    ask: frozenset[str]


def _check_grant(options: Mapping[str, Any]) -> None:
    unknown = set(options) - {"ask"}
    if unknown:
        raise ConfigError(f"unknown option(s) for grant 'mcp': {', '.join(sorted(unknown))}; "
                          "known: ask", key=f"grant.mcp.{sorted(unknown)[0]}")
    ask = options.get("ask", [])
    if not isinstance(ask, list | tuple) or any(a not in ASK_METHODS for a in ask):
        raise ConfigError(f"grant.mcp.ask must be a list of {', '.join(ASK_METHODS)}, got "
                          f"{ask!r}", key="grant.mcp.ask", value=ask)


def _bind(ctx: cap.PluginContext) -> _Bound:
    return _Bound(ctx.plugin, frozenset(ASK_METHODS[a] for a in ctx.grant.get("ask", ())))


def _progress_of(progress: float, total: float, message: str | None) -> int:
    client = CLIENT.get()
    if client is None:
        return cap.Status.NOT_FOUND
    sent = client.progress(progress, total if total > 0 else None, message or None)
    return 0 if sent else cap.Status.NOT_FOUND


def _progress(bound: _Bound, mem: cap.GuestMemory, progress: float, total: float, mp: int,
              ml: int) -> int:
    mem.check(mp, ml, "progress message")
    message = mem.read_str(mp, min(ml, MAX_MESSAGE_BYTES), "progress message") if ml else None
    return _progress_of(progress, total, message)


def _question(bound: _Bound, raw: bytes) -> tuple[str, dict[str, Any], str | None]:
    try:
        request = json.loads(raw)
    except ValueError as exc:
        raise ClientRefused("INVALID", f"the question is not JSON: {exc}") from None
    method = request.get("method") if isinstance(request, dict) else None
    params = request.get("params", {}) if isinstance(request, dict) else None
    key = request.get("key") if isinstance(request, dict) else None
    if method not in ASK_METHODS.values() or not isinstance(params, dict) \
            or not (key is None or (isinstance(key, str) and _KEY.fullmatch(key))):
        raise ClientRefused("INVALID", "a question is {\"method\": \"elicitation/create\", "
                                       "\"sampling/createMessage\" or \"roots/list\", "
                                       "\"params\": {...}, \"key\"?: \"[A-Za-z0-9_.-]{1,64}\"}")
    if method not in bound.ask:
        word = next(k for k, v in ASK_METHODS.items() if v == method)
        raise ClientRefused("DENIED", f"plugin '{bound.plugin}' may not ask the client for "
                                      f"{word}: the operator grants it with mcp: {{ask: "
                                      f"[{word}]}}")
    return method, params, key


def _asked(bound: _Bound, raw: bytes, deadline: float) -> bytes:
    method, params, key = _question(bound, raw)
    client = CLIENT.get()
    if client is None:
        raise ClientRefused("UNAVAILABLE", "no MCP client waits on this call (it was not "
                                           "called as an MCP tool)")
    return json.dumps(client.ask(method, params, deadline, key), separators=(",", ":"),
                      ensure_ascii=False).encode()


def _ask(bound: _Bound, mem: cap.GuestMemory, rp: int, rl: int) -> int:
    mem.check(rp, rl, "question")
    try:
        if rl > MAX_ASK_BYTES:
            raise ClientRefused("TOO_LARGE", f"a question is at most {MAX_ASK_BYTES} bytes")
        answer = _asked(bound, mem.read(rp, rl, "question"), mem.deadline)
    except ClientRefused as exc:
        return cap.refusal_block(mem, exc)
    return mem.alloc_result(answer)


# omnicore:plugin/mcp (sdk/wit/plugin.wit): the same for components.
def _wit_progress(bound: _Bound, progress: float, total: float, message: str) -> bool:
    return _progress_of(progress, total, message[:MAX_MESSAGE_BYTES]) == 0


def _wit_ask(bound: _Bound, deadline: float, request: str) -> dict[str, Any]:
    data = request.encode("utf-8")
    try:
        if len(data) > MAX_ASK_BYTES:
            raise ClientRefused("TOO_LARGE", f"a question is at most {MAX_ASK_BYTES} bytes")
        return {"ok": _asked(bound, data, deadline).decode()}
    except ClientRefused as exc:
        return cap.wit_failure(exc)


CAPABILITY = cap.Capability(
    name="mcp",
    description="report progress to the MCP client of a tool call and ask it questions "
                "(elicitation, sampling) within the call's deadline",
    functions=(
        cap.HostFunction("progress", ("f64", "f64", "ptr", "len"), ("i32",), _progress),
        cap.HostFunction("ask", ("ptr", "len"), ("i64",), _ask),
    ),
    bind=_bind,
    check_grant=_check_grant,
    wit=(cap.WitFunction("progress", "func(progress: f64, total: f64, message: string) -> bool",
                         _wit_progress),
         cap.WitFunction("ask", "func(request: string) -> result<string, "
                                f"{cap.WitFunction.FAILURE}>", _wit_ask, timed=True)),
)
