"""Sandbox speed: omnicore against the engine's own floor and its peers, in one run.

Run: ``.venv/bin/python bench/bench_sandbox.py [--quick] [--markdown]``. Prints one table, µs
per operation unless the row says otherwise: the median over 7 repeats with [min-max]; every
column of a row gets the same iterations, repeats and warm-up (bench/_measure.py).

Columns:
- **omnicore**: ``PluginRuntime.call`` (what ``app.plugins`` calls), limits and pool included.
- **omnicore raw**: the call path underneath it, so the gap to the first column is the
  wrapper's cost (pool lease, limits, errors): the C call path's ``Slot.call`` when it is built
  (sandbox/_callpath.c), else ``RawInstance.call``. Its "bare call" is the C path's own floor:
  an echo of 0 bytes, nothing copied.
- **C API floor**: written here without omnicore's code: wasmtime's C API through ctypes with
  wasmtime-py's declared prototypes: a bare ``wasmtime_func_call_unchecked`` of a no-data
  export, and the naive host round trip (alloc + copy in + call + copy out + free). This is
  the engine's limit as a Python host sees it.
- **wasmtime-py**: the same module through wasmtime-py's public API.
- **Extism PDK** / **Extism fastest**: Extism 1.1.1's Python SDK with the same echo written
  as a PDK user writes it (copy in and out through the kernel, 8 bytes a call) and as the
  fastest Extism plugin could (the output is the input block: ``output_set(input_offset())``).
All plugins are WAT compiled here; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import wasmtime
from _measure import Sample, machine, measure, render
from wasmtime import _ffi as ffi

from omnicore.capabilities.builtin import builtin_registry
from omnicore.sandbox import (
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
    fastcall,
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
  (func (export "nop"))
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
  (import "extism:host/env" "input_offset" (func $input_offset (result i64)))
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
  (func (export "echo_fast") (result i32)
    (call $output_set (call $input_offset) (call $input_length))
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


def median_once(fn: Callable[[], object], repeats: int) -> float:
    """Median single-shot time in ms."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def throughput(call: Callable[[], object], threads: int, seconds: float) -> float:
    """Calls per second with ``threads`` threads calling as fast as they can: every call is
    counted and the rate divides by the time the threads actually ran."""
    stop = time.perf_counter() + seconds
    counts = [0] * threads

    def worker(i: int) -> None:
        c = 0
        while time.perf_counter() < stop:
            call()
            c += 1
        counts[i] = c

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    start = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def _log_enabled(_level: int) -> int:
    return 1


class PublicWasmtime:
    """The same plugin driven through wasmtime-py's public API only."""

    def __init__(self, wasm: bytes) -> None:
        self.engine = wasmtime.Engine(wasmtime.Config())
        self.module = wasmtime.Module(self.engine, wasm)
        self.linker = wasmtime.Linker(self.engine)
        self.linker.define_func("omnicore:log", "enabled",
                                wasmtime.FuncType([wasmtime.ValType.i32()],
                                                  [wasmtime.ValType.i32()]), _log_enabled)
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


class CApiFloor:
    """wasmtime's C API through ctypes, independent of omnicore's fast path: the floor."""

    def __init__(self, pub: PublicWasmtime) -> None:
        self.store = pub.store
        self.ctx = pub.store._context()
        self.funcs = {name: ctypes.byref(pub.ex[name]._func)
                      for name in ("nop", "echo", "omni_alloc", "omni_free")}
        self.mem = ctypes.byref(pub.mem._memory)
        self.raw = (ffi.wasmtime_val_raw_t * 2)()
        self.trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self.trap_ref = ctypes.byref(self.trap)

    def _call(self, name: str, nargs: int) -> None:
        err = ffi.wasmtime_func_call_unchecked(self.ctx, self.funcs[name], self.raw, nargs,
                                               self.trap_ref)
        if err or self.trap:
            raise RuntimeError(f"{name} failed")

    def bare(self) -> None:
        """One call of an export that takes and returns nothing."""
        self._call("nop", 0)

    def round_trip(self, data: bytes) -> bytes:
        """What a straightforward host does: alloc, copy in, call, copy out, free."""
        raw, n = self.raw, len(data)
        raw[0].i32 = n
        self._call("omni_alloc", 1)
        ptr = raw[0].i32
        base = ctypes.addressof(ffi.wasmtime_memory_data(self.ctx, self.mem).contents)
        ctypes.memmove(base + ptr, data, n)
        raw[0].i32, raw[1].i32 = ptr, n
        self._call("echo", 2)
        packed = raw[0].i64 & 0xFFFF_FFFF_FFFF_FFFF
        out = ctypes.string_at(base + (packed >> 32), packed & 0x7FFF_FFFF)
        raw[0].i32, raw[1].i32 = ptr, n
        self._call("omni_free", 2)
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    print(table(quick=args.quick, markdown=args.markdown))


