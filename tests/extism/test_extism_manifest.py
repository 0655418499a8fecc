"""The Extism manifest's keys in NAME.json and in the sidecar, as settings: what applies shows
in PluginInfo, and editing NAME.json reloads the plugin."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.errors import ConfigError, PluginError, Trap
from omnicore.extism import host_fn
from omnicore.plugins.host import PluginHost
from omnicore.plugins.sidecar import read_sidecar
from tests.waiting import eventually

PAGE = 65536


@host_fn(name="shout")
def shout(text: str) -> str:
    return text.upper()


@pytest.fixture
def plugins(tmp_path: Path, pdk_wasm: Path) -> Path:
    shutil.copy(pdk_wasm, tmp_path / "ext.wasm")
    return tmp_path


@pytest.fixture
def host() -> Iterator[PluginHost]:
    with PluginHost(failure_threshold=100) as h:
        h.extism_functions.append(shout)
        yield h


def test_the_sidecar_takes_the_extism_keys(host: PluginHost, plugins: Path,
                                           server: str) -> None:
    (plugins / "ext.toml").write_text('''
grants = ["config"]
allowed_hosts = ["127.0.0.1"]
timeout_ms = 700

[memory]
max_pages = 40
max_var_bytes = 64
max_http_response_bytes = 999

[config]
thing = "from the sidecar"
''')
    info = host.load(plugins / "ext.wasm")
    assert info.state == "loaded", info.last_error
    assert info.limits is not None
    assert (info.limits.timeout_ms, info.limits.max_memory_bytes) == (700, 40 * PAGE)
    assert info.granted["http"] == {"allow_hosts": ["http://127.0.0.1:*", "https://127.0.0.1:*"],
                                    "max_response_bytes": 999}
    assert host.call("ext", "config", b"thing") == b"from the sidecar"
    with pytest.raises(Trap, match="Variable store is full"):
        host.call("ext", "fill_vars", b"x" * 100)
    with pytest.raises(Trap, match="maximum number of bytes: 999"):
        host.call("ext", "http", json.dumps({"url": f"{server}/big"}).encode())
    assert host.call("ext", "http", json.dumps({"url": f"{server}/a"}).encode()) == \
        b"200 got /a x=None"


def test_sidecar_keys_win_over_the_manifest_key_by_key(host: PluginHost,
                                                       plugins: Path) -> None:
    (plugins / "ext.json").write_text(json.dumps(
        {"wasm": [{"path": "ext.wasm"}], "timeout_ms": 100, "config": {"a": "json", "b": "json"},
         "memory": {"max_pages": 20, "max_var_bytes": 64}}))
    (plugins / "ext.yaml").write_text(
        "timeout_ms: 900\nmemory: {max_pages: 30}\nconfig: {b: sidecar}\n")
    info = host.load(plugins / "ext.wasm")
    assert info.limits is not None
    assert (info.limits.timeout_ms, info.limits.max_memory_bytes) == (900, 30 * PAGE)
    assert "config" not in info.granted  # Extism plugins read their config without a grant
    assert host.call("ext", "config", b"a") == b"json"
    assert host.call("ext", "config", b"b") == b"sidecar"
    with pytest.raises(Trap, match="Variable store is full"):  # max_var_bytes from the json
        host.call("ext", "fill_vars", b"x" * 100)
    host.unload("ext")
    # The sidecar's own limits table ranks above the Extism keys beside it.
    (plugins / "ext.yaml").write_text("timeout_ms: 900\nlimits: {timeout_ms: 1200}\n")
    info = host.load(plugins / "ext.wasm")
    assert info.limits is not None and info.limits.timeout_ms == 1200


def test_a_native_plugin_refuses_extism_keys(host: PluginHost, tmp_path: Path) -> None:
    native = tmp_path / "native.wasm"
    native.write_bytes(wasmtime.wat2wasm('''(module (memory (export "memory") 1)
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 8))
      (func (export "omni_free") (param i32 i32))
      (func (export "h") (param i32 i32) (result i64) (i64.const 0)))'''))
    (tmp_path / "native.toml").write_text('allowed_hosts = ["example.com"]\n')
    with pytest.raises(ConfigError, match="'allowed_hosts' is an Extism manifest key, and plugin "
                                          "'native' is a native omnicore plugin"):
        host.load(native)


@pytest.mark.parametrize(("sidecar", "key"), [
    ('timeout_ms = "soon"\n', "timeout_ms"),
    ('allowed_paths = {"/nonexistent-dir" = "/data"}\n', "allowed_paths"),
    ('allowed_hosts = ["example.com:8080"]\n', "allowed_hosts"),
    ("[memory]\nmax_pages = 0\n", "memory.max_pages"),
    ("[memory]\nmax_tables = 3\n", "memory.max_tables"),
])
def test_bad_extism_keys_in_the_sidecar_name_the_file_and_key(
        plugins: Path, sidecar: str, key: str) -> None:
    (plugins / "ext.toml").write_text(sidecar)
    with pytest.raises(ConfigError) as err:
        read_sidecar(plugins / "ext.wasm")
    assert "ext.toml" in str(err.value) and f"'{key}'" in str(err.value)
    assert "\n" not in str(err.value)


def test_persisting_a_grant_keeps_the_extism_keys(host: PluginHost, plugins: Path) -> None:
    (plugins / "ext.toml").write_text(
        'grants = ["config"]\nallowed_hosts = ["127.0.0.1"]\n[memory]\nmax_pages = 40\n')
    host.load(plugins / "ext.wasm")
    host.grant("ext", "kv", persist=True)
    assert read_sidecar(plugins / "ext.wasm").extism == {
        "allowed_hosts": ["127.0.0.1"], "memory": {"max_pages": 40}}
    host.unload("ext")
    info = host.load(plugins / "ext.wasm")
    assert "kv" in info.granted and "http" in info.granted
    assert info.limits is not None and info.limits.max_memory_bytes == 40 * PAGE


def test_editing_the_manifest_reloads_the_plugin(host: PluginHost, plugins: Path) -> None:
    manifest = plugins / "ext.json"
    manifest.write_text(json.dumps({"config": {"thing": "one"}, "timeout_ms": 500,
                                    "memory": {"max_var_bytes": 64}}))
    host.watch_folder(plugins)
    assert host.call("ext", "config", b"thing") == b"one"
    manifest.write_text(json.dumps({"config": {"thing": "two"}, "timeout_ms": 800,
                                    "memory": {"max_var_bytes": 64}}))
    eventually(lambda: host.call("ext", "config", b"thing") == b"two")
    limits = host.get("ext").limits
    assert limits is not None and limits.timeout_ms == 800
    with pytest.raises(Trap, match="Variable store is full"):
        host.call("ext", "fill_vars", b"x" * 100)

    # Only max_var_bytes changes (nothing the settings show): still a reload.
    manifest.write_text(json.dumps({"config": {"thing": "two"}, "timeout_ms": 800}))

    def vars_fit() -> bool:
        try:
            return host.call("ext", "fill_vars", b"x" * 100) == b"stored"
        except PluginError:
            return False

    eventually(vars_fit)
    # A broken edit keeps the last good version serving and says why.
    manifest.write_text(json.dumps({"timeout_ms": "soon"}))
    eventually(lambda: "timeout_ms" in (host.get("ext").last_error or ""))
    assert host.get("ext").stale
    assert host.call("ext", "config", b"thing") == b"two"
    manifest.unlink()  # no manifest: no config (which needs no grant), as in Extism
    eventually(lambda: host.call("ext", "config", b"thing") == b"<none>")
    assert host.get("ext").state == "loaded"
