"""The invoke route answers "no such plugin" from one lookup, before any call is timed."""

from __future__ import annotations

import httpx

from tests.console.conftest import Host


def test_invoking_an_unknown_plugin_is_a_404_without_a_timing(host: Host,
                                                             admin: httpx.Client) -> None:
    r = admin.post("/api/v1/plugins/nope/invoke", json={"handler": "greet", "input": ""})
    err = r.json()["error"]
    assert r.status_code == 404 and err["type"] == "PluginNotFound" and err["plugin"] == "nope"
    assert "no plugin named 'nope' (loaded: greeter-rust)" in err["message"]
    assert "duration_ms" not in err  # refused before the call, not by it
    # A plugin that is registered but cannot serve passes the lookup: its call says why.
    bad = host.plugins_dir / "broken.wasm"
    bad.write_bytes(b"\0asm\1\0\0")
    assert host.app.plugins.load_file(bad) == "broken"
    r = admin.post("/api/v1/plugins/broken/invoke", json={"handler": "greet", "input": ""})
    err = r.json()["error"]
    assert err["type"] == "PluginLoadError" and "failed to load" in err["message"]
    assert "duration_ms" in err
