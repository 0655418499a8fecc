"""What the server offers besides tools (omnicore.mcp.catalog), through a real host and the
SDK's client: a plugin's declared prompts and resources, what a client gets when their
handler answers something else, who may render them, and completions (the positive paths run
in test_conformance.py with the example app; memories and vectors: test_resources.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp.shared.exceptions import MCPError

from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, Host, http_session, wasm

#: The tools fixture's echo as a prompt's and a resource's handler: it answers its input,
#: which is neither MCP's prompt nor its resource contents.
ECHOING = {**TOOLS_MANIFEST, "name": "echoing",
           "prompts": [{"name": "p", "handler": "echo",
                        "arguments": [{"name": "who", "required": True}]}],
           "resources": [{"uri": "echo://x", "name": "x", "handler": "echo"}]}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    h = Host(tmp_path_factory.mktemp("declared") / "app", ["echoing/*"],
             files={"echoing": wasm("tools", ECHOING)})
    try:
        yield h
    finally:
        h.stop()


def test_a_client_gets_the_protocols_errors(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.admin_token) as session:
            assert [p.name for p in (await session.list_prompts()).prompts] == ["echoing.p"]
            assert "echo://x" in [r.uri for r in (await session.list_resources()).resources]
            with pytest.raises(MCPError, match=r"needs the argument.*who") as missing:
                await session.get_prompt("echoing.p", {})
            assert missing.value.error.code == -32602
            with pytest.raises(MCPError, match="did not answer a prompt") as wrong:
                await session.get_prompt("echoing.p", {"who": "Ada"})
            assert wrong.value.error.code == -32603
            with pytest.raises(MCPError, match="no prompt 'nope'"):
                await session.get_prompt("nope", {})
            with pytest.raises(MCPError, match="did not answer resource contents"):
                await session.read_resource("echo://x")
            # Sent as requests: the SDK's client deprecates its helpers (2026-07-28 drops
            # subscriptions), which the handshake revisions still have.
            def subscribe(uri: str) -> Any:
                return types.SubscribeRequest(params=types.SubscribeRequestParams(uri=uri))

            with pytest.raises(MCPError, match="no resource 'echo://y' to subscribe to"):
                await session.send_request(subscribe("echo://y"), types.EmptyResult)
            await session.send_request(subscribe("echo://x"), types.EmptyResult)
            await session.send_request(types.UnsubscribeRequest(
                params=types.UnsubscribeRequestParams(uri="echo://x")), types.EmptyResult)
            # The tools are still served, and the echo handler is no tool.
            tools = [t.name for t in (await session.list_tools()).tools]
            assert "echoing.echo" not in tools and "echoing.plain" in tools

    anyio.run(main)


def test_a_viewer_cannot_render_a_prompt(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.viewer_token) as session:
            with pytest.raises(MCPError, match="viewer"):
                await session.get_prompt("echoing.p", {"who": "Ada"})
            result = await session.list_prompts()
            assert isinstance(result, types.ListPromptsResult)

    anyio.run(main)


def test_completion_answers_an_empty_list(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.admin_token) as session:
            init = session.initialize_result
            assert init is not None and init.capabilities.completions is not None
            assert init.capabilities.logging is not None
            done = await session.complete(types.PromptReference(name="nothing"),
                                          {"name": "a", "value": "b"})
            assert done.completion.values == [] and done.completion.has_more is False

    anyio.run(main)
