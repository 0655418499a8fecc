"""``/mcp`` as an OAuth 2.1 protected resource of a real host, driven over httpx: the metadata,
the 401 that points to it, the flow, and what must fail (wrong PKCE verifier, a reused or
expired code, a token for another resource, a revoked token, a rotated refresh token)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from mcp_types.version import LATEST_HANDSHAKE_VERSION

from omnicore.mcp.expose import set_exposed
from omnicore.oauth import digest
from omnicore.storage.oauth_rows import CodeRow
from tests.mcp.mcp_fixtures import Host
from tests.mcp.oauth_flow import REDIRECT, authorize, code_of, flow, register, signed_in, token

ACCEPT = {"Accept": "application/json, text/event-stream"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                         "clientInfo": {"name": "raw", "version": "0"}}}


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path / "app", ["tools/echo", "tools/plain"],
             mcp={"expose": ["tools/echo", "tools/plain"], "oauth_loopback_client_ids": True})
    try:
        yield h
    finally:
        h.stop()


def mcp_status(host: Host, access: str, url: str | None = None) -> int:
    with httpx.Client(timeout=30) as c:
        r = c.post(f"{url or host.url}/mcp", json=INITIALIZE,
                   headers={**ACCEPT, "Authorization": f"Bearer {access}"})
        return r.status_code


def test_the_metadata_and_the_401_lead_an_agent_to_the_authorization_server(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c:
        r = c.post("/mcp", json=INITIALIZE, headers=ACCEPT)
        assert r.status_code == 401
        challenge = r.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        where = f"{host.url}/.well-known/oauth-protected-resource/mcp"
        assert f'resource_metadata="{where}"' in challenge
        for path in ("/.well-known/oauth-protected-resource/mcp",
                     "/.well-known/oauth-protected-resource"):
            prm = c.get(path).json()
            assert prm["resource"] == f"{host.url}/mcp"
            assert prm["authorization_servers"] == [f"{host.url}/"]
        asm = c.get("/.well-known/oauth-authorization-server").json()
        assert asm["issuer"] == f"{host.url}/"
        assert asm["code_challenge_methods_supported"] == ["S256"]
        assert asm["registration_endpoint"] == f"{host.url}/register"
        assert asm["client_id_metadata_document_supported"] is True
        bad = c.post("/mcp", json=INITIALIZE, headers={**ACCEPT, "Authorization": "Bearer x"})
        assert 'error="invalid_token"' in bad.headers["www-authenticate"]


def test_a_granted_token_calls_granted_tools_and_every_step_is_audited(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c, signed_in(host) as browser:
        client_id, tokens = flow(host, c, browser)
        access = tokens["access_token"]
        assert access.startswith("oc_oauth_") and tokens["token_type"] == "Bearer"
        auth = {**ACCEPT, "Authorization": f"Bearer {access}"}
        r = c.post("/mcp", json=INITIALIZE, headers=auth)
        assert r.status_code == 200
        session = {**auth, "mcp-session-id": r.headers["mcp-session-id"],
                   "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}
        called = c.post("/mcp", headers=session, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "tools.echo", "arguments": {"text": "hi"}}}).json()
        assert called["result"]["structuredContent"] == {"text": "hi"}
        # The database keeps hashes only.
        assert host.app.storage.oauth.token(digest(access)) is not None
        assert host.app.storage.oauth.token(access) is None
    actions = [e.action for e in host.app.storage.audit.entries(action_prefix="oauth.")]
    assert {"oauth.register", "oauth.grant", "oauth.token", "oauth.use"} <= set(actions)
    grant = host.app.storage.audit.entries(action_prefix="oauth.grant")[0]
    assert grant.actor == "admin" and grant.target == f"oauth:{client_id}"
    assert grant.after["tools"] == ["tools.echo", "tools.plain"]


def test_a_tool_exposed_after_the_grant_is_not_callable(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c, signed_in(host) as browser:
        _, tokens = flow(host, c, browser)
        set_exposed(host.app, "tools", "hidden", True)  # the operator exposes one more
        auth = {**ACCEPT, "Authorization": f"Bearer {tokens['access_token']}"}
        r = c.post("/mcp", json=INITIALIZE, headers=auth)
        session = {**auth, "mcp-session-id": r.headers["mcp-session-id"],
                   "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}
        hidden = c.post("/mcp", headers=session, json={
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "tools.hidden", "arguments": {"text": "x"}}}).json()
        assert hidden["result"]["isError"] is True
        assert "not among those admin approved" in hidden["result"]["content"][0]["text"]


def test_a_wrong_pkce_verifier_and_a_reused_code_are_invalid_grant(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c, signed_in(host) as browser:
        client_id = register(c)
        back, verifier = authorize(host, c, browser, client_id)
        code = code_of(back)
        wrong = token(c, client_id, code, verifier[::-1], f"{host.url}/mcp")
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        first = token(c, client_id, code, verifier, f"{host.url}/mcp")
        assert first.status_code == 200
        access = first.json()["access_token"]
        assert mcp_status(host, access) == 200
        again = token(c, client_id, code, verifier, f"{host.url}/mcp")
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
        # A replayed code ends what it gave.
        assert mcp_status(host, access) == 401


def test_an_expired_code_is_invalid_grant(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c, signed_in(host) as browser:
        client_id = register(c)
        back, verifier = authorize(host, c, browser, client_id)
        code = code_of(back)
        rows = host.app.storage.oauth
        row = rows.code(digest(code))
        assert row is not None
        # The same code as the host would have kept it, issued long enough ago to be past.
        stale = "oc_oauth_code_expired"
        rows.add_code(digest(stale), CodeRow(row.grant_id, row.redirect_uri,
                                             row.redirect_uri_explicit, row.challenge,
                                             time.time() - 1, None))
        r = token(c, client_id, stale, verifier, f"{host.url}/mcp")
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        assert "expired" in r.json()["error_description"]


def test_a_token_is_good_for_this_resource_only(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c, signed_in(host) as browser:
        client_id = register(c)
        back, verifier = authorize(host, c, browser, client_id)
        other = token(c, client_id, code_of(back), verifier, f"{host.url}/elsewhere")
        assert other.status_code == 400 and other.json()["error"] == "invalid_target"
        # Asked at /authorize for another resource: the client hears invalid_target.
        back, _ = authorize(host, c, browser, client_id, resource="https://other.example/mcp")
        assert "error=invalid_target" in back
        _, tokens = flow(host, c, browser)
        access = tokens["access_token"]
        assert mcp_status(host, access) == 200
        # The same server under another name is another resource.
        assert mcp_status(host, access, host.url.replace("127.0.0.1", "localhost")) == 401


def test_a_denied_request_and_a_revoked_client(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c, signed_in(host) as browser:
        client_id = register(c)
        back, _ = authorize(host, c, browser, client_id, approve=False)
        assert "error=access_denied" in back and "state=st" in back
        _, tokens = flow(host, c, browser)
        access = tokens["access_token"]
        assert mcp_status(host, access) == 200
        page = browser.get("/oauth/clients")
        assert "test agent" in page.text
        grant = host.app.storage.oauth.grants()[0]
        csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
        r = browser.post("/oauth/clients", data={"csrf": csrf, "grant": str(grant.id),
                                                 "action": "revoke"})
        assert r.status_code == 303
        assert mcp_status(host, access) == 401
        refreshed = c.post("/token", data={"grant_type": "refresh_token",
                                           "refresh_token": tokens["refresh_token"],
                                           "client_id": grant.client_id})
        assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    assert any(e.action == "oauth.revoke" and e.actor == "admin"
               for e in host.app.storage.audit.entries(action_prefix="oauth."))


def test_refresh_tokens_rotate_and_a_reused_one_ends_the_grant(host: Host) -> None:
    with httpx.Client(base_url=host.url, timeout=30) as c, signed_in(host) as browser:
        client_id, tokens = flow(host, c, browser)

        def refresh(rt: str) -> httpx.Response:
            return c.post("/token", data={"grant_type": "refresh_token", "refresh_token": rt,
                                          "client_id": client_id,
                                          "resource": f"{host.url}/mcp"})

        second = refresh(tokens["refresh_token"])
        assert second.status_code == 200, second.text
        fresh = second.json()
        assert fresh["refresh_token"] != tokens["refresh_token"]
        assert mcp_status(host, fresh["access_token"]) == 200
        replay = refresh(tokens["refresh_token"])
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        assert mcp_status(host, fresh["access_token"]) == 401


class _Document(BaseHTTPRequestHandler):
    doc: bytes = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.doc)))
        self.end_headers()
        self.wfile.write(self.doc)

    def log_message(self, *args: object) -> None:
        pass


def test_a_client_id_metadata_document_is_fetched_and_named_on_the_consent_page(
        host: Host) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Document)
    client_id = f"http://127.0.0.1:{server.server_address[1]}/agent/client.json"
    _Document.doc = json.dumps({"client_id": client_id, "client_name": "Document Agent",
                                "redirect_uris": [REDIRECT]}).encode()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with httpx.Client(base_url=host.url, timeout=30) as c, signed_in(host) as browser:
            back, verifier = authorize(host, c, browser, client_id)
            r = token(c, client_id, code_of(back), verifier, f"{host.url}/mcp")
            assert r.status_code == 200, r.text
            assert mcp_status(host, r.json()["access_token"]) == 200
            assert host.app.storage.oauth.grants()[0].client_name == "Document Agent"
            # A document naming another id is no client.
            _Document.doc = json.dumps({"client_id": "https://x.example/c.json",
                                        "redirect_uris": [REDIRECT]}).encode()
            unknown = c.get("/authorize", params={
                "response_type": "code", "client_id": client_id + "?v=2",
                "redirect_uri": REDIRECT, "code_challenge": "x" * 43,
                "code_challenge_method": "S256"})
            assert unknown.status_code == 400
    finally:
        server.shutdown()
        server.server_close()


def test_a_sign_in_begun_on_one_host_is_answered_and_redeemed_on_another(
        tmp_path: Path, pg_url: str) -> None:
    """The waiting consent is a row of the shared database, not one host's memory."""
    config = {"mcp": {"expose": ["tools/echo"]}, "storage": {"url": pg_url}}
    first = Host(tmp_path / "a", ["tools/echo"], **config)
    try:
        second = Host(tmp_path / "b", ["tools/echo"], **config)
        try:
            with httpx.Client(base_url=first.url, timeout=30) as at_first, \
                    httpx.Client(base_url=second.url, timeout=30) as at_second, \
                    signed_in(second) as browser:
                client_id = register(at_first)
                back, verifier = authorize(second, at_first, browser, client_id,
                                           resource=f"{second.url}/mcp")
                r = token(at_second, client_id, code_of(back), verifier, f"{second.url}/mcp")
                assert r.status_code == 200, r.text
                assert mcp_status(second, r.json()["access_token"]) == 200
        finally:
            second.stop()
    finally:
        first.stop()


