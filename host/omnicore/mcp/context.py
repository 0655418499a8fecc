"""What the MCP server needs of its surroundings: the app whose plugins it serves
(:class:`McpApp`) and who sends a request (:class:`Caller`). Its own module so the server's
collaborators (tasks) name them without importing the server."""

from __future__ import annotations

from typing import Any, Protocol

from omnicore.core.events import EventBus
from omnicore.jobs import Jobs
from omnicore.plugins.host import PluginHost
from omnicore.storage import Storage
from omnicore.storage.memory import MemoryStore
from omnicore.storage.vectors import VectorStore

__all__ = ["Caller", "McpApp"]


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
