"""The plugins in the REST API (console/plugins/) against a real host, a real plugins folder
and the real Rust greeter."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.console.conftest import Host, error_of


def test_grant_config_invoke_revoke_through_the_api(host: Host, admin: httpx.Client) -> None:
    doc = admin.get("/api/v1/plugins/greeter-rust").json()
    assert doc["state"] == "needs-grant" and doc["missing"] == ["config"]
    assert doc["language"] == "rust" and doc["handlers"] == ["greet"]
    r = admin.post("/api/v1/plugins/greeter-rust/invoke",
                   json={"handler": "greet", "input": "{}"})
    assert r.status_code == 409 and error_of(r)["type"] == "NeedsGrant"

    r = admin.put("/api/v1/plugins/greeter-rust/grants/config", json={"options": {}})
    assert r.status_code == 200 and r.json()["state"] == "loaded"
    rows = host.app.storage.plugin_settings
    # Persisted through the grants module, in the database every instance applies; the
    # instance's own folder is left alone.
    assert rows.get("greeter-rust").doc == {"grants": {"config": {}}}  # type: ignore[union-attr]
    assert not (host.plugins_dir / "greeter-rust.yaml").exists()

    r = admin.put("/api/v1/plugins/greeter-rust/config", json={"config": {"greeting": "Hej"}})
    assert r.status_code == 200 and r.json()["config"] == {"greeting": "Hej"}
    r = admin.post("/api/v1/plugins/greeter-rust/invoke",
                   json={"handler": "greet", "input": '{"name": "Ada"}'})
    assert r.status_code == 200
    body = r.json()
    assert json.loads(body["output"]) == {"message": "Hej, Ada!"}
    assert body["encoding"] == "text" and body["duration_ms"] > 0

    logs = admin.get("/api/v1/plugins/greeter-rust/logs").json()
    assert any("Ada" in line["message"] for line in logs["items"])

    r = admin.delete("/api/v1/plugins/greeter-rust/grants/config")
    assert r.status_code == 200 and r.json()["state"] == "needs-grant"
    assert host.app.plugins.get("greeter-rust").state == "needs-grant"
    assert rows.get("greeter-rust").doc["grants"] == {"config": False}  # type: ignore[union-attr]


def test_a_config_that_fails_the_schema_is_refused_and_nothing_is_written(
        host: Host, admin: httpx.Client) -> None:
    admin.put("/api/v1/plugins/greeter-rust/grants/config", json={})
    rows = host.app.storage.plugin_settings
    before = rows.get("greeter-rust")
    r = admin.put("/api/v1/plugins/greeter-rust/config", json={"config": {"greeting": 5}})
    err = error_of(r)
    assert r.status_code == 422 and err["type"] == "ConfigError"
    assert "greeting" in str(err["message"])
    assert rows.get("greeter-rust") == before
    r = admin.put("/api/v1/plugins/greeter-rust/limits", json={"limits": {"timeout_mss": 5}})
    assert r.status_code == 422 and "timeout_ms" in str(error_of(r)["message"])
    assert rows.get("greeter-rust") == before
    r = admin.put("/api/v1/plugins/greeter-rust/limits", json={"limits": {"timeout_ms": 250}})
    assert r.status_code == 200 and r.json()["limits"]["timeout_ms"] == 250
    assert host.app.plugins.get("greeter-rust").limits.timeout_ms == 250  # type: ignore[union-attr]


def test_bad_input_gets_a_clear_4xx(host: Host, admin: httpx.Client) -> None:
    r = admin.put("/api/v1/plugins/greeter-rust/config", content=b"{not json",
                  headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)["type"] == "InvalidJson"
    r = admin.put("/api/v1/plugins/greeter-rust/config", json=[1, 2])
    assert r.status_code == 400
    r = admin.get("/api/v1/plugins/nope")
    assert r.status_code == 404 and error_of(r)["type"] == "PluginNotFound"
    r = admin.get("/api/v1/plugins?limit=0")
    assert r.status_code == 400 and error_of(r)["type"] == "BadParameter"
    r = admin.put("/api/v1/plugins/greeter-rust/grants/telepathy", json={})
    assert r.status_code == 404 and "telepathy" in str(error_of(r)["message"])
    r = admin.post("/api/v1/plugins/greeter-rust/invoke",
                   json={"handler": "greet", "input": "%%%", "encoding": "base64"})
    assert r.status_code == 422
    admin.put("/api/v1/plugins/greeter-rust/grants/config", json={})
    r = admin.post("/api/v1/plugins/greeter-rust/invoke",
                   json={"handler": "nope", "input": ""})
    assert r.status_code == 404 and error_of(r)["type"] == "HandlerNotFound"
    r = admin.post("/api/v1/plugins/greeter-rust/invoke",
                   json={"handler": "greet", "input": "not json"})
    err = error_of(r)
    assert r.status_code == 422 and err["type"] == "GuestError" and "duration_ms" in err
    assert admin.get("/api/v1/nothing-here").status_code == 404


def test_viewers_read_but_never_change(host: Host) -> None:
    with host.client(host.viewer_token) as viewer:
        assert viewer.get("/api/v1/plugins").status_code == 200
        for method, path, body in [
            ("PUT", "/api/v1/plugins/greeter-rust/grants/config", {}),
            ("DELETE", "/api/v1/plugins/greeter-rust", None),
            ("POST", "/api/v1/plugins/greeter-rust/invoke", {"handler": "greet"}),
            ("POST", "/api/v1/plugins/greeter-rust/reload", None),
            ("POST", "/api/v1/users", {"name": "x", "password": "12345678"}),
            ("GET", "/api/v1/users", None),
        ]:
            r = viewer.request(method, path, json=body)
            assert r.status_code == 403, (method, path)
            assert "viewer" in str(error_of(r)["message"])
    assert host.app.plugins.get("greeter-rust").state == "needs-grant"


def test_upload_validates_before_writing(host: Host, admin: httpx.Client,
                                         greeter_wasm: Path) -> None:
    host.app.plugins.unload("greeter-rust")
    (host.plugins_dir / "greeter-rust.wasm").unlink()
    host.app.plugins.folder.sync()  # type: ignore[union-attr]
    data = greeter_wasm.read_bytes()
    cases = [("../evil.wasm", data, 422), ("a/b.wasm", data, 422), (".hidden.wasm", data, 422),
             ("x.txt", data, 422), ("junk.wasm", b"MZ\x90\x00 not wasm", 422),
             ("trunc.wasm", data[:100], 422)]
    for filename, body, status in cases:
        r = admin.post("/api/v1/plugins", params={"filename": filename}, content=body,
                       headers={"content-type": "application/wasm"})
        assert r.status_code == status, (filename, r.text)
        error_of(r)
    assert sorted(p.name for p in host.plugins_dir.iterdir()) == []
    assert not (host.plugins_dir.parent / "evil.wasm").exists()

    big = host.module.console.max_upload_bytes + 1  # type: ignore[union-attr]
    r = admin.post("/api/v1/plugins", params={"filename": "big.wasm"},
                   content=b"\0asm" + b"\0" * big)
    assert r.status_code == 413
    assert list(host.plugins_dir.iterdir()) == []

    r = admin.post("/api/v1/plugins", params={"filename": "greeter.wasm"}, content=data)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "greeter-rust" and r.json()["state"] == "needs-grant"
    r = admin.post("/api/v1/plugins", params={"filename": "greeter.wasm"}, content=data)
    assert r.status_code == 409
    r = admin.post("/api/v1/plugins", params={"filename": "other.wasm"}, content=data)
    assert r.status_code == 409 and error_of(r)["type"] == "DuplicatePlugin"
    assert sorted(p.name for p in host.plugins_dir.iterdir()) == ["greeter.wasm"]

    assert admin.delete("/api/v1/plugins/greeter-rust").status_code == 204
    assert "greeter-rust" not in host.app.plugins
    assert list(host.plugins_dir.iterdir()) == []


def test_enable_disable_reload(host: Host, admin: httpx.Client) -> None:
    r = admin.put("/api/v1/plugins/greeter-rust/enabled", json={"enabled": False})
    assert r.status_code == 200 and r.json()["state"] == "disabled"
    r = admin.put("/api/v1/plugins/greeter-rust/enabled", json={"enabled": "no"})
    assert r.status_code == 422
    r = admin.put("/api/v1/plugins/greeter-rust/enabled", json={"enabled": True})
    assert r.json()["state"] == "needs-grant"
    r = admin.post("/api/v1/plugins/greeter-rust/reload")
    assert r.status_code == 200 and r.json()["name"] == "greeter-rust"


def test_lists_are_paginated_and_settings_mask_secrets(host: Host, admin: httpx.Client,
                                                       greeter_wasm: Path) -> None:
    for i in range(3):
        host.app.plugins.load(greeter_wasm.read_bytes(), name=f"g{i}")
    page = admin.get("/api/v1/plugins", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 4 and page["limit"] == 2 and page["offset"] == 1
    assert [p["name"] for p in page["items"]] == ["g1", "g2"]
    only = admin.get("/api/v1/plugins", params={"state": "needs-grant"}).json()
    assert only["total"] == 4
    rows = admin.get("/api/v1/settings").json()["items"]
    by_key = {row["key"]: row for row in rows}
    assert by_key["console.port"] == {"key": "console.port", "value": "0",
                                      "source": "override"}
    assert by_key["capabilities.vault.password"]["value"] == "****"
    assert by_key["capabilities.vault.region"]["value"] == "eu"
    assert "hunter2" not in admin.get("/settings").text


def test_operator_settings_read_and_cleared_through_the_api(host: Host,
                                                            admin: httpx.Client) -> None:
    # What `omnicore settings show` and `clear` ask a running host.
    assert admin.get("/api/v1/plugins/greeter-rust/settings").json() == {}
    admin.put("/api/v1/plugins/greeter-rust/grants/config", json={})
    admin.put("/api/v1/plugins/greeter-rust/limits", json={"limits": {"timeout_ms": 250}})
    assert admin.get("/api/v1/plugins/greeter-rust/settings").json() == {
        "grants": {"config": {}}, "limits": {"timeout_ms": 250}}
    r = admin.delete("/api/v1/plugins/greeter-rust/settings", params={"key": "limits"})
    assert r.status_code == 200 and r.json() == {"grants": {"config": {}}}
    assert host.app.plugins.get("greeter-rust").limits.timeout_ms != 250  # at once, here
    r = admin.delete("/api/v1/plugins/greeter-rust/settings", params={"key": "colour"})
    assert r.status_code == 422 and error_of(r)["type"] == "ConfigError"
    assert admin.delete("/api/v1/plugins/greeter-rust/settings").json() == {}
    assert host.app.plugins.get("greeter-rust").state == "needs-grant"  # the grant is gone
    verbs = [e["verb"] for e in admin.get("/api/v1/audit").json()["items"]]
    assert "limits.set" in verbs and "grant.revoke" in verbs
    # Settings wait for a plugin by name: one no host has yet reads as none.
    assert admin.get("/api/v1/plugins/not-yet/settings").json() == {}
    with host.client(host.viewer_token) as viewer:
        assert viewer.delete("/api/v1/plugins/greeter-rust/settings").status_code == 403
