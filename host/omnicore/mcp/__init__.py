"""Plugins as MCP tools for AI agents (the official ``mcp`` SDK underneath).

:mod:`~omnicore.mcp.tools` decides which handlers are tools and names them,
:mod:`~omnicore.mcp.server` answers ``tools/list`` and ``tools/call`` and announces list
changes, :mod:`~omnicore.mcp.stdio` serves one app over stdio (``omnicore mcp --app DIR``) and
:mod:`~omnicore.mcp.http` serves ``/mcp`` on a running host's console, behind API tokens.

The names below are loaded on first use: every host runs MCP tasks' jobs
(:mod:`~omnicore.mcp.taskrounds`), and that alone must not load the SDK's server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnicore.mcp.http import McpEndpoint
    from omnicore.mcp.server import ToolServer
    from omnicore.mcp.stdio import serve_stdio
    from omnicore.mcp.tools import Exposure, Tool, tool_name

__all__ = ["Exposure", "McpEndpoint", "Tool", "ToolServer", "serve_stdio", "tool_name"]

_WHERE = {"McpEndpoint": "http", "ToolServer": "server", "serve_stdio": "stdio",
          "Exposure": "tools", "Tool": "tools", "tool_name": "tools"}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'omnicore.mcp' has no attribute {name!r}")
    return getattr(importlib.import_module(f"omnicore.mcp.{where}"), name)
