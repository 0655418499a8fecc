"""Secrets through the console: names only; set and delete by an admin; and a planted value
never comes back in any answer, page, header, log record or file the host writes in clear."""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests.console.conftest import Host, error_of

SECRET = "sk_live_9c2f7a41e8b3d605"
OTHER = "pa$$ w0rd/with+symbols&more="


def forms_of(value: str) -> list[str]:
    return [value, base64.b64encode(value.encode()).decode(), quote(value, safe=""),
            quote_plus(value), value.encode().hex()]


def test_set_list_replace_delete_through_the_api(host: Host, admin: httpx.Client) -> None:
    host.app.plugins.grant("greeter-rust", "secrets", {"expose": ["API_KEY", "UNSET"]})
    r = admin.put("/api/v1/secrets/API_KEY", json={"value": SECRET})
    assert r.status_code == 200
    assert r.json() == {"name": "API_KEY", "created": True, "exposed_to": ["greeter-rust"]}
    assert host.app.secrets.text("API_KEY") == SECRET  # stored, and stored as sent
    r = admin.put("/api/v1/secrets/API_KEY", json={"value": OTHER})
    assert r.json()["created"] is False and host.app.secrets.text("API_KEY") == OTHER
    raw = base64.b64encode(b"\x00\xffbin").decode()
    r = admin.put("/api/v1/secrets/bin.key", json={"value": raw, "encoding": "base64"})
    assert r.status_code == 200 and host.app.secrets.get("bin.key") == b"\x00\xffbin"

    listed = admin.get("/api/v1/secrets").json()
    assert listed["total"] == 2
    assert listed["items"] == [{"name": "API_KEY", "exposed_to": ["greeter-rust"]},
                               {"name": "bin.key", "exposed_to": []}]

    assert admin.delete("/api/v1/secrets/bin.key").status_code == 204
    r = admin.delete("/api/v1/secrets/bin.key")
    assert r.status_code == 404 and error_of(r)["type"] == "SecretNotFound"
    assert host.app.secrets.names() == ["API_KEY"]


def test_bad_input_is_refused_and_nothing_is_written(host: Host, admin: httpx.Client) -> None:
    cases = [
        ("bad name!", {"value": "x"}, 422),
        ("A" * 129, {"value": "x"}, 422),
        ("OK", {"value": 5}, 422),
        ("OK", {"value": ""}, 422),
        ("OK", {"value": "%%%", "encoding": "base64"}, 422),
        ("OK", {"value": "x", "encoding": "rot13"}, 422),
        ("OK", {"value": "x" * (64 * 1024 + 1)}, 413),
    ]
    for name, body, status in cases:
        r = admin.put(f"/api/v1/secrets/{quote(name)}", json=body)
        assert r.status_code == status, (name, r.text)
        error_of(r)
    r = admin.put("/api/v1/secrets/OK", content=b"{not json",
                  headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)["type"] == "InvalidJson"
    # The server answers 413 as soon as the body passes its limit and may close the
    # connection before the client has sent it all: either way, nothing is stored.
    try:
        r = admin.put("/api/v1/secrets/OK", content=b"x" * (2 << 20))
        assert r.status_code == 413
    except httpx.RemoteProtocolError:
        pass
    assert host.app.secrets.names() == []
    assert admin.delete("/api/v1/secrets/..%2F..%2Fetc").status_code in (404, 422)


def test_viewers_see_names_and_cannot_change_them(host: Host) -> None:
    host.app.secrets.set("DB_URL", SECRET)
    with host.client(host.viewer_token) as viewer:
        assert viewer.get("/api/v1/secrets").json()["items"][0]["name"] == "DB_URL"
        for method, body in (("PUT", {"value": "x"}), ("DELETE", None)):
            r = viewer.request(method, "/api/v1/secrets/DB_URL", json=body)
            assert r.status_code == 403 and "viewer" in str(error_of(r)["message"])
    c, _csrf = host.browser_session("viewer")
    page = c.get("/secrets")
    assert page.status_code == 200 and "DB_URL" in page.text
    assert 'id="secret-form"' not in page.text and "Delete" not in page.text
    r = c.post("/secrets", data={"action": "delete", "name": "DB_URL", "csrf": _csrf})
    assert r.status_code == 403
    assert host.app.secrets.text("DB_URL") == SECRET


