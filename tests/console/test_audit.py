"""The audit trail: every change through the REST API, the pages and the ``omnicore`` CLI is an
entry naming who, the verb, the plugin and capability or key, before → after and from where;
secret values never reach it; ``GET /api/v1/audit`` filters, pages and exports."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.console.conftest import ROOT, Host

PLUGIN = "greeter-rust"


def log(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/audit", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_every_api_change_is_recorded_with_the_tokens_user(host: Host,
                                                            admin: httpx.Client) -> None:
    api = f"/api/v1/plugins/{PLUGIN}"
    assert admin.put(f"{api}/grants/config", json={"options": {}}).status_code == 200
    assert admin.put(f"{api}/config", json={"config": {"greeting": "hi",
                                                       "api_token": "tok-SECRET"}}
                     ).status_code == 200
    assert admin.put(f"{api}/limits", json={"limits": {"timeout_ms": 900}}).status_code == 200
    assert admin.put(f"{api}/enabled", json={"enabled": False}).status_code == 200
    assert admin.put(f"{api}/enabled", json={"enabled": True}).status_code == 200
    assert admin.post(f"{api}/reload").status_code == 200
    assert admin.delete(f"{api}/grants/config").status_code == 200
    assert admin.put("/api/v1/secrets/DB_PASSWORD",
                     json={"value": "hunter2-VALUE"}).status_code == 200
    assert admin.delete("/api/v1/secrets/DB_PASSWORD").status_code == 204
    host.app.kv.for_plugin(PLUGIN).set("k/1", b"12345")
    assert admin.delete(f"/api/v1/kv/{PLUGIN}/k/1").status_code == 204
    job = host.app.jobs.enqueue(PLUGIN, "greet", b"", delay_s=3600)
    assert admin.post(f"/api/v1/tasks/{job}/cancel").status_code == 200
    assert admin.post(f"/api/v1/tasks/{job}/retry").status_code == 200
    assert admin.post("/api/v1/users", json={"name": "cy", "password": "long enough pw",
                                             "role": "viewer"}).status_code == 201
    assert admin.delete("/api/v1/users/cy").status_code == 204
    token = admin.post("/api/v1/tokens", json={"label": "ci"}).json()
    assert admin.delete(f"/api/v1/tokens/{token['id']}").status_code == 204
    assert admin.delete(api).status_code == 204

    entries = log(admin)
    got = [(e["verb"], e["plugin"], e["subject"]) for e in reversed(entries)]
    assert got == [
        ("grant.add", PLUGIN, "config"), ("config.set", PLUGIN, ""),
        ("limits.set", PLUGIN, ""), ("plugin.disable", PLUGIN, ""),
        ("plugin.enable", PLUGIN, ""), ("plugin.reload", PLUGIN, ""),
        ("grant.revoke", PLUGIN, "config"), ("secret.set", "", "secret:DB_PASSWORD"),
        ("secret.delete", "", "secret:DB_PASSWORD"), ("kv.delete", PLUGIN, "k/1"),
        ("task.cancel", "", f"task:{job}"), ("task.retry", "", f"task:{job}"),
        ("user.add", "", "user:cy"), ("user.delete", "", "user:cy"),
        ("token.add", "", f"token:{token['id']}"), ("token.revoke", "", f"token:{token['id']}"),
        ("plugin.delete", PLUGIN, "")]
    assert {e["user"] for e in entries} == {"admin"}
    assert {e["origin"] for e in entries} == {"127.0.0.1, API token"}
    by_verb = {e["verb"]: e for e in entries}
    assert by_verb["grant.revoke"]["before"] == {} and by_verb["grant.revoke"]["after"] is None
    assert by_verb["limits.set"]["after"] == {"timeout_ms": 900}
    assert by_verb["config.set"]["after"] == {"greeting": "hi", "api_token": "****"}
    assert by_verb["kv.delete"]["before"] == {"bytes": 5}
    assert by_verb["plugin.delete"]["before"]["file"] == "greeter-rust.wasm"
    whole = json.dumps(entries)
    assert "hunter2-VALUE" not in whole and "tok-SECRET" not in whole


def test_a_refused_change_records_nothing(host: Host, admin: httpx.Client) -> None:
    api = f"/api/v1/plugins/{PLUGIN}"
    assert admin.put(f"{api}/limits", json={"limits": {"no_such": 1}}).status_code == 422
    assert admin.put(f"{api}/grants/nope", json={"options": {}}).status_code == 404
    assert admin.delete("/api/v1/secrets/NEVER_SET").status_code == 404
    assert admin.delete(f"/api/v1/kv/{PLUGIN}/absent").status_code == 404
    with host.client(host.viewer_token) as viewer:
        assert viewer.put(f"{api}/grants/config", json={"options": {}}).status_code == 403
        assert log(viewer) == []  # a viewer reads the log, and it is empty


def test_page_forms_are_recorded_with_the_signed_in_user(host: Host) -> None:
    browser, csrf = host.browser_session()
    url = f"/plugins/{PLUGIN}"
    for fields in ({"action": "grant", "capability": "config", "options": "{}"},
                   {"action": "limits", "limit_timeout_ms": "800"},
                   {"action": "config", "config": '{"password": "pw-SECRET"}'}):
        r = browser.post(url, data={"csrf": csrf, **fields})
        assert r.status_code == 303, r.text
    assert browser.post("/secrets", data={"csrf": csrf, "action": "set", "name": "K",
                                          "value": "v-SECRET"}).status_code == 303
    assert browser.post("/users", data={"csrf": csrf, "action": "new-token",
                                        "label": "laptop"}).status_code == 200
    host.app.kv.for_plugin(PLUGIN).set("doomed", b"x")
    assert browser.post("/data/delete", data={"csrf": csrf, "plugin": PLUGIN,
                                              "key": "doomed"}).status_code == 303
    entries = log(browser)
    assert [e["verb"] for e in reversed(entries)] == [
        "grant.add", "limits.set", "config.set", "secret.set", "token.add", "kv.delete"]
    assert {(e["user"], e["origin"]) for e in entries} == {("admin", "127.0.0.1")}
    assert "SECRET" not in json.dumps(entries)

    page = browser.get("/audit", params={"plugin": PLUGIN})
    assert page.status_code == 200
    rows = page.text.split('<tr data-id="')[1:]
    assert len(rows) == 4 and "grant.add" in rows[-1] and ">config<" in rows[-1]
    assert "kv.delete" in rows[0] and "doomed" in rows[0]


def test_filters_pages_and_exports(host: Host, admin: httpx.Client) -> None:
    by = host.app.storage.audit
    for i in range(7):
        by.append("ada" if i % 2 else "bo", "grant.add" if i < 4 else "config.set",
                  f"{PLUGIN}/config" if i % 3 else "other", None, i, "10.0.0.1", 100.0 + i)
    assert [e["after"] for e in log(admin, user="ada")] == [5, 3, 1]
    assert [e["after"] for e in log(admin, verb="config.")] == [6, 5, 4]
    assert [e["after"] for e in log(admin, plugin=PLUGIN)] == [5, 4, 2, 1]
    first = admin.get("/api/v1/audit", params={"limit": 3, "verb": "grant."}).json()
    assert [e["after"] for e in first["items"]] == [3, 2, 1]
    second = admin.get(first["next"]).json()
    assert [e["after"] for e in second["items"]] == [0] and second["next"] is None
    r = admin.get("/api/v1/audit", params={"format": "csv", "user": "bo"})
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [(row["user"], row["after"]) for row in rows] == [("bo", "6"), ("bo", "4"),
                                                              ("bo", "2"), ("bo", "0")]
    r = admin.get("/api/v1/audit", params={"format": "json", "plugin": "other"})
    assert [e["after"] for e in r.json()] == [6, 3, 0]
    for bad in ({"format": "xml"}, {"limit": "0"}, {"before_id": "x"}, {"since": "soon"}):
        assert admin.get("/api/v1/audit", params=bad).status_code == 400, bad
    with host.client() as anonymous:
        assert anonymous.get("/api/v1/audit").status_code == 401


def cli(appdir: Path, *args: str, stdin: str = "") -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "host")}
    r = subprocess.run([sys.executable, "-m", "omnicore.cli", *args, "--app", str(appdir)],
                       input=stdin, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_cli_changes_are_recorded_with_origin_cli(tmp_path: Path) -> None:
    from omnicore.storage import open_storage

    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "omnicore.yaml").write_text("name: t\ndata_dir: data\n")
    cli(appdir, "users", "add", "ada", "--password-stdin", stdin="long enough pw\n")
    cli(appdir, "users", "token", "ada", "--label", "ci")
    cli(appdir, "users", "passwd", "ada", "--password-stdin", stdin="another long pw\n")
    cli(appdir, "secrets", "set", "API_KEY", stdin="s3cret-VALUE\n")
    cli(appdir, "kv", "set", "echo", "greeting", "hello")
    cli(appdir, "kv", "delete", "echo", "greeting")
    cli(appdir, "tasks", "enqueue", "echo", "run", "{}", "--delay", "3600")
    cli(appdir, "users", "delete", "ada")
    cli(appdir, "settings", "grant", "echo", "kv")
    cli(appdir, "settings", "limits", "echo", "timeout_ms=900")
    cli(appdir, "settings", "revoke", "echo", "kv")
    cli(appdir, "settings", "disable", "echo")
    cli(appdir, "settings", "enable", "echo")
    storage = open_storage(appdir / "data")
    try:
        entries = storage.audit.entries()
    finally:
        storage.close()
    assert [(e.action, e.target) for e in reversed(entries)] == [
        ("user.add", "user:ada"), ("token.add", "token:1"), ("user.passwd", "user:ada"),
        ("secret.set", "secret:API_KEY"), ("kv.set", "echo/greeting"),
        ("kv.delete", "echo/greeting"), ("task.enqueue", "task:1"), ("user.delete", "user:ada"),
        ("grant.add", "echo/kv"), ("limits.set", "echo"), ("grant.revoke", "echo/kv"),
        ("plugin.disable", "echo"), ("plugin.enable", "echo")]
    assert {e.origin for e in entries} == {"cli"}
    assert len({e.actor for e in entries}) == 1 and entries[0].actor
    assert "s3cret-VALUE" not in json.dumps([e.as_dict() for e in entries])
    assert entries[6].after == {"plugin": "echo", "handler": "run", "bytes": 2}
    assert entries[3].after == {"timeout_ms": 900} and entries[2].before == {}


def test_the_first_admin_made_through_the_setup_link_is_recorded(
        make_host: Callable[..., Host]) -> None:
    host = make_host(users=False)
    assert host.module.console is not None
    token = host.module.console.auth.store.new_setup_link()
    with host.client() as browser:
        browser.get("/setup", params={"token": token})
        r = browser.post(f"/setup?token={token}", data={
            "name": "root", "password": "long enough pw", "password2": "long enough pw",
            "csrf": browser.cookies["omnicore_login_csrf"]})
        assert r.status_code == 303, r.text
        entries = log(browser)
    assert [(e["user"], e["verb"], e["subject"], e["after"], e["origin"]) for e in entries] == [
        ("root", "user.add", "user:root", {"role": "admin", "by": "setup link"}, "127.0.0.1")]
