"""Plugins as MCP tools for AI agents (the official ``mcp`` SDK underneath).

:mod:`~omnicore.mcp.tools` decides which handlers are tools and names them,
:mod:`~omnicore.mcp.server` answers ``tools/list`` and ``tools/call`` and announces list
changes, :mod:`~omnicore.mcp.stdio` serves one app over stdio (``omnicore mcp --app DIR``) and
:mod:`~omnicore.mcp.http` serves ``/mcp`` on a running host's console, behind API tokens.
"""

from omnicore.mcp.http import McpEndpoint
from omnicore.mcp.server import ToolServer
from omnicore.mcp.stdio import serve_stdio
from omnicore.mcp.tools import Exposure, Tool, tool_name

__all__ = ["Exposure", "McpEndpoint", "Tool", "ToolServer", "serve_stdio", "tool_name"]
