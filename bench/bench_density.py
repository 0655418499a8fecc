"""Density and per-call isolation: what a plugin costs while idle, how fast copies load, and
what a fresh instance for every call adds.

Run: ``.venv/bin/python bench/bench_density.py [--quick] [--markdown]``.

**Density** (issue 25 item 7): N copies of one small plugin (the Rust greeter from
``build/plugins``, else a WAT echo) loaded by a ``PluginHost`` from a filled module cache, as
an app's folder loads them, each called once. RSS per plugin is the process's RSS growth over
the N (``/proc/self/smaps_rollup``) after one call each, then after the idle reaper released
their instances (its clock moved past ``limits.idle_timeout_ms``, no sleeping). The floor
beside it, in the same run: the same N copies as bare wasmtime-py, each its own module read
from the same cache file (``Module.deserialize_file``) with a store and an instance, called
once through wasmtime-py — what a copy costs with nothing shared. Load times are per copy
(CPU time of the loading thread: wall time on a shared machine measures its neighbours),
median [min-max] over the repeats; the 1,000-copy rows load 1,000 copies (its floor column is
the bare per-copy time of the first rows times 1,000).
Targets: <= 150 KiB per idle plugin, 1,000 plugins from cache <= 2 s, one more copy <= 3x
the bare instantiation (issue 63: what is immutable is built once per module).

**Per-call isolation** (item 8): a 100 B echo through ``PluginRuntime.call`` pooled and with
``limits.isolation: per-call``, with and without the pooling allocator; the floors are a bare
``wasmtime.Instance(store, module, imports)`` with a fresh ``Store`` (wasmtime-py), the C
API's own store_new + instantiate + store_delete through ctypes, and that plus the same 100 B
call done by hand through the C API from Python (what per-call could do with less before the
C call path started instances itself, ``sandbox/_instantiate.c``: it now does these steps
without ctypes, below this floor); then the Rust greeter both ways. Target: per-call <= 10 µs
above pooled.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime
from _measure import machine, measure, render

from omnicore.capabilities.builtin import builtin_registry
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine, guestmem
from omnicore.sandbox import fastcall as fc
from omnicore.sandbox._wasmtime import set_epoch_deadline

ROOT = Path(__file__).resolve().parents[1]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"

ECHO_WAT = """
(module
  (memory (export "memory") 2)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "echo") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n)))))
"""


def rss_kib() -> int:
    gc.collect()
    with open("/proc/self/smaps_rollup") as fh:
        return next(int(ln.split()[1]) for ln in fh if ln.startswith("Rss:"))


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _plugin() -> tuple[str, bytes, str, bytes, list[str]]:
    """(label, wasm, handler, input, grants)."""
    if GREETER.is_file():
        return ("Rust greeter", GREETER.read_bytes(), "greet", b'{"name": "density"}',
                ["config"])
    return "WAT echo", wasmtime.wat2wasm(ECHO_WAT), "echo", b"density", []


def omnicore_copies(n: int, cache: Path) -> tuple[float, float, float]:
    """(ms to load each, KiB per plugin after one call, KiB per plugin once released)."""
    _, wasm, handler, data, grants = _plugin()
    clock = _Clock()
    engine = SandboxEngine(cache_dir=cache)
    engine.reaper.clock = clock
    host = PluginHost(engine=engine, data_dir=cache.parent)
    try:
        # Warm Python's paths (capabilities, imports) with the same code as another module
        # (a custom section makes other bytes): the copies' module still comes from the cache.
        host.load(wasm + b"\x00\x05\x04warm", name="warm-up", grants=grants)
        host.call("warm-up", handler, data)
        base = rss_kib()
        start = time.thread_time()
        for i in range(n):
            host.load(wasm, name=f"copy-{i}", grants=grants)
        load_ms = (time.thread_time() - start) / n * 1e3
        for i in range(n):
            host.call(f"copy-{i}", handler, data)
        called = (rss_kib() - base) / n
        engine.reaper.sweep()
        clock.now += 3600  # past every idle_timeout_ms
        engine.reaper.sweep()
        idle = (rss_kib() - base) / n
        return load_ms, called, idle
    finally:
        host.close()
        engine.close()


def bare_copies(n: int, cache: Path) -> tuple[float, float, float]:
    """The floor: (ms to load each, KiB per copy after one call), nothing shared."""
    _, wasm, handler, data, _ = _plugin()
    engine = wasmtime.Engine()
    path = cache / "bare.cwasm"
    path.write_bytes(wasmtime.Module(engine, wasm).serialize())
    keep = []
    base = rss_kib()
    start = time.thread_time()
    for _ in range(n):
        module = wasmtime.Module.deserialize_file(engine, str(path))
        linker = wasmtime.Linker(engine)
        for imp in module.imports:  # host functions that answer "nothing" (0 / no value)
            ty = imp.type
            assert isinstance(ty, wasmtime.FuncType)
            zero = (lambda *_: None) if not ty.results else (lambda *_: 0)
            linker.define_func(imp.module, imp.name or "", ty, zero)
        store = wasmtime.Store(engine)
        keep.append((store, linker.instantiate(store, module)))
    load_ms = (time.thread_time() - start) / n * 1e3
    for store, inst in keep:
        exports = inst.exports(store)
        ptr = exports["omni_alloc"](store, len(data))
        exports["memory"].write(store, data, ptr)
        exports[handler](store, ptr, len(data))
    return load_ms, (rss_kib() - base) / n, float("nan")


def _in_child(kind: str, n: int, cache: Path) -> tuple[float, float, float]:
    """Run one measurement in a fresh interpreter: RSS is not muddied by what an earlier
    run freed (and the allocator kept)."""
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(n), str(cache)],
                          capture_output=True, text=True, timeout=600, check=True)
    a, b, c = json.loads(done.stdout)
    return float(a), float(b), float(c)


def _fill_cache(cache: Path) -> None:
    """What an app's cache holds after ``omnicore build --app``: the plugin, compiled."""
    with SandboxEngine(cache_dir=cache) as engine:
        PluginModule.load(engine, _plugin()[1], "fill")


