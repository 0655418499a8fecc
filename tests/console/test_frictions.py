"""The console's frictions removed: grant everything requested after a review, notices and
errors beside the form they belong to (never a stale success above a new error), limits saved
(in the operator's settings) only where they differ from the defaults, console wording for a
plugin that needs grants, and a failed plugin's reason in the list."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from omnicore.sandbox.limits import Limits
from tests.console.conftest import Host
from tests.console.test_jobs import ticker_wasm


def _card(html: str, card: str) -> str:
    found = re.search(rf'<section class="card[^"]*" id="{card}">(.*?)</section>', html, re.S)
    assert found is not None, card
    return found[1]


def test_grant_all_requested_after_a_review(make_host: Callable[..., Host]) -> None:
    host = make_host(greeter=False)
    (host.plugins_dir / "ticker.wasm").write_bytes(ticker_wasm())
    folder = host.app.plugins.folder
    assert folder is not None
    folder.sync()
    assert sorted(host.app.plugins.get("ticker").missing) == ["kv", "tasks"]
    browser, csrf = host.browser_session()
    page = browser.get("/plugins/ticker").text
    assert "--grant" not in page and "Review and grant them below" in page
    review = _card(page, "capabilities")
    assert "Grant all 2 requested" in review
    for cap in ("kv", "tasks"):  # each with what it grants and its own options field
        assert f'name="options_{cap}"' in review
    assert "key-value" in review.lower() or "keys" in review.lower()

    r = browser.post("/plugins/ticker", data={"csrf": csrf, "action": "grant-all",
                                              "options_kv": "{bad json",
                                              "options_tasks": ""})
    assert r.status_code == 422
    assert 'role="alert"' in _card(r.text, "capabilities")  # the error sits by its form
    assert host.app.plugins.get("ticker").state == "needs-grant"  # nothing half-granted

    r = browser.post("/plugins/ticker", data={"csrf": csrf, "action": "grant-all",
                                              "options_kv": "", "options_tasks": "{}"})
    assert r.status_code == 303 and r.headers["location"].endswith("done=granted-all")
    assert host.app.plugins.get("ticker").state == "loaded"
    page = browser.get(r.headers["location"]).text
    assert "Granted everything it requested." in _card(page, "capabilities")
    assert page.count('class="notice"') == 1  # not repeated at the top
    verbs = [e["subject"] for e in browser.get("/api/v1/audit").json()["items"]]
    assert sorted(verbs) == ["kv", "tasks"]


def test_a_new_error_replaces_the_last_success_beside_its_form(host: Host) -> None:
    browser, csrf = host.browser_session()
    url = "/plugins/greeter-rust"
    r = browser.post(url, data={"csrf": csrf, "action": "grant", "capability": "config",
                                "options": "{}"})
    assert r.status_code == 303
    done_url = r.headers["location"]
    assert "Granted." in _card(browser.get(done_url).text, "capabilities")
    # The config form posts back to the page's URL, ?done=granted included.
    r = browser.post(done_url, data={"csrf": csrf, "action": "config", "config": "[1, 2]"})
    assert r.status_code == 422
    assert "Granted." not in r.text
    config = _card(r.text, "config")
    assert 'role="alert"' in config and "must be a JSON object" in config
    assert 'role="alert"' not in _card(r.text, "capabilities")


def test_limits_keep_only_what_differs_from_the_defaults(host: Host) -> None:
    browser, csrf = host.browser_session()
    # The host's defaults: the product's, with the app config's sandbox.limits over them
    # (the tests' timeout_ms is 10 s, not the product's 1 s: tests/conftest.py). A form
    # compared with the product's wrote timeout_ms 10000 back as the plugin's own, and an
    # operator's later change of the app's default never reached the plugin.
    defaults = Limits().merged(host.app.config.sandbox.limits.model_dump()).as_dict()
    form = {f"limit_{k}": "" if v is None else str(v) for k, v in defaults.items()}
    form["limit_timeout_ms"] = "900"
    r = browser.post("/plugins/greeter-rust", data={"csrf": csrf, "action": "limits", **form})
    assert r.status_code == 303, r.text
    operator = host.app.plugins.operator
    assert operator is not None and operator.doc("greeter-rust")["limits"] == {
        "timeout_ms": 900}
    assert "Limits saved and live." in _card(browser.get(r.headers["location"]).text,
                                             "limits")
    # Back to the default: the key leaves the sidecar.
    form["limit_timeout_ms"] = str(defaults["timeout_ms"])
    browser.post("/plugins/greeter-rust", data={"csrf": csrf, "action": "limits", **form})
    assert operator.doc("greeter-rust")["limits"] == {}
    limits = host.app.plugins.get("greeter-rust").limits
    assert limits is not None and limits.as_dict()["timeout_ms"] == defaults["timeout_ms"]


def test_isolation_is_chosen_in_the_limits_form(host: Host) -> None:
    browser, csrf = host.browser_session()
    card = _card(browser.get("/plugins/greeter-rust").text, "limits")
    assert '<select name="limit_isolation"' in card and "<option selected>pooled" in card
    r = browser.post("/plugins/greeter-rust", data={"csrf": csrf, "action": "limits",
                                                   "limit_isolation": "per-call"})
    assert r.status_code == 303, r.text
    operator = host.app.plugins.operator
    assert operator is not None
    assert operator.doc("greeter-rust")["limits"] == {"isolation": "per-call"}
    limits = host.app.plugins.get("greeter-rust").limits
    assert limits is not None and limits.per_call
    r = browser.post("/plugins/greeter-rust", data={"csrf": csrf, "action": "limits",
                                                   "limit_isolation": "fresh"})
    assert r.status_code == 422 and "limits.isolation must be one of" in r.text
    assert operator.doc("greeter-rust")["limits"] == {"isolation": "per-call"}


def test_a_failed_plugin_says_why_in_the_list(host: Host) -> None:
    (host.plugins_dir / "broken.wasm").write_bytes(b"\0asm\x01\0\0\0 not really a module")
    folder = host.app.plugins.folder
    assert folder is not None
    folder.sync()
    reason = host.app.plugins.get("broken").last_error
    assert reason
    browser, _ = host.browser_session()
    page = browser.get("/plugins").text
    row = re.search(r'<a href="/plugins/broken">broken</a>.*?</tr>', page, re.S)
    assert row is not None and '<p class="reason">' in row[0]
    assert reason[:40].replace("'", "&#39;") in row[0]
    assert "needs config" in page  # the greeter, not granted yet, says what it lacks


def test_the_plugin_list_pages_by_100_and_filters(host: Host, greeter_wasm: Path) -> None:
    data = greeter_wasm.read_bytes()
    for i in range(120):
        host.app.plugins.load(data, name=f"extra-{i:03d}")
    browser, _ = host.browser_session()
    rows = re.compile(r'<td><a href="/plugins/([^"]+)">')
    first = browser.get("/plugins").text
    assert len(rows.findall(first)) == 100 and "121 plugins" in first
    nxt = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert nxt is not None and 'rel="prev"' not in first
    second = browser.get(nxt[1].replace("&amp;", "&")).text
    assert len(rows.findall(second)) == 21 and 'rel="next"' not in second
    assert not set(rows.findall(first)) & set(rows.findall(second))
    assert rows.findall(browser.get("/plugins", params={"q": "EXTRA-11"}).text) == [
        f"extra-11{i}" for i in range(10)]
    needs = browser.get("/plugins", params={"state": "needs-grant"}).text
    assert len(rows.findall(needs)) == 100 and "No plugins match" not in needs
    none = browser.get("/plugins", params={"state": "failed"}).text
    assert rows.findall(none) == [] and "No plugins match these filters." in none
    for bad in ({"page": "0"}, {"page": "x"}, {"page": "99999999"}):
        assert browser.get("/plugins", params=bad).status_code == 200
