"""Extism plugins through omnicore vs through the Extism Python SDK, in one run.

Run: ``.venv/bin/python bench/bench_extism.py [--quick]``. The plugin is the AssemblyScript PDK
plugin of the tests (tests/extism/plugins/pdk_plugin.ts, built from source with @extism/as-pdk):
``count_vowels`` (the PDK's example), ``echo`` as a PDK user writes it (input copied in, then
out, 8 bytes per kernel call) and ``echo_fast``, the fastest echo a peer could write (the
output is the input block itself), and ``http``: a GET through ``http_request`` to a loopback
server (tests/extism/extism_loopback.py), with the same GET from Python (urllib3) as the floor;
and ``alloc-heavy``: a WAT plugin (tests/extism/plugins/allocs.wat) keeping 100,000 kernel
blocks live in one call. Prints the median µs per call over the repeats with its min-max
(bench/_measure.py: both columns get the same iterations, repeats and warm-up) and the
speed-up of the medians. Targets (issue 21): >= 5x on the 100 B echo, >= 2x on the 64 KiB
echo, no case slower.

The omnicore column calls through ``PluginHost.call`` (call stats, circuit breaker, hot
reload); the ``ExtismRuntime.call`` rows call the runtime alone, the layer that corresponds
to ``extism.Plugin.call``. The floor section runs without omnicore: the 64 KiB echo loop as
a WAT plugin in plain wasmtime against imports that do nothing (what a cross-instance call
costs) and against our kernel, and the PDK plugin's ``echo`` against a kernel that does
nothing, which bounds what any kernel can gain on the 64 KiB PDK echo.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import extism
import urllib3
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.extism import ExtismRuntime, host_fn
from omnicore.extism._kernel import BLOCK_TAG, FIRST_HANDLE, kernel_wasm
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import PluginModule, SandboxEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests package
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import Sample, machine, measure

from tests.extism.extism_fixtures import pdk_plugin, wat_plugin
from tests.extism.extism_loopback import loopback_server


@extism.host_fn(name="shout")
def sdk_shout(text: str) -> str:
    return text.upper()


@host_fn(name="shout")
def our_shout(text: str) -> str:
    return text.upper()

# The PDK's 64 KiB echo as a PDK compiles it: input_load_u64 into the plugin's memory, alloc,
# store_u64 back out, output_set; 16,385 calls into the module linked as extism:host/env.
LOOP_PLUGIN = """(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u64" (func $input_load_u64 (param i64) (result i64)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (memory 2)
  (func (export "nop") (result i32) (i32.const 0))
  (func (export "echo") (result i32)
    (local $n i64) (local $i i64) (local $out i64)
    (local.set $n (call $input_length))
    (block $d (loop $l
      (br_if $d (i64.ge_u (local.get $i) (local.get $n)))
      (i64.store (i32.wrap_i64 (local.get $i)) (call $input_load_u64 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 8)))
      (br $l)))
    (local.set $out (call $alloc (local.get $n)))
    (local.set $i (i64.const 0))
    (block $d (loop $l
      (br_if $d (i64.ge_u (local.get $i) (local.get $n)))
      (call $store_u64 (i64.add (local.get $out) (local.get $i))
                       (i64.load (i32.wrap_i64 (local.get $i))))
      (local.set $i (i64.add (local.get $i) (i64.const 8)))
      (br $l)))
    (call $output_set (local.get $out) (local.get $n))
    (i32.const 0)))"""

# Every kernel function the PDK's echo calls, doing nothing (input_length says 64 KiB).
NOOP_KERNEL = """(module
  (memory (export "memory") 1)
  (func (export "input_length") (result i64) (i64.const 65536))
  (func (export "input_load_u64") (param i64) (result i64) (local.get 0))
  (func (export "input_load_u8") (param i64) (result i32) (i32.const 0))
  (func (export "alloc") (param i64) (result i64) (i64.const 80))
  (func (export "store_u64") (param i64 i64))
  (func (export "store_u8") (param i64 i32))
  (func (export "output_set") (param i64 i64)))"""

_INPUT = struct.Struct("<10Q")  # the kernel's state words and its input block header


def _plain(engine: wasmtime.Engine, kernel: bytes, plugin: wasmtime.Module
           ) -> tuple[wasmtime.Store, wasmtime.Instance, Any]:
    """``plugin`` linked with ``kernel`` in one store of plain wasmtime (imports the kernel
    lacks trap if called; the echo never calls them)."""
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(2**40)
    env = wasmtime.Instance(store, wasmtime.Module(engine, kernel), [])
    linker = wasmtime.Linker(engine)
    linker.allow_shadowing = True
    linker.define_unknown_imports_as_traps(plugin)
    linker.define_instance(store, "extism:host/env", env)
    exports = linker.instantiate(store, plugin).exports(store)
    init = exports.get("_initialize")
    if isinstance(init, wasmtime.Func):
        init(store)
    return store, env, exports


def floor_rows(pdk: bytes, scale: int) -> list[tuple[str, Sample, Sample]]:
    """The 64 KiB echo without omnicore: (label, no-op kernel, our kernel) per plugin."""
    cfg = wasmtime.Config()
    cfg.epoch_interruption = True  # as omnicore's and Extism's engines
    engine = wasmtime.Engine(cfg)
    n = 65536
    head = _INPUT.pack(FIRST_HANDLE + n, FIRST_HANDLE, n, 0, 0, 0, 0, 0, n | BLOCK_TAG, n)
    rows = []
    for label, plugin, empty in (
            ("WAT loop, 16,385 kernel calls", wasmtime.Module(engine, LOOP_PLUGIN), "nop"),
            ("PDK echo (plugin's own work)", wasmtime.Module(engine, pdk), "code")):
        cells = []
        for kernel in (bytes(wasmtime.wat2wasm(NOOP_KERNEL)), kernel_wasm()):
            store, env, exports = _plain(engine, kernel, plugin)
            mem = env.exports(store)["memory"]
            assert isinstance(mem, wasmtime.Memory)
            if mem.data_len(store) < 2 * n:
                mem.grow(store, 2)
            echo, nop = exports["echo"], exports[empty]
            assert isinstance(echo, wasmtime.Func) and isinstance(nop, wasmtime.Func)

            def call(f: wasmtime.Func = echo, m: wasmtime.Memory = mem,
                     s: wasmtime.Store = store) -> None:
                m.write(s, head, 0)  # a fresh call: the state words and the 64 KiB input
                f(s)

            def bare(f: wasmtime.Func = nop, s: wasmtime.Store = store) -> None:
                f(s)

            iters = max(300 // scale, 10)
            # Less a call of an export that does nothing: wasmtime-py's own cost per call.
            whole, empty_call = measure(call, iters), measure(bare, iters)
            cells.append(Sample(whole.median - empty_call.median,
                                whole.low - empty_call.median, whole.high - empty_call.median))
        rows.append((label, cells[0], cells[1]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    wasm = pdk_plugin().read_bytes()
    sdk = extism.Plugin({"wasm": [{"data": wasm}], "allowed_hosts": ["127.0.0.1"]},
                        functions=[sdk_shout])
    text = b"The quick brown fox jumps over the lazy dog. " * 2
    cases = [
        ("count_vowels, 90 B", "count_vowels", text[:90], 20000),
        ("echo (PDK idiom), 100 B", "echo", b"x" * 100, 20000),
        ("echo_fast (input block), 100 B", "echo_fast", b"x" * 100, 20000),
        ("echo (PDK idiom), 64 KiB", "echo", b"x" * 65536, 500),
        ("echo_fast (input block), 64 KiB", "echo_fast", b"x" * 65536, 5000),
    ]
    engine = SandboxEngine()
    runtime = ExtismRuntime(engine, PluginModule.load(engine, wasm), builtin_registry(),
                            ["config"], functions=[our_shout])
    with PluginHost() as host, loopback_server() as server, engine, runtime:
        host.extism_functions.append(our_shout)
        # The manifest's allowed_hosts as the http grant they map to (specs/extism.md).
        host.load(wasm, name="pdk", grants={
            "config": {}, "http": {"allow_hosts": ["http://127.0.0.1:*"]}})
        cases.append(("http GET, loopback server", "http",
                      json.dumps({"url": f"{server.url}/hello"}).encode(), 1000))
        allocs = wat_plugin("allocs")
        host.load(allocs, name="allocs")
        sdk_allocs = extism.Plugin(allocs, functions=[])
        rows = []
        for label, handler, data, n in cases:
            n = max(n // scale, 10)
            assert host.call("pdk", handler, data) == bytes(sdk.call(handler, data))
            ours = measure(lambda h=handler, d=data: host.call("pdk", h, d), n)
            theirs = measure(lambda h=handler, d=data: sdk.call(h, d), n)
            rows.append((label, ours, theirs))
            if handler == "echo":  # the runtime alone: the layer of extism.Plugin.call
                assert runtime.call(handler, data) == data
                rows.append(("  ExtismRuntime.call, same echo",
                             measure(lambda d=data: runtime.call("echo", d), n), theirs))
        n = max(20 // scale, 3)
        assert host.call("allocs", "many", b"") == bytes(sdk_allocs.call("many", b""))
        rows.append(("alloc-heavy: 100,000 live blocks", measure(
            lambda: host.call("allocs", "many", b""), n, warmup=1), measure(
            lambda: sdk_allocs.call("many", b""), n, warmup=1)))
        pool = urllib3.HTTPConnectionPool("127.0.0.1", int(server.url.rsplit(":", 1)[1]))
        floor = measure(lambda: pool.request("GET", "/hello").data, max(1000 // scale, 10))
    print(f"Extism plugin calls, µs per call: median [min-max] of 7 repeats; omnicore vs "
          f"extism {metadata.version('extism')} (Python SDK, same wasm, same run)")
    print(f"({machine()})")
    print(f"{'case':34} {'omnicore':>22} {'extism SDK':>22} {'speed-up':>9}")
    for label, ours, theirs in rows:
        print(f"{label:34} {ours!s:>22} {theirs!s:>22} {theirs.ratio(ours):8.1f}x")
    print(f"{'  floor: the same GET from Python':34} {floor!s:>22}   (urllib3, no plugin)")
    print()
    print("Floor of the 64 KiB echo, plain wasmtime (no omnicore, no Extism), µs per call less "
          "a call of an empty export:")
    print(f"{'plugin':34} {'kernel doing nothing':>22} {'our kernel.wat':>22}")
    for label, noop, ours in floor_rows(wasm, scale):
        print(f"{label:34} {noop!s:>22} {ours!s:>22}")


if __name__ == "__main__":
    main()
