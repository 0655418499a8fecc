"""What the MCP server needs of its surroundings: the app whose plugins it serves
(:class:`McpApp`) and who sends a request (:class:`Caller`, :func:`caller_of`). Its own module
so the server's collaborators (tasks, the catalog) name them without importing the server."""

from __future__ import annotations

from typing import Any, Protocol

from mcp.server.context import ServerRequestContext

from omnicore.core.events import EventBus
from omnicore.jobs import Jobs
from omnicore.plugins.host import PluginHost
from omnicore.storage import Storage
from omnicore.storage.memory import MemoryStore
from omnicore.storage.vectors import VectorStore

__all__ = ["CALLER_KEY", "Caller", "McpApp", "caller_of", "name_of"]

#: Where the HTTP endpoint leaves the authenticated :class:`Caller` in the ASGI scope.
CALLER_KEY = "omnicore.mcp.caller"


class Caller(Protocol):
    """Who sends a request over HTTP (a console user); stdio callers are the operator."""

    @property
    def name(self) -> str: ...

    @property
    def is_admin(self) -> bool: ...


class McpApp(Protocol):
    """What the server needs of an app: its plugins, its ``mcp`` rules, its events, and the
    stores resources are read from."""

    @property
    def plugins(self) -> PluginHost: ...

    @property
    def events(self) -> EventBus: ...

    @property
    def config(self) -> Any: ...

    @property
    def memory(self) -> MemoryStore: ...

    @property
    def vectors(self) -> VectorStore: ...

    @property
    def jobs(self) -> Jobs: ...

    @property
    def storage(self) -> Storage: ...


def caller_of(ctx: ServerRequestContext[Any, Any]) -> Caller | None:
    """Who sent the request ``ctx`` serves (None over stdio: the operator)."""
    scope = getattr(ctx.request, "scope", None)
    caller: Caller | None = scope.get(CALLER_KEY) if isinstance(scope, dict) else None
    return caller


def name_of(caller: Caller | None) -> str:
    """Whom a request's signed state is bound to ("" over stdio: the operator)."""
    return caller.name if caller is not None else ""
