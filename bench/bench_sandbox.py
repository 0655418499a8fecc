"""Sandbox speed: omnicore vs the raw C fast path vs wasmtime-py's public API vs Extism.

Run: ``.venv/bin/python bench/bench_sandbox.py [--quick]``. Prints one table (µs per operation
unless the row says otherwise; best of several repeats, so background load inflates numbers
less). All plugins are equivalent WAT modules compiled here; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.sandbox import (
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
)

# The omnicore ABI plugin: echo (output = input buffer), 1,000 host calls, a compute loop.
OMNI_WAT = """
(module
  (import "omnicore:log" "enabled" (func $enabled (param i32) (result i32)))
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then (if (i32.eq (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end)
                  (local.get $have)) (i32.const 65535)) (i32.const 16))) (i32.const -1))
              (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))
  (func (export "omni_free") (param $p i32) (param $n i32)
    (if (i32.eq (i32.add (local.get $p) (local.get $n)) (global.get $heap))
      (then (global.set $heap (local.get $p)))))
  (func (export "echo") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n))))
  (func (export "hostcalls") (param $p i32) (param $n i32) (result i64)
    (local $i i32)
    (loop $l
      (drop (call $enabled (i32.const 2)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
    (i64.const 0))
  (func (export "compute") (param $p i32) (param $n i32) (result i64)
    (local $i i32) (local $acc i32)
    (loop $l
      (local.set $acc (i32.add (i32.mul (local.get $acc) (i32.const 31)) (local.get $i)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 200000))))
    (i32.store (i32.const 0) (local.get $acc))
    (i64.const 4))
)
"""

# The same echo and host-call loop written against Extism's kernel ABI.
EXTISM_WAT = """
(module
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (import "extism:host/env" "input_load_u64" (func $load64 (param i64) (result i64)))
  (import "extism:host/env" "input_load_u8" (func $load8 (param i64) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store64 (param i64 i64)))
  (import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "bench" "noop" (func $noop (param i64) (result i64)))
  (memory (export "memory") 1)
  (func (export "echo") (result i32)
    (local $n i64) (local $out i64) (local $i i64)
    (local.set $n (call $input_length))
    (local.set $out (call $alloc (local.get $n)))
    (block $done (loop $l
      (br_if $done (i64.gt_u (i64.add (local.get $i) (i64.const 8)) (local.get $n)))
      (call $store64 (i64.add (local.get $out) (local.get $i)) (call $load64 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 8)))
      (br $l)))
    (block $done2 (loop $l2
      (br_if $done2 (i64.ge_u (local.get $i) (local.get $n)))
      (call $store8 (i64.add (local.get $out) (local.get $i)) (call $load8 (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br $l2)))
    (call $output_set (local.get $out) (local.get $n))
    (i32.const 0))
  (func (export "hostcalls") (result i32)
    (local $i i32)
    (loop $l
      (drop (call $noop (i64.const 2)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
    (i32.const 0))
)
"""


def big_module_wat(target_bytes: int) -> str:
    """An ABI-valid module of roughly ``target_bytes``: many distinct functions in a table."""
    funcs = []
    n = 0
    body = " ".join(f"(local.set $x (i32.add (i32.mul (local.get $x) (i32.const {k + 3})) "
                    f"(i32.const {k})))" for k in range(12))
    per = 110  # approximate encoded bytes per function below
    count = target_bytes // per
    for i in range(count):
        funcs.append(f"(func $f{i} (param $x i32) (result i32) {body} "
                     f"(i32.xor (local.get $x) (i32.const {i})))")
        n += 1
    elems = " ".join(f"$f{i}" for i in range(count))
    return f"""(module
  (memory (export "memory") 2)
  (table {count} funcref)
  (elem (i32.const 0) {elems})
  (type $t (func (param i32) (result i32)))
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "run") (param $p i32) (param $n i32) (result i64)
    (i64.extend_i32_u (call_indirect (type $t) (local.get $n) (local.get $p))))
  {' '.join(funcs)}
)"""


def best(fn: Callable[[], None], n: int, repeats: int = 7) -> float:
    """Best per-iteration time in µs over ``repeats`` runs of ``n`` iterations."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - t) / n * 1e6)
    return min(times)


def median_once(fn: Callable[[], object], repeats: int) -> float:
    """Median single-shot time in ms."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def throughput(call: Callable[[], object], threads: int, seconds: float) -> float:
    """Calls per second with ``threads`` threads calling as fast as they can."""
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def worker(i: int) -> None:
        c = 0
        while time.perf_counter() < stop:
            for _ in range(50):
                call()
            c += 50
        counts[i] = c

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


class PublicWasmtime:
    """The same plugin driven through wasmtime-py's public API only."""

    def __init__(self, wasm: bytes) -> None:
        cfg = wasmtime.Config()
        self.engine = wasmtime.Engine(cfg)
        self.module = wasmtime.Module(self.engine, wasm)
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_func("omnicore:log", "enabled",
                                wasmtime.FuncType([wasmtime.ValType.i32()],
                                                  [wasmtime.ValType.i32()]), lambda lvl: 1)
        self.store, self.ex = self.fresh()
        self.mem = self.ex["memory"]
        self.buf = self.ex["omni_alloc"](self.store, 1 << 17)

    def fresh(self) -> tuple[wasmtime.Store, wasmtime.InstanceExports]:
        store = wasmtime.Store(self.engine)
        inst = self.linker.instantiate(store, self.module)
        return store, inst.exports(store)

    def call(self, name: str, data: bytes) -> bytes:
        self.mem.write(self.store, data, self.buf)
        r = self.ex[name](self.store, self.buf, len(data)) & 0xFFFF_FFFF_FFFF_FFFF
        ptr, ln = r >> 32, r & 0x7FFF_FFFF
        return bytes(self.mem.read(self.store, ptr, ptr + ln))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = ap.parse_args()
    scale = 0.1 if args.quick else 1.0

    def n(x: int) -> int:
        return max(10, int(x * scale))

    wasm = bytes(wasmtime.wat2wasm(OMNI_WAT))
    rows: list[tuple[str, str, str, str, str, str]] = []
    fmt = "{:.2f}".format

    engine = SandboxEngine()
    pengine = SandboxEngine(pooling=True)
    registry = builtin_registry()
    rt = PluginRuntime(engine, PluginModule.load(engine, wasm, "bench"), registry,
                       limits=Limits(pool_size=2))
    prt = PluginRuntime(pengine, PluginModule.load(pengine, wasm, "bench"), registry)
    raw = rt._idle[0]
    raw_echo = raw.func("echo")
    assert raw_echo is not None
    ticks = engine.deadline_ticks(1000)
    pub = PublicWasmtime(wasm)

    import extism

    @extism.host_fn(name="noop", namespace="bench", signature=([extism.ValType.I64],
                                                              [extism.ValType.I64]))
    def noop(plugin: object, params: list, results: list) -> None:  # type: ignore[type-arg]
        results[0].value = params[0].value

    ext_wasm = bytes(wasmtime.wat2wasm(EXTISM_WAT))
    ext = extism.Plugin(ext_wasm, wasi=False, functions=[noop])

    small, large = os.urandom(100), os.urandom(64 * 1024)
    for label, data, target in (("round trip 100 B", small, "≤ 6"),
                                ("round trip 64 KiB", large, "≤ 16")):
        assert rt.call("echo", data) == data == pub.call("echo", data)
        assert bytes(ext.call("echo", data)) == data

        def raw_call(data: bytes = data) -> None:
            r = raw.call(raw_echo, data, ticks, engine.epoch)
            raw.read(r >> 32, r & 0x7FFF_FFFF)

        iters = n(200_000) if data is small else n(30_000)
        rows.append((label, fmt(best(lambda d=data: rt.call("echo", d), iters)),
                     fmt(best(raw_call, iters)),
                     fmt(best(lambda d=data: pub.call("echo", d), iters // 4)),
                     fmt(best(lambda d=data: ext.call("echo", d), iters // 4)), target))

    # guest -> host call: (1,000-call loop - empty call) / 1,000
    empty = best(lambda: rt.call("echo", b""), n(50_000))
    loop = best(lambda: rt.call("hostcalls", b""), n(2_000))
    pub_empty = best(lambda: pub.call("echo", b""), n(10_000))
    pub_loop = best(lambda: pub.call("hostcalls", b""), n(100), 3)
    ext_empty = best(lambda: ext.call("echo", b""), n(10_000))
    ext_loop = best(lambda: ext.call("hostcalls", b""), n(100), 3)
    rows.append(("guest→host call (log.enabled)", fmt((loop - empty) / 1000), "same",
                 fmt((pub_loop - pub_empty) / 1000), fmt((ext_loop - ext_empty) / 1000), "≤ 3"))

    # fresh instance (store + instantiate + ABI setup: exports, input buffer)
    def fresh(r: PluginRuntime) -> None:
        r._new_instance(None).close()

    ext_compiled = extism.extism.CompiledPlugin(ext_wasm, wasi=False, functions=[noop])
    rows.append(("fresh instance: on-demand / pooling allocator",
                 f"{fmt(best(lambda: fresh(rt), n(5_000)))} / "
                 f"{fmt(best(lambda: fresh(prt), n(5_000)))}", "-",
                 fmt(best(pub.fresh, n(5_000))),
                 fmt(best(lambda: extism.Plugin(ext_compiled, functions=[noop]), n(500))),
                 "≤ 25"))

    # cached load of a >= 2 MB module vs a cold compile (ms)
    big = bytes(wasmtime.wat2wasm(big_module_wat(2_300_000 if not args.quick else 600_000)))
    with tempfile.TemporaryDirectory() as tmp:
        cold_engine = SandboxEngine(cache_dir=Path(tmp))
        t = time.perf_counter()
        PluginModule.load(cold_engine, big, "big")
        cold = (time.perf_counter() - t) * 1e3
        warm = median_once(lambda: PluginModule.load(cold_engine, big, "big"), 20)
        cold_engine.close()
    rows.append((f"load {len(big) / 1e6:.1f} MB module, ms: cached / cold",
                 f"{warm:.2f} / {cold:.0f}", "-", f"- / {cold:.0f} (same compiler)", "-",
                 "cached ≤ 5"))

    # 2 threads vs 1: echo (mostly Python, GIL-bound) and a compute handler (mostly wasm)
    secs = 1.0 if not args.quick else 0.3
    for label, handler, data in (("2 threads / 1 thread, echo 100 B", "echo", small),
                                 ("2 threads / 1 thread, compute ≈0.2 ms", "compute", b"")):
        one = throughput(lambda h=handler, d=data: rt.call(h, d), 1, secs)
        two = throughput(lambda h=handler, d=data: rt.call(h, d), 2, secs)
        rows.append((label, f"{two / one:.2f}x", "-", "-", "-", "≥ 1.8x"))

    headers = ("operation (µs unless noted)", "omnicore", "raw C fast path",
               "wasmtime-py public", "extism 1.1.1", "target")
    widths = [max(len(str(r[i])) for r in (*rows, headers)) for i in range(6)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    print(f"python {sys.version.split()[0]}, wasmtime {metadata.version('wasmtime')}, "
          f"cpus={os.cpu_count()}, load={os.getloadavg()[0]:.2f}")
    print(line.format(*headers))
    print(line.format(*("-" * w for w in widths)))
    for r in rows:
        print(line.format(*r))

    rt.close()
    prt.close()
    engine.close()
    pengine.close()


if __name__ == "__main__":
    main()
