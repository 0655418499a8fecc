"""CSRF, session fixation, sign-in throttling, XSS, and refusing an open console off loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from omnicore.errors import ModuleError
from tests.console.conftest import PASSWORD, Host

XSS = "<script>alert(1)</script>"


def test_forms_and_session_api_calls_need_the_csrf_token(host: Host) -> None:
    browser, csrf = host.browser_session()
    for data in ({"action": "grant", "capability": "config"},
                 {"action": "grant", "capability": "config", "csrf": "forged"}):
        r = browser.post("/plugins/greeter-rust", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    r = browser.put("/api/v1/plugins/greeter-rust/grants/config", json={})
    assert r.status_code == 403 and r.json()["error"]["type"] == "CsrfFailed"
    assert host.app.plugins.get("greeter-rust").state == "needs-grant"
    r = browser.put("/api/v1/plugins/greeter-rust/grants/config", json={},
                    headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["state"] == "loaded"
    # The sign-in form has its own (double-submit) token.
    with host.client() as fresh:
        fresh.get("/login")
        r = fresh.post("/login", data={"name": "admin", "password": PASSWORD, "csrf": "x"})
        assert r.status_code == 403 and "omnicore_session" not in fresh.cookies


def test_signing_in_mints_a_new_session_and_signing_out_ends_it(host: Host) -> None:
    with host.client() as c:
        c.cookies.set("omnicore_session", "attacker-chosen-id")
        c.get("/login")
        r = c.post("/login", data={"name": "admin", "password": PASSWORD,
                                   "csrf": c.cookies["omnicore_login_csrf"]})
        assert r.status_code == 303
        sid = r.cookies["omnicore_session"]
        assert sid != "attacker-chosen-id"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
    with host.client() as c:
        c.cookies.set("omnicore_session", sid)
        csrf = c.get("/api/v1/me").json()["csrf"]
        assert c.post("/logout", data={"csrf": csrf}).status_code == 303
    with host.client() as replay:
        replay.cookies.set("omnicore_session", sid)
        assert replay.get("/api/v1/me").status_code == 401


def test_wrong_passwords_are_throttled(host: Host) -> None:
    with host.client() as c:
        c.get("/login")
        token = c.cookies["omnicore_login_csrf"]
        codes = [c.post("/login", data={"name": "admin", "password": f"guess{i}",
                                        "csrf": token}).status_code for i in range(7)]
        assert codes[:5] == [401] * 5 and codes[-1] == 429
        r = c.post("/login", data={"name": "admin", "password": PASSWORD, "csrf": token})
        assert r.status_code == 429 and "try again" in r.text


def test_hostile_text_renders_as_text(host: Host, admin: httpx.Client) -> None:
    admin.put("/api/v1/plugins/greeter-rust/grants/config", json={})
    r = admin.put("/api/v1/plugins/greeter-rust/config", json={"config": {"greeting": XSS}})
    assert r.status_code == 200
    r = admin.post("/api/v1/plugins/greeter-rust/invoke",
                   json={"handler": "greet", "input": json.dumps({"name": XSS})})
    assert XSS in json.loads(r.json()["output"])["message"]  # the plugin echoes it
    browser, csrf = host.browser_session()
    for path in ("/plugins/greeter-rust", "/logs"):
        html = browser.get(path).text
        assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html, path
    r = browser.post("/plugins/greeter-rust", data={
        "csrf": csrf, "action": "invoke", "handler": "greet", "format": "json",
        "input": json.dumps({"name": XSS})})
    assert r.status_code == 200 and XSS not in r.text and "&lt;script&gt;" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp


def test_hostile_plugin_names_and_paths(host: Host, admin: httpx.Client,
                                        greeter_wasm: Path) -> None:
    host.app.plugins.load(greeter_wasm.read_bytes(), name=XSS)
    browser, _ = host.browser_session()
    html = browser.get("/plugins").text
    assert XSS not in html and "&lt;script&gt;" in html
    for name in ("..%2F..%2Fetc%2Fpasswd", "%2e%2e", "..", "%3Cscript%3E"):
        r = admin.delete(f"/api/v1/plugins/{name}")
        assert r.status_code in (404, 409), name
    assert (host.plugins_dir / "greeter-rust.wasm").is_file()
    with host.client() as c:  # no open redirect after sign-in
        c.get("/login")
        r = c.post("/login?next=//evil.example/x", data={
            "name": "admin", "password": PASSWORD, "csrf": c.cookies["omnicore_login_csrf"]})
        assert r.headers["location"] == "/"


def test_an_open_console_is_refused_off_loopback(tmp_path: Path) -> None:
    app = OmniApp("open", overrides={"data_dir": str(tmp_path),
                                     "console": {"auth": False, "host": "0.0.0.0", "port": 0}})
    app.add_module(ConsoleModule())
    with pytest.raises(ModuleError, match=r"console.auth is false"):
        app.start()


def test_an_open_console_on_loopback_lets_the_operator_in(tmp_path: Path) -> None:
    app = OmniApp("open", overrides={"data_dir": str(tmp_path), "plugins_dir": str(tmp_path),
                                     "console": {"auth": False, "port": 0}})
    module = ConsoleModule()
    app.add_module(module)
    with app:
        me = httpx.get(f"{module.url}/api/v1/me").json()
        assert me["role"] == "admin" and me["via"] == "open"


@pytest.mark.parametrize(("settings", "forwarded", "secure"), [
    ({}, None, False),                                          # plain http on loopback
    ({}, "https", True),                                        # a TLS proxy on this machine
    ({"trusted_proxies": []}, "https", False),                  # ... that nobody trusts
    ({"trusted_proxies": ["10.0.0.0/8"]}, "https", False),      # a proxy elsewhere
    ({"secure_cookies": True}, None, True),
    ({"secure_cookies": False}, "https", False),
], ids=["auto-http", "auto-proxy", "untrusted", "other-proxy", "on", "off"])
def test_cookies_are_secure_behind_tls(make_host: Callable[..., Host], settings: dict[str, Any],
                                       forwarded: str | None, secure: bool) -> None:
    h = make_host(greeter=False, **settings)
    headers = {"X-Forwarded-Proto": forwarded} if forwarded else {}
    with h.client() as c:
        page = c.get("/login", headers=headers)
        token = c.cookies["omnicore_login_csrf"]
        # Sent by hand: a client on plain http keeps a Secure cookie to itself.
        r = c.post("/login", data={"name": "admin", "password": PASSWORD, "csrf": token},
                   headers={**headers, "Cookie": f"omnicore_login_csrf={token}"})
        assert r.status_code == 303
        for cookie in (page.headers["set-cookie"], r.headers["set-cookie"]):
            assert ("; secure" in cookie.lower()) is secure, cookie
            assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
