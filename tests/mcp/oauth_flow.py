"""An OAuth client for the tests, done by hand over httpx: dynamic registration or a client
ID metadata document, the authorization request, the consent page answered by a signed-in
console user, and the token requests."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.mcp.mcp_fixtures import PASSWORD, Host

REDIRECT = "http://127.0.0.1:9/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


@contextmanager
def signed_in(host: Host, user: str = "admin") -> Iterator[httpx.Client]:
    """A console session of ``user``, as a browser holds it."""
    with httpx.Client(base_url=host.url, timeout=30) as browser:
        browser.get("/login")
        r = browser.post("/login", data={"name": user, "password": PASSWORD,
                                         "csrf": browser.cookies["omnicore_login_csrf"]})
        assert r.status_code == 303
        yield browser


def register(c: httpx.Client, name: str = "test agent") -> str:
    r = c.post("/register", json={
        "redirect_uris": [REDIRECT], "client_name": name, "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "scope": "mcp:tools"})
    assert r.status_code == 201, r.text
    return str(r.json()["client_id"])


def authorize(host: Host, c: httpx.Client, browser: httpx.Client, client_id: str, *,
              approve: bool = True, resource: str | None = None) -> tuple[str, str]:
    """Run /authorize and answer the consent page: the URL the browser is sent back to, and
    the PKCE verifier."""
    verifier, challenge = pkce()
    r = c.get("/authorize", params={
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
        "code_challenge": challenge, "code_challenge_method": "S256", "state": "st",
        "scope": "mcp:tools", "resource": resource or f"{host.url}/mcp"})
    assert r.status_code in (302, 303, 307), r.text
    consent = browser.get(r.headers["location"])
    assert consent.status_code == 200, consent.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', consent.text)
    request = re.search(r'name="request" value="([^"]+)"', consent.text)
    assert csrf and request
    answer = browser.post("/oauth/consent", data={
        "csrf": csrf[1], "request": request[1], "action": "approve" if approve else "deny"})
    assert answer.status_code == 200, answer.text
    back = re.search(r'id="continue" href="([^"]+)"', answer.text)
    assert back
    return html.unescape(back[1]), verifier


def code_of(url: str) -> str:
    query = parse_qs(urlsplit(url).query)
    assert query.get("state") == ["st"], url
    return query["code"][0]


def token(c: httpx.Client, client_id: str, code: str, verifier: str,
          resource: str | None) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "client_id": client_id, "code_verifier": verifier}
    if resource is not None:
        data["resource"] = resource
    return c.post("/token", data=data)


def flow(host: Host, c: httpx.Client, browser: httpx.Client) -> tuple[str, dict[str, str]]:
    """Register, authorize, approve, exchange: the client id and the token response."""
    client_id = register(c)
    back, verifier = authorize(host, c, browser, client_id)
    r = token(c, client_id, code_of(back), verifier, f"{host.url}/mcp")
    assert r.status_code == 200, r.text
    return client_id, r.json()
