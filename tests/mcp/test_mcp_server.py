"""The tool server in-process, over the SDK's memory streams: what the transports share."""

from __future__ import annotations

import asyncio
from pathlib import Path

import anyio
import mcp_types as types
from mcp.client.session import ClientSession

from omnicore import OmniApp
from omnicore.mcp import ToolServer
from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, Inbox, wasm
from tests.waiting import eventually_async


def test_a_client_is_told_of_changes_while_connected_and_forgotten_after(
        tmp_path: Path) -> None:
    # ToolServer reaches the SDK's per-connection teardown through the session's private
    # `_connection`; if the SDK moves it, this test fails rather than connections leaking.
    (tmp_path / "plugins").mkdir()
    app = OmniApp("mcp-server-test", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "mcp": {"expose": ["*/*"]}}, default_modules=False)
    inbox = Inbox()

    async def main() -> None:
        server = ToolServer(app)
        server.attach(asyncio.get_running_loop())
        to_server, server_in = anyio.create_memory_object_stream[types.JSONRPCMessage](0)
        server_out, from_server = anyio.create_memory_object_stream[types.JSONRPCMessage](0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.server.run, server_in, server_out,
                          server.server.create_initialization_options())
            async with ClientSession(from_server, to_server, message_handler=inbox) as s:
                await s.initialize()
                await s.send_ping()  # after `initialized` was handled
                assert len(server._peers) == 1
                await asyncio.to_thread(
                    app.plugins.load, wasm("tools", TOOLS_MANIFEST))  # off the loop, as the
                await eventually_async(lambda: inbox.methods,        # folder watcher does
                                       "a notification", every=0.01)
                assert inbox.methods == ["notifications/tools/list_changed"]
                assert "tools.echo" in {t.name for t in (await s.list_tools()).tools}
            await to_server.aclose()
            await eventually_async(lambda: not server._peers, "the peer gone", every=0.01)
            assert server._peers == {}
            tg.cancel_scope.cancel()
        server.detach()

    try:
        asyncio.run(main())
    finally:
        app.close()
