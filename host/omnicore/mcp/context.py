"""Who sends the MCP server a request (:class:`Caller`, :func:`caller_of`). Its own module so
the server's collaborators (tasks, the catalog) name it without importing the server; the app
whose plugins they serve is the ``OmniApp`` itself, as for the console."""

from __future__ import annotations

from typing import Any, Protocol

from mcp.server.context import ServerRequestContext

__all__ = ["CALLER_KEY", "Caller", "caller_of", "name_of"]

#: Where the HTTP endpoint leaves the authenticated :class:`Caller` in the ASGI scope.
CALLER_KEY = "omnicore.mcp.caller"


class Caller(Protocol):
    """Who sends a request over HTTP (a console user); stdio callers are the operator."""

    @property
    def name(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


def caller_of(ctx: ServerRequestContext[Any, Any]) -> Caller | None:
    """Who sent the request ``ctx`` serves (None over stdio: the operator)."""
    scope = getattr(ctx.request, "scope", None)
    caller: Caller | None = scope.get(CALLER_KEY) if isinstance(scope, dict) else None
    return caller


def name_of(caller: Caller | None) -> str:
    """Whom a request's signed state is bound to ("" over stdio: the operator)."""
    return caller.name if caller is not None else ""