def density(quick: bool) -> list[list[str]]:
    n = 50 if quick else 200
    repeats = 1 if quick else 3
    rows = []
    runs, floors = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        _fill_cache(cache)
        for _ in range(repeats):
            runs.append(_in_child("omnicore", n, cache))
            floors.append(_in_child("bare", n, cache))
        big = 200 if quick else 1000
        many = [_in_child("omnicore", big, cache) for _ in range(repeats)]

    def cell(values: list[float], unit: str, scale: float = 1.0) -> str:
        values = [v * scale for v in values]
        return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}] {unit}"

    ratio = statistics.median(r[0] / f[0] for r, f in zip(runs, floors, strict=True))
    rows.append([f"load one copy from cache ({n} copies)",
                 f"{cell([r[0] for r in runs], 'ms')} = {ratio:.1f}x the floor (goal <= 3x)",
                 cell([f[0] for f in floors], "ms")])
    rows.append([f"RSS per plugin after one call ({n})", cell([r[1] for r in runs], "KiB"),
                 cell([f[1] for f in floors], "KiB")])
    rows.append([f"RSS per idle plugin, instances released ({n})",
                 cell([r[2] for r in runs], "KiB"), "n/a"])
    rows.append([f"load {big} copies from cache", cell([r[0] for r in many], "s", big / 1e3),
                 cell([f[0] for f in floors], "s", big / 1e3)])
    rows.append([f"RSS per idle plugin ({big})", cell([r[2] for r in many], "KiB"), "n/a"])
    return rows


def isolation(quick: bool) -> list[list[str]]:
    iters = 2000 if quick else 20_000
    fresh_iters = 500 if quick else 5000
    data = b"x" * 100
    rows = []
    for pooling in (False, True):
        rows += _isolation_rows(pooling, iters, fresh_iters, data)
    if GREETER.is_file():
        rows += _greeter_rows(iters, fresh_iters)
    return rows


