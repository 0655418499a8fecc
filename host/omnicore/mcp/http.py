"""``/mcp`` on a running host's console: the tools over streamable HTTP, behind API tokens.

Every request needs ``Authorization: Bearer <token>``: a console user's API token (``omnicore
users token NAME``) or the host's local token (``<data_dir>/console.json``). Anything else — no
header, a ``Basic`` one, a cookie session, a revoked token — is answered 401 before the SDK sees
the request, whatever ``console.auth`` says: a browser cannot add a Bearer header on its own, so
no page a user visits can make calls through it. A session belongs to the user who opened it
(the SDK answers 404 to another user's session id), and the user's role is checked on every
call: a viewer may list tools but not call them, as in the console. Each SSE stream opens
with a priming event carrying a ``retry`` hint, and a client that lost a stream resumes it with
``Last-Event-ID`` (omnicore.mcp.eventstore). A console bound to loopback takes only loopback
names in ``Host`` and ``Origin`` (DNS-rebinding protection).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from omnicore.capabilities.guestjson import nesting
from omnicore.mcp.eventstore import MemoryEventStore
from omnicore.mcp.server import CALLER_KEY, Caller, McpApp, ToolServer

__all__ = ["MAX_DEPTH", "RETRY_MS", "McpEndpoint"]

#: The deepest JSON a request to /mcp may nest (the console's JSON bodies allow 64).
MAX_DEPTH = 64
#: The reconnection delay each SSE stream's priming event suggests (SEP-1699).
RETRY_MS = 1000


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


class McpEndpoint:
    """The ASGI app behind ``/mcp``; run :meth:`lifespan` around serving it.

    ``verify(secret)`` returns the caller whose Bearer token ``secret`` is, or None.
    """

    def __init__(self, app: McpApp, verify: Callable[[str], Caller | None]) -> None:
        self.tools = ToolServer(app)
        self._verify = verify
        # With an event store, every SSE stream opens with a priming event (an id and a
        # retry hint) and a client that lost it can resume with Last-Event-ID.
        self._manager = StreamableHTTPSessionManager(
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
        scheme, _, secret = Headers(scope=scope).get("authorization", "").partition(" ")
        secret = secret.strip()
        caller = self._verify(secret) if scheme.lower() == "bearer" and secret else None
        if caller is None:
            response = JSONResponse(
                {"error": {"type": "Unauthorized",
                           "message": "/mcp needs 'Authorization: Bearer <token>' with a valid "
                                      "API token (omnicore users token NAME)"}},
                status_code=401, headers={"WWW-Authenticate": 'Bearer realm="omnicore"'})
            await response(scope, receive, send)
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
        # The SDK binds each session to the principal in scope["user"]: another user's token
        # cannot take it over.
        user = AuthenticatedUser(AccessToken(token="", client_id=caller.name, scopes=[]))
        scoped: dict[str, Any] = {**scope, "user": user, CALLER_KEY: caller}
        await self._manager.handle_request(scoped, receive, send)