def test_the_page_sets_and_deletes_with_csrf(host: Host) -> None:
    host.app.plugins.grant("greeter-rust", "secrets", {"expose": ["WANTED"]})
    c, csrf = host.browser_session()
    r = c.post("/secrets", data={"action": "set", "name": "TOKEN", "value": SECRET})
    assert r.status_code == 403 and "TOKEN" not in host.app.secrets.names()  # no CSRF token
    r = c.post("/secrets", data={"action": "set", "name": "TOKEN", "value": SECRET,
                                 "csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/secrets?done=secret-set"
    page = c.get(r.headers["location"])
    assert "Secret saved" in page.text and 'data-secret="TOKEN"' in page.text
    assert 'id="wanted"' in page.text and "WANTED" in page.text  # exposed, not set
    # A bad name: the error names the problem and the value field stays empty.
    r = c.post("/secrets", data={"action": "set", "name": "no spaces", "value": OTHER,
                                 "csrf": csrf})
    assert r.status_code == 422 and "bad secret name" in r.text
    assert 'name="value" type="password" required' in r.text
    r = c.post("/secrets", data={"action": "delete", "name": "TOKEN", "csrf": csrf})
    assert r.status_code == 303 and host.app.secrets.names() == []
    r = c.post("/secrets", data={"action": "delete", "name": "TOKEN", "csrf": csrf})
    assert r.status_code == 404
    r = c.post("/secrets", content=b"csrf=" + b"x" * (300 * 1024),
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413


def test_a_planted_value_never_comes_back(host: Host, admin: httpx.Client,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """Drive every secrets endpoint and page (and the ones that show settings, logs and
    events), keep every answer, and grep them, the log and the data folder's files."""
    caplog.set_level(logging.DEBUG)
    host.app.plugins.grant("greeter-rust", "secrets", {"expose": ["PLANTED"]})
    seen: list[httpx.Response] = []
    seen.append(admin.put("/api/v1/secrets/PLANTED", json={"value": SECRET}))
    seen.append(admin.put("/api/v1/secrets/PLANTED", json={"value": SECRET}))
    seen.append(admin.put("/api/v1/secrets/bad%20name", json={"value": SECRET}))
    seen.append(admin.put("/api/v1/secrets/B64", json={
        "value": base64.b64encode(SECRET.encode()).decode(), "encoding": "base64"}))
    seen.append(admin.put("/api/v1/secrets/BIG", json={"value": SECRET * 5000}))
    c, csrf = host.browser_session()
    seen.append(c.post("/secrets", data={"action": "set", "name": "FORM", "value": SECRET,
                                         "csrf": csrf}, follow_redirects=True))
    seen.append(c.post("/secrets", data={"action": "set", "name": "bad name", "value": SECRET,
                                         "csrf": csrf}))
    seen.append(c.post("/secrets", data={"action": "set", "name": "FORM", "value": SECRET}))
    seen.append(c.post("/secrets", data={"action": "frobnicate", "name": "FORM",
                                         "value": SECRET, "csrf": csrf}))
    for path in ("/api/v1/secrets", "/secrets", "/api/v1/settings", "/settings",
                 "/api/v1/events", "/logs", "/api/v1/plugins/greeter-rust",
                 "/plugins/greeter-rust", "/api/v1/info", "/metrics", "/"):
        seen.append(admin.get(path))
        seen.append(c.get(path))
    seen.append(admin.delete("/api/v1/secrets/B64"))
    seen.append(c.post("/secrets", data={"action": "delete", "name": "FORM", "csrf": csrf},
                       follow_redirects=True))
    assert sorted(host.app.secrets.names()) == ["PLANTED"]
    assert host.app.secrets.text("PLANTED") == SECRET

    assert host.module.console is not None
    feed = [e.message for e in host.module.console.feed.recent(limit=None)]
    assert any("secret PLANTED" in line for line in feed)  # the audit line, by name
    texts = [r.text for r in seen] + [str(r.headers) for r in seen] + feed + [caplog.text]
    files = [p.read_bytes() for p in Path(host.app.data_dir).rglob("*") if p.is_file()]
    for form in forms_of(SECRET):
        for text in texts:
            assert form not in text
        for blob in files:
            assert form.encode() not in blob
