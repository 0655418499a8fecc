"""An open console (``console.auth: false`` on loopback) against the requests a hostile web
page can make a browser send: cross-site forms, no-cors fetches, DNS rebinding."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable

import pytest

from tests.console.conftest import PASSWORD, Host

EVIL = "http://evil.example"
#: What a browser adds to a no-cors fetch made by a page on evil.example.
NO_CORS = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors",
           "Sec-Fetch-Dest": "empty", "Content-Type": "text/plain;charset=UTF-8"}
#: ... and to a form on evil.example posted at the console.
CROSS_FORM = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate",
              "Sec-Fetch-Dest": "document",
              "Content-Type": "application/x-www-form-urlencoded"}
MALLORY = json.dumps({"name": "mallory", "password": "mallory-password", "role": "admin"})


@pytest.fixture
def open_host(make_host: Callable[..., Host]) -> Host:
    return make_host(auth=False)


def test_a_no_cors_text_plain_post_cannot_create_an_admin(open_host: Host) -> None:
    h = open_host
    port = h.url.rsplit(":", 1)[1]
    variants = {
        "the page's fetch": NO_CORS,
        "a sandboxed frame": {**NO_CORS, "Origin": "null"},
        "another port on loopback (same-site)": {
            **NO_CORS, "Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"},
        "the other loopback name": {**NO_CORS, "Origin": f"http://localhost:{port}",
                                    "Sec-Fetch-Site": "same-site"},
        "an old browser (no Origin, no Sec-Fetch)": {"Content-Type": "text/plain"},
        "a form type, no Origin": {"Content-Type": "application/x-www-form-urlencoded"},
    }
    with h.client() as c:
        for what, headers in variants.items():
            for method, path in (("POST", "/api/v1/users"), ("PUT", "/api/v1/secrets/STOLEN"),
                                 ("POST", "/api/v1/plugins/greeter-rust/invoke"),
                                 ("POST", "/api/v1/tokens")):
                body = MALLORY if "users" in path else '{"value": "x", "handler": "greet"}'
                r = c.request(method, path, content=body, headers=headers)
                assert r.status_code == 403, (what, path, r.status_code)
                assert r.json()["error"]["type"] in ("CrossOrigin", "CsrfFailed"), what
    assert h.module.console is not None
    assert h.module.console.auth.store.get("mallory") is None
    assert h.app.secrets.names() == []


def test_a_cross_origin_form_cannot_set_a_secret(open_host: Host) -> None:
    h = open_host
    with h.client() as c:
        page = c.get("/secrets").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None  # the open console's pages carry its CSRF token
        posts = [
            ("/secrets", {"action": "set", "name": "STOLEN", "value": "x"}),
            ("/users", {"action": "add-user", "name": "mallory", "password": "mallory-pass",
                        "role": "admin"}),
            ("/plugins/greeter-rust", {"action": "grant", "capability": "config"}),
            ("/workflows/any", {"name": "x"}),
            ("/data/delete", {"plugin": "p", "key": "k"}),
        ]
        for path, fields in posts:
            # from evil.example, even with the right token (a page cannot read it anyway)
            r = c.post(path, data={**fields, "csrf": csrf[1]}, headers=CROSS_FORM)
            assert r.status_code == 403 and r.json()["error"]["type"] == "CrossOrigin", path
            # from the console's own origin but without the token (e.g. a stored link)
            same = {**CROSS_FORM, "Origin": h.url, "Sec-Fetch-Site": "same-origin"}
            r = c.post(path, data=fields, headers=same, follow_redirects=False)
            assert r.status_code == 403 and "CSRF" in r.text, path
        assert h.app.secrets.names() == []
        assert h.app.plugins.get("greeter-rust").state == "needs-grant"
        # The console's own form, as a browser posts it, still works.
        r = c.post("/secrets", data={"action": "set", "name": "MINE", "value": "v",
                                     "csrf": csrf[1]},
                   headers={**CROSS_FORM, "Origin": h.url,
                            "Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 303
    assert h.app.secrets.names() == ["MINE"]


def test_scripts_still_reach_an_open_console(open_host: Host) -> None:
    # No browser headers, JSON: what curl or a script sends; an open console lets it in.
    with open_host.client() as c:
        r = c.put("/api/v1/secrets/SCRIPTED", json={"value": "v"})
        assert r.status_code == 200, r.text
        me = c.get("/api/v1/me").json()
        r = c.post("/api/v1/users", content=MALLORY, headers={
            "Content-Type": "text/plain", "X-CSRF-Token": me["csrf"]})
        assert r.status_code == 201  # a browser-looking request with the token is fine


@pytest.mark.parametrize("auth", [False, True], ids=["open", "signed-in"])
def test_dns_rebinding_names_are_refused(make_host: Callable[..., Host], auth: bool) -> None:
    h = make_host(auth=auth, allowed_hosts=["console.test"])
    port = h.url.rsplit(":", 1)[1]
    with h.client(h.admin_token if auth else None) as c:
        for name in ("evil.example", "127.0.0.1.evil.example", "localhost.evil.example",
                     "10.0.0.1", "0.0.0.0", "console.test.evil.example"):
            for method, path in (("GET", "/api/v1/secrets"), ("GET", "/"),
                                 ("GET", "/healthz"), ("POST", "/api/v1/users")):
                r = c.request(method, path, headers={"Host": f"{name}:{port}"},
                              content=MALLORY)
                assert r.status_code == 400, (name, path)
                assert r.json()["error"]["type"] == "HostNotAllowed"
        for name in ("127.0.0.1", "localhost", "LOCALHOST.", "[::1]", "console.test"):
            r = c.get("/api/v1/info", headers={"Host": f"{name}:{port}"})
            assert r.status_code == 200, name
    # HTTP/1.0 may leave Host out: that is no name of the console's either.
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as raw:
        raw.sendall(b"GET /api/v1/info HTTP/1.0\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 400")
    assert h.module.console is not None
    assert h.module.console.auth.store.get("mallory") is None


def test_a_signed_in_browser_is_held_to_its_origin_too(host: Host) -> None:
    browser, csrf = host.browser_session()
    r = browser.put("/api/v1/plugins/greeter-rust/grants/config", json={},
                    headers={"X-CSRF-Token": csrf, "Origin": EVIL,
                             "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403 and r.json()["error"]["type"] == "CrossOrigin"
    with host.client() as c:  # the sign-in form from another site
        c.get("/login")
        r = c.post("/login", data={"name": "admin", "password": PASSWORD,
                                   "csrf": c.cookies["omnicore_login_csrf"]},
                   headers={"Origin": EVIL})
        assert r.status_code == 403 and "omnicore_session" not in c.cookies
    assert host.app.plugins.get("greeter-rust").state == "needs-grant"
    r = browser.put("/api/v1/plugins/greeter-rust/grants/config", json={},
                    headers={"X-CSRF-Token": csrf, "Origin": host.url,
                             "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200
