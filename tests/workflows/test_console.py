"""Workflows in the console over real HTTP on 127.0.0.1: webhooks signed with HMAC, the API,
and the run view with its approval."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from omnicore.workflows import SIGNATURE_HEADER, sign_webhook
from tests.hosts import CHEAP_PASSWORD_HASH
from tests.waiting import eventually
from tests.workflows.conftest import app_dir

PASSWORD = "correct horse battery"
SECRET = b"whsec-0123456789"
FLOW = """\
format: omniflow/v1
name: hooked
triggers: [{webhook: orders/new, secret: HOOK}]
inputs:
  type: object
  properties: {name: {type: string}, qty: {type: integer, minimum: 1}}
  required: [name]
steps:
  - {id: greet, uses: plugin:greeter-rust/greet, with: {name: "${{ inputs.name }}"}}
  - {id: ok, needs: [greet], wait: {approval: {message: "Ship it?"}}}
outputs: {said: "${{ steps.greet.output.message }}", by: "${{ steps.ok.output.by }}"}
"""


def start(folder: Path) -> tuple[OmniApp, str]:
    app = OmniApp(config_path=folder / "omnicore.yaml", environ={}, entry_points=False,
                  overrides={"console": {"enabled": True, "port": 0,
                                        "password_hash": CHEAP_PASSWORD_HASH}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    assert module.console is not None and module.url is not None
    if module.console.auth.store.get("admin") is None:
        module.console.auth.store.add("admin", PASSWORD, "admin")
    app.secrets.set("HOOK", SECRET)
    return app, module.url


@pytest.fixture
def folder(tmp_path: Path, built_plugins: dict[str, Path]) -> Path:
    return app_dir(tmp_path / "app", {"greeter-rust": built_plugins["greeter-rust"]},
                   {"hooked.yaml": FLOW})


@pytest.fixture
def host(folder: Path) -> Iterator[tuple[OmniApp, str]]:
    app, url = start(folder)
    try:
        yield app, url
    finally:
        app.stop()


def post(url: str, body: bytes, signature: str | None) -> httpx.Response:
    headers = {SIGNATURE_HEADER: signature} if signature else {}
    return httpx.post(f"{url}/hooks/orders/new", content=body, headers=headers, timeout=30)


def test_webhook_signatures(host: tuple[OmniApp, str]) -> None:
    app, url = host
    body = json.dumps({"name": "Ada", "qty": 2}).encode()
    assert post(url, body, None).status_code == 401
    assert post(url, body, "t=1,v1=00").status_code == 401
    bad = sign_webhook(b"not-the-secret", body)
    assert post(url, body, bad).json() == {"error": "bad signature"}
    old = sign_webhook(SECRET, body, int(time.time()) - 3600)
    assert "replay window" in post(url, body, old).json()["error"]
    assert app.workflows.runs() == []                       # nothing started
    good = sign_webhook(SECRET, body)
    answer = post(url, body, good)
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run"]
    assert post(url, body, good).json() == {"error": "this signature was already used "
                                                     "(replay)"}
    invalid = json.dumps({"name": "Ada", "qty": 0}).encode()
    refused = post(url, invalid, sign_webhook(SECRET, invalid))
    assert refused.status_code == 422 and refused.json()["field"] == "qty"
    assert [r.id for r in app.workflows.runs()] == [run_id]
    run = app.workflows.get_run(run_id)
    assert run.started_by == "webhook:orders/new" and run.trigger["data"]["qty"] == 2
    assert httpx.post(f"{url}/hooks/nope", content=b"{}").status_code == 404


def test_hostile_signature_headers_are_refused_never_a_crash(
        host: tuple[OmniApp, str]) -> None:
    app, url = host
    body = json.dumps({"name": "Ada"}).encode()
    now = int(time.time())
    mac = sign_webhook(SECRET, body, now).split("v1=")[1]
    headers: list[bytes] = [
        f"t={'9' * 310},v1={mac}".encode(),              # OverflowError in the window check
        f"t=-{'9' * 310},v1={mac}".encode(),
        f"t={now},v1=é{mac[1:]}".encode(),               # TypeError in compare_digest
        f"t={now},v1=日本語".encode(),
        f"t={now},v1={mac[:-1]}\xff".encode("latin-1"),
        f"t=١٢٣٤,v1={mac}".encode(),                     # digits, but not ASCII ones
        f"t={now}.5,v1={mac}".encode(), f"t=1e9,v1={mac}".encode(),
        f"t={now},v1=".encode(), f"t={now}".encode(), f"v1={mac}".encode(),
        b"t=,v1=,", b",,,,", b"=" * 100, f"t={now},v1={'0' * 4000}".encode(),
        # padded fields around a wrong MAC (its last digit changed, never to itself)
        f"t= {now} ,v1= {mac[:-1]}{'1' if mac.endswith('0') else '0'}".encode(),
    ]
    for header in headers:
        r = httpx.post(f"{url}/hooks/orders/new", content=body, timeout=30,
                       headers={SIGNATURE_HEADER: header})
        assert r.status_code in (400, 401), (header[:60], r.status_code, r.text[:200])
    deep = b"[" * 200_000 + b"]" * 200_000
    r = post(url, deep, sign_webhook(SECRET, deep))
    assert r.status_code == 400 and "nested" in r.json()["error"]
    assert app.workflows.runs() == []


def test_a_delivery_is_not_accepted_again_after_a_restart(folder: Path) -> None:
    body = json.dumps({"name": "Ada"}).encode()
    signature = sign_webhook(SECRET, body)
    app, url = start(folder)
    try:
        assert post(url, body, signature).status_code == 202
    finally:
        app.stop()
    app, url = start(folder)
    try:
        r = post(url, body, signature)
        assert r.status_code == 401 and "replay" in r.json()["error"]
        assert post(url, body, sign_webhook(SECRET, body, int(time.time()) - 100)
                    ).status_code == 202                     # a new delivery is welcome
        assert len(app.workflows.runs()) == 2
        # Signatures are kept for the window only: older ones are forgotten on the next write.
        store, now = app.workflows.store, time.time()
        assert store.first_delivery("long-ago", now - 1000, 300)
        assert store.first_delivery("recent", now, 300)
        assert not store.first_delivery("recent", now, 300)
        assert store.first_delivery("long-ago", now, 300)
    finally:
        app.stop()


def signed_in(url: str) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=url, timeout=30)
    c.get("/login")
    r = c.post("/login", data={"name": "admin", "password": PASSWORD,
                               "csrf": c.cookies["omnicore_login_csrf"]})
    assert r.status_code == 303, r.text
    return c, c.get("/api/v1/me").json()["csrf"]


def test_start_from_the_form_approve_in_the_run_view(host: tuple[OmniApp, str]) -> None:
    app, url = host
    c, csrf = signed_in(url)
    listing = c.get("/workflows")
    assert listing.status_code == 200 and "hooked" in listing.text
    page = c.get("/workflows/hooked")
    assert 'name="name"' in page.text and 'name="qty"' in page.text   # form from the schema
    assert f"{url}/hooks/orders/new" in page.text and SIGNATURE_HEADER in page.text
    bad = c.post("/workflows/hooked", data={"csrf": csrf, "name": "Ada", "qty": "many"})
    assert bad.status_code == 303 and "error=" in bad.headers["location"]
    started = c.post("/workflows/hooked", data={"csrf": csrf, "name": "Grace", "qty": "3"})
    assert started.status_code == 303
    run_path = started.headers["location"]
    run_id = int(re.findall(r"\d+", run_path)[0])
    eventually(lambda: (s := app.workflows.store.step(run_id, "ok")) is not None
               and s.state == "waiting", "the approval")
    view = c.get(run_path).text
    assert "Ship it?" in view and ">Approve</button>" in view and "Hello, Grace!" in view
    assert c.post(f"{run_path}/approve", data={"step": "ok", "decision": "approve"}
                  ).status_code == 403                                  # no CSRF token
    done = c.post(f"{run_path}/approve", data={"csrf": csrf, "step": "ok",
                                               "decision": "approve"})
    assert done.status_code == 303
    run = app.workflows.wait(run_id, 30)
    assert run.state == "succeeded" and run.outputs == {"said": "Hello, Grace!",
                                                        "by": "console:admin"}
    doc = c.get(f"/api/v1/workflow-runs/{run_id}").json()
    assert doc["state"] == "succeeded"
    assert any(h["kind"] == "step.succeeded" and h["actor"] == "console:admin"
               for h in doc["history"])
    c.close()


def test_the_api_starts_runs_and_refuses_bad_input(host: tuple[OmniApp, str]) -> None:
    _app, url = host
    c, csrf = signed_in(url)
    h = {"x-csrf-token": csrf}
    assert c.get("/api/v1/workflows").json()["items"][0]["name"] == "hooked"
    r = c.post("/api/v1/workflows/hooked/runs", json={"inputs": {}}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "name"
    assert c.post("/api/v1/workflows/nope/runs", json={}, headers=h).status_code == 404
    r = c.post("/api/v1/workflows/hooked/runs", json={"inputs": {"name": "Bo"}}, headers=h)
    assert r.status_code == 201
    run_id = r.json()["id"]
    assert c.post(f"/api/v1/workflow-runs/{run_id}/cancel", json={}, headers=h
                  ).json()["state"] == "cancelled"
    assert c.post(f"/api/v1/workflow-runs/{run_id}/cancel", json={}, headers=h
                  ).status_code == 409
    assert c.get("/api/v1/workflow-runs?state=cancelled").json()["total"] == 1
    c.close()