def _greeter_rows(iters: int, fresh_iters: int) -> list[list[str]]:
    """The Rust greeter (JSON in/out, a config read, a log line): a real allocator and
    runtime start in every fresh instance."""
    _, wasm, handler, data, grants = _plugin()
    with SandboxEngine(pooling=True) as engine:
        module = PluginModule.load(engine, wasm, "greeter")
        pooled = PluginRuntime(engine, module, builtin_registry(), grants)
        fresh = PluginRuntime(engine, module, builtin_registry(), grants,
                              limits=Limits(isolation="per-call"))
        try:
            warm = measure(lambda: pooled.call(handler, data), iters // 4)
            each = measure(lambda: fresh.call(handler, data), fresh_iters // 4)
        finally:
            pooled.close()
            fresh.close()
    return [["Rust greeter, pooled (pooling allocator)", str(warm), "", ""],
            ["Rust greeter, per-call (pooling allocator)", str(each),
             f"{each.median - warm.median:.1f}", "n/a"]]


def _isolation_rows(pooling: bool, iters: int, fresh_iters: int,
                    data: bytes) -> list[list[str]]:
    with SandboxEngine(pooling=pooling) as engine:
        module = PluginModule.load(engine, wasmtime.wat2wasm(ECHO_WAT), "echo")
        pooled = PluginRuntime(engine, module, builtin_registry())
        fresh = PluginRuntime(engine, module, builtin_registry(),
                              limits=Limits(isolation="per-call"))
        try:
            warm = measure(lambda: pooled.call("echo", data), iters)
            each = measure(lambda: fresh.call("echo", data), fresh_iters)
            bare = measure(_bare_instance(engine, module.wasmtime_module), fresh_iters)
            c_floor = measure(_c_instantiate(engine, fresh), fresh_iters)
            c_call = measure(_c_fresh_call(engine, fresh, data), fresh_iters)
        finally:
            pooled.close()
            fresh.close()
    label = "pooling allocator" if pooling else "default allocator"
    return [[f"100 B echo, pooled ({label})", str(warm), "", ""],
            [f"100 B echo, per-call ({label})", str(each), f"{each.median - warm.median:.1f}",
             f"{bare} / {c_floor} / {c_call}"]]


def _bare_instance(engine: SandboxEngine, module: wasmtime.Module) -> Callable[[], None]:
    """wasmtime-py's own fresh instance: a new Store and ``wasmtime.Instance``."""
    def once() -> None:
        store = wasmtime.Store(engine.wasmtime)
        store.set_epoch_deadline(1000)
        wasmtime.Instance(store, module, [])

    return once


def _c_instantiate(engine: SandboxEngine, rt: PluginRuntime) -> Callable[[], None]:
    """A fresh store + instance + delete through the C API, nothing else."""
    eng = fc.address_of(engine.wasmtime)
    pre = rt._pre_addr
    inst = wasmtime._ffi.wasmtime_instance_t()
    inst_addr = ctypes.addressof(inst)
    trap = (ctypes.c_uint64 * 2)()
    trap_addr = ctypes.addressof(trap)

    def once() -> None:
        assert inst is not None and trap is not None  # the buffers live as long as this
        store = fc._store_new(eng, None, None)
        ctx = fc._store_context(store)
        # The C API's own deadline set: this floor is wasmtime's, not the host's door.
        set_epoch_deadline(ctx, 1000)
        fc._pre_instantiate(pre, ctx, inst_addr, trap_addr)
        fc._store_delete(store)

    return once


def _c_fresh_call(engine: SandboxEngine, rt: PluginRuntime, data: bytes) -> Callable[[], None]:
    """The least a fresh instance per call can do through the C API from Python (ctypes): a
    store and an instance, the three exports, omni_alloc, the input copied in, the call, the output
    copied out, the store deleted."""
    eng = fc.address_of(engine.wasmtime)
    pre = rt._pre_addr
    scratch = (ctypes.c_uint64 * 16)()
    sa = ctypes.addressof(scratch)
    i32 = (ctypes.c_int32 * 32).from_address(sa)
    size = ctypes.sizeof(wasmtime._ffi.wasmtime_extern_t)
    externs = (ctypes.c_uint8 * (size * 3))()
    ea = ctypes.addressof(externs)
    at = fc._EXTERN_OF
    n = len(data)

    def once() -> None:
        assert externs is not None  # the buffer lives as long as this
        store = fc._store_new(eng, None, None)
        ctx = fc._store_context(store)
        fc._store_limiter(store, 64 << 20, 100_000, 1, 4, 1)
        # The C API's own deadline set: this floor is wasmtime's, not the host's door.
        set_epoch_deadline(ctx, 1000)
        fc._pre_instantiate(pre, ctx, sa + 64, sa + 48)
        fc._export_get(ctx, sa + 64, b"memory", 6, ea)
        fc._export_get(ctx, sa + 64, b"omni_alloc", 10, ea + size)
        fc._export_get(ctx, sa + 64, b"echo", 4, ea + 2 * size)
        base = guestmem._memory_data(ctx, ea + at)
        i32[0] = n
        fc._call_unchecked(ctx, ea + size + at, sa, 1, sa + 48)
        ptr = i32[0]
        ctypes.memmove(base + ptr, data, n)
        i32[0], i32[4] = ptr, n
        fc._call_unchecked(ctx, ea + 2 * size + at, sa, 2, sa + 48)
        packed = scratch[0]
        ctypes.string_at(base + (packed >> 32), packed & 0x7FFF_FFFF)
        fc._store_delete(store)

    return once


def table(quick: bool = False, markdown: bool = False) -> str:
    label = _plugin()[0]
    dens = render([f"density: {label} copies", "omnicore (median [min-max])",
                   "bare wasmtime-py, nothing shared"], density(quick), markdown=markdown)
    iso = render(["per-call isolation (µs per call)", "omnicore", "extra over pooled",
                  "floors: wasmtime.Instance / C API instance / C API instance + call"],
                 isolation(quick), markdown=markdown)
    return f"{machine()}\n\n{dens}\n\n{iso}"


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        kind, n, cache = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
        print(json.dumps((omnicore_copies if kind == "omnicore" else bare_copies)(n, cache)))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer copies and calls (smoke run)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = ap.parse_args()
    print(table(quick=args.quick, markdown=args.markdown))


if __name__ == "__main__":
    main()
