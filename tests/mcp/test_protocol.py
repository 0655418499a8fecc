"""What a plugin host meets of the 2025-11-25 revision besides tools: the client's log level
and a plugin's log lines as notifications, progress, completions, and the SSE priming event
that lets a client resume a stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest

from tests.mcp.mcp_fixtures import Host, http_session, wasm

PROTOCOL = "2025-11-25"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("protocol") / "app"
    (root / "plugins").mkdir(parents=True)
    (root / "plugins" / "logs.wasm").write_bytes(wasm("logs"))
    h = Host(root, ["logs/*", "tools/echo"])  # loads its plugins as it starts
    try:
        yield h
    finally:
        h.stop()


class Messages:
    """The log notifications a client session received."""

    def __init__(self) -> None:
        self.logs: list[tuple[str, str | None, Any]] = []

    async def __call__(self, message: types.ServerNotification | Exception) -> None:
        if isinstance(message, types.LoggingMessageNotification):
            p = message.params
            self.logs.append((p.level, p.logger, p.data))


def test_log_lines_of_a_call_reach_the_client_at_its_level(host: Host) -> None:
    inbox = Messages()

    async def main() -> None:
        async with http_session(host.url, host.admin_token, inbox) as session:  # type: ignore[arg-type]
            await session.call_tool("logs.chatty", {})
            assert inbox.logs == []  # nothing until the client asks for a level
            await session.send_request(types.SetLevelRequest(
                params=types.SetLevelRequestParams(level="warning")), types.EmptyResult)
            result = await session.call_tool("logs.chatty", {})
            assert not result.is_error and result.structured_content == {}
            assert inbox.logs == [("warning", "logs", "warn: careful"),
                                  ("error", "logs", "error: broken")]
            await session.send_request(types.SetLevelRequest(
                params=types.SetLevelRequestParams(level="debug")), types.EmptyResult)
            inbox.logs.clear()
            await session.call_tool("logs.chatty", {})
            assert [level for level, _, _ in inbox.logs] == ["info", "warning", "error"]

    anyio.run(main)


def test_a_call_with_a_progress_token_reports_its_start_and_finish(host: Host) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    async def main() -> None:
        async with http_session(host.url, host.admin_token) as session:
            result = await session.call_tool("tools.echo", {"text": "x"},
                                             progress_callback=progress)
            assert not result.is_error
            assert seen == [(0, 1, "calling tools/echo"), (1, 1, "done")]

    anyio.run(main)


def _events(text: str) -> list[dict[str, str]]:
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            fields[name] = fields.get(name, "") + value.removeprefix(" ")
        if fields:
            events.append(fields)
    return events


def test_every_sse_stream_opens_with_a_priming_event_and_can_be_resumed(host: Host) -> None:
    headers = {"Authorization": f"Bearer {host.admin_token}",
               "Accept": "application/json, text/event-stream"}
    with httpx.Client(base_url=host.url, headers=headers, timeout=30) as client:
        init = client.post("/mcp", json={
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "0"}}})
        session = {"mcp-session-id": init.headers["mcp-session-id"],
                   "mcp-protocol-version": PROTOCOL}
        client.post("/mcp", headers=session,
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        # Only an answer that may carry more than its result is a stream: a call that
        # reports progress. Anything else is one JSON body.
        listed = client.post("/mcp", headers=session,
                             json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
        assert listed.headers["content-type"].startswith("application/json")
        assert '"tools.echo"' in listed.text
        called = client.post("/mcp", headers=session, json={
            "jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "tools.echo", "arguments": {"text": "hi"},
                       "_meta": {"progressToken": "p1"}}})
        assert called.headers["content-type"].startswith("text/event-stream")
        priming, *progress, answer = _events(called.text)
        assert priming["id"] and priming["retry"] == "1000" and priming["data"] == ""
        assert len(progress) == 2 and '"result"' in answer["data"]
        # A client that lost the stream after the priming event gets the answer again.
        # The replay stream stays open for what comes next: read until the answer is back.
        with client.stream("GET", "/mcp",
                           headers={**session, "last-event-id": priming["id"]}) as replay:
            seen = ""
            for line in replay.iter_lines():
                seen += line + "\n"
                if line.startswith("data:") and '"result"' in line:
                    break
        assert f"id: {answer['id']}" in seen