def table(quick: bool = False, markdown: bool = False) -> str:
    """Run every measurement and return the table (used by bench/update_readme.py too)."""
    scale = 0.1 if quick else 1.0

    def n(x: int) -> int:
        return max(10, int(x * scale))

    wasm = bytes(wasmtime.wat2wasm(OMNI_WAT))
    na = "n/a"
    rows: list[tuple[str, ...]] = []

    engine = SandboxEngine()
    pengine = SandboxEngine(pooling=True)
    registry = builtin_registry()
    # The raw columns hold one of its instances across the whole run: the idle reaper (60 s)
    # must not free it on a loaded machine, where the run takes longer.
    rt = PluginRuntime(engine, PluginModule.load(engine, wasm, "bench"), registry,
                       limits=Limits(pool_size=2, idle_timeout_ms=None))
    prt = PluginRuntime(pengine, PluginModule.load(pengine, wasm, "bench"), registry)
    # Taken from the pool as a call takes one, not peeked at in its idle list: the idle reaper
    # frees idle instances (limits.idle_timeout_ms), and a full run on a loaded machine
    # outlasts it. Given back once the raw column is measured.
    raw = rt._pool.acquire("echo")
    raw_echo = raw.func("echo")
    assert raw_echo is not None
    ticks = engine.deadline_ticks(1000)
    pub = PublicWasmtime(wasm)
    floor = CApiFloor(pub)

    import extism

    @extism.host_fn(name="noop", namespace="bench", signature=([extism.ValType.I64],
                                                              [extism.ValType.I64]))
    def noop(plugin: object, params: list, results: list) -> None:  # type: ignore[type-arg]
        results[0].value = params[0].value

    ext_wasm = bytes(wasmtime.wat2wasm(EXTISM_WAT))
    ext = extism.Plugin(ext_wasm, wasi=False, functions=[noop])

    slot = raw.slot
    # As PluginRuntime.call does: a watched slot reads the epoch from its ticker (the argument
    # only says whether to re-arm); the Python path takes the engine's mirror.
    epoch = 0 if slot is not None else engine.epoch
    floor.bare()
    rows.append(("bare call of an export, no data", na,
                 str(measure(lambda: slot.call(raw_echo, b"", ticks, epoch, 1 << 20),
                             n(200_000))) if slot is not None else na,
                 str(measure(floor.bare, n(200_000))), na, na, na))

    small, large = os.urandom(100), os.urandom(64 * 1024)
    for label, data, iters in (("round trip 100 B", small, n(100_000)),
                               ("round trip 64 KiB", large, n(10_000))):
        assert rt.call("echo", data) == data == pub.call("echo", data)
        assert floor.round_trip(data) == data
        assert bytes(ext.call("echo", data)) == data == bytes(ext.call("echo_fast", data))

        def raw_call(data: bytes = data) -> None:
            if slot is not None:
                slot.call(raw_echo, data, ticks, epoch, 1 << 20)
                return
            r = raw.call(raw_echo, data, ticks, engine.epoch)
            raw.read(r >> 32, r & 0x7FFF_FFFF)

        if slot is not None:
            assert slot.call(raw_echo, data, ticks, epoch, 1 << 20) == data

        rows.append((label,
                     str(measure(lambda d=data: rt.call("echo", d), iters)),
                     str(measure(raw_call, iters)),
                     str(measure(lambda d=data: floor.round_trip(d), iters)),
                     str(measure(lambda d=data: pub.call("echo", d), iters)),
                     str(measure(lambda d=data: ext.call("echo", d), iters)),
                     str(measure(lambda d=data: ext.call("echo_fast", d), iters))))

    rt._pool.release(raw, True)

    # guest -> host call: (1,000-call loop - empty call) / 1,000, same effort for every column
    def per_host_call(empty: Callable[[], object], loop: Callable[[], object]) -> str:
        e, lp = measure(empty, n(5_000)), measure(loop, n(500))
        return str(Sample(*((b - a) / 1000 for a, b in ((e.median, lp.median), (e.low, lp.low),
                                                         (e.high, lp.high)))))

    rows.append(("guest→host call", per_host_call(lambda: rt.call("echo", b""),
                                                 lambda: rt.call("hostcalls", b"")), na, na,
                 per_host_call(lambda: pub.call("echo", b""), lambda: pub.call("hostcalls", b"")),
                 per_host_call(lambda: ext.call("echo_fast", b""),
                               lambda: ext.call("hostcalls", b"")), na))

    # fresh instance (store + instantiate + ABI setup: exports, input buffer)
    def fresh(r: PluginRuntime) -> None:
        r._new_instance(None).close()

    ext_compiled = extism.extism.CompiledPlugin(ext_wasm, wasi=False, functions=[noop])
    iters = n(2_000)
    rows.append(("fresh instance (pooling allocator)",
                 f"{measure(lambda: fresh(rt), iters)} ({measure(lambda: fresh(prt), iters)})",
                 na, na, str(measure(pub.fresh, iters)),
                 str(measure(lambda: extism.Plugin(ext_compiled, functions=[noop]), iters)), na))

    # cached load of a >= 2 MB module vs a cold compile (ms), cold from several samples
    big = bytes(wasmtime.wat2wasm(big_module_wat(2_300_000 if not quick else 600_000)))
    colds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(3 if not quick else 1):
            cold_engine = SandboxEngine(cache_dir=Path(tmp) / str(i))
            t = time.perf_counter()
            PluginModule.load(cold_engine, big, "big")
            colds.append((time.perf_counter() - t) * 1e3)
            if i == 0:
                warm = median_once(lambda e=cold_engine: PluginModule.load(e, big, "big"), 20)
            cold_engine.close()
    rows.append((f"load {len(big) / 1e6:.1f} MB module, ms: cached / cold",
                 f"{warm:.2f} / {statistics.median(colds):.0f} [{min(colds):.0f}-"
                 f"{max(colds):.0f}]", na, na, na, na, na))

    # 2 threads vs 1: echo (mostly Python, GIL-bound) and a compute handler (mostly wasm)
    secs = 1.0 if not quick else 0.3
    for label, handler, data in (("2 threads / 1 thread, echo 100 B", "echo", small),
                                 ("2 threads / 1 thread, compute ≈0.2 ms", "compute", b"")):
        one = throughput(lambda h=handler, d=data: rt.call(h, d), 1, secs)
        two = throughput(lambda h=handler, d=data: rt.call(h, d), 2, secs)
        rows.append((label, f"{two / one:.2f}x", na, na, na, na, na))

    rt.close()
    prt.close()
    engine.close()
    pengine.close()
    headers = ("operation (µs, median [min-max])", "omnicore", "omnicore raw", "C API floor",
               "wasmtime-py", f"Extism {metadata.version('extism')} PDK", "Extism fastest")
    path = "C call path" if fastcall.NATIVE else "pure-Python call path"
    return f"{machine()}; {path}\n\n{render(headers, rows, markdown)}"


if __name__ == "__main__":
    main()