def test_browsers_of_other_origins_reach_the_metadata_and_the_token_endpoint(
        host: Host) -> None:
    origin = {"Origin": "https://agent.example"}
    with httpx.Client(base_url=host.url, timeout=30) as c:
        for path, method in (("/token", "POST"), ("/register", "POST"),
                             ("/.well-known/oauth-authorization-server", "GET"),
                             ("/.well-known/oauth-protected-resource/mcp", "GET")):
            pre = c.options(path, headers={**origin, "Access-Control-Request-Method": method})
            assert pre.status_code == 200, (path, pre.text)
            assert pre.headers["access-control-allow-origin"] == "*"
            assert method in pre.headers["access-control-allow-methods"]
        meta = c.get("/.well-known/oauth-authorization-server", headers=origin)
        assert meta.status_code == 200 and meta.headers["access-control-allow-origin"] == "*"
        # The cross-origin post itself reaches the endpoint (the console's guard lets it by):
        # a bad code is the token endpoint's own answer, with CORS.
        bad = c.post("/token", headers={**origin, "Sec-Fetch-Site": "cross-site"}, data={
            "grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT,
            "client_id": "nobody", "code_verifier": "x" * 43})
        assert bad.status_code in (400, 401), bad.text
        assert bad.json()["error"] in ("invalid_client", "invalid_grant")
        assert bad.headers["access-control-allow-origin"] == "*"
        # Elsewhere a cross-origin change is refused as before.
        assert c.post("/oauth/clients", headers=origin).status_code == 403
