"""Per-language plugin costs: size, cold/cached load, first call, warm 100 B JSON call.

Builds every language's greeter from source (reusing build/test-plugins when fresh) and runs
them through the host next to the ABI floor: the hand-written WAT echo plugin of the sandbox
tests, which does no work but the ABI. Prints one table.

    .venv/bin/python bench/bench_sdk.py [--calls N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.toolchains import build

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["rust", "c", "go", "js", "zig", "as", "python"]
# Ruby (issue 37): the interpreter pre-initialized with the plugin (toolchains/ruby/).
LANGS += ["ruby"]
# Kotlin (issue 64): a Wasm GC module, its arena and JSON the SDK's own.
LANGS += ["kotlin"]
INPUT = b'{"name": "' + b"x" * 88 + b'"}'  # 100 bytes of JSON
assert len(INPUT) == 100


# The greeter's ABI work without its JSON: read config "greeting", log one line, echo the input.
# The SDKs are judged against this, since no SDK can do the greeter's two host calls for less.
HOSTCALL_FLOOR_WAT = r"""
(module
  (import "omnicore:log" "write" (func $log_write (param i32 i32 i32)))
  (import "omnicore:config" "get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.const 16)))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (data (i32.const 16) "greeting")
  (func (export "greet") (param $p i32) (param $n i32) (result i64)
    (drop (call $config_get (i32.const 16) (i32.const 8) (i32.const 64) (i32.const 256)))
    (call $log_write (i32.const 2) (local.get $p) (local.get $n))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n))))
)
"""


def _per_call_us(call: Callable[[], object], calls: int) -> float:
    for _ in range(min(calls, 1000)):
        call()
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


def measure(label: str, wasm: bytes, handler: str, data: bytes, calls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as cache:
        cold_engine = SandboxEngine(cache_dir=Path(cache))
        started = time.perf_counter()
        module = PluginModule.load(cold_engine, wasm)
        cold_ms = (time.perf_counter() - started) * 1e3
        cold_engine.close()

        engine = SandboxEngine(cache_dir=Path(cache))
        started = time.perf_counter()
        module = PluginModule.load(engine, wasm)
        cached_ms = (time.perf_counter() - started) * 1e3

        started = time.perf_counter()
        runtime: PluginRuntime | ComponentRuntime
        if isinstance(module, ComponentModule):  # Python: CPython in a component
            runtime = ComponentRuntime(engine, module, Limits(pool_size=1),
                                       registry=builtin_registry(), grants={"config": {}},
                                       config={"greeting": "Hello"})
        else:
            assert isinstance(module, PluginModule)
            runtime = PluginRuntime(engine, module, builtin_registry(),
                                    grants={"config": {}}, config={"greeting": "Hello"},
                                    limits=Limits(pool_size=1))
        runtime.call(handler, data)
        first_ms = (time.perf_counter() - started) * 1e3
        warm_us = _per_call_us(lambda: runtime.call(handler, data), calls)
        runtime.close()
        engine.close()
    return {"plugin": label, "size": len(wasm), "cold_ms": cold_ms, "cached_ms": cached_ms,
            "first_ms": first_ms, "warm_us": warm_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--langs", default=",".join(LANGS),
                        help=f"the greeters to measure (default: {','.join(LANGS)})")
    args = parser.parse_args()

    out = ROOT / "build" / "test-plugins"
    floor_wasm = bytes(wasmtime.wat2wasm(
        (ROOT / "tests" / "fixtures" / "echo.wat").read_text()))
    hostcall_wasm = bytes(wasmtime.wat2wasm(HOSTCALL_FLOOR_WAT))
    rows = [measure("ABI floor (WAT echo)", floor_wasm, "echo", INPUT, args.calls),
            measure("+config.get+log.write", hostcall_wasm, "greet", INPUT, args.calls)]
    for lang in args.langs.split(","):
        wasm = build(ROOT / "plugins" / "greeter" / lang, out).read_bytes()
        rows.append(measure(f"greeter-{lang}", wasm, "greet", INPUT, args.calls))

    floor = float(rows[1]["warm_us"])  # type: ignore[arg-type]
    rust = float(rows[2]["warm_us"])  # type: ignore[arg-type]
    head = (f"{'plugin':<22} {'size':>10} {'cold load':>10} {'cached':>9} {'first call':>11} "
            f"{'warm 100B':>10} {'x WAT':>8} {'x Rust':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        size = int(r["size"])  # type: ignore[call-overload]
        size_s = f"{size / 1024:.0f} KiB" if size < 2**20 else f"{size / 2**20:.2f} MiB"
        warm = float(r["warm_us"])  # type: ignore[arg-type]
        print(f"{r['plugin']:<22} {size_s:>10} {r['cold_ms']:>8.1f}ms {r['cached_ms']:>7.2f}ms "
              f"{r['first_ms']:>9.2f}ms {warm:>8.2f}us {warm / floor:>7.2f}x {warm / rust:>7.2f}x")
    print("\ncold load = compile with an empty cache; cached = deserialize from the on-disk cache;"
          "\nfirst call = new runtime + instance (+ _initialize) + one call; warm = median of 5 x"
          f" {args.calls} calls, 100 B JSON in and out;\nx WAT = warm / the hand-written WAT"
          " doing the greeter's host calls (config.get + log.write) with no JSON;\nx Rust = warm /"
          " the Rust greeter's.")
    shutil.rmtree(out / ".work", ignore_errors=True)


if __name__ == "__main__":
    main()
