"""Grants made on a running host: re-linked at once, and written back to the sidecar on
request, in the sidecar's own format, so they survive a restart."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from omnicore.errors import ConfigError, NeedsGrant, PluginError
from omnicore.plugins.host import PluginHost
from omnicore.plugins.sidecar import read_sidecar, write_grants
from tests.host_fixtures import config_wasm, write


def wasm(tmp_path: Path, name: str = "conf") -> Path:
    return write(tmp_path, f"{name}.wasm", config_wasm(name))


def test_grant_persist_writes_yaml_and_a_new_host_loads_it(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    with PluginHost() as host:
        assert host.load(path, config={"k": "v"}).state == "needs-grant"
        info = host.grant("conf", "config", persist=True)
        assert info.state == "loaded"
        assert host.call("conf", "get", b"k") == b"v"
    side = tmp_path / "conf.yaml"
    assert yaml.safe_load(side.read_text()) == {"grants": {"config": True}}
    with PluginHost() as fresh:
        assert fresh.load(path, config={"k": "v"}).state == "loaded"


def test_grant_without_persist_leaves_the_disk_alone(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    with PluginHost() as host:
        host.load(path)
        host.grant("conf", "config")
    assert not list(tmp_path.glob("conf.*ml")) and not (tmp_path / "conf.toml").exists()


def test_toml_sidecar_keeps_its_format_and_other_keys(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    side = tmp_path / "conf.toml"
    side.write_text('[config]\nk = "from-sidecar"\n[limits]\ntimeout_ms = 250\n')
    with PluginHost() as host:
        host.load(path)
        host.grant("conf", "config", persist=True)
        assert host.call("conf", "get", b"k") == b"from-sidecar"
    data = tomllib.loads(side.read_text())
    assert data == {"config": {"k": "from-sidecar"}, "limits": {"timeout_ms": 250},
                    "grants": {"config": True}}
    assert read_sidecar(path).grants == {"config": {}}


def test_revoke_relinks_to_needs_grant_and_persists_false(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    (tmp_path / "conf.yaml").write_text("grants: [config]\nconfig: {k: v}\n")
    with PluginHost(plugin_settings={"conf": {"grants": ["config"]}}) as host:
        assert host.load(path).state == "loaded"
        info = host.revoke("conf", "config", persist=True)
        assert info.state == "needs-grant" and info.missing == ("config",)
        with pytest.raises(NeedsGrant):
            host.call("conf", "get", b"k")
    # `false` in the sidecar still wins over the app config's grant after a restart.
    assert yaml.safe_load((tmp_path / "conf.yaml").read_text())["grants"] == {"config": False}
    with PluginHost(plugin_settings={"conf": {"grants": ["config"]}}) as fresh:
        assert fresh.load(path).state == "needs-grant"


def test_persist_refuses_plugins_loaded_from_bytes_and_changes_nothing(tmp_path: Path) -> None:
    with PluginHost() as host:
        host.load(config_wasm("conf"))
        with pytest.raises(PluginError, match="loaded from bytes"):
            host.grant("conf", "config", persist=True)
        assert host.get("conf").state == "needs-grant"


def test_bad_grant_options_change_nothing(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    with PluginHost() as host:
        host.load(path)
        with pytest.raises(ConfigError):
            host.grant("conf", "config", {"all": 5}, persist=True)  # type: ignore[dict-item]
        assert host.get("conf").state == "needs-grant"
    assert not (tmp_path / "conf.yaml").exists()


def test_write_grants_refuses_a_broken_sidecar(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    (tmp_path / "conf.toml").write_text("grants = [\n")
    with pytest.raises(ConfigError, match=r"conf\.toml"):
        write_grants(path, {"config": {}})
    assert (tmp_path / "conf.toml").read_text() == "grants = [\n"
