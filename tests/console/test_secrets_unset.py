"""The Secrets page flags a connector's secret that was never set (each connector's row, and
a list of them linking to the form with the name filled in), and saying a database
connector's secret is saved says that its open connections keep the old value."""

from __future__ import annotations

import re

import httpx

from tests.console.conftest import Host


def test_a_connectors_secret_never_set_is_flagged(host: Host, admin: httpx.Client) -> None:
    app = host.app
    app.secrets.set("api-token", "t0ken")
    app.data.apply_connectors({
        "api": {"base_url": "https://api.example.com/v1", "auth": "bearer",
                "secret": "api-token"},
        "github": {"base_url": "https://api.github.com", "auth": "bearer", "secret": "gh-pat"},
        "orders": {"kind": "postgres", "url": "postgresql://shop@127.0.0.1:9/shop",
                   "secret": "orders-pw"},
        "stock": {"kind": "mysql", "url": "mysql://shop@127.0.0.1:9/shop",
                  "secret": "orders-pw"},
        "cache": {"kind": "redis", "url": "redis://127.0.0.1:9"},
    })
    listed = {c["name"]: c["secret_set"]
              for c in admin.get("/api/v1/connectors").json()["items"]}
    assert listed == {"api": True, "github": False, "orders": False, "stock": False,
                      "cache": None}

    page = admin.get("/secrets").text
    flagged = re.search(r'<p class="warn" id="connector-secrets-unset">(.*?)</p>', page, re.S)
    assert flagged is not None
    text = re.sub(r"<[^>]+>", "", flagged[1])
    assert " ".join(text.split()) == (
        "Connectors name secrets that are not set, so each of their calls fails: gh-pat "
        "(github), orders-pw (orders, stock).")
    assert 'href="/secrets?name=orders-pw#secret-form"' in flagged[1]
    for name, flag in (("github", True), ("orders", True), ("api", False), ("cache", False)):
        row = re.search(rf'<tr data-connector="{name}">.*?</tr>', page, re.S)
        assert row is not None and ("not set" in row[0]) is flag, name
    # The link fills the form's name.
    form = admin.get("/secrets?name=orders-pw").text
    assert re.search(r'<input name="name" value="orders-pw"', form)


def test_saving_a_database_connectors_secret_says_open_connections_keep_the_old(
        host: Host) -> None:
    host.app.data.apply_connectors({
        "orders": {"kind": "postgres", "url": "postgresql://shop@127.0.0.1:9/shop",
                   "secret": "orders-pw"}})
    browser, csrf = host.browser_session()
    r = browser.post("/secrets", data={"action": "set", "name": "orders-pw",
                                       "value": "s3cret", "csrf": csrf})
    assert r.status_code == 303
    page = browser.get(r.headers["location"]).text
    assert ("A database connector uses it: the connections it has open keep the value they "
            "were opened with, so a wrong password shows only when it opens a new one") in page
    assert 'id="connector-secrets-unset"' not in page
    # A secret no database connector uses: the plain notice.
    r = browser.post("/secrets", data={"action": "set", "name": "other", "value": "x",
                                       "csrf": csrf})
    page = browser.get(r.headers["location"]).text
    assert "Secret saved (its value is not shown)." in page
    assert "A database connector uses it" not in page
