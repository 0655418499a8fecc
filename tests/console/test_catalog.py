"""The plugin catalog in the REST API (``/api/v1/catalog``) and in ``/api/v1/instances``, on a
real console with real plugins (SQLite: one host; PostgreSQL clusters:
tests/cluster/test_catalog_cluster.py)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import httpx

from tests.console.conftest import ROOT, Host
from tests.waiting import eventually

COUNTER = ROOT / "build" / "plugins" / "counter-rust.wasm"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def rollout(admin: httpx.Client, name: str) -> dict[str, Any]:
    body = admin.get("/api/v1/instances").json()
    return next(r for r in body["catalog"] if r["name"] == name)


def test_publish_converge_grant_and_see_it_on_the_instances(host: Host,
                                                            admin: httpx.Client) -> None:
    wasm = COUNTER.read_bytes()
    digest = "sha256:" + hashlib.sha256(wasm).hexdigest()
    r = admin.put("/api/v1/catalog/counter-rust", json={
        "module": b64(wasm), "digest": digest,
        "sidecar": {"grants": ["kv", "config"], "config": {"start": 40}}})
    assert r.status_code == 201, r.text
    version = r.json()
    assert version["digest"] == digest and version["number"] == 1 and version["created"]
    assert version["published_by"] == "admin" and version["requested_grants"] == ["kv", "config"]
    # The sidecar's grants are requests: the plugin waits for the operator's.
    eventually(lambda: "counter-rust" in host.app.plugins)
    eventually(lambda: host.app.plugins.get("counter-rust").state == "needs-grant")
    eventually(lambda: rollout(admin, "counter-rust")["hosts"][0]["state"] == "needs-grant")
    assert rollout(admin, "counter-rust")["converged"] is False
    for cap in ("kv", "config"):
        assert admin.put(f"/api/v1/plugins/counter-rust/grants/{cap}",
                         json={"options": {}}).status_code == 200
    eventually(lambda: rollout(admin, "counter-rust")["converged"])
    body = admin.get("/api/v1/instances").json()
    assert body["converged"] is True
    (me,) = body["items"]
    report = me["plugins"]["counter-rust"]
    assert report["digest"] == report["wanted"] == digest and report["origin"] == "catalog"
    assert me["plugins"]["greeter-rust"]["origin"] == "file"  # the folder's, reported too
    out = admin.post("/api/v1/plugins/counter-rust/invoke", json={"handler": "count",
                                                                  "input": "{}"})
    assert out.status_code == 200 and out.json()["output"] == '{"count":41}'
    # Published again as it is: nothing new.
    again = admin.put("/api/v1/catalog/counter-rust", json={
        "module": b64(wasm), "sidecar": {"grants": ["kv", "config"], "config": {"start": 40}}})
    assert again.status_code == 200 and again.json()["created"] is False
    listed = admin.get("/api/v1/catalog").json()
    assert [i["name"] for i in listed["items"]] == ["counter-rust"] and listed["converged"]
    audit = admin.get("/api/v1/audit", params={"verb": "catalog."}).json()["items"]
    assert [(a["verb"], a["user"]) for a in audit] == [("catalog.publish", "admin")]


def test_a_raw_upload_the_folder_beneath_rollback_and_removal(host: Host,
                                                              admin: httpx.Client) -> None:
    folder = (host.plugins_dir / "greeter-rust.wasm").read_bytes()
    published = Path(ROOT / "build" / "plugins" / "greeter-go.wasm").read_bytes()
    # A raw upload names the catalog's plugin by the path: another build takes the name.
    r = admin.put("/api/v1/catalog/greeter-rust", content=published,
                  headers={"Content-Type": "application/wasm"})
    assert r.status_code == 201, r.text
    v1 = r.json()["digest"]
    eventually(lambda: host.app.plugins.get("greeter-rust").origin == "catalog")
    info = host.app.plugins.get("greeter-rust")
    assert info.shadows == str(host.plugins_dir / "greeter-rust.wasm")
    assert "sha256:" + str(info.sha256) == v1
    # A second version (a new sidecar), then back to the first.
    r = admin.put("/api/v1/catalog/greeter-rust", json={"module": b64(published),
                                                        "sidecar": {"limits": {"timeout_ms": 900}}})
    assert r.status_code == 201 and r.json()["number"] == 2
    back = admin.post("/api/v1/catalog/greeter-rust/rollback", json={})
    assert back.status_code == 200 and back.json()["version"]["number"] == 1
    detail = admin.get("/api/v1/catalog/greeter-rust").json()
    assert [v["number"] for v in detail["versions"]] == [2, 1]
    assert detail["version"]["number"] == 1 and detail["updated_by"] == "admin"
    wanted = host.app.plugins.published.wanted
    eventually(lambda: getattr(wanted("greeter-rust"), "number", None) == 1)
    # Wanted first, then served: the module is the same; version 2's limits go.
    eventually(lambda: (limits := host.app.plugins.get("greeter-rust").limits) is not None
               and limits.timeout_ms != 900)
    # Out of the catalog: the folder's file serves again.
    assert admin.delete("/api/v1/catalog/greeter-rust").status_code == 204
    eventually(lambda: host.app.plugins.get("greeter-rust").origin == "file")
    assert host.app.plugins.get("greeter-rust").sha256 == hashlib.sha256(folder).hexdigest()
    assert admin.delete("/api/v1/catalog/greeter-rust").status_code == 204  # again: nothing
    assert admin.delete("/api/v1/catalog/nope").status_code == 404


def test_bad_publishes_are_refused_with_what_to_do(host: Host, admin: httpx.Client) -> None:
    wasm = COUNTER.read_bytes()
    digest = "sha256:" + hashlib.sha256(wasm).hexdigest()
    cut = admin.put(f"/api/v1/catalog/counter-rust?digest={digest}", content=wasm[:-100],
                    headers={"Content-Type": "application/octet-stream"})
    assert cut.status_code == 422, cut.text
    assert cut.json()["error"]["type"] == "BadPublish"
    assert "cut short or altered" in cut.json()["error"]["message"]
    stray = admin.put("/api/v1/catalog/counter-rust", json={"module": b64(wasm), "modul": 1})
    assert stray.status_code == 422 and stray.json()["error"]["type"] == "UnknownField"
    not_b64 = admin.put("/api/v1/catalog/counter-rust", json={"module": "%%%"})
    assert not_b64.status_code == 422 and "base64" in not_b64.json()["error"]["message"]
    garbage = admin.put("/api/v1/catalog/x", json={"module": b64(b"\0asm\1\0\0\0junk")})
    assert garbage.status_code == 422 and garbage.json()["error"]["type"] == "InvalidModule"
    sidecar = admin.put("/api/v1/catalog/counter-rust", json={
        "module": b64(wasm), "sidecar": {"limits": {"timeout_ms": -1}}})
    assert sidecar.status_code == 422 and "limits" in sidecar.json()["error"]["message"]
    host.app.config.catalog.max_module_bytes = 1000
    big = admin.put("/api/v1/catalog/counter-rust", content=wasm,
                    headers={"Content-Type": "application/wasm"})
    assert big.status_code == 413, big.text
    big_json = admin.put("/api/v1/catalog/counter-rust", json={"module": b64(wasm)})
    assert big_json.status_code == 413
    viewer = host.client(host.viewer_token)
    assert viewer.put("/api/v1/catalog/counter-rust",
                      json={"module": b64(wasm)}).status_code == 403
    assert admin.get("/api/v1/catalog").json()["items"] == []
    assert admin.post("/api/v1/catalog/nope/rollback", json={}).status_code == 404


def test_pin_and_unpin_over_rest(host: Host, admin: httpx.Client) -> None:
    go = (ROOT / "build" / "plugins" / "greeter-go.wasm").read_bytes()
    versions = []
    for timeout in (800, 900):
        r = admin.put("/api/v1/catalog/greeter-rust", json={
            "module": b64(go), "sidecar": {"limits": {"timeout_ms": timeout}}})
        assert r.status_code == 201, r.text
        versions.append(r.json())
    v1, _v2 = versions
    wanted = host.app.plugins.published.wanted
    pinned = admin.put("/api/v1/catalog/greeter-rust/pin", json={"digest": "v1"})
    assert pinned.status_code == 200, pinned.text
    body = pinned.json()
    assert body["pinned"] and body["pinned_by"] == "admin" and body["version"]["id"] == v1["id"]
    eventually(lambda: getattr(wanted("greeter-rust"), "number", None) == 1)
    # A publish while pinned: kept, not in force, and the answer says what holds it.
    r = admin.put("/api/v1/catalog/greeter-rust", json={
        "module": b64(go), "sidecar": {"limits": {"timeout_ms": 700}}})
    assert r.status_code == 201 and r.json()["pinned_to"] == v1["digest"]
    detail = admin.get("/api/v1/catalog/greeter-rust").json()
    assert detail["pinned"] and detail["version"]["number"] == 1
    assert [v["number"] for v in detail["versions"]] == [3, 2, 1]
    listed = admin.get("/api/v1/catalog").json()["items"]
    assert [(i["name"], i["pinned"]) for i in listed] == [("greeter-rust", True)]
    assert listed[0]["rollout"]["pinned"] is True
    page = admin.get("/instances")
    assert page.status_code == 200 and ">pinned</span>" in page.text
    # What would move it: 409, naming the pin.
    for refused in (admin.post("/api/v1/catalog/greeter-rust/rollback", json={"to": "v2"}),
                    admin.delete("/api/v1/catalog/greeter-rust")):
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["type"] == "VersionPinned" and "unpin it first" in error["message"]
    # Bad digests: named in the answer.
    stranger = "sha256:" + "cd" * 32
    r = admin.put("/api/v1/catalog/greeter-rust/pin", json={"digest": stranger})
    assert r.status_code == 404 and stranger in r.json()["error"]["message"]
    r = admin.put("/api/v1/catalog/greeter-rust/pin", json={"digest": "zz-top"})
    assert r.status_code == 422 and "'zz-top'" in r.json()["error"]["message"]
    assert admin.put("/api/v1/catalog/greeter-rust/pin", json={}).status_code == 422
    assert admin.put("/api/v1/catalog/nope/pin", json={"digest": "v1"}).status_code == 404
    assert getattr(wanted("greeter-rust"), "number", None) == 1
    # Unpinned: the newest version goes in force.
    out = admin.delete("/api/v1/catalog/greeter-rust/pin")
    assert out.status_code == 200 and out.json()["version"]["number"] == 3
    assert not out.json()["pinned"]
    eventually(lambda: getattr(wanted("greeter-rust"), "number", None) == 3)
    again = admin.delete("/api/v1/catalog/greeter-rust/pin")
    assert again.status_code == 400 and "not pinned" in again.json()["error"]["message"]
    audit = admin.get("/api/v1/audit", params={"verb": "catalog."}).json()["items"]
    assert {a["verb"] for a in audit} >= {"catalog.pin", "catalog.unpin"}
