"""omnicore:kv (specs/abi.md §4.3) through a real wasm guest: statuses, quotas, isolation.

The guest is a WAT plugin whose handlers call one kv function each and answer with the i32
status (LE) followed by whatever the host wrote, so every §3.1 status reaches the test as the
guest saw it.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.errors import ConfigError, Trap

KV_WAT = r"""
(module
  (import "omnicore:kv" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:kv" "set" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:kv" "delete" (func $del (param i32 i32) (result i32)))
  (import "omnicore:kv" "incr" (func $incr (param i32 i32 i64 i32) (result i32)))
  (import "omnicore:kv" "list" (func $list (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 64)
  (global $bump (mut i32) (i32.const 0x40000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; output: status (i32 LE) at 0x20000, then the data the host wrote at 0x20004
  (func $out (param $status i32) (param $data i32) (result i64)
    (i32.store (i32.const 0x20000) (local.get $status))
    (i64.or (i64.shl (i64.const 0x20000) (i64.const 32))
            (i64.extend_i32_u (i32.add (i32.const 4) (local.get $data)))))
  (func $fitted (param $r i32) (param $cap i32) (result i32)
    (select (local.get $r) (i32.const 0)
            (i32.and (i32.gt_s (local.get $r) (i32.const 0))
                     (i32.le_s (local.get $r) (local.get $cap)))))
  (func (export "get") (param $p i32) (param $n i32) (result i64)
    (local $r i32)
    (local.set $r (call $get (local.get $p) (local.get $n) (i32.const 0x20004) (i32.const 0x10000)))
    (call $out (local.get $r) (call $fitted (local.get $r) (i32.const 0x10000))))
  (func (export "get_small") (param $p i32) (param $n i32) (result i64)
    (call $out (call $get (local.get $p) (local.get $n) (i32.const 0x20004) (i32.const 4))
               (i32.const 0)))
  ;; input: key_len (u32 LE), key, value
  (func (export "set") (param $p i32) (param $n i32) (result i64)
    (local $k i32)
    (local.set $k (i32.load (local.get $p)))
    (call $out (call $set (i32.add (local.get $p) (i32.const 4)) (local.get $k)
                          (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $k))
                          (i32.sub (i32.sub (local.get $n) (i32.const 4)) (local.get $k)))
               (i32.const 0)))
  (func (export "delete") (param $p i32) (param $n i32) (result i64)
    (call $out (call $del (local.get $p) (local.get $n)) (i32.const 0)))
  ;; input: delta (i64 LE), key
  (func (export "incr") (param $p i32) (param $n i32) (result i64)
    (call $out (call $incr (i32.add (local.get $p) (i32.const 8))
                           (i32.sub (local.get $n) (i32.const 8))
                           (i64.load (local.get $p)) (i32.const 0x20004))
               (i32.const 8)))
  (func (export "list") (param $p i32) (param $n i32) (result i64)
    (local $r i32)
    (local.set $r (call $list (local.get $p) (local.get $n)
                              (i32.const 0x20004) (i32.const 0x10000)))
    (call $out (local.get $r) (call $fitted (local.get $r) (i32.const 0x10000))))
  (func (export "get_out_of_bounds") (param $p i32) (param $n i32) (result i64)
    (call $out (call $get (local.get $p) (local.get $n) (i32.const 0x3fffff0) (i32.const 100))
               (i32.const 0)))
  (func (export "set_huge_key") (param $p i32) (param $n i32) (result i64)
    (call $out (call $set (i32.const 0) (i32.const 0x7ffffff0) (i32.const 0) (i32.const 1))
               (i32.const 0)))
)
"""

NOT_FOUND, INVALID, QUOTA, TOO_LARGE = -1, -3, -4, -6


def kv_wasm(name: str) -> bytes:
    from omnicore.sandbox import wasmbin

    return wasmbin.set_custom_section(wasmtime.wat2wasm(KV_WAT), "omnicore.manifest",
                                      json.dumps({"name": name}).encode())


class Guest:
    """Calls the WAT plugin's handlers and decodes (status, data)."""

    def __init__(self, app: OmniApp, name: str) -> None:
        self.app, self.name = app, name

    def _call(self, handler: str, data: bytes) -> tuple[int, bytes]:
        out = self.app.plugins.call(self.name, handler, data)
        return struct.unpack("<i", out[:4])[0], out[4:]

    def get(self, key: bytes | str) -> tuple[int, bytes]:
        return self._call("get", key.encode() if isinstance(key, str) else key)

    def set(self, key: bytes | str, value: bytes) -> int:
        k = key.encode() if isinstance(key, str) else key
        return self._call("set", struct.pack("<I", len(k)) + k + value)[0]

    def delete(self, key: str) -> int:
        return self._call("delete", key.encode())[0]

    def incr(self, key: bytes | str, delta: int) -> tuple[int, int | None]:
        k = key.encode() if isinstance(key, str) else key
        status, data = self._call("incr", struct.pack("<q", delta) + k)
        return status, (struct.unpack("<q", data)[0] if status == 0 else None)

    def list(self, prefix: str) -> Any:
        status, data = self._call("list", prefix.encode())
        return json.loads(data) if status >= 0 else status


@pytest.fixture
def kv_app(make_app: Callable[..., OmniApp]) -> Iterator[Callable[..., Guest]]:
    app = make_app(builtin_extensions=None, overrides={"sandbox": {"watch": False}})
    app.start()

    def load(name: str = "kvp", **grant: Any) -> Guest:
        app.plugins.load(kv_wasm(name), grants={"kv": grant})
        return Guest(app, name)

    yield load
    app.stop(grace=0)


def test_set_get_delete_list(kv_app: Callable[..., Guest]) -> None:
    g = kv_app()
    assert g.get("k") == (NOT_FOUND, b"")
    assert g.set("k", b"\x00value\xff") == 0
    assert g.get("k") == (7, b"\x00value\xff")
    assert g.set("user:2", b"x") == 0
    assert g.set("user:1", b"x") == 0
    assert g.list("user:") == ["user:1", "user:2"]
    assert g.list("") == ["k", "user:1", "user:2"]
    assert g.delete("k") == 1
    assert g.delete("k") == 0
    assert g.get("k") == (NOT_FOUND, b"")


def test_value_longer_than_the_buffer_returns_its_length_and_writes_nothing(
        kv_app: Callable[..., Guest]) -> None:
    g = kv_app()
    g.set("k", b"0123456789")
    out = g.app.plugins.call(g.name, "get_small", b"k")
    assert struct.unpack("<i", out[:4])[0] == 10


def test_incr(kv_app: Callable[..., Guest]) -> None:
    g = kv_app()
    assert g.incr("n", 5) == (0, 5)
    assert g.incr("n", -8) == (0, -3)
    assert g.get("n") == (2, b"-3")
    g.set("word", b"abc")
    assert g.incr("word", 1) == (INVALID, None)
    assert g.get("word") == (3, b"abc")  # untouched
    g.set("max", str(2**63 - 1).encode())
    assert g.incr("max", 1) == (INVALID, None)


@pytest.mark.parametrize("key", [b"", b"\xff\xfe", b"k" * 513])
def test_bad_keys_are_invalid(kv_app: Callable[..., Guest], key: bytes) -> None:
    g = kv_app()
    assert g.set(key, b"v") == INVALID
    assert g.get(key)[0] == INVALID
    assert g.incr(key, 1) == (INVALID, None)
    assert g.app.kv.for_plugin("kvp").list("") == []


def test_a_512_byte_utf8_key_is_fine(kv_app: Callable[..., Guest]) -> None:
    g = kv_app()
    key = "é" * 256
    assert g.set(key, b"v") == 0
    assert g.get(key) == (1, b"v")


def test_quotas_from_the_grant(kv_app: Callable[..., Guest]) -> None:
    g = kv_app(max_keys=2, max_bytes=50, max_value_bytes=20)
    assert g.set("a", b"x" * 21) == TOO_LARGE
    assert g.set("a", b"x" * 20) == 0
    assert g.set("b", b"x" * 20) == 0
    assert g.set("c", b"x") == QUOTA                   # third key
    assert g.incr("c", 1) == (QUOTA, None)
    assert g.set("b", b"y" * 20) == 0                  # replacing is fine
    g.delete("b")
    assert g.set("bb", b"y" * 20) == 0                  # 21 + 22 = 43 bytes
    assert g.set("c", b"") == QUOTA                     # still 2 keys
    usage = g.app.kv.for_plugin("kvp").usage()
    assert (usage.keys, usage.bytes) == (2, 43)
    assert g.app.kv.for_plugin("kvp").get("c") is None


def test_out_of_bounds_pointers_trap_and_the_host_keeps_serving(
        kv_app: Callable[..., Guest]) -> None:
    g = kv_app()
    with pytest.raises(Trap, match="omnicore:kv"):
        g.app.plugins.call(g.name, "get_out_of_bounds", b"k")
    with pytest.raises(Trap, match="omnicore:kv"):
        g.app.plugins.call(g.name, "set_huge_key", b"")
    assert g.set("k", b"v") == 0


def test_plugins_never_see_each_others_keys(kv_app: Callable[..., Guest]) -> None:
    a, b = kv_app("alpha"), kv_app("beta")
    assert a.set("secret", b"alpha's") == 0
    assert b.get("secret") == (NOT_FOUND, b"")
    assert b.delete("secret") == 0
    assert b.list("") == []
    assert b.incr("secret", 1) == (0, 1)
    assert a.get("secret") == (7, b"alpha's")


def test_bad_grant_options_are_a_config_error(kv_app: Callable[..., Guest]) -> None:
    with pytest.raises(ConfigError, match="max_keys must be a positive integer"):
        kv_app(max_keys=0)
    with pytest.raises(ConfigError, match="unknown option 'max_key'"):
        kv_app(max_key=3)


def test_app_kv_seeds_what_the_plugin_reads(kv_app: Callable[..., Guest]) -> None:
    g = kv_app()
    store = g.app.kv.for_plugin("kvp")
    store.set("seeded", b"from python")
    assert g.get("seeded") == (11, b"from python")
    g.incr("hits", 2)
    assert store.get("hits") == b"2"
    assert g.app.kv.plugins() == ["kvp"]


def test_data_survives_an_app_restart(make_app: Callable[..., OmniApp], tmp_path: Path) -> None:
    for expected in (1, 2):
        app = make_app("same", builtin_extensions=None, overrides={"sandbox": {"watch": False}})
        with app:
            app.plugins.load(kv_wasm("kvp"), grants=["kv"])
            assert Guest(app, "kvp").incr("boots", 1) == (0, expected)


def test_concurrent_incr_from_four_threads(kv_app: Callable[..., Guest]) -> None:
    g = kv_app()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(100):
                assert g.incr("n", 1)[0] == 0
        except BaseException as exc:
            errors.append(exc)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert g.get("n") == (3, b"400")


# -- the counter examples: one per SDK language, counting in kv ------------------------------

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def counters(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from omnicore.toolchains import build

    out = tmp_path_factory.mktemp("counters")
    return {lang: build(ROOT / "plugins" / "counter" / lang, out)
            for lang in ("rust", "go", "ts", "c")}


@pytest.mark.parametrize("lang", ["rust", "go", "ts", "c"])
def test_counter_is_shared_by_the_pool_and_survives_a_restart(
        counters: dict[str, Path], make_app: Callable[..., OmniApp], lang: str) -> None:
    name = f"counter-{lang}"
    for round_ in (1, 2):
        app = make_app("counting", builtin_extensions=None,
                       overrides={"sandbox": {"watch": False}})
        with app:
            app.plugins.load(counters[lang], grants=["config", "kv"], config={"start": 100})
            errors: list[BaseException] = []

            def work(app: OmniApp = app, errors: list[BaseException] = errors) -> None:
                try:
                    for _ in range(25):
                        app.plugins.call(name, "count", b"{}")
                except BaseException as exc:
                    errors.append(exc)
            threads = [threading.Thread(target=work) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert errors == []
            out = json.loads(app.plugins.call(name, "count", b'{"by": 0}'))
            assert out == {"count": 100 + 100 * round_}, f"round {round_}"
            assert app.kv.for_plugin(name).get("count") == str(100 * round_).encode()
    with make_app("counting", builtin_extensions=None,
                  overrides={"sandbox": {"watch": False}}) as app:
        app.plugins.load(counters[lang], grants=["config", "kv"], config={"start": 100})
        assert json.loads(app.plugins.call(name, "reset", b"")) == {"count": 100}
        assert app.kv.for_plugin(name).get("count") is None
