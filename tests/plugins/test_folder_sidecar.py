"""Sidecar files: formats, grants shapes, and every way to get one wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.errors import ConfigError, PluginNotFound
from omnicore.plugins.folder import diff, resolve_plugin_file, scan
from omnicore.plugins.settings import deep_merge
from omnicore.plugins.sidecar import read_sidecar
from omnicore.sandbox.grants import merge as merge_grants
from omnicore.sandbox.grants import normalize as normalize_grants


def wasm(tmp_path: Path, name: str = "greeter") -> Path:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(b"\0asm\1\0\0\0")
    return path


def test_no_sidecar_is_empty(tmp_path: Path) -> None:
    side = read_sidecar(wasm(tmp_path))
    assert side.path is None and side.grants == {} and side.config == {} and side.enabled


def test_toml_sidecar_with_list_and_tables(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    (tmp_path / "greeter.toml").write_text(
        'grants = ["config", "omnicore:kv"]\n'
        "[grant.http]\nallow_hosts = [\"api.example.com\"]\n"
        '[config]\ngreeting = "Hello"\n[config.db]\nhost = "x"\n'
        "[limits]\ntimeout_ms = 250\n")
    side = read_sidecar(path)
    assert side.path == tmp_path / "greeter.toml"
    assert side.grants == {"config": {}, "kv": {}, "http": {"allow_hosts": ["api.example.com"]}}
    assert side.config == {"greeting": "Hello", "db": {"host": "x"}}
    assert side.limits == {"timeout_ms": 250}


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml_sidecar_with_mapping_grants(tmp_path: Path, suffix: str) -> None:
    path = wasm(tmp_path)
    (tmp_path / f"greeter{suffix}").write_text(
        "grants:\n  config: true\n  kv: {max_keys: 10}\nconfig: {greeting: Hi}\nenabled: false\n")
    side = read_sidecar(path)
    assert side.grants == {"config": {}, "kv": {"max_keys": 10}}
    assert side.config == {"greeting": "Hi"} and side.enabled is False


def test_empty_sidecar_file_is_fine(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    (tmp_path / "greeter.yaml").write_text("")
    assert read_sidecar(path).grants == {}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("greeter.toml", "grant = 3\n", "'grant' must be a table"),
        ("greeter.toml", "grnats = [\"kv\"]\n",
         "unknown sidecar key 'grnats' (did you mean 'grants'?)"),
        ("greeter.toml", "[limits]\ntimeout = 5\n", "unknown limit(s) timeout"),
        ("greeter.toml", "[limits]\ntimeout_ms = -5\n", "timeout_ms must be a positive integer"),
        ("greeter.toml", "grants = [1]\n", "grants must be capability names"),
        ("greeter.toml", "grants = 5\n", "grants must be a list"),
        ("greeter.toml", "config = 5\n", "'config' must be a table"),
        ("greeter.toml", "enabled = \"yes\"\n", "'enabled' must be true or false"),
        ("greeter.toml", "grants = [\n", "cannot parse sidecar"),
        ("greeter.yaml", "grants: [kv\n", "cannot parse sidecar"),
        ("greeter.yaml", "- kv\n", "must be a table/mapping at the top level"),
        ("greeter.yaml", "grants: {http: [1, 2]}\n", "options of grant 'http' must be"),
    ],
)
def test_bad_sidecars_name_the_file_and_key(tmp_path: Path, name: str, text: str,
                                            message: str) -> None:
    path = wasm(tmp_path)
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        read_sidecar(path)
    assert message in str(info.value)
    assert str(tmp_path / name) in str(info.value)
    assert info.value.source == str(tmp_path / name)


def test_two_sidecars_are_refused(tmp_path: Path) -> None:
    path = wasm(tmp_path)
    (tmp_path / "greeter.toml").write_text("")
    (tmp_path / "greeter.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"two sidecars \(greeter.toml and greeter.yaml\)"):
        read_sidecar(path)


def test_normalize_grants_shapes() -> None:
    assert normalize_grants({"kv": False}, source="x") == {"kv": None}
    assert normalize_grants(None, source="x") == {}
    assert normalize_grants("kv", source="x") == {"kv": {}}
    assert normalize_grants(["omnicore:http"], source="x") == {"http": {}}
    assert normalize_grants({"http": None}, source="x") == {"http": {}}


def test_merge_grants_later_layers_win_and_false_revokes() -> None:
    merged = merge_grants({"log": {}}, {"kv": {"max_keys": 1}, "config": {}},
                          {"kv": {"max_keys": 2}, "config": None}, {"config": {}})
    assert merged == {"log": {}, "kv": {"max_keys": 2}, "config": {}}
    assert merge_grants({"kv": {}}, {"kv": None}) == {}


def test_deep_merge_nests_and_replaces() -> None:
    base = {"a": {"b": 1, "c": 2}, "l": [1], "s": "x"}
    assert deep_merge(base, {"a": {"c": 3}, "l": [2]}) == {"a": {"b": 1, "c": 3}, "l": [2],
                                                            "s": "x"}
    assert base["a"] == {"b": 1, "c": 2}


def test_scan_and_diff_see_wasm_and_sidecar_changes(tmp_path: Path) -> None:
    a = wasm(tmp_path, "a")
    (tmp_path / ".hidden.wasm").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    first = scan(tmp_path)
    assert list(first) == [a]
    b = wasm(tmp_path, "b")
    (tmp_path / "a.toml").write_text("grants = []\n")
    second = scan(tmp_path)
    changes = diff(first, second)
    assert changes.added == (b,) and changes.changed == (a,) and changes.removed == ()
    a.unlink()
    changes = diff(second, scan(tmp_path))
    assert changes.removed == (a,) and not changes.added and not changes.changed
    assert not diff(second, second)
    assert scan(tmp_path / "missing") == {}


def test_resolve_plugin_file(tmp_path: Path) -> None:
    a = wasm(tmp_path, "a")
    b = wasm(tmp_path, "b")
    names = {a: "alpha", b: None}
    assert resolve_plugin_file(tmp_path, "a", names.get) == a
    assert resolve_plugin_file(tmp_path, "alpha", names.get) == a
    with pytest.raises(PluginNotFound, match=r"no plugin 'zeta' .*plugins there: a, b"):
        resolve_plugin_file(tmp_path, "zeta", names.get)
