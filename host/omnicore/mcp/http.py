"""``/mcp`` on a running host's console: the tools over streamable HTTP, behind API tokens.

Every request needs ``Authorization: Bearer <token>``: an OAuth access token issued for this
endpoint (omnicore.oauth; the 401 points to the protected-resource metadata, RFC 9728), a
console user's API token (``omnicore users token NAME``) or the host's local token
(``<data_dir>/console.json``). Anything else — no header, a ``Basic`` one, a cookie session, a
revoked token, a token for another resource — is answered 401 before the SDK sees the
request, whatever ``console.auth`` says: a browser cannot add a Bearer header on its own, so
no page a user visits can make calls through it. A session belongs to the user who opened it
(the SDK answers 404 to another user's session id), and the user's role is checked on every
call: a viewer may list tools but not call them, as in the console. While omnicore.yaml's
``mcp.expose`` holds a typo (:meth:`ToolServer.expose_refusal`), every request is answered 503
with a JSON-RPC error that names it. Each SSE stream opens
with a priming event carrying a ``retry`` hint, and a client that lost a stream resumes it with
``Last-Event-ID`` (omnicore.mcp.eventstore). A console bound to loopback takes only loopback
names in ``Host`` and ``Origin`` (DNS-rebinding protection). The SDK checks a 2026-07-28
request's routing headers against its body (SEP-2243); the tasks extension's ``tasks/get``,
``tasks/update`` and ``tasks/cancel`` name their task in ``Mcp-Name`` too, checked here.

A POST is answered with one ``application/json`` body unless its answer needs a stream
(:meth:`ToolServer.needs_stream`: a tool call with a progress token, or on a session that set
a log level); then it is an SSE stream. A stream costs the client and the server an event
loop's worth of tasks per request, and most calls send nothing but their result.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http import MCP_SESSION_ID_HEADER, StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.inbound import MCP_NAME_HEADER, decode_header_value
from mcp_types import PROTOCOL_VERSION_META_KEY
from mcp_types.jsonrpc import HEADER_MISMATCH
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from omnicore.capabilities.guestjson import nesting
from omnicore.mcp.context import CALLER_KEY, Caller
from omnicore.mcp.eventstore import MemoryEventStore
from omnicore.mcp.server import ToolServer
from omnicore.mcp.tasks import MODERN, NAMED

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["MAX_DEPTH", "RETRY_MS", "McpEndpoint"]

#: The deepest JSON a request to /mcp may nest (the console's JSON bodies allow 64).
MAX_DEPTH = 64
#: The reconnection delay each SSE stream's priming event suggests (SEP-1699).
RETRY_MS = 1000
#: Where the endpoint leaves, in the ASGI scope, whether a POST is answered with JSON.
_JSON_KEY = "omnicore.mcp.json_reply"
#: Where it leaves a request to answer without the SDK's session loop (ToolServer.direct).
_DIRECT_KEY = "omnicore.mcp.direct"
#: Where it leaves the protocol revision the request's session negotiated (None: none yet).
_VERSION_KEY = "omnicore.mcp.negotiated"
#: The same as _JSON_KEY, for the transport serving the request (see :class:`_Transport`).
_json_reply: ContextVar[bool] = ContextVar("omnicore_mcp_json_reply", default=False)
#: The same as _VERSION_KEY.
_negotiated: ContextVar[str | None] = ContextVar("omnicore_mcp_negotiated", default=None)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then the disconnect, when it comes
    return again


def _loopback_only(bind: str) -> TransportSecuritySettings | None:
    """DNS-rebinding protection for a console bound to loopback: only loopback names in Host
    and Origin (a page on another site whose name points at 127.0.0.1 gets 421/403). A console
    bound to other addresses serves whatever names point at it; API tokens guard it there."""
    try:
        loopback = bind == "localhost" or ipaddress.ip_address(bind).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        return None
    names = ("127.0.0.1", "localhost", "[::1]")
    return TransportSecuritySettings(
        allowed_hosts=[f"{n}:*" for n in names] + list(names),
        allowed_origins=[f"http://{n}:*" for n in names] + [f"http://{n}" for n in names])


def _task_name_mismatch(message: object, headers: Headers) -> Response | None:
    """The 400 for a 2026-07-28 ``tasks/get``, ``tasks/update`` or ``tasks/cancel`` whose
    ``Mcp-Name`` header is not its ``taskId`` (SEP-2663 extends SEP-2243's routing headers to
    them; the SDK checks those of tools, prompts and resources only); None if it is."""
    if not isinstance(message, dict) or message.get("method") not in NAMED:
        return None
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    if not isinstance(meta, dict) or meta.get(PROTOCOL_VERSION_META_KEY) not in MODERN:
        return None
    task_id = params.get("taskId") if isinstance(params, dict) else None
    if decode_header_value(headers.get(MCP_NAME_HEADER)) == task_id:
        return None
    return JSONResponse({"jsonrpc": "2.0", "id": message.get("id"), "error": {
        "code": HEADER_MISMATCH, "message": f"{MCP_NAME_HEADER} header does not match the "
                                            "request body's 'taskId' parameter"}},
        status_code=400)


class _Transport(StreamableHTTPServerTransport):
    """The SDK's transport, choosing a JSON body or an SSE stream for each request rather
    than once for the session.

    The SDK reads ``is_json_response_enabled`` while it serves a POST (in the request's own
    task) and in the session's message router, which drops a notification tied to a request
    in JSON mode. The router runs in a task started before any request set the flag, so it
    always sees False; a JSON request has nothing tied to it (:meth:`ToolServer.needs_stream`)
    but its answer.
    """

    @property
    def is_json_response_enabled(self) -> bool:
        return _json_reply.get()

    @is_json_response_enabled.setter
    def is_json_response_enabled(self, value: bool) -> None:
        pass  # the SDK's constructor sets it for the session: here each request decides

    async def handle_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _json_reply.set(bool(scope.get(_JSON_KEY)))
        version = _negotiated.set(scope.get(_VERSION_KEY))
        try:
            await super().handle_request(scope, receive, send)
        finally:
            _negotiated.reset(version)
            _json_reply.reset(token)

    async def _mint_priming_event(self, stream_id: str, protocol_version: str) -> Any:
        # The SDK primes a stream only for a request whose MCP-Protocol-Version header names
        # 2025-11-25 or later (older clients may not parse an empty event). A session that
        # negotiated a revision with priming events parses them, whatever a request's header
        # says (the conformance suite's SSE-polling POST names 2025-03-26 on such a session).
        negotiated = _negotiated.get()
        if negotiated is not None and negotiated > protocol_version:
            protocol_version = negotiated
        return await super()._mint_priming_event(stream_id, protocol_version)

    async def _handle_post_request(self, scope: Scope, request: Request, receive: Receive,
                                   send: Send) -> None:
        # Past the transport's own checks (DNS rebinding, a terminated session) and the
        # manager's (the session exists and is the caller's); the POST's checks are the SDK's.
        call = scope.get(_DIRECT_KEY)
        if call is None or not self._check_content_type(request):
            await super()._handle_post_request(scope, request, receive, send)
            return
        if not await self._validate_accept_header(request, scope, send) \
                or not await self._validate_request_headers(request, send):
            return
        headers = {MCP_SESSION_ID_HEADER: self.mcp_session_id} if self.mcp_session_id else None
        await Response(await call(), headers=headers,
                       media_type="application/json")(scope, receive, send)


class _Sessions(StreamableHTTPSessionManager):
    """The SDK's session manager with :class:`_Transport` for each session.

    ``_admit_session`` is the SDK's (mcp 2.3), the class of the transport aside;
    tests/mcp/test_mcp_http.py checks that a tool call is answered with JSON through it.
    """

    def _admit_session(self, requestor: AuthorizationContext | None) -> _Transport | None:
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            return None
        transport = _Transport(
            mcp_session_id=uuid4().hex, event_store=self.event_store,
            security_settings=self.security_settings, retry_interval=self.retry_interval,
            idle_timeout=self.session_idle_timeout)
        session_id = transport.mcp_session_id
        assert session_id is not None
        if requestor is not None:
            self._session_owners[session_id] = requestor
        self._server_instances[session_id] = transport
        return transport


class McpEndpoint:
    """The ASGI app behind ``/mcp``; run :meth:`lifespan` around serving it.

    ``verify(secret, resource)`` returns the caller whose Bearer token ``secret`` is, or None;
    ``resource`` is this endpoint's URL as the request names it (an OAuth access token is
    good for the resource it was issued for only).
    """

    def __init__(self, app: OmniApp, verify: Callable[[str, str], Caller | None]) -> None:
        self.tools = ToolServer(app)
        self._verify = verify
        # With an event store, every SSE stream opens with a priming event (an id and a
        # retry hint) and a client that lost it can resume with Last-Event-ID.
        self._manager = _Sessions(
            app=self.tools.server, event_store=MemoryEventStore(), retry_interval=RETRY_MS,
            security_settings=_loopback_only(app.config.console.host))

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Serve sessions and follow plugin changes while the console runs."""
        self.tools.attach(asyncio.get_running_loop())
        try:
            async with self._manager.run():
                yield
        finally:
            self.tools.detach()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        scheme, _, secret = headers.get("authorization", "").partition(" ")
        secret = secret.strip()
        base = f"{scope.get('scheme', 'http')}://{headers.get('host', 'localhost')}"
        caller = self._verify(secret, base + "/mcp") \
            if scheme.lower() == "bearer" and secret else None
        if caller is None:
            # RFC 9728: where an agent learns how to get a token.
            challenge = f'Bearer resource_metadata="{base}/.well-known/oauth-protected-' \
                        f'resource/mcp", scope="mcp:tools"'
            if secret:
                challenge += ', error="invalid_token"'
            response = JSONResponse(
                {"error": {"type": "Unauthorized",
                           "message": "/mcp needs 'Authorization: Bearer <token>': an OAuth "
                                      "access token for this server (see WWW-Authenticate) or "
                                      "an API token (omnicore users token NAME)"}},
                status_code=401, headers={"WWW-Authenticate": challenge})
            await response(scope, receive, send)
            return
        refused = self.tools.expose_refusal()
        if refused is not None:
            # A typo in mcp.expose is said to every agent, as `omnicore mcp` says it at start,
            # rather than served as tools that are silently missing.
            await JSONResponse({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32603, "message": f"this host does not serve MCP: {refused}"}},
                status_code=503)(scope, receive, send)
            return
        if scope.get("method") == "POST":
            # The SDK parses the body with plain json: read it here (the console's body cap
            # already bounds its size) and refuse what nests deeper than any JSON-RPC message,
            # before a recursive parser meets it; then hand the SDK the same bytes.
            body = await _read_body(receive)
            if nesting(body) > MAX_DEPTH:
                await JSONResponse(
                    {"jsonrpc": "2.0", "id": None, "error": {
                        "code": -32700, "message": f"parse error: the JSON is nested more "
                                                   f"than {MAX_DEPTH} levels deep"}},
                    status_code=400)(scope, receive, send)
                return
            receive = _replay(body, receive)
            session = Headers(scope=scope).get(MCP_SESSION_ID_HEADER)
            try:
                message = json.loads(body)
            except ValueError:
                message = None  # the SDK answers it with its parse error
            mismatch = _task_name_mismatch(message, headers)
            if mismatch is not None:
                await mismatch(scope, receive, send)
                return
            json_reply = not self.tools.needs_stream(message, session)
            direct = self.tools.direct(message, session, caller)
        else:
            json_reply, direct = False, None
        # The SDK binds each session to the principal in scope["user"]: another user's token
        # cannot take it over.
        user = AuthenticatedUser(AccessToken(token="", client_id=caller.name, scopes=[]))
        scoped: dict[str, Any] = {
            **scope, "user": user, CALLER_KEY: caller, _JSON_KEY: json_reply,
            _DIRECT_KEY: direct,
            _VERSION_KEY: self.tools.negotiated(Headers(scope=scope).get(MCP_SESSION_ID_HEADER))}
        await self._manager.handle_request(scoped, receive, send)
