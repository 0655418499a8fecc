"""Extism plugins in the plugin host: detection, inspect/call, manifest, grants, bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import extism
import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import (
    ConfigError,
    DeadlineExceeded,
    InputTooLarge,
    InvalidModule,
    PluginLoadError,
    PluginNotFound,
    Trap,
)
from omnicore.extism import ExtismRuntime, host_fn
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import Limits, PluginModule, SandboxEngine
from tests.extism.extism_fixtures import wat_plugin
from tests.waiting import eventually, fastest

OMNICORE = [sys.executable, "-m", "omnicore.cli"]


def test_detected_as_extism_with_handlers_and_imports(pdk_wasm: Path) -> None:
    report = PluginModule.inspect(pdk_wasm)
    assert report["abi"] == "extism" and report["ok"]
    assert {"count_vowels", "echo", "echo_fast", "counter"} <= set(report["handlers"])
    assert "config_get" in report["imports"]["extism:host/env"]
    assert report["imports"]["extism:host/user"] == ["shout"]
    assert report["requested"] == ["log"]  # config_get needs no grant, as in Extism
    assert report["abi_reason"] == "it imports extism:host/env"


def test_cli_inspect_and_call_answer_like_the_sdk(pdk_wasm: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "vowels.wasm"
    shutil.copy(pdk_wasm, plugin)
    # The CLI registers no user functions: the PDK plugin imports one, so it would not load.
    out = subprocess.run([*OMNICORE, "inspect", str(plugin)], capture_output=True, text=True)
    assert "abi         extism" in out.stdout
    assert "Invalid function import from extism:host/user: shout" in out.stdout
    wasm = tmp_path / "kernel.wasm"
    wasm.write_bytes(wat_plugin("kernel"))
    (tmp_path / "kernel.json").write_text(json.dumps({"config": {"greeting": "Hi"}}))
    done = subprocess.run([*OMNICORE, "call", str(wasm), "config", "--input", "greeting"],
                          capture_output=True)
    assert done.returncode == 0, done.stderr
    sdk = extism.Plugin(wat_plugin("kernel"), config={"greeting": "Hi"})
    assert done.stdout == bytes(sdk.call("config", b"greeting")) + b"\n" == b"Hi\n"


def test_dropped_into_the_folder_with_its_manifest(pdk_wasm: Path, tmp_path: Path) -> None:
    shutil.copy(pdk_wasm, tmp_path / "vowels.wasm")
    (tmp_path / "vowels.json").write_text(json.dumps(
        {"wasm": [{"path": "vowels.wasm"}], "config": {"thing": "from the manifest"},
         "timeout_ms": 500, "memory": {"max_pages": 256, "max_var_bytes": 64}}))

    @host_fn(name="shout")
    def shout(text: str) -> str:
        return text.upper()

    with PluginHost() as host:
        host.extism_functions.append(shout)
        host.watch_folder(tmp_path, watch=False)
        info = host.get("vowels")
        assert info.state == "loaded", info.last_error
        assert host.call("vowels", "config", b"thing") == b"from the manifest"
        assert host.call("vowels", "user", b"abc") == b"ABC"
        with pytest.raises(Trap, match="Variable store is full"):
            host.call("vowels", "fill_vars", b"x" * 100)  # over max_var_bytes (64)
        assert host.call("vowels", "count_vowels", b"aeiou") == b'{"count": 5}'


@pytest.mark.parametrize(("manifest", "key"), [
    ({"allowed_hosts": ["http://example.com"]}, "allowed_hosts"),
    ({"allowed_hosts": ["example.com:8080"]}, "allowed_hosts"),
    ({"allowed_hosts": "example.com"}, "allowed_hosts"),
    ({"allowed_paths": {"/nonexistent-dir": "/data"}}, "allowed_paths"),
    ({"wasm": [{"url": "https://example.com/x.wasm"}]}, "wasm"),
    ({"memory": {"max_http_response_bytes": 0}}, "memory.max_http_response_bytes"),
    ({"timeout_ms": "soon"}, "timeout_ms"),
    ({"frobnicate": 1}, "frobnicate"),
])
def test_unsupported_manifest_keys_are_refused_naming_the_key(
        tmp_path: Path, manifest: dict[str, object], key: str) -> None:
    wasm = tmp_path / "k.wasm"
    wasm.write_bytes(wat_plugin("kernel"))
    (tmp_path / "k.json").write_text(json.dumps(manifest))
    with PluginHost() as host, pytest.raises(ConfigError) as err:
        host.load(wasm, grants=["config"])
    assert f"'{key}'" in str(err.value) and "\n" not in str(err.value)


def test_config_get_needs_no_grant(host: PluginHost) -> None:
    info = host.load(wat_plugin("kernel"), name="k")
    assert info.state == "loaded" and "config" not in info.granted
    assert host.call("k", "config", b"greeting") == (0).to_bytes(8, "little")  # absent


def test_unknown_env_import_is_refused_with_extisms_words(host: PluginHost) -> None:
    with pytest.raises(InvalidModule, match="Invalid function import from extism:host/env: "
                                            "frobnicate"):
        host.load(wat_plugin("unknown_import"), name="u")


def test_wrong_import_type_is_refused(host: PluginHost) -> None:
    wasm = wasmtime.wat2wasm('(module (import "extism:host/env" "alloc" '
                             '(func (param i32) (result i64))) (func (export "run")))')
    with pytest.raises(InvalidModule, match=r"has type \(i32\) -> i64, expected \(i64\) -> i64"):
        host.load(wasm, name="w")


def test_bad_input_fails_the_call_and_the_host_keeps_serving(host: PluginHost) -> None:
    host.load(wat_plugin("kernel"), name="k", grants=["config"])
    for handler in ("load_oob", "store_oob", "output_oob", "bad_key", "http"):
        with pytest.raises(Trap):
            host.call("k", handler, b"")
        host.get("k").breaker  # noqa: B018 - the plugin is still registered
        assert host.call("k", "copy", b"still here") == b"still here"


def test_huge_input_is_refused_before_the_guest(host: PluginHost) -> None:
    host.load(wat_plugin("kernel"), name="k", grants=["config"],
              limits={"max_input_bytes": 1000})
    with pytest.raises(InputTooLarge):
        host.call("k", "copy", b"x" * 1001)


def test_sdk_host_functions_are_accepted_as_they_are(pdk_wasm: Path) -> None:
    @extism.host_fn(name="shout", signature=([extism.ValType.I64], [extism.ValType.I64]),
                    user_data=b"!!")
    def shout(plugin: extism.CurrentPlugin, inputs: list[extism.Val],
              outputs: list[extism.Val], suffix: bytes) -> None:
        plugin.return_string(outputs[0], plugin.input_string(inputs[0]).upper() + suffix.decode())

    with PluginHost() as host:
        host.extism_functions.append(shout)
        host.load(pdk_wasm, name="p", grants=["config"])
        assert host.call("p", "user", b"hey") == b"HEY!!"


def test_the_runtime_alone_pools_and_closes(pdk_wasm: Path) -> None:
    @host_fn(name="shout")
    def shout(text: str) -> str:
        return text

    with SandboxEngine() as engine:
        module = PluginModule.load(engine, pdk_wasm)
        rt = ExtismRuntime(engine, module, builtin_registry(), ["config"], functions=[shout])
        assert rt.call("echo", b"abc") == b"abc"
        assert rt.stats()["live"] == 1
        rt.close()
        with pytest.raises(PluginNotFound):
            rt.call("echo", b"abc")


def test_a_failing_constructor_fails_the_load(host: PluginHost) -> None:
    wasm = wasmtime.wat2wasm('(module (import "extism:host/env" "alloc" '
                             '(func (param i64) (result i64))) '
                             '(func (export "_initialize") unreachable) '
                             '(func (export "run") (result i32) (i32.const 0)))')
    with pytest.raises(PluginLoadError, match="_initialize"):
        host.load(wasm, name="i")


def test_simd_in_bodies_loads_but_v128_in_signatures_is_refused(host: PluginHost) -> None:
    # The native path too: SIMD is on for function bodies only (specs/abi.md §1.5).
    body = wasmtime.wat2wasm('''(module (memory (export "memory") 2)
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 8))
      (func (export "omni_free") (param i32 i32))
      (func (export "h") (param i32 i32) (result i64)
        (i64.extend_i32_u (i32x4.extract_lane 1 (v128.const i32x4 1 0 0 0)))))''')
    assert host.load(body, name="simd").state == "loaded"
    for decl in ('(func (export "f") (param v128))',
                 '(global (export "g") v128 (v128.const i64x2 0 0))',
                 '(import "extism:host/env" "alloc" (func (result v128)))'):
        with pytest.raises(InvalidModule, match="v128 type; SIMD is supported inside function "
                                                "bodies only"):
            host.load(wasmtime.wat2wasm(f"(module {decl})"), name="v")


def test_manifest_timeout_and_pages_become_limits(tmp_path: Path) -> None:
    from omnicore.errors import DeadlineExceeded, MemoryLimitExceeded

    wasm = tmp_path / "k.wasm"
    wasm.write_bytes(wat_plugin("kernel"))
    (tmp_path / "k.json").write_text(json.dumps({"timeout_ms": 50, "memory": {"max_pages": 32}}))
    with PluginHost() as host:
        host.load(wasm, grants=["config"])
        with pytest.raises(DeadlineExceeded,
                           match=r"deadline of 50 ms \(limits\.timeout_ms.*\): timeout"):
            host.call("k", "spin", b"")
        with pytest.raises(MemoryLimitExceeded, match="oom"):
            host.call("k", "kernel_oom", b"")  # 2 MiB of kernel memory, not 64
        assert host.call("k", "copy", b"ok") == b"ok"


def test_tables_are_limited_like_native_plugins(host: PluginHost) -> None:
    # Tables sit outside linear memory: the same limits as for native plugins hold.
    grow = wasmtime.wat2wasm('''(module
      (import "extism:host/env" "output_set" (func $out (param i64 i64)))
      (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
      (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
      (table $t 10 funcref)
      (func (export "grow") (result i32) (local $h i64)
        (local.set $h (call $alloc (i64.const 1)))
        ;; 1 when table.grow was refused (-1), 0 when it grew.
        (call $store8 (local.get $h)
              (i32.eq (table.grow $t (ref.null func) (i32.const 10000000)) (i32.const -1)))
        (call $out (local.get $h) (i64.const 1))
        (i32.const 0)))''')
    host.load(grow, name="grow")
    assert host.call("grow", "grow", b"") == b"\x01"
    big = wasmtime.wat2wasm('(module (import "extism:host/env" "alloc" '
                            '(func (param i64) (result i64))) (table 20000000 funcref) '
                            '(func (export "run") (result i32) (i32.const 0)))')
    with pytest.raises(PluginLoadError):
        host.load(big, name="big")


def test_every_call_on_a_kept_instance_gets_its_own_deadline() -> None:
    # A call re-arms the epoch deadline only when the engine's epoch moved since the last arm.
    # Both sides of that: a runaway call right after another one on the same instance (the
    # epoch most likely unmoved: the deadline armed by the first call stands) is still cut;
    # a call after the instance sat idle past the timeout (the epoch moved) is not cut short.
    with SandboxEngine() as engine:
        module = PluginModule.load(engine, wat_plugin("bare"))
        rt = ExtismRuntime(engine, module, builtin_registry(),
                           limits=Limits(timeout_ms=300, pool_size=1))
        with rt:

            def spin() -> None:
                assert rt.call("ok", b"") == b""
                with pytest.raises(DeadlineExceeded, match="timeout"):
                    rt.call("spin", b"")

            assert fastest(spin) < 0.3 + 1.5
            armed = engine.epoch
            assert rt.call("ok", b"") == b""
            # Idle until the epoch is past the deadline that call armed, ticker willing.
            eventually(lambda: engine.epoch > armed + engine.deadline_ticks(300),
                       "the epoch past the deadline that call armed")
            created = rt.instances_created
            assert [rt.call("ok", b"") for _ in range(3)] == [b""] * 3
            assert rt.instances_created == created  # the same instance, re-armed


def test_inputs_of_changing_sizes_on_one_instance(pdk_wasm: Path) -> None:
    # The input's header is packed once per input size and kept: every change of size (to
    # empty, to a size with the same 8-byte rounding, to one that grows kernel memory) and
    # back must set the input the plugin sees to exactly this call's bytes.
    @host_fn(name="shout")
    def shout(text: str) -> str:
        return text

    sizes = [100, 5, 100, 0, 100, 97, 104, 65536, 7, 0, 0, 100]
    with SandboxEngine() as engine:
        module = PluginModule.load(engine, pdk_wasm)
        rt = ExtismRuntime(engine, module, builtin_registry(), ["config"], functions=[shout],
                           limits=Limits(pool_size=1))
        with rt:
            for i, n in enumerate(sizes):
                data = bytes((i + j) % 251 for j in range(n))
                assert rt.call("echo", data) == data, n
                assert rt.call("echo_fast", data) == data, n
            assert rt.instances_created == 1
