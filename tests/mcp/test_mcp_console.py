"""The console's switch per handler (API and plugin page): kept in the plugin's operator
settings in the database (every instance serves the same tools), announced to connected
agents, refused where the console does not own the rule."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.mcp.mcp_fixtures import PASSWORD, Host, Inbox, http_session
from tests.waiting import eventually_async

API = "/api/v1/plugins/tools/mcp"


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path / "app", ["tools/echo"])
    try:
        yield h
    finally:
        h.stop()


def _client(host: Host, token: str) -> httpx.Client:
    return httpx.Client(base_url=host.url, headers={"Authorization": f"Bearer {token}"},
                        timeout=30)


def _exposed(items: list[dict[str, object]]) -> dict[str, object]:
    return {str(i["handler"]): i["exposed_by"] for i in items}


def test_the_api_lists_handlers_and_a_viewer_cannot_change_them(host: Host) -> None:
    with _client(host, host.viewer_token) as viewer:
        items = viewer.get(API).json()["items"]
        assert _exposed(items) == {"echo": "omnicore.yaml", "hidden": None, "trap": None,
                                   "spin": None, "fail": None, "plain": None}
        assert {i["tool"] for i in items} >= {"tools.echo", "tools.plain"}
        assert viewer.put(f"{API}/plain").status_code == 403
        assert viewer.delete(f"{API}/echo").status_code == 403
    assert not (host.plugins_dir / "tools.yaml").exists()


def test_a_switch_is_kept_in_the_database_and_connected_agents_are_told(host: Host) -> None:
    inbox = Inbox()

    async def main() -> None:
        async with http_session(host.url, host.admin_token, inbox) as s:
            assert {t.name for t in (await s.list_tools()).tools} == {"tools.echo"}
            with _client(host, host.admin_token) as admin:
                r = await asyncio.to_thread(admin.put, f"{API}/plain")
                assert r.status_code == 200, r.text
                assert _exposed(r.json()["items"])["plain"] == "operator"
            assert host.app.storage.plugin_settings.get("tools").doc == {  # type: ignore[union-attr]
                "mcp": {"expose": ["plain"]}}
            assert not (host.plugins_dir / "tools.yaml").exists()
            await eventually_async(lambda: "notifications/tools/list_changed" in inbox.methods,
                                   "the list_changed notification")
            assert {t.name for t in (await s.list_tools()).tools} == {"tools.echo",
                                                                      "tools.plain"}
            with _client(host, host.admin_token) as admin:
                r = await asyncio.to_thread(admin.delete, f"{API}/plain")
                assert r.status_code == 200 and _exposed(r.json()["items"])["plain"] is None
            assert {t.name for t in (await s.list_tools()).tools} == {"tools.echo"}

    asyncio.run(main())
    entries = host.app.storage.audit.entries(action_prefix="mcp.")
    assert [(e.actor, e.action, e.target, e.before, e.after, e.origin) for e in entries] == [
        ("admin", "mcp.hide", "tools/plain", ["plain"], [], "127.0.0.1, API token"),
        ("admin", "mcp.expose", "tools/plain", [], ["plain"], "127.0.0.1, API token")]


def test_rules_the_console_does_not_own_are_refused_and_left_alone(host: Host) -> None:
    sidecar = host.plugins_dir / "tools.yaml"
    sidecar.write_text("mcp:\n  expose: ['f*']  # the operator's pattern\n")
    with _client(host, host.admin_token) as admin:
        by_app = admin.delete(f"{API}/echo")
        assert by_app.status_code == 422, by_app.text
        assert "omnicore.yaml" in by_app.json()["error"]["message"]
        by_pattern = admin.delete(f"{API}/fail")
        assert by_pattern.status_code == 422
        assert "'f*'" in by_pattern.json()["error"]["message"]
        assert "sidecar" in by_pattern.json()["error"]["message"]
        assert sidecar.read_text() == "mcp:\n  expose: ['f*']  # the operator's pattern\n"
        # A broader pattern of the operator's own settings is named too (a sibling rule).
        host.app.plugins.operator.change(  # type: ignore[union-attr]
            "tools", lambda doc: {"mcp": {"expose": ["s*"]}})
        by_own = admin.delete(f"{API}/spin")
        assert by_own.status_code == 422 and "'s*'" in by_own.json()["error"]["message"]
        assert host.app.storage.audit.entries(action_prefix="mcp.") == []
        assert host.app.plugins.operator.doc("tools") == {  # type: ignore[union-attr]
            "mcp": {"expose": ["s*"]}}
        assert admin.put(f"{API}/nope").status_code == 404
        assert admin.put("/api/v1/plugins/nope/mcp/echo").status_code == 404


def test_the_plugin_page_has_a_switch_per_handler(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as browser:
        browser.get("/login")
        browser.post("/login", data={"name": "admin", "password": PASSWORD,
                                     "csrf": browser.cookies["omnicore_login_csrf"]})
        csrf = browser.get("/api/v1/me").json()["csrf"]
        page = browser.get("/plugins/tools")
        assert "Agents (MCP)" in page.text and "tools.plain" in page.text
        no_csrf = browser.post("/plugins/tools", data={"action": "mcp_expose",
                                                       "handler": "plain"})
        assert no_csrf.status_code == 403
        r = browser.post("/plugins/tools", data={"action": "mcp_expose", "handler": "plain",
                                                 "csrf": csrf})
        assert r.status_code == 303
        assert "Served to agents" in browser.get(r.headers["location"]).text
    assert host.app.plugins.operator.doc("tools") == {  # type: ignore[union-attr]
        "mcp": {"expose": ["plain"]}}
