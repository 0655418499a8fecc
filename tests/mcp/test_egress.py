"""A tool call has the plugin's grants and no more: without the http grant (or with one that
does not name the address) a tool cannot reach a server on the host's loopback."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from tests.mcp.mcp_fixtures import Host, http_session, stdio_session, text_of, wasm


class _Counter(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]]

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def loopback() -> Iterator[tuple[int, list[str]]]:
    hits: list[str] = []
    handler = type("Handler", (_Counter,), {"hits": hits})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], hits
    finally:
        server.shutdown()
        server.server_close()


def test_without_the_grant_a_tool_cannot_reach_loopback(
        tmp_path: Path, loopback: tuple[int, list[str]]) -> None:
    port, hits = loopback
    files = {n: wasm("fetch", name=n) for n in
             ("nogrant", "otherhost", "byname", "allowed")}
    host = Host(tmp_path / "app", ["*/fetch"], files=files, plugins={
        "otherhost": {"grants": {"http": {"allow_hosts": ["example.com"]}}},
        "byname": {"grants": {"http": {"allow_hosts": ["http://localhost:*"]}}},
        "allowed": {"grants": {"http": {"allow_hosts": [f"http://127.0.0.1:{port}"]}}},
    })
    try:
        assert host.app.plugins.get("nogrant").state == "needs-grant"

        async def main() -> None:
            async with http_session(host.url, host.admin_token) as s:
                listed = {t.name for t in (await s.list_tools()).tools}
                # A plugin that cannot run is not offered; calling it says why.
                assert listed == {"otherhost.fetch", "byname.fetch", "allowed.fetch"}
                cases = {
                    "nogrant": ("127.0.0.1", "needs grant: omnicore:http"),
                    "otherhost": ("127.0.0.1", "DENIED"),
                    "byname": ("localhost", "DENIED"),
                }
                for plugin, (where, why) in cases.items():
                    result = await s.call_tool(f"{plugin}.fetch", {
                        "method": "GET", "url": f"http://{where}:{port}/{plugin}"})
                    assert result.is_error, plugin
                    assert why in text_of(result), (plugin, text_of(result))
                assert hits == []
                # The control: the same tool with the address granted does reach it.
                reached = await s.call_tool("allowed.fetch", {
                    "method": "GET", "url": f"http://127.0.0.1:{port}/allowed"})
                assert not reached.is_error, text_of(reached)
                assert hits == ["/allowed"]

        asyncio.run(main())
    finally:
        host.stop()


def test_over_stdio_too(tmp_path: Path, loopback: tuple[int, list[str]]) -> None:
    from tests.mcp.mcp_fixtures import make_app

    port, hits = loopback
    app = make_app(tmp_path / "app", ["nogrant/fetch"],
                   files={"nogrant": wasm("fetch", name="nogrant")})

    async def main() -> None:
        async with stdio_session(app) as s:
            result = await s.call_tool("nogrant.fetch", {
                "method": "GET", "url": f"http://127.0.0.1:{port}/"})
            assert result.is_error and "needs grant: omnicore:http" in text_of(result)

    asyncio.run(main())
    assert hits == []
