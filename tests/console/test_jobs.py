"""Jobs in the console (console/jobs.py): the Jobs page (paged, filtered, duration and
attempts; ``/tasks`` its old path), the API's jobs under both names, and schedules (next run,
run now, pause, resume), on a real host with a WAT plugin that subscribes and schedules."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import wasmtime

from omnicore.sandbox import wasmbin
from tests.console.conftest import Host
from tests.waiting import eventually

TICKER_WAT = r"""
(module
  (import "omnicore:kv" "incr" (func $incr (param i32 i32 i64 i32) (result i32)))
  (import "omnicore:kv" "set" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:tasks" "enqueue" (func $enq (param i32 i32 i32 i32 i64) (result i64)))
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 0x10000))
  (data (i32.const 0x100) "seen")
  (data (i32.const 0x110) "last")
  (data (i32.const 0x120) "ticks")
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (func (export "on_event") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (i32.const 0x100) (i32.const 4) (i64.const 1) (i32.const 0x8000)))
    (drop (call $set (i32.const 0x110) (i32.const 4) (local.get $p) (local.get $n)))
    (i64.const 0))
  (func (export "tick") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (i32.const 0x120) (i32.const 5) (i64.const 1) (i32.const 0x8000)))
    (i64.const 0))
  (func $unused (drop (call $enq (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                                 (i64.const 0))))
)
"""


def ticker_wasm() -> bytes:
    manifest = {"name": "ticker",
                "subscriptions": [{"topic": "shop.*", "handler": "on_event"}],
                "schedules": [{"name": "hourly", "handler": "tick", "every": "1h"}]}
    return wasmbin.set_custom_section(wasmtime.wat2wasm(TICKER_WAT), "omnicore.manifest",
                                      json.dumps(manifest).encode())


@pytest.fixture
def ticker(make_host: Callable[..., Host]) -> Iterator[Host]:
    host = make_host(greeter=False)
    (host.plugins_dir / "ticker.toml").write_text('grants = ["kv", "tasks", "events"]\n')
    (host.plugins_dir / "ticker.wasm").write_bytes(ticker_wasm())
    folder = host.app.plugins.folder
    assert folder is not None
    folder.sync()
    assert host.app.plugins.get("ticker").state == "loaded"
    yield host


def test_schedules_show_next_run_and_run_now_pause_resume(ticker: Host) -> None:
    admin = ticker.client(ticker.admin_token)

    def sched() -> dict[str, object]:
        items = admin.get("/api/v1/schedules").json()["items"]
        assert [s["name"] for s in items] == ["hourly"]
        return dict(items[0])

    eventually(lambda: sched()["next_run"])
    first = sched()
    assert not first["paused"] and 3500 < float(first["next_run"]) - time.time() <= 3600  # type: ignore[arg-type]
    base = "/api/v1/schedules/ticker/hourly"
    r = admin.post(f"{base}/run")
    assert r.status_code == 200 and r.json()["changed"]
    eventually(lambda: ticker.app.kv.for_plugin("ticker").get("ticks") == b"1")
    eventually(lambda: sched()["last_state"] == "succeeded")
    assert sched()["next_run"] == first["next_run"]  # running now keeps the schedule's time
    paused = admin.post(f"{base}/pause").json()
    assert (paused["paused"], paused["next_run"], paused["changed"]) == (True, None, True)
    assert admin.post(f"{base}/pause").json()["changed"] is False
    browser, csrf = ticker.browser_session()
    row = re.search(r'<tr data-schedule="ticker/hourly">(.*?)</tr>',
                    browser.get("/tasks").text, re.S)
    assert row is not None and ">paused<" in row[1] and ">Resume<" in row[1]
    assert ">Run now<" in row[1]
    r = browser.post("/schedules/ticker/hourly/resume", data={"csrf": csrf,
                                                              "back": "/plugins/ticker"})
    assert r.status_code == 303 and r.headers["location"].startswith("/plugins/ticker?")
    resumed = sched()
    assert not resumed["paused"] and float(resumed["next_run"]) > time.time() + 3000  # type: ignore[arg-type]
    plugin_page = browser.get("/plugins/ticker").text
    assert 'data-schedule="ticker/hourly"' in plugin_page and ">Pause<" in plugin_page
    assert "shop.*" in plugin_page and 'id="recent-jobs"' in plugin_page
    assert admin.post("/api/v1/schedules/ticker/nope/run").status_code == 422
    assert admin.post(f"{base}/explode").status_code in (404, 405)
    with ticker.client(ticker.viewer_token) as viewer:
        assert viewer.post(f"{base}/pause").status_code == 403
    verbs = [a["verb"] for a in admin.get("/api/v1/audit",
                                          params={"plugin": "ticker"}).json()["items"]]
    assert verbs == ["schedule.resume", "schedule.pause", "schedule.run"]


def test_a_schedules_last_run_is_its_own_not_one_of_a_longer_name(ticker: Host) -> None:
    """``hourly``'s last run is a job of ``schedule:hourly`` or its run now, never one of a
    schedule whose name starts the same (``schedule:hourly2``: a prefix match took it)."""
    admin = ticker.client(ticker.admin_token)

    def hourly() -> dict[str, object]:
        return dict(admin.get("/api/v1/schedules").json()["items"][0])

    other = ticker.app.jobs.enqueue("ticker", "tick", b"", source="schedule:hourly2")
    _job(ticker, other, "succeeded")
    assert hourly()["last_run"] is None
    mine = ticker.app.jobs.enqueue("ticker", "tick", b"", source="schedule:hourly:now")
    _job(ticker, mine, "succeeded")
    assert hourly()["last_state"] == "succeeded"


def test_jobs_page_pages_by_100_filters_and_shows_duration(ticker: Host) -> None:
    jobs = ticker.app.jobs
    for i in range(230):
        jobs.enqueue("ticker", "tick" if i % 2 else "on_event", b"", delay_s=3600)
    done_id = jobs.enqueue("ticker", "tick", b"")
    eventually(lambda: (j := jobs.get(done_id)) is not None and j.state == "succeeded")
    browser, _ = ticker.browser_session()
    first = browser.get("/tasks").text
    assert first.count('<tr data-job="') == 100
    assert 'rel="next"' in first and 'rel="prev"' not in first
    assert re.search(r'<select name="plugin">', first) and re.search(r'<select name="state">',
                                                                      first)
    row = re.search(rf'<tr data-job="{done_id}">(.*?)</tr>', first, re.S)
    assert row is not None and ">succeeded<" in row[1] and ">1/" in row[1]
    assert re.search(r'data-label="Duration" class="nowrap">[\d.]+ (µs|ms)<', row[1])
    nxt = re.search(r'<a rel="next" href="([^"]+)"', first)
    assert nxt is not None
    second = browser.get(nxt[1].replace("&amp;", "&")).text
    ids = [int(i) for i in re.findall(r'<tr data-job="(\d+)"', second)]
    assert len(ids) == 100 and max(ids) < min(
        int(i) for i in re.findall(r'<tr data-job="(\d+)"', first))  # older, no overlap
    third = browser.get("/tasks", params={"page": 3}).text
    assert third.count('<tr data-job="') == 31 and 'rel="next"' not in third
    queued = browser.get("/tasks", params={"state": "queued", "handler": "on_event"}).text
    assert queued.count('<tr data-job="') == 100 and 'rel="next"' in queued
    last = browser.get("/tasks", params={"state": "queued", "handler": "on_event",
                                         "page": 2}).text
    assert last.count('<tr data-job="') == 15
    assert browser.get("/tasks", params={"plugin": "nobody"}).text.count(
        '<tr data-job="') == 0
    for bad in ({"page": "0"}, {"page": "x"}, {"state": "weird"}):
        assert browser.get("/tasks", params=bad).status_code == 200


def test_the_old_task_paths_answer_as_the_job_paths_do(ticker: Host) -> None:
    jobs = ticker.app.jobs
    later = jobs.enqueue("unloaded", "later", b"", delay_s=3600)  # accepted: not loaded
    with ticker.client(ticker.admin_token) as admin:
        for word in ("jobs", "tasks"):
            listed = admin.get(f"/api/v1/{word}", params={"state": "queued"}).json()
            assert [j["id"] for j in listed["items"]] == [later]
        assert admin.post(f"/api/v1/tasks/{later}/cancel").json() == {"id": later,
                                                                       "cancelled": True}
        assert admin.post(f"/api/v1/jobs/{later}/retry").json() == {"id": later,
                                                                    "retried": True}
        assert admin.post(f"/api/v1/jobs/{later}/retry").status_code == 409
    browser, csrf = ticker.browser_session()
    new, old = browser.get("/jobs"), browser.get("/tasks")
    assert new.status_code == old.status_code == 200 and "<h1>Jobs</h1>" in old.text
    assert f'<tr data-job="{later}">' in new.text and 'href="/jobs"' in new.text
    r = browser.post(f"/tasks/{later}/cancel", data={"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/jobs?done=cancelled"
    assert "Job cancelled." in browser.get(r.headers["location"]).text


def _job(host: Host, job_id: int, state: str) -> dict[str, object]:
    found: dict[str, object] = {}

    def settled() -> bool:
        job = host.app.jobs.get(job_id)
        found.update(job.as_dict() if job is not None else {})
        return found.get("state") == state
    eventually(settled)
    return found


def test_a_job_enqueued_over_rest_runs_and_keeps_its_owner(ticker: Host) -> None:
    me = ticker.app.runtime_id
    with ticker.client(ticker.admin_token) as admin:
        r = admin.post("/api/v1/jobs", json={"plugin": "ticker", "handler": "tick",
                                             "payload": {"n": 1}})
        assert r.status_code == 201, r.text
        made = r.json()
        assert made == {"id": made["id"], "plugin": "ticker", "handler": "tick",
                        "created": True}
        done = _job(ticker, made["id"], "succeeded")
        assert done["owner"] == me and done["runs"] == [me]  # not null once finished
        assert done["payload"] == '{"n":1}' and done["source"] == "operator"
        listed = admin.get("/api/v1/jobs", params={"state": "succeeded"}).json()["items"]
        assert [(j["id"], j["owner"]) for j in listed] == [(made["id"], me)]
        later = admin.post("/api/v1/jobs", json={
            "plugin": "ticker", "handler": "tick", "payload": "aGk=", "encoding": "base64",
            "delay_s": 3600}).json()
        queued = ticker.app.jobs.get(later["id"])
        assert queued is not None and queued.payload == b"hi" and queued.owner is None
        assert queued.run_at > queued.created_at + 3599
        audit = admin.get("/api/v1/audit", params={"verb": "task.enqueue"}).json()["items"]
        assert [(a["target"], a["after"]["handler"]) for a in audit] == [
            (f"task:{later['id']}", "tick"), (f"task:{made['id']}", "tick")]
    browser, _csrf = ticker.browser_session()
    page = browser.get("/jobs").text
    assert "<th>Owner</th>" in page and f'title="ran on: {me}">{me}</td>' in page


def test_an_idempotency_key_gives_the_same_job(ticker: Host) -> None:
    body = {"plugin": "ticker", "handler": "tick", "payload": "once", "delay_s": 600}
    with ticker.client(ticker.admin_token) as admin:
        first = admin.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-7"})
        again = admin.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-7"})
        assert first.status_code == 201 and again.status_code == 200
        assert again.json() == {**first.json(), "created": False}
        other = admin.post("/api/v1/jobs", json={**body, "payload": "twice"},
                           headers={"Idempotency-Key": "order-7"})
        assert other.status_code == 409 and other.json()["error"]["type"] == "KeyReused"
        assert "order-7" in other.json()["error"]["message"]
        fresh = admin.post("/api/v1/jobs", json=body, headers={"Idempotency-Key": "order-8"})
        assert fresh.status_code == 201 and fresh.json()["id"] != first.json()["id"]
        assert len(ticker.app.jobs.list(plugin="ticker", state="queued")) == 2
        audit = admin.get("/api/v1/audit", params={"verb": "task.enqueue"}).json()["items"]
        assert [a["after"].get("key") for a in audit] == ["order-8", "order-7"]  # made only


def test_enqueue_refuses_what_it_cannot_run(ticker: Host) -> None:
    with ticker.client(ticker.admin_token) as admin:
        for body in ({"plugin": "ticker"}, {"plugin": "", "handler": "tick"},
                     {"plugin": "ticker", "handler": "tick", "delay_s": -1},
                     {"plugin": "ticker", "handler": "tick", "delay_s": True},
                     {"plugin": "ticker", "handler": "tick", "payload": "!",
                      "encoding": "base64"}):
            assert admin.post("/api/v1/jobs", json=body).status_code == 422, body
        nope = admin.post("/api/v1/jobs", json={"plugin": "ticker", "handler": "nope"})
        assert nope.status_code == 404 and "its handlers: on_event, tick" in nope.text
        long_key = admin.post("/api/v1/jobs", json={"plugin": "ticker", "handler": "tick"},
                              headers={"Idempotency-Key": "k" * 256})
        assert long_key.status_code == 422
        # The hosts key durable event deliveries so: a client cannot take an event's key.
        taken = admin.post("/api/v1/jobs", json={"plugin": "ticker", "handler": "tick"},
                           headers={"Idempotency-Key": "omnicore:event:1:ticker:on_event"})
        assert taken.status_code == 422 and "may not begin with 'omnicore:event:'" in taken.text
    with ticker.client(ticker.viewer_token) as viewer:
        r = viewer.post("/api/v1/jobs", json={"plugin": "ticker", "handler": "tick"})
        assert r.status_code == 403
    assert ticker.app.jobs.list(plugin="ticker") == []


def test_a_batch_is_queued_in_one_go_or_not_at_all(ticker: Host) -> None:
    one = {"plugin": "ticker", "handler": "tick", "delay_s": 600}
    with ticker.client(ticker.admin_token) as admin:
        r = admin.post("/api/v1/jobs", json={"jobs": [one, {**one, "payload": "b"}]})
        assert r.status_code == 201 and r.json()["created"] is True
        ids = r.json()["ids"]
        assert [j.id for j in reversed(ticker.app.jobs.list(plugin="ticker"))] == ids
        bad = admin.post("/api/v1/jobs", json={"jobs": [one, {**one, "handler": "nope"}]})
        assert bad.status_code == 404  # the whole batch refused
        assert admin.post("/api/v1/jobs", json={"jobs": []}).status_code == 422
        assert admin.post("/api/v1/jobs", json={"jobs": [one]},
                          headers={"Idempotency-Key": "x"}).status_code == 422
        audit = admin.get("/api/v1/audit", params={"verb": "task.enqueue"}).json()["items"]
        assert [(a["target"], a["after"]["ids"]) for a in audit] == [(f"task:{ids[0]}", ids)]
    assert len(ticker.app.jobs.list(plugin="ticker")) == 2


def test_a_base64_payload_with_a_character_that_is_not_ascii_is_a_422(
        admin: httpx.Client) -> None:
    # Found by the OpenAPI fuzz test: base64 of a str refuses non-ASCII with ValueError.
    r = admin.post("/api/v1/jobs", json={"plugin": "greeter-rust", "handler": "greet",
                                         "payload": "héllo", "encoding": "base64"})
    assert r.status_code == 422 and "not valid base64" in r.json()["error"]["message"]
