"""An Extism plugin's WASI is the native plugins' bounded WASI (specs/abi.md §6): its pointers
are into the plugin's memory, not the kernel's, and every wait ends by the deadline."""

from __future__ import annotations

import pytest
import wasmtime

from omnicore.errors import DeadlineExceeded, PluginLoadError
from omnicore.plugins.host import PluginHost
from tests.waiting import fastest

WASI_PLUGIN = wasmtime.wat2wasm("""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (memory (export "memory") 1)
  (data (i32.const 256) "said through stdout\\n")
  (func (export "say") (result i32)
    (i32.store (i32.const 200) (i32.const 256))
    (i32.store (i32.const 204) (i32.const 20))
    (drop (call $fd_write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 208)))
    (i32.const 0))
  (func (export "sleep") (result i32)
    ;; one relative monotonic clock subscription of 10 s
    (i32.store8 (i32.const 1032) (i32.const 0))
    (i32.store (i32.const 1040) (i32.const 1))
    (i64.store (i32.const 1048) (i64.const 10000000000))
    (drop (call $poll (i32.const 1024) (i32.const 2048) (i32.const 1) (i32.const 3000)))
    (i32.const 0)))""")


def test_wasi_output_is_read_from_the_plugins_memory(host: PluginHost) -> None:
    host.load(WASI_PLUGIN, name="wasi-extism")
    assert host.call("wasi-extism", "say", b"") == b""
    lines = [ln.message for ln in host.logs("wasi-extism").lines()]
    assert "said through stdout" in lines


def test_a_long_wasi_sleep_ends_at_the_deadline(host: PluginHost,
                                                cpu_contention: None) -> None:
    host.load(WASI_PLUGIN, name="sleepy", limits={"timeout_ms": 300})

    def sleep() -> None:
        with pytest.raises(DeadlineExceeded):
            host.call("sleepy", "sleep", b"")

    assert fastest(sleep) < 0.3 + 1.5  # it slept the full 10 s before
    assert host.call("sleepy", "say", b"") == b""


START_PLUGIN = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u8" (func $store_u8 (param i64 i32)))
  (import "extism:host/env" "log_info" (func $log_info (param i64)))
  (memory (export "memory") 1)
  (data (i32.const 256) "said from the start function\\n")
  (func $start (local $h i64)
    (i32.store (i32.const 200) (i32.const 256))
    (i32.store (i32.const 204) (i32.const 29))
    (drop (call $fd_write (i32.const 1) (i32.const 200) (i32.const 1) (i32.const 208)))
    (local.set $h (call $alloc (i64.const 2)))
    (call $store_u8 (local.get $h) (i32.const 104))
    (call $store_u8 (i64.add (local.get $h) (i64.const 1)) (i32.const 105))
    (call $log_info (local.get $h))
    BODY)
  (start $start)
  (func (export "ok") (result i32) (i32.const 0)))"""


def test_a_start_function_writes_to_stdout_and_calls_the_kernel(host: PluginHost) -> None:
    # The kernel is ready before the plugin is instantiated, and WASI finds the plugin's
    # memory through its caller before the plugin's exports are known (specs/abi.md §2.1).
    host.load(wasmtime.wat2wasm(START_PLUGIN.replace("BODY", "")), name="starts")
    lines = [ln.message for ln in host.logs("starts").lines()]
    assert lines[-2:] == ["said from the start function", "hi"]
    assert host.call("starts", "ok", b"") == b""


def test_a_start_function_looping_on_wasi_ends_at_the_load_deadline(host: PluginHost) -> None:
    loop = ("(loop $l (drop (call $fd_write (i32.const 1) (i32.const 200) (i32.const 0) "
            "(i32.const 208))) (br $l))")

    def load() -> None:
        with pytest.raises(PluginLoadError, match=r"'\(start\)' exceeded its deadline") as info:
            host.load(wasmtime.wat2wasm(START_PLUGIN.replace("BODY", loop)), name="spins",
                      limits={"timeout_ms": 200})
        assert isinstance(info.value.__context__, DeadlineExceeded)

    # (a start that crossed its deadline is tried once more: plugins.linking)
    assert fastest(load) < 2 * 0.2 + 1.5
