"""omnicore:secrets (specs/abi.md §4.9) and the encrypted store behind it.

The guest is a WAT plugin whose ``get`` handler answers with the i32 status (LE) and then the
bytes the host wrote. The store is checked on disk: the database file and its WAL never hold
a value in clear, a tampered row does not decrypt, rotation re-encrypts.
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.errors import ConfigError
from omnicore.storage import open_storage
from omnicore.storage.base import StorageError
from omnicore.storage.secrets import KEY_FILE, SecretStore, new_key

SECRETS_WAT = r"""
(module
  (import "omnicore:secrets" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $bump (mut i32) (i32.const 0x8000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (i32.and (i32.add (local.get $n)
                                                                     (i32.const 7))
                                                            (i32.const -8))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; output: status (i32 LE) at 0x4000, then what the host wrote (if it fitted 0x1000)
  (func (export "get") (param $p i32) (param $n i32) (result i64)
    (local $r i32)
    (local.set $r (call $get (local.get $p) (local.get $n) (i32.const 0x4004) (i32.const 0x1000)))
    (i32.store (i32.const 0x4000) (local.get $r))
    (i64.or (i64.shl (i64.const 0x4000) (i64.const 32))
            (i64.extend_i32_u (i32.add (i32.const 4)
              (select (local.get $r) (i32.const 0)
                (i32.and (i32.gt_s (local.get $r) (i32.const 0))
                         (i32.le_s (local.get $r) (i32.const 0x1000))))))))
  (func (export "get_oob") (param $p i32) (param $n i32) (result i64)
    (i64.extend_i32_u (call $get (local.get $p) (local.get $n) (i32.const 0x1fff0)
                                 (i32.const 100))))
)
"""

NOT_FOUND, DENIED, INVALID = -1, -2, -3


def secrets_wasm(name: str) -> bytes:
    from omnicore.sandbox import wasmbin

    return wasmbin.set_custom_section(wasmtime.wat2wasm(SECRETS_WAT), "omnicore.manifest",
                                      json.dumps({"name": name}).encode())


@pytest.fixture
def app(make_app: Callable[..., OmniApp]) -> Iterator[OmniApp]:
    app = make_app(builtin_extensions=None, overrides={"sandbox": {"watch": False}})
    app.start()
    yield app
    app.stop(grace=0)


def get(app: OmniApp, plugin: str, name: bytes | str) -> tuple[int, bytes]:
    out = app.plugins.call(plugin, "get", name.encode() if isinstance(name, str) else name)
    return struct.unpack("<i", out[:4])[0], out[4:]


def test_a_plugin_reads_only_what_its_grant_exposes(app: OmniApp) -> None:
    app.secrets.set("api_token", b"tok-\x00\xff-123")
    app.secrets.set("other", "not yours")
    app.plugins.load(secrets_wasm("s"), grants={"secrets": {"expose": ["api_token", "unset"]}})
    assert get(app, "s", "api_token") == (10, b"tok-\x00\xff-123")
    assert get(app, "s", "other") == (DENIED, b"")
    assert get(app, "s", "unset") == (NOT_FOUND, b"")      # exposed, but not set
    assert get(app, "s", b"") == (INVALID, b"")
    assert get(app, "s", b"\xff\xfe") == (INVALID, b"")
    assert get(app, "s", "x" * 129) == (INVALID, b"")


def test_a_grant_without_expose_exposes_nothing(app: OmniApp) -> None:
    app.secrets.set("api_token", "v")
    app.plugins.load(secrets_wasm("s"), grants=["secrets"])
    assert get(app, "s", "api_token") == (DENIED, b"")


def test_out_of_bounds_output_traps_and_the_host_keeps_serving(app: OmniApp) -> None:
    from omnicore.errors import Trap

    app.secrets.set("t", "v")
    app.plugins.load(secrets_wasm("s"), grants={"secrets": {"expose": ["t"]}})
    with pytest.raises(Trap, match=r"secrets\.get"):
        app.plugins.call("s", "get_oob", b"t")
    assert get(app, "s", "t") == (1, b"v")


@pytest.mark.parametrize("options, match", [
    ({"expose": "token"}, "list of secret names"),
    ({"expose": ["bad name"]}, "bad secret name"),
    ({"reveal": ["x"]}, "no option 'reveal'"),
])
def test_bad_grants_are_config_errors(app: OmniApp, options: dict[str, object],
                                      match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        app.plugins.load(secrets_wasm("s"), grants={"secrets": options})
    assert "s" not in app.plugins


def _db_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.iterdir()
                    if p.name.startswith("omnicore.db"))


def test_values_are_encrypted_at_rest_with_a_0600_key_file(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    store = SecretStore(storage.secrets, tmp_path, environ={})
    store.set("token", b"plain-text-credential-4711")
    key = tmp_path / KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert b"plain-text-credential-4711" not in _db_bytes(tmp_path)
    assert store.names() == ["token"] and "plain-text" not in repr(store)
    storage.close()
    storage = open_storage(tmp_path)
    assert SecretStore(storage.secrets, tmp_path, environ={}).get("token") == (
        b"plain-text-credential-4711")
    storage.close()


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    store = SecretStore(storage.secrets, tmp_path, environ={})
    store.set("t", "v")
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        SecretStore(storage.secrets, tmp_path, environ={}).get("t")
    storage.close()


def test_a_tampered_or_moved_row_does_not_decrypt(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    store = SecretStore(storage.secrets, tmp_path, environ={})
    store.set("a", "alpha")
    store.set("b", "beta")
    storage.close()
    conn = sqlite3.connect(tmp_path / "omnicore.db")
    row = conn.execute("SELECT key_id, nonce, ciphertext FROM secrets WHERE name='a'").fetchone()
    conn.execute("UPDATE secrets SET key_id=?, nonce=?, ciphertext=? WHERE name='b'", row)
    conn.commit()
    conn.close()
    storage = open_storage(tmp_path)
    store = SecretStore(storage.secrets, tmp_path, environ={})
    assert store.get("a") == b"alpha"
    with pytest.raises(StorageError, match="does not decrypt") as info:
        store.get("b")
    assert "alpha" not in str(info.value) and "beta" not in str(info.value)
    storage.close()


def test_the_key_from_the_environment_and_a_wrong_key(tmp_path: Path) -> None:
    k1, k2 = new_key(), new_key()
    storage = open_storage(tmp_path)
    SecretStore(storage.secrets, tmp_path, environ={"OMNICORE_SECRET_KEY": k1}
                ).set("t", "value")
    assert not (tmp_path / KEY_FILE).exists()
    assert SecretStore(storage.secrets, tmp_path,
                       environ={"OMNICORE_SECRET_KEY": k1}).get("t") == b"value"
    with pytest.raises(StorageError, match="sealed with key"):
        SecretStore(storage.secrets, tmp_path,
                    environ={"OMNICORE_SECRET_KEY": k2}).get("t")
    with pytest.raises(ConfigError, match="32 random bytes"):
        SecretStore(storage.secrets, tmp_path,
                    environ={"OMNICORE_SECRET_KEY": "short"}).get("t")
    storage.close()


def test_rotation_re_encrypts_everything(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    store = SecretStore(storage.secrets, tmp_path, environ={})
    for i in range(5):
        store.set(f"s{i}", f"value-{i}")
    old_key = (tmp_path / KEY_FILE).read_text()
    old_rows = storage.backend.read("SELECT name, ciphertext FROM secrets ORDER BY name")
    new_id = store.rotate()
    assert (tmp_path / KEY_FILE).read_text() != old_key
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    new_rows = storage.backend.read("SELECT name, ciphertext, key_id FROM secrets ORDER BY name")
    assert all(o[1] != n[1] and n[2] == new_id for o, n in zip(old_rows, new_rows, strict=True))
    fresh = SecretStore(storage.secrets, tmp_path, environ={})
    assert [fresh.get(f"s{i}") for i in range(5)] == [f"value-{i}".encode() for i in range(5)]
    # With the key in the environment the operator supplies the new one.
    env_key, next_key = new_key(), new_key()
    env_store = SecretStore(open_storage(tmp_path / "env").secrets, tmp_path / "env",
                            environ={"OMNICORE_SECRET_KEY": env_key})
    env_store.set("x", "y")
    with pytest.raises(ConfigError, match="pass the new key"):
        env_store.rotate()
    env_store.rotate(next_key)
    assert SecretStore(open_storage(tmp_path / "env").secrets, tmp_path / "env",
                       environ={"OMNICORE_SECRET_KEY": next_key}).get("x") == b"y"
    storage.close()


def test_a_rotation_interrupted_before_the_key_rename_still_opens(tmp_path: Path) -> None:
    storage = open_storage(tmp_path)
    store = SecretStore(storage.secrets, tmp_path, environ={})
    store.set("t", "value")
    key = tmp_path / KEY_FILE
    old = key.read_text()
    store.rotate()
    new = key.read_text()
    # Simulate the crash: the new key is still pending, the old one in place.
    (tmp_path / (KEY_FILE + ".new")).write_text(new)
    os.chmod(tmp_path / (KEY_FILE + ".new"), 0o600)
    key.write_text(old)
    assert SecretStore(storage.secrets, tmp_path, environ={}).get("t") == b"value"
    assert key.read_text() == new and not (tmp_path / (KEY_FILE + ".new")).exists()
    storage.close()


def _cli(*args: str, stdin: bytes = b"", env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *args], input=stdin,
                          capture_output=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_cli_set_list_delete_rotate(tmp_path: Path) -> None:
    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "omnicore.yaml").write_text("name: s\ndata_dir: data\n")
    r = _cli("secrets", "set", "github_token", "--app", str(appdir), stdin=b"ghp_secret_value\n")
    assert r.returncode == 0, r.stderr
    assert b"ghp_secret_value" not in r.stdout + r.stderr
    assert _cli("secrets", "set", "empty", "--app", str(appdir)).returncode == 2
    r = _cli("secrets", "list", "--app", str(appdir), "--json")
    assert json.loads(r.stdout) == ["github_token"]
    r = _cli("secrets", "rotate", "--app", str(appdir))
    assert r.returncode == 0 and b"re-encrypted" in r.stderr
    storage = open_storage(appdir / "data")
    assert SecretStore(storage.secrets, appdir / "data", environ={}
                       ).get("github_token") == b"ghp_secret_value"
    storage.close()
    assert b"ghp_secret_value" not in _db_bytes(appdir / "data")
    assert _cli("secrets", "delete", "github_token", "--app", str(appdir)).returncode == 0
    r = _cli("secrets", "delete", "github_token", "--app", str(appdir))
    assert r.returncode == 1 and b"no secret named" in r.stderr
    r = _cli("secrets", "set", "bad name", "--app", str(appdir), stdin=b"v")
    assert r.returncode == 1 and b"bad secret name" in r.stderr


def test_key_material_is_base64_of_32_bytes() -> None:
    assert len(base64.b64decode(new_key())) == 32
