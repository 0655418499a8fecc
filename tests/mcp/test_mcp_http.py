"""``/mcp`` on a running host's console, with the MCP SDK's own streamable HTTP client."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from omnicore.mcp.tools import tool_name
from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, Host, Inbox, http_session, text_of, wasm
from tests.waiting import eventually_async

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                         "clientInfo": {"name": "raw", "version": "0"}}}
ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path / "app", ["tools/echo", "tools/trap", "tools/plain"])
    try:
        yield h
    finally:
        h.stop()


def test_an_admin_token_lists_and_calls(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.admin_token) as s:
            assert s.initialize_result is not None
            assert s.initialize_result.protocol_version == LATEST_HANDSHAKE_VERSION
            names = {t.name for t in (await s.list_tools()).tools}
            assert names == {"tools.echo", "tools.trap", "tools.plain"}
            answer = await s.call_tool("tools.echo", {"text": "over http"})
            assert answer.structured_content == {"text": "over http"}
            hidden = await s.call_tool("tools.hidden", {"text": "x"})
            assert hidden.is_error and text_of(hidden).startswith("no tool")
            trapped = await s.call_tool("tools.trap", {})
            assert trapped.is_error and "trapped" in text_of(trapped)
            assert text_of(await s.call_tool("tools.plain", {})) == "hello"

    asyncio.run(main())


def test_without_a_valid_bearer_token_every_request_is_401(host: Host) -> None:
    browser = httpx.Client(base_url=host.url, timeout=30)
    browser.get("/login")
    signed_in = browser.post("/login", data={"name": "admin", "password": "correct horse battery",
                                             "csrf": browser.cookies["omnicore_login_csrf"]})
    assert signed_in.status_code == 303
    cases = {
        "none": {},
        "basic": {"Authorization": "Basic YWRtaW46Y29ycmVjdCBob3JzZSBiYXR0ZXJ5"},
        "basic with the token": {"Authorization": f"Basic {host.admin_token}"},
        "token without scheme": {"Authorization": host.admin_token},
        "bearer without a token": {"Authorization": "Bearer"},
        "wrong token": {"Authorization": "Bearer oc_not-a-token"},
    }
    with httpx.Client(base_url=host.url, timeout=30) as c:
        for what, headers in cases.items():
            for method in ("POST", "GET", "DELETE"):
                r = c.request(method, "/mcp", json=INITIALIZE if method == "POST" else None,
                              headers={**ACCEPT, **headers})
                assert r.status_code == 401, (what, method, r.status_code)
                assert r.headers["www-authenticate"].startswith("Bearer")
    # A signed-in browser session is not a token either (its cookie goes with any page's
    # request to this origin).
    r = browser.post("/mcp", json=INITIALIZE, headers=ACCEPT)
    assert r.status_code == 401
    browser.close()

    async def main() -> None:
        with pytest.raises(Exception):  # noqa: B017 - the SDK's client surfaces the 401
            async with http_session(host.url, None) as s:
                await s.list_tools()

    asyncio.run(main())


def test_a_revoked_token_is_refused_at_its_next_request(host: Host) -> None:
    secret, token = host.store.new_token("admin", "short-lived")
    with httpx.Client(base_url=host.url, timeout=30) as c:
        auth = {**ACCEPT, "Authorization": f"Bearer {secret}"}
        assert c.post("/mcp", json=INITIALIZE, headers=auth).status_code == 200
        host.store.delete_token(token.id)
        assert c.post("/mcp", json=INITIALIZE, headers=auth).status_code == 401


def test_the_local_token_of_the_host_works(host: Host) -> None:
    assert host.module.console is not None

    async def main() -> None:
        async with http_session(host.url, host.module.console.auth.local_token) as s:
            assert len((await s.list_tools()).tools) == 3

    asyncio.run(main())


def test_a_viewer_may_list_but_not_call(host: Host) -> None:
    async def main() -> None:
        async with http_session(host.url, host.viewer_token) as s:
            assert len((await s.list_tools()).tools) == 3
            before = host.app.plugins.get("tools").stats.calls
            refused = await s.call_tool("tools.echo", {"text": "x"})
            assert refused.is_error and "viewer" in text_of(refused)
            assert host.app.plugins.get("tools").stats.calls == before  # the guest never ran

    asyncio.run(main())


def test_a_session_belongs_to_the_user_who_opened_it(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c:
        r = c.post("/mcp", json=INITIALIZE,
                   headers={**ACCEPT, "Authorization": f"Bearer {host.viewer_token}"})
        assert r.status_code == 200
        session = r.headers["mcp-session-id"]
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        stolen = c.post("/mcp", json=call, headers={
            **ACCEPT, "Authorization": f"Bearer {host.admin_token}", "mcp-session-id": session,
            "mcp-protocol-version": LATEST_HANDSHAKE_VERSION})
        assert stolen.status_code == 404


def test_a_hot_reload_over_http_changes_the_list_and_notifies(host: Host) -> None:
    inbox = Inbox()
    file = host.plugins_dir / "tools.wasm"

    async def main() -> None:
        async with http_session(host.url, host.admin_token, inbox) as s:
            assert {t.name for t in (await s.list_tools()).tools} == {
                "tools.echo", "tools.trap", "tools.plain"}
            v2 = dict(TOOLS_MANIFEST, version="2.0.0", handlers=["echo", "hidden"])
            tmp = file.with_name(".tools.tmp")
            tmp.write_bytes(wasm("tools", v2))
            os.replace(tmp, file)
            async def changed() -> bool:
                return {t.name for t in (await s.list_tools()).tools} == {"tools.echo"} \
                    and "notifications/tools/list_changed" in inbox.methods

            await eventually_async(changed, "the list of v2, notified")

    asyncio.run(main())


def test_tool_names_follow_the_documented_mapping() -> None:
    assert tool_name("greeter", "greet") == "greeter.greet"
    assert tool_name("a-b_c", "x.y-z_1") == "a-b_c.x.y-z_1"
    assert tool_name("p", "say/hi") == "p.say_u002f_hi"
    assert tool_name("p", "héllo wörld") == "p.h_u00e9_llo_u0020_w_u00f6_rld"
    assert tool_name("p", "\U0001f600") == "p._u1f600_"


def test_the_2026_revision_lists_calls_and_listens_for_changes(host: Host) -> None:
    # The SDK's Client in "auto" mode discovers 2026-07-28: no initialize handshake, every
    # request carries its own envelope, changes arrive on a subscriptions/listen stream.
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def main(token: str) -> None:
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as hc, \
                Client(streamable_http_client(f"{host.url}/mcp", http_client=hc),
                       mode="auto") as c:
            assert c.protocol_version == "2026-07-28"
            assert {t.name for t in (await c.list_tools()).tools} == {
                "tools.echo", "tools.trap", "tools.plain"}
            answer = await c.call_tool("tools.echo", {"text": "modern"})
            if token == host.viewer_token:
                assert answer.is_error and "viewer" in text_of(answer)
                return
            assert answer.structured_content == {"text": "modern"}
            async with c.listen(tools_list_changed=True) as sub:
                file = host.plugins_dir / "tools.wasm"
                tmp = file.with_name(".tools.tmp")
                tmp.write_bytes(wasm("tools", dict(TOOLS_MANIFEST, handlers=["echo"])))
                os.replace(tmp, file)
                with anyio.fail_after(30):
                    async for _event in sub:
                        break
            assert {t.name for t in (await c.list_tools()).tools} == {"tools.echo"}

    asyncio.run(main(host.viewer_token))
    asyncio.run(main(host.admin_token))


@pytest.mark.parametrize("shape", ["arrays", "objects", "in-arguments"])
def test_deep_json_is_a_parse_error_and_the_server_keeps_serving(host: Host, shape: str) -> None:
    """200,000 levels would take a recursive parser past its stack: refused before the SDK."""
    deep = {"arrays": "[" * 200_000 + "]" * 200_000,
            "objects": '{"a":' * 200_000 + "1" + "}" * 200_000,
            "in-arguments": '{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": '
                            '{"name": "tools.echo", "arguments": {"text": '
                            + "[" * 200_000 + "]" * 200_000 + "}}}"}[shape]
    with httpx.Client(base_url=host.url, timeout=30) as c:
        r = c.post("/mcp", content=deep, headers={
            "Authorization": f"Bearer {host.admin_token}", "Content-Type": "application/json",
            **ACCEPT})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == -32700 and "nested" in r.json()["error"]["message"]

    async def main() -> None:
        async with http_session(host.url, host.admin_token) as s:
            answer = await s.call_tool("tools.echo", {"text": "still here"})
            assert answer.structured_content == {"text": "still here"}

    asyncio.run(main())


def test_a_call_is_one_json_body_unless_it_streams_progress_or_logs(host: Host) -> None:
    """Most calls send nothing but their result: one application/json body, through the
    direct path; a progress token or a session's log level makes the answer an SSE stream."""
    auth = {**ACCEPT, "Authorization": f"Bearer {host.admin_token}"}
    with httpx.Client(base_url=host.url, timeout=30) as c:
        r = c.post("/mcp", json=INITIALIZE, headers=auth)
        session = {**auth, "mcp-session-id": r.headers["mcp-session-id"],
                   "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}

        def call(id_: int, params: dict[str, object]) -> httpx.Response:
            return c.post("/mcp", headers=session, json={
                "jsonrpc": "2.0", "id": id_, "method": "tools/call", "params": params})

        def listed() -> httpx.Response:
            return c.post("/mcp", headers=session, json={
                "jsonrpc": "2.0", "id": 10, "method": "tools/list"})

        # Before the handshake ends the SDK's loop answers; the same bodies.
        early = call(2, {"name": "tools.echo", "arguments": {"text": "x"}})
        assert early.headers["content-type"].startswith("application/json")
        assert early.json()["result"]["structuredContent"] == {"text": "x"}
        sdk_list = listed().json()
        assert c.post("/mcp", headers=session, json={
            "jsonrpc": "2.0", "method": "notifications/initialized"}).status_code == 202
        assert listed().json() == sdk_list
        assert {t["name"] for t in sdk_list["result"]["tools"]} == {
            "tools.echo", "tools.trap", "tools.plain"}
        answer = call(3, {"name": "tools.echo", "arguments": {"text": "x"}})
        assert answer.headers["content-type"] == "application/json"
        assert answer.headers["mcp-session-id"] == session["mcp-session-id"]
        assert answer.json() == {"jsonrpc": "2.0", "id": 3, "result": {
            "content": [{"type": "text", "text": '{"text":"x"}'}],
            "structuredContent": {"text": "x"}, "isError": False}}
        unknown = call(4, {"name": "tools.hidden", "arguments": {}}).json()
        assert unknown["result"]["isError"] and "no tool" in unknown["result"]["content"][0]["text"]
        # Invalid params are the SDK's to refuse.
        bad = call(5, {"arguments": {}})
        assert bad.json()["error"]["code"] == -32602
        streamed = call(6, {"name": "tools.echo", "arguments": {"text": "x"},
                            "_meta": {"progressToken": 7}})
        assert streamed.headers["content-type"].startswith("text/event-stream")
        assert c.post("/mcp", headers=session, json={
            "jsonrpc": "2.0", "id": 8, "method": "logging/setLevel",
            "params": {"level": "info"}}).status_code == 200
        logged = call(9, {"name": "tools.echo", "arguments": {"text": "x"}})
        assert logged.headers["content-type"].startswith("text/event-stream")
        assert '"structuredContent":{"text":"x"}' in logged.text
