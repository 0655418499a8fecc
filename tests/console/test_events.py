"""The Events page (subscribers with topic and inbox depth, publishing a test event) and
publishing through the API (console/events.py), on a real host with a WAT plugin that
subscribes (the ``ticker`` of test_jobs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.console.conftest import Host
from tests.console.test_jobs import ticker
from tests.waiting import eventually

__all__ = ["ticker"]  # the fixture, used by name


def test_events_page_names_subscribers_and_a_published_event_arrives(ticker: Host) -> None:
    browser, csrf = ticker.browser_session()
    page = browser.get("/events")
    assert page.status_code == 200
    row = re.search(r'<tr data-subscriber="ticker/on_event">(.*?)</tr>', page.text, re.S)
    assert row is not None
    assert "shop.*" in row[1] and 'data-label="Inbox depth" class="num">0<' in row[1]
    assert 'name="topic"' in page.text

    r = browser.post("/events", data={"csrf": csrf, "topic": "shop.order",
                                      "payload": '{"n": 7}'})
    assert r.status_code == 303 and r.headers["location"] == "/events?done=published"
    eventually(lambda: ticker.app.kv.for_plugin("ticker").get("last"))
    assert json.loads(ticker.app.kv.for_plugin("ticker").get("last") or b"") == {
        "topic": "shop.order", "data": {"n": 7}}
    feed = browser.get("/api/v1/events", params={"kind": "event"}).json()["items"]
    assert any(e["topic"] == "shop.order" for e in feed)
    text = browser.get("/events").text
    assert re.search(r'<code class="token">shop.order</code></td><td data-label="Events" '
                     r'class="num">1<', text)
    assert "ticker.on_event" in text
    subs = browser.get("/api/v1/subscriptions").json()["items"]
    assert subs == [{"plugin": "ticker", "handler": "on_event", "topic": "shop.*",
                     "durable": False, "inbox": 0, "delivered": 1, "failed": 0,
                     "dropped": 0}]
    audit = browser.get("/api/v1/audit", params={"verb": "event."}).json()["items"]
    assert [(a["user"], a["subject"]) for a in audit] == [("admin", "topic:shop.order")]


def test_publishing_refuses_bad_topics_and_viewers(ticker: Host) -> None:
    admin = ticker.client(ticker.admin_token)
    for topic in ("", "a..b", "sp ace", "x" * 201, "a.b/c"):
        r = admin.post("/api/v1/events", json={"topic": topic, "data": 1})
        assert r.status_code == 422, (topic, r.text)
    big = "x" * (ticker.app.subscriptions.max_payload_bytes + 1)
    assert admin.post("/api/v1/events", json={"topic": "a", "data": big}).status_code == 413
    with ticker.client(ticker.viewer_token) as viewer:
        assert viewer.post("/api/v1/events", json={"topic": "a"}).status_code == 403
    browser, csrf = ticker.browser_session()
    r = browser.post("/events", data={"csrf": csrf, "topic": "no spaces", "payload": ""})
    assert r.status_code == 422 and 'role="alert"' in r.text and "no spaces" in r.text, r.text
    assert ticker.app.storage.events.recent(10) == []
    for missing in ({}, {"data": 1}, {"topic": ""}):  # said to be missing, not invalid
        r = admin.post("/api/v1/events", json=missing)
        assert r.status_code == 422 and "a topic is needed" in r.text, (missing, r.text)
    r = admin.post("/api/v1/events", json={"topic": "shop.ok"})
    assert r.status_code == 202 and ticker.app.storage.events.recent(10)[0].topic == "shop.ok"


def test_an_event_published_through_the_api_carries_an_object_as_its_data(
        ticker: Host) -> None:
    # data is any JSON value (its schema is {}): an object's own fields are the event's, not
    # strays of the request body (they were refused with 422 "unknown field ... in 'data'").
    admin = ticker.client(ticker.admin_token)
    data = {"n": 7, "items": [{"sku": "a-1", "qty": 2}], "note": None}
    r = admin.post("/api/v1/events", json={"topic": "shop.order", "data": data})
    assert r.status_code == 202, r.text
    eventually(lambda: ticker.app.kv.for_plugin("ticker").get("last"))
    assert json.loads(ticker.app.kv.for_plugin("ticker").get("last") or b"") == {
        "topic": "shop.order", "data": data}
    # A stray beside data is still refused, naming it.
    r = admin.post("/api/v1/events", json={"topic": "shop.order", "data": data, "dat": 1})
    assert r.status_code == 422 and "'dat'" in r.text, r.text


def test_omnicore_events_publishes_through_the_running_host_and_lists_the_log(
        ticker: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from omnicore.cli import main

    monkeypatch.setenv("OMNICORE_TOKEN", ticker.admin_token)
    run = CliRunner().invoke
    result = run(main, ["events", "publish", "shop.order", '{"n": 8, "tags": ["a"]}',
                        "--remote", ticker.url])
    assert result.exit_code == 0 and "published on shop.order" in result.output, result.output
    eventually(lambda: ticker.app.kv.for_plugin("ticker").get("last"))
    assert json.loads(ticker.app.kv.for_plugin("ticker").get("last") or b"") == {
        "topic": "shop.order", "data": {"n": 8, "tags": ["a"]}}
    # DATA is JSON: a bare word is refused before anything is sent, saying how to quote it.
    result = run(main, ["events", "publish", "shop.order", "hello", "--remote", ticker.url])
    assert result.exit_code == 2 and "'\"hello\"'" in result.output, result.output
    # The host's own refusal, passed on.
    result = run(main, ["events", "publish", "no spaces", "--remote", ticker.url])
    assert result.exit_code == 1 and "is not valid" in result.output, result.output
    # No host serves this folder: say how to start one, and why it is needed.
    idle = tmp_path / "idle"
    idle.mkdir()
    (idle / "omnicore.yaml").write_text(f"name: idle\ndata_dir: {tmp_path / 'idle-data'}\n")
    result = run(main, ["events", "publish", "shop.order", "--app", str(idle)])
    assert result.exit_code == 1 and "omnicore run" in result.output, result.output
    # The log, from the app's storage: the operator's publish, newest first.
    app = tmp_path / "app"
    app.mkdir()
    (app / "omnicore.yaml").write_text(f"name: console-test\n"
                                       f"data_dir: {ticker.app.data_dir}\n")
    result = run(main, ["events", "list", "--app", str(app), "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.output)
    assert found[0]["topic"] == "shop.order" and json.loads(found[0]["data"]) == {
        "n": 8, "tags": ["a"]}
    assert found[0]["plugin"] in (None, "")
    result = run(main, ["events", "list", "--app", str(app), "--topic", "shop."])
    assert result.exit_code == 0 and "operator" in result.output and "shop.order" in \
        result.output, result.output
