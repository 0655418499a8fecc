"""``omnicore mcp --app DIR``: the tools of one app over stdio, for agents that spawn them.

The process is a plugin host only: it loads the app's plugins with the app's config,
sidecars, grants, limits, module cache and data, and follows the plugins folder (a reload
changes the tool list and tells the client). Schedules, jobs, event subscriptions, workflows
and the console are ``omnicore run``'s; a job a tool call queues is run by that host. While
serving, stdout carries JSON-RPC only: the SDK points fd 1 at stderr for everything else, and
logs go to stderr.
"""

from __future__ import annotations

import asyncio

from mcp.server.stdio import stdio_server

from omnicore.mcp.server import McpApp, ToolServer

__all__ = ["serve_stdio"]


async def serve_stdio(app: McpApp) -> None:
    """Serve ``app``'s exposed handlers over stdin/stdout until the client closes stdin."""
    tools = ToolServer(app)
    tools.attach(asyncio.get_running_loop())
    try:
        async with stdio_server() as (read, write):
            await tools.server.run(read, write, tools.server.create_initialization_options())
    finally:
        tools.detach()
