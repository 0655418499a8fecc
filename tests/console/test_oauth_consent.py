"""A remote agent signs in the standard way: the official MCP SDK's OAuth client
(``OAuthClientProvider``: protected-resource metadata, authorization-server metadata, dynamic
registration, PKCE, the resource indicator) against a real host, the console's consent page
clicked in a real Chromium, the agent's redirect URI a real listener on loopback. Then the
Agents page revokes it, and the token no longer opens /mcp."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from playwright.async_api import async_playwright, expect

from tests.browsers import ARGS, CHROMIUM
from tests.mcp.mcp_fixtures import PASSWORD, Host

ACCEPT = {"Accept": "application/json, text/event-stream"}


class Tokens:
    """The agent's token storage (the SDK's ``TokenStorage``), in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


class _Callback(BaseHTTPRequestHandler):
    """The agent's redirect URI: keeps what the browser brought back."""

    arrived: queue.Queue[str] = queue.Queue()

    def do_GET(self) -> None:
        self.arrived.put(self.path)
        body = b"signed in; you can close this window"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path / "app", ["tools/echo", "tools/plain"])
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def callback() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Callback)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/callback"
    finally:
        server.shutdown()
        server.server_close()


def test_an_agent_signs_in_with_the_sdks_oauth_client_and_is_revoked(
        host: Host, callback: str) -> None:
    storage = Tokens()

    async def main() -> None:
        import httpx2
        from mcp.client.session import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = await browser.new_page()

            async def redirect_handler(url: str) -> None:
                await page.goto(url)  # /authorize -> the consent page -> sign in first
                await page.fill("input[name=name]", "admin")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await expect(page.locator("#client-name")).to_have_text("Test Agent")
                await expect(page.locator("#tools")).to_contain_text("tools.echo")
                await expect(page.locator("#tools")).to_contain_text("tools.plain")
                await page.click("#approve")
                await page.wait_for_url(f"{callback}**")

            async def callback_handler() -> AuthorizationCodeResult:
                arrived = await asyncio.to_thread(_Callback.arrived.get, True, 60)
                query = parse_qs(urlsplit(arrived).query)
                return AuthorizationCodeResult(code=query["code"][0],
                                               state=query.get("state", [None])[0])

            provider = OAuthClientProvider(
                server_url=f"{host.url}/mcp",
                client_metadata=OAuthClientMetadata(
                    client_name="Test Agent", redirect_uris=[callback],  # type: ignore[list-item]
                    grant_types=["authorization_code", "refresh_token"],
                    response_types=["code"], token_endpoint_auth_method="none"),
                storage=storage, redirect_handler=redirect_handler,
                callback_handler=callback_handler)
            async with httpx2.AsyncClient(auth=provider, timeout=60) as client, \
                    streamable_http_client(f"{host.url}/mcp", http_client=client) as (r, w), \
                    ClientSession(r, w) as session:
                await session.initialize()
                names = {t.name for t in (await session.list_tools()).tools}
                assert names == {"tools.echo", "tools.plain"}
                answer = await session.call_tool("tools.echo", {"text": "from an agent"})
                assert answer.structured_content == {"text": "from an agent"}

            # The operator revokes the agent on the Agents page.
            await page.goto(f"{host.url}/oauth/clients")
            await expect(page.locator("#grants")).to_contain_text("Test Agent")
            await page.click("#grants button[value=revoke]")
            await expect(page.locator("#grants")).to_contain_text("No agent is authorized")
            await browser.close()

    asyncio.run(main())
    assert storage.tokens is not None
    with httpx.Client(timeout=30) as c:
        r = c.post(f"{host.url}/mcp", headers={
            **ACCEPT, "Authorization": f"Bearer {storage.tokens.access_token}"}, json={})
        assert r.status_code == 401
    actions = {e.action for e in host.app.storage.audit.entries(action_prefix="oauth.")}
    assert {"oauth.register", "oauth.grant", "oauth.token", "oauth.use",
            "oauth.revoke"} <= actions
