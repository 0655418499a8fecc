"""Wasm GC modules (what Kotlin/Wasm builds) run under every limit (specs/security.md "Wasm GC").

The engine turns on Wasm GC and typed function references for every module; what must hold:
a struct-allocating loop ends at the plugin's memory limit (the GC heap grows under the same
store limit as linear memory) or at its deadline or fuel, the host unharmed and the next call
answered; and a module whose import or export has a GC reference in its type is refused from
its bytes, before wasmtime-py is asked for the type (which aborts the process: exit 134).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import (
    DeadlineExceeded,
    FuelExhausted,
    InvalidModule,
    MemoryLimitExceeded,
)
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine, wasmbin
from tests.waiting import fastest

ROOT = Path(__file__).resolve().parents[2]

#: A bump allocator in linear memory, as every plugin has (specs/abi.md §1.1).
ALLOCATOR = """
  (memory (export "memory") 1)
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
"""

#: ``echo`` allocates a struct and a GC array and answers its input; ``hoard`` keeps every
#: struct it allocates (a linked list from a global: nothing is garbage); ``churn`` drops
#: each one at once (the collector keeps up: only the deadline or fuel ends it).
GC_WAT = f"""
(module
  (type $node (struct (field $next (ref null $node)) (field i64) (field i64)))
  (type $bytes (array (mut i8)))
  (global $kept (mut (ref null $node)) (ref.null $node))
  {ALLOCATOR}
  (func (export "echo") (param $p i32) (param $n i32) (result i64)
    (local $a (ref null $bytes))
    (local.set $a (array.new_default $bytes (local.get $n)))
    (drop (struct.new $node (ref.null $node) (i64.const 1) (i64.const 2)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (array.len (local.get $a)))))
  (func (export "hoard") (param i32 i32) (result i64)
    (loop $l
      (global.set $kept (struct.new $node (global.get $kept) (i64.const 1) (i64.const 2)))
      (br $l))
    (i64.const 0))
  (func (export "churn") (param i32 i32) (result i64)
    (local $n (ref null $node))
    (loop $l
      (local.set $n (struct.new $node (ref.null $node) (i64.const 1) (i64.const 2)))
      (br $l))
    (i64.const 0))
)
"""

MEMORY = 8 * 2**20


@pytest.fixture(params=[False, True], ids=["on-demand", "pooling"])
def engine(request: pytest.FixtureRequest) -> Iterator[SandboxEngine]:
    eng = SandboxEngine(epoch_tick_ms=5, pooling=request.param)
    yield eng
    eng.close()


def runtime(engine: SandboxEngine, **limits: object) -> PluginRuntime:
    module = PluginModule.load(engine, wasmtime.wat2wasm(GC_WAT), "gc")
    assert isinstance(module, PluginModule)
    merged = Limits(timeout_ms=300, max_memory_bytes=MEMORY, pool_size=1).merged(limits)
    return PluginRuntime(engine, module, builtin_registry(), limits=merged)


def test_a_gc_module_loads_and_answers(engine: SandboxEngine) -> None:
    rt = runtime(engine)
    assert rt.module.handlers == ("echo", "hoard", "churn")
    assert rt.call("echo", b"hello gc") == b"hello gc"


def test_a_struct_hoarding_loop_ends_at_the_memory_limit(engine: SandboxEngine) -> None:
    rt = runtime(engine)

    def hoard() -> None:
        with pytest.raises(MemoryLimitExceeded, match=r"'hoard': oom: .*limits\."
                           r"max_memory_bytes \(8388608\): GC heap out of memory.*discarded"
                           ) as info:
            rt.call("hoard", b"")
        assert info.value.limit == "max_memory_bytes"
        assert rt.call("echo", b"after") == b"after"  # a fresh instance answers

    assert fastest(hoard) < 0.3  # the limit, long before the deadline


def test_a_struct_churning_loop_ends_at_its_deadline(engine: SandboxEngine) -> None:
    rt = runtime(engine, timeout_ms=200)

    def churn() -> None:
        with pytest.raises(DeadlineExceeded, match="'churn' exceeded its deadline of 200 ms"):
            rt.call("churn", b"")
        assert rt.call("echo", b"after") == b"after"

    assert fastest(churn) < 2.0


def test_a_struct_loop_ends_when_its_fuel_is_gone() -> None:
    with SandboxEngine(epoch_tick_ms=5, fuel=True) as eng:
        rt = runtime(eng, fuel=2_000_000, timeout_ms=5000)
        with pytest.raises(FuelExhausted, match="'churn' used all of its fuel"):
            rt.call("churn", b"")
        assert rt.call("echo", b"after") == b"after"


def test_the_gc_heap_is_bounded_by_the_memory_limit() -> None:
    # In a process of its own: how much memory a hoarding call made resident, for two limits.
    # The GC heap is a store's second memory, under the same per-memory limit: at most the
    # limit again beside linear memory.
    probe = textwrap.dedent("""
        import resource, sys
        import wasmtime
        from omnicore.capabilities.builtin import builtin_registry
        from omnicore.errors import MemoryLimitExceeded
        from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
        from tests.sandbox.test_gc import GC_WAT
        limit = int(sys.argv[1])
        with SandboxEngine() as eng:
            mod = PluginModule.load(eng, wasmtime.wat2wasm(GC_WAT), "gc")
            rt = PluginRuntime(eng, mod, builtin_registry(),
                               limits=Limits(timeout_ms=20000, max_memory_bytes=limit))
            assert rt.call("echo", b"x") == b"x"
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            try:
                rt.call("hoard", b"")
            except MemoryLimitExceeded:
                pass
            else:
                sys.exit("no memory verdict")
            grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
            print(grew)
    """)
    for limit in (16 * 2**20, 128 * 2**20):
        proc = subprocess.run([sys.executable, "-c", probe, str(limit)], cwd=ROOT,
                              capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        grew = int(proc.stdout.split()[-1])
        assert grew <= limit + 16 * 2**20, (limit, grew)


#: Imports and exports whose type holds a GC or typed reference: each refused from the bytes.
REFUSED = {
    "an export's param": ('(type $s (struct (field i32)))'
                          '(func (export "take") (param (ref null $s)) (result i32) i32.const 0)',
                          "export 'take'"),
    "an export's result": ('(type $s (struct (field i32)))'
                           '(func (export "give") (param i32 i32) (result (ref null $s)) '
                           'ref.null $s)', "export 'give'"),
    "an anyref param": ('(func (export "any") (param anyref))', "export 'any'"),
    "a typed function reference": ('(type $f (func))(func $g (type $f))(elem declare func $g)'
                                   '(func (export "fref") (result (ref $f)) ref.func $g)',
                                   "export 'fref'"),
    "an import's param": ('(type $s (struct))'
                          '(import "omnicore:log" "enabled" (func (param (ref $s))))',
                          "import omnicore:log.enabled"),
    "an exported global": ('(type $s (struct (field i32)))'
                           '(global (export "g") (ref null $s) (ref.null $s))', "export 'g'"),
    "an exported table": ('(type $s (struct))(table (export "t") 1 (ref null $s))',
                          "export 't'"),
}


def test_a_gc_reference_in_an_import_or_export_is_refused_without_aborting() -> None:
    # wasmtime-py asked for such a type aborts the whole process (exit 134): each case runs
    # in a subprocess that must exit 0, having had the refusal.
    probe = textwrap.dedent("""
        import json, sys
        import wasmtime
        from omnicore.errors import InvalidModule
        from omnicore.sandbox import PluginModule, SandboxEngine
        from tests.sandbox.test_gc import ALLOCATOR
        wat = "(module " + sys.argv[1] + ALLOCATOR + ")"
        with SandboxEngine() as eng:
            report = PluginModule.inspect(wasmtime.wat2wasm(wat), name="bad", engine=eng)
            try:
                PluginModule.load(eng, wasmtime.wat2wasm(wat), "bad")
            except InvalidModule as exc:
                print(json.dumps([report, str(exc)]))
            try:
                eng.compile(wasmtime.wat2wasm(wat))
            except wasmtime.WasmtimeError as exc:
                print(json.dumps(str(exc)))
    """)
    for case, (wat, where) in REFUSED.items():
        proc = subprocess.run([sys.executable, "-c", probe, wat], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, (case, proc.returncode, proc.stderr[-2000:])
        lines = proc.stdout.splitlines()
        assert len(lines) == 2, (case, proc.stdout, proc.stderr[-2000:])
        (report, load_error), compile_error = json.loads(lines[0]), json.loads(lines[1])
        assert report["ok"] is False and report["error_type"] == "InvalidModule", case
        for message in (report["error"], load_error, compile_error):
            assert where in message and "GC/typed reference" in message, (case, message)
            assert "\n" not in message


def test_gc_types_inside_a_module_are_fine_and_read_from_the_bytes() -> None:
    wasm = bytes(wasmtime.wat2wasm(GC_WAT))
    assert wasmbin.indescribable_signature(wasm) is None
    assert wasmbin.v128_in_signatures(wasm) is None
    exports = {name: (params, results) for name, params, results in
               wasmbin.function_exports(wasm)}
    assert exports["echo"] == (b"\x7f\x7f", b"\x7e")
    assert exports["omni_alloc"] == (b"\x7f", b"\x7f")


def test_a_winch_engine_runs_a_gc_module_on_its_cranelift_sibling() -> None:
    # Winch has no GC (wasmtime aborts making a Winch engine with GC on): a Winch engine keeps
    # it off, refuses GC bytes it is asked to compile in one line, and PluginModule.load
    # compiles a GC module on the engine's Cranelift sibling, where its runtime runs it,
    # under the same limits, and interrupt() reaches.
    with SandboxEngine(baseline=True, epoch_tick_ms=5) as eng:
        with pytest.raises(wasmtime.WasmtimeError, match="GC proposal is disabled"):
            eng.compile(bytes(wasmtime.wat2wasm(GC_WAT)))
        module = PluginModule.load(eng, wasmtime.wat2wasm(GC_WAT), "gc")
        assert isinstance(module, PluginModule) and module.needs_gc
        rt = PluginRuntime(eng, module, builtin_registry(),
                           limits=Limits(timeout_ms=60_000, max_memory_bytes=MEMORY))
        assert rt.engine is eng.gc is not eng and not eng.gc.baseline
        assert rt.call("echo", b"on cranelift") == b"on cranelift"
        with pytest.raises(MemoryLimitExceeded, match="GC heap out of memory"):
            rt.call("hoard", b"")
        timer = threading.Timer(0.2, eng.interrupt)
        timer.start()
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            rt.call("churn", b"")
        assert time.monotonic() - started < 5
        assert rt.call("echo", b"again") == b"again"
        rt.close()
        # The non-GC modules of a Winch engine stay on it.
        plain = PluginModule.load(eng, wasmtime.wat2wasm(f"(module {ALLOCATOR})"), "plain")
        assert isinstance(plain, PluginModule) and not plain.needs_gc


def test_a_module_the_reader_cannot_read_is_refused_not_compiled() -> None:
    wasm = bytearray(wasmtime.wat2wasm(GC_WAT))
    # The type section's first entry (a recursion group or a struct) made an unknown form.
    start = next(start for sid, start, _end in wasmbin.sections(bytes(wasm)) if sid == 1)
    wasm[start + 1] = 0x11
    with SandboxEngine() as eng, pytest.raises(InvalidModule, match="not a valid WebAssembly"):
        PluginModule.load(eng, bytes(wasm), "broken")
