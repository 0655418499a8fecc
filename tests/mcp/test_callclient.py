"""A plugin talks to the MCP client of its tool call (omnicore:mcp through
omnicore.mcp.callclient): it reports progress, asks for elicitation and sampling over the
call's stream within the call's deadline, and answers MCP content itself (``content: true``).
A real host's /mcp, the SDK's own client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
import wasmtime
import yaml
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from omnicore.sandbox import wasmbin
from tests.capabilities.test_mcp import MCP_WAT
from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, Host, wasm

#: The tools fixture's echo as a handler answering MCP content: its arguments are its result.
CONTENT = {**TOOLS_MANIFEST, "name": "content", "handlers": [{"name": "echo", "description": "echo",
                                           "content": True}]}
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU"
       "5ErkJggg==")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("callclient") / "app"
    plugins = root / "plugins"
    plugins.mkdir(parents=True)
    asker = wasmtime.wat2wasm(MCP_WAT)
    (plugins / "asker.wasm").write_bytes(wasmbin.set_custom_section(
        asker, "omnicore.manifest", json.dumps({"name": "asker"}).encode()))
    (plugins / "asker.yaml").write_text(yaml.safe_dump(
        {"grants": {"mcp": {"ask": ["elicitation"]}}, "mcp": {"expose": ["*"], "prefix": ""}}))
    h = Host(root, ["content/echo"], files={"content": wasm("tools", CONTENT)})
    try:
        yield h
    finally:
        h.stop()


@asynccontextmanager
async def session(host: Host, **callbacks: Any) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {host.admin_token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as client, \
            streamable_http_client(f"{host.url}/mcp", http_client=client) as (read, write), \
            ClientSession(read, write, **callbacks) as s:
        await s.initialize()
        yield s


def test_a_plugin_asks_the_user_and_gets_the_answer(host: Host) -> None:
    asked: list[types.ElicitRequestParams] = []

    async def elicit(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        asked.append(params)
        return types.ElicitResult(action="accept", content={"name": "Ada"})

    question = {"method": "elicitation/create",
                "params": {"message": "Who?", "requestedSchema": {
                    "type": "object", "properties": {"name": {"type": "string"}}}}}

    async def main() -> None:
        async with session(host, elicitation_callback=elicit) as s:
            # The tool's arguments are the asker's input: the question itself.
            result = await s.call_tool("ask", question)
            assert not result.is_error, result
            assert json.loads(result.content[0].text) == {  # type: ignore[union-attr]
                "action": "accept", "content": {"name": "Ada"}}
            # Sampling is not in the grant: refused without troubling the client.
            refused = await s.call_tool("ask", {"method": "sampling/createMessage",
                                                "params": {"messages": [], "maxTokens": 5}})
            assert refused.is_error
            assert "DENIED: plugin 'asker' may not ask the client for sampling" in \
                refused.content[0].text  # type: ignore[union-attr]

    anyio.run(main)
    assert [p.message for p in asked] == ["Who?"]


def test_a_client_without_elicitation_is_not_asked(host: Host) -> None:
    async def main() -> None:
        async with session(host) as s:
            result = await s.call_tool("ask", {"method": "elicitation/create", "params": {
                "message": "Who?", "requestedSchema": {
                    "type": "object", "properties": {"name": {"type": "string"}}}}})
            assert result.is_error
            assert "UNAVAILABLE: the MCP client did not declare the 'elicitation' capability" \
                in result.content[0].text  # type: ignore[union-attr]
            bad = await s.call_tool("ask", {"method": "elicitation/create", "params": {}})
            assert bad.is_error and "INVALID" in bad.content[0].text  # type: ignore[union-attr]

    anyio.run(main)


def test_a_client_that_does_not_answer_in_time_fails_the_question_not_the_host(
        host: Host) -> None:
    async def slow(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        await anyio.sleep(5)  # past the call's 500 ms deadline
        return types.ElicitResult(action="cancel")

    async def main() -> None:
        async with session(host, elicitation_callback=slow) as s:
            with anyio.fail_after(4):
                result = await s.call_tool("ask", {"method": "elicitation/create", "params": {
                    "message": "Who?", "requestedSchema": {
                        "type": "object", "properties": {"name": {"type": "string"}}}}})
            assert result.is_error
            # The question waits until the deadline, which then ends the call.
            assert "deadline" in result.content[0].text  # type: ignore[union-attr]
            assert (await s.call_tool("content.echo", {"content": []})).content == []

    anyio.run(main)


def test_a_plugin_reports_its_own_progress(host: Host) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    async def main() -> None:
        async with session(host) as s:
            result = await s.call_tool("progress", {"x": 1}, progress_callback=progress)
            assert not result.is_error

    anyio.run(main)
    # The host adds no start and finish of its own to a plugin that reports progress.
    assert seen == [(50.0, 100.0, '{"x":1}')]


def test_a_content_handler_answers_images_and_resources(host: Host) -> None:
    content = [{"type": "text", "text": "look:"},
               {"type": "image", "data": PNG, "mimeType": "image/png"},
               {"type": "audio", "data": "UklGRg==", "mimeType": "audio/wav"},
               {"type": "resource", "resource": {"uri": "test://r", "mimeType": "text/plain",
                                                 "text": "hi"}}]

    async def main() -> None:
        async with session(host) as s:
            result = await s.call_tool("content.echo", {"content": content, "isError": True})
            assert result.is_error
            assert [c.type for c in result.content] == ["text", "image", "audio", "resource"]
            wrong = await s.call_tool("content.echo", {"content": [{"type": "video"}]})
            assert wrong.is_error
            assert "says it answers an MCP tool result, but its output is none" in \
                wrong.content[0].text  # type: ignore[union-attr]

    anyio.run(main)


def test_tool_names_without_a_prefix_resolve(host: Host) -> None:
    async def main() -> None:
        async with session(host) as s:
            names = {t.name for t in (await s.list_tools()).tools}
            assert {"ask", "progress", "content.echo"} <= names
            missing = await s.call_tool("asker.ask", {})
            assert missing.is_error and "no tool 'asker.ask'" in \
                missing.content[0].text  # type: ignore[union-attr]

    anyio.run(main)


def test_a_bad_prefix_is_refused(tmp_path: Path) -> None:
    from omnicore.errors import ConfigError
    from omnicore.plugins.sidecar import read_sidecar

    (tmp_path / "p.wasm").write_bytes(b"")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"mcp": {"prefix": "a/b"}}))
    with pytest.raises(ConfigError, match=r"mcp\.prefix"):
        read_sidecar(tmp_path / "p.wasm")


def test_on_2026_07_28_a_question_the_client_cannot_answer_refuses_the_call(
        host: Host) -> None:
    from mcp import Client

    question = {"method": "elicitation/create", "params": {
        "message": "Who?", "requestedSchema": {
            "type": "object", "properties": {"name": {"type": "string"}}}}}

    async def main() -> None:
        headers = {"Authorization": f"Bearer {host.admin_token}"}
        async with httpx2.AsyncClient(headers=headers) as hc, \
                Client(streamable_http_client(f"{host.url}/mcp", http_client=hc),
                       mode="auto") as c:
            assert c.protocol_version == "2026-07-28"
            with pytest.raises(MCPError, match="asks the client for elicitation") as refused:
                await c.call_tool("ask", question)
            assert refused.value.error.code == -32021
            assert refused.value.error.data == {"requiredCapabilities": {"elicitation": {}}}

    anyio.run(main)


def test_a_call_asking_in_a_loop_under_new_keys_is_stopped_at_the_bound() -> None:
    # 2026-07-28 rounds: the questions of one input_required answer are bounded as a task's
    # are (omnicore.capabilities.mcp.pend): the sibling of the task's bound, one mechanism.
    from types import SimpleNamespace

    from omnicore.capabilities.mcp import MAX_OPEN_QUESTIONS, ClientRefused
    from omnicore.mcp.callclient import CallClient
    from tests.capabilities.test_mcp import ELICIT

    session = SimpleNamespace(client_capabilities=types.ClientCapabilities(
        elicitation=types.ElicitationCapability()))
    ctx: Any = SimpleNamespace(session=session, request_id=1)
    client = CallClient(None, ctx, False, answers={})  # type: ignore[arg-type]
    statuses = []
    for i in range(MAX_OPEN_QUESTIONS + 3):
        with pytest.raises(ClientRefused) as refused:
            client.ask("elicitation/create", ELICIT["params"], 0, f"q{i}")
        statuses.append(refused.value.status)
    assert statuses == ["UNAVAILABLE"] * MAX_OPEN_QUESTIONS + ["QUOTA"] * 3
    assert len(client.pending) == MAX_OPEN_QUESTIONS
