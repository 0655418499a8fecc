"""Wasm GC modules written to break the engine (issue 64: specs/security.md "Wasm GC").

What a hostile plugin author tries beyond tests/sandbox/test_gc.py: GC allocations too large
to make, out-of-bounds segment copies, typed-reference loops against the deadline and fuel,
failed casts, start functions that allocate forever, GC references hidden in recursion groups,
subtypes, imported and exported globals and tables, section bytes the signature reader and
wasmtime might read differently, proposals left off, GC in an Extism plugin's linked module,
and many GC instances at once. Every case ends in one verdict (memory, timeout, fuel, trap or
refused at load), and the process goes on: the next call answers. Whatever could reach the
path that aborts the process (wasmtime-py describing a GC reference) runs in a subprocess
that must exit 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore import errors
from omnicore.app import OmniApp
from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import (
    DeadlineExceeded,
    FuelExhausted,
    InvalidModule,
    MemoryLimitExceeded,
    PluginLoadError,
    Trap,
)
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine, wasmbin
from tests.extism.extism_fixtures import wat_plugin
from tests.sandbox.test_gc import ALLOCATOR, GC_WAT
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
MEMORY = 8 * 2**20

#: A handler that answers its input: what must still work after every attack.
OK = """
  (func (export "ok") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n))))
"""


def plugin(body: str) -> bytes:
    """An ABI v1 plugin: ``body``, the bump allocator and ``ok``."""
    return bytes(wasmtime.wat2wasm(f"(module {body} {OK} {ALLOCATOR})"))


@pytest.fixture(params=[False, True], ids=["on-demand", "pooling"])
def engine(request: pytest.FixtureRequest) -> Iterator[SandboxEngine]:
    eng = SandboxEngine(epoch_tick_ms=5, pooling=request.param)
    yield eng
    eng.close()


def runtime(engine: SandboxEngine, body: str, **limits: object) -> PluginRuntime:
    module = PluginModule.load(engine, plugin(body), "attack")
    assert isinstance(module, PluginModule)
    merged = Limits(timeout_ms=300, max_memory_bytes=MEMORY, pool_size=1).merged(limits)
    return PluginRuntime(engine, module, builtin_registry(), limits=merged)


def still_answers(rt: PluginRuntime) -> None:
    assert rt.call("ok", b"after the attack") == b"after the attack"


# -- allocations the GC heap cannot hold ------------------------------------------------------

#: handler -> (body, the verdict, its message)
ALLOCATIONS: dict[str, tuple[str, type[Exception], str]] = {
    # array.new_default of 2^32-1 bytes: wasmtime refuses the size before asking the heap.
    "i32 max length": ("""
        (type $a (array (mut i8)))
        (func (export "go") (param i32 i32) (result i64)
          (drop (array.new_default $a (i32.const -1))) (i64.const 0))""",
                       Trap, "allocation size too large"),
    # 2^28 i64s (2 GiB): a size wasmtime can represent, refused by the memory limit.
    "2 GiB of i64": ("""
        (type $a (array (mut i64)))
        (func (export "go") (param i32 i32) (result i64)
          (drop (array.new $a (i64.const 7) (i32.const 0x10000000))) (i64.const 0))""",
                     MemoryLimitExceeded, "GC heap out of memory"),
    # 6 MiB arrays kept alive in an anyref table: the second cannot fit under 8 MiB.
    "arrays kept in a table": ("""
        (type $a (array (mut i8)))
        (table $t 1000 anyref)
        (func (export "go") (param i32 i32) (result i64) (local $i i32)
          (loop $l
            (table.set $t (local.get $i) (array.new_default $a (i32.const 0x600000)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
          (i64.const 0))""", MemoryLimitExceeded, "GC heap out of memory"),
    # A chain of structs each holding an array, reachable from a global: nothing is garbage.
    "struct chain holding arrays": ("""
        (type $a (array (mut i64)))
        (type $n (struct (field (ref null $n)) (field (ref $a))))
        (global $kept (mut (ref null $n)) (ref.null $n))
        (func (export "go") (param i32 i32) (result i64)
          (loop $l
            (global.set $kept (struct.new $n (global.get $kept)
                                          (array.new_default $a (i32.const 1000))))
            (br $l))
          (i64.const 0))""", MemoryLimitExceeded, "GC heap out of memory"),
    # array.new_data past the end of its data segment, array.new_elem past its element's.
    "array.new_data out of bounds": ("""
        (type $a (array (mut i8)))
        (data $d "abc")
        (func (export "go") (param i32 i32) (result i64)
          (drop (array.new_data $a $d (i32.const 1) (i32.const 100))) (i64.const 0))""",
                                     Trap, "out of bounds memory access"),
    "array.new_elem out of bounds": ("""
        (type $a (array (mut funcref)))
        (func $g)
        (elem $e func $g $g)
        (func (export "go") (param i32 i32) (result i64)
          (drop (array.new_elem $a $e (i32.const 0) (i32.const -1))) (i64.const 0))""",
                                     Trap, "out of bounds table access"),
    # array.copy of a huge length within one array.
    "array.copy out of bounds": ("""
        (type $a (array (mut i8)))
        (func (export "go") (param i32 i32) (result i64) (local $x (ref $a))
          (local.set $x (array.new_default $a (i32.const 16)))
          (array.copy $a $a (local.get $x) (i32.const 0) (local.get $x) (i32.const 8)
                      (i32.const 0x7fffffff))
          (i64.const 0))""", Trap, "out of bounds array access"),
    # Cyclic garbage: wasmtime's collector (deferred reference counting, the only one its C
    # API offers) never frees a cycle, so a loop dropping two-struct cycles ends at the
    # memory limit, not the deadline: bounded, the instance discarded with its heap.
    "cyclic garbage": ("""
        (type $n (struct (field (mut (ref null $n)))))
        (func (export "go") (param i32 i32) (result i64) (local $c (ref null $n))
          (loop $l
            (local.set $c (struct.new $n (ref.null $n)))
            (struct.set $n 0 (local.get $c) (struct.new $n (local.get $c)))
            (br $l))
          (i64.const 0))""", MemoryLimitExceeded, "GC heap out of memory"),
    # A cast to an unrelated struct type, and a field of a null reference.
    "ref.cast failure": ("""
        (type $s (struct (field i32)))
        (type $t (struct (field i64)))
        (func (export "go") (param i32 i32) (result i64)
          (drop (ref.cast (ref $t) (struct.new $s (i32.const 1)))) (i64.const 0))""",
                         Trap, "cast failure"),
    "struct.get of null": ("""
        (type $s (struct (field i32)))
        (func (export "go") (param i32 i32) (result i64)
          (i64.extend_i32_u (struct.get $s 0 (ref.null $s))))""", Trap, "null reference"),
    # A typed function reference calling itself without end: the stack, not the process.
    "call_ref recursion": ("""
        (type $f (func (param i32 i32) (result i64)))
        (elem declare func $spin)
        (func $spin (type $f)
          (call_ref $f (local.get 0) (local.get 1) (ref.func $spin)))
        (func (export "go") (type $f)
          (call_ref $f (local.get 0) (local.get 1) (ref.func $spin)))""",
                           Trap, "call stack"),
}


@pytest.mark.parametrize("case", list(ALLOCATIONS))
def test_an_attack_ends_in_its_verdict_and_the_next_call_answers(
        engine: SandboxEngine, case: str) -> None:
    body, verdict, text = ALLOCATIONS[case]
    rt = runtime(engine, body)
    with pytest.raises(verdict, match=text) as info:
        rt.call("go", b"x")
    assert type(info.value) is verdict, info.value  # not a subclass standing in for it
    assert "\n" not in str(info.value)
    still_answers(rt)
    rt.close()


#: A tail-calling loop through a typed function reference: no stack grows, only time passes.
TAIL_LOOP = """
  (type $f (func (param i32 i32) (result i64)))
  (elem declare func $spin)
  (func $spin (type $f) (return_call_ref $f (local.get 0) (local.get 1) (ref.func $spin)))
  (func (export "go") (type $f) (return_call_ref $f (local.get 0) (local.get 1) (ref.func $spin)))
"""


def test_a_return_call_ref_loop_ends_at_its_deadline(engine: SandboxEngine) -> None:
    rt = runtime(engine, TAIL_LOOP, timeout_ms=200)
    with pytest.raises(DeadlineExceeded, match="'go' exceeded its deadline of 200 ms"):
        rt.call("go", b"")
    still_answers(rt)


def test_a_return_call_ref_loop_ends_when_its_fuel_is_gone() -> None:
    with SandboxEngine(epoch_tick_ms=5, fuel=True) as eng:
        rt = runtime(eng, TAIL_LOOP, fuel=1_000_000, timeout_ms=60_000)
        with pytest.raises(FuelExhausted, match="'go' used all of its fuel"):
            rt.call("go", b"")
        still_answers(rt)


def test_a_table_grown_with_structs_stays_under_its_table_limit(engine: SandboxEngine) -> None:
    # table.grow with a fresh struct until it is refused: the table limit holds for anyref
    # tables too; the handler answers the size it got (4 bytes at address 16).
    rt = runtime(engine, """
        (type $n (struct (field i64)))
        (table $t 1 anyref)
        (func (export "go") (param i32 i32) (result i64)
          (loop $l
            (br_if $l (i32.ne (table.grow $t (struct.new $n (i64.const 0)) (i32.const 1000))
                              (i32.const -1))))
          (i32.store (i32.const 16) (table.size $t))
          (i64.const 0x1000000004))""", max_table_elements=5000)
    size = int.from_bytes(rt.call("go", b""), "little")
    assert 1 <= size <= 5000
    still_answers(rt)


# -- start functions and global initialisers --------------------------------------------------

def test_a_start_function_filling_the_gc_heap_fails_the_load_with_the_memory_verdict(
        engine: SandboxEngine) -> None:
    body = """
        (type $n (struct (field (ref null $n))))
        (global $k (mut (ref null $n)) (ref.null $n))
        (func $s (loop $l (global.set $k (struct.new $n (global.get $k))) (br $l)))
        (start $s)"""
    with pytest.raises(PluginLoadError, match=r"oom: its memory reached limits\."
                       r"max_memory_bytes \(8388608\): GC heap out of memory"):
        runtime(engine, body)
    runtime(engine, "").close()  # the engine goes on


def test_a_start_function_churning_forever_fails_the_load_at_its_deadline(
        engine: SandboxEngine) -> None:
    body = """
        (type $n (struct (field (ref null $n))))
        (func $s (loop $l (drop (struct.new $n (ref.null $n))) (br $l)))
        (start $s)"""
    with pytest.raises(PluginLoadError, match="exceeded its deadline of 200 ms"):
        runtime(engine, body, timeout_ms=200)
    runtime(engine, "").close()


def test_a_global_initialised_with_a_huge_array_fails_the_load_as_a_trap(
        engine: SandboxEngine) -> None:
    body = """
        (type $a (array i64))
        (global $g (ref $a) (array.new_default $a (i32.const 0x7fffffff)))"""
    with pytest.raises(PluginLoadError, match="allocation size too large"):
        runtime(engine, body)
    runtime(engine, "").close()


# -- what wasmtime refuses at load ------------------------------------------------------------

REFUSED_AT_LOAD = {
    "exceptions (throw)": ('(tag $e) (func (export "go") (param i32 i32) (result i64) '
                           '(throw $e))', "exceptions proposal not enabled"),
    "exceptions (try_table)": ('(func (export "go") (param i32 i32) (result i64) '
                               '(block $h (try_table (catch_all $h) (nop))) (i64.const 0))',
                               # passes validation; Cranelift refuses it translating
                               "exceptions support is not enabled"),
    "a subtype chain deeper than 63": (
        "(type $t0 (sub (struct)))" + "".join(
            f"(type $t{i} (sub $t{i - 1} (struct)))" for i in range(1, 70)),
        "sub type hierarchy too deep"),
}


@pytest.mark.parametrize("case", list(REFUSED_AT_LOAD))
def test_a_proposal_left_off_is_refused_at_load(engine: SandboxEngine, case: str) -> None:
    body, text = REFUSED_AT_LOAD[case]
    with pytest.raises(InvalidModule, match=text) as info:
        PluginModule.load(engine, plugin(body), "attack")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("memory", ["i64 1", "1 2 shared"], ids=["memory64", "shared"])
def test_a_gc_module_with_memory64_or_shared_memory_is_refused(engine: SandboxEngine,
                                                                memory: str) -> None:
    wat = f"""(module (type $s (struct (field i32)))
      (memory (export "memory") {memory})
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 8))
      (func (export "omni_free") (param i32 i32)) {OK})"""
    with pytest.raises(InvalidModule, match="must be enabled"):
        PluginModule.load(engine, wasmtime.wat2wasm(wat), "attack")


# -- GC references where the signature reader must find them ----------------------------------

#: case -> (module body, where the refusal points; None: accepted, and it must answer)
SIGNATURES: dict[str, tuple[str, str | None]] = {
    "an i31ref result of a function type inside a recursion group": (
        '(rec (type $s (struct (field i32))) (type $f (func (param i32 i32) (result i31ref))))'
        '(func (export "x") (type $f) (ref.i31 (i32.const 0)))', "export 'x'"),
    "an eqref param of a subtype of a function type": (
        '(type $b (sub (func (param eqref)))) (type $f (sub $b (func (param eqref))))'
        '(func (export "x") (type $f))', "export 'x'"),
    "an imported i31ref global": ('(import "omnicore:log" "g" (global i31ref))',
                                  "import omnicore:log.g"),
    "an imported anyref table": ('(import "omnicore:log" "t" (table 1 anyref))',
                                 "import omnicore:log.t"),
    "an exported table of typed function references with an initialiser": (
        '(type $f (func)) (func $g (type $f)) (table $t (export "t") 2 (ref $f) (ref.func $g))',
        "export 't'"),
    "a non-null (ref func) result": ('(func $g) (elem declare func $g)'
                                     '(func (export "x") (result (ref func)) (ref.func $g))',
                                     "export 'x'"),
    "an import re-exported, its type in a recursion group with an array": (
        '(rec (type $a (struct)) (type $b (array i8)) (type $f (func (param i32 (ref null $b)))))'
        '(import "omnicore:log" "h" (func $h (type $f))) (export "rx" (func $h))',
        "export 'rx'"),
    "an exported nullexternref global": ('(global (export "g") nullexternref '
                                         '(ref.null noextern))', "export 'g'"),
    "an exnref param": ('(func (export "x") (param exnref))', "export 'x'"),
    "an exported mutable global holding a struct, typed eqref": (
        '(type $s (struct (field i32)))'
        '(global (export "g") (mut eqref) (struct.new $s (i32.const 1)))', "export 'g'"),
    # Accepted: (ref null func) is funcref and (ref null extern) externref, as the C API
    # describes them; a GC signature reachable only through a funcref table's element or a
    # struct field's function type is never described.
    "(ref null func) is funcref": (
        '(func (export "x") (result (ref null func)) (ref.null func))', None),
    "an externref global holding an i31 converted": (
        '(global (export "g") (mut externref) (extern.convert_any (ref.i31 (i32.const 5))))',
        None),
    "a funcref table exporting a function of a GC signature": (
        '(type $s (struct)) (func $g (param (ref null $s))) (table (export "t") 1 funcref)'
        '(elem (i32.const 0) $g)', None),
    "a function type shared with a struct field's typed reference": (
        '(rec (type $f (func (param i32 i32) (result i64)))'
        '     (type $s (struct (field (ref null $f)))))'
        '(func (export "y") (type $f) (i64.const 1))', None),
}


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + wasmbin.write_uleb(len(payload)) + payload


#: Bytes built by hand: what a type or global section can say that the reader must refuse.
MALFORMED: dict[str, str] = {
    # A recursion group announcing 5 members, holding 1.
    "a recursion group shorter than its count": (
        wasmbin.MAGIC + _section(1, b"\x01\x4e\x05\x5f\x00")).hex(),
    # 2^32-1 types announced, none there.
    "a type count of 2^32-1": (wasmbin.MAGIC + _section(1, b"\xff\xff\xff\xff\x0f")).hex(),
    # A struct field of an unknown storage type (0x01).
    "an unknown storage type": (wasmbin.MAGIC + _section(1, b"\x01\x5f\x01\x01\x00")).hex(),
    # A global initialised with array.new_data (0xfb 0x09), not a constant instruction.
    "a non-constant GC instruction in a global": (
        wasmbin.MAGIC + _section(1, b"\x01\x5e\x78\x01")
        + _section(6, b"\x01\x64\x00\x00\x41\x00\x41\x00\xfb\x09\x00\x00\x0b")).hex(),
    # An exported function whose type index names a struct: wasmtime refuses it; the reader
    # never makes it a signature.
    "a function typed by a struct": (
        wasmbin.MAGIC + _section(1, b"\x01\x5f\x00") + _section(3, b"\x01\x00")
        + _section(7, b"\x01\x01f\x00\x00") + _section(10, b"\x01\x02\x00\x0b")).hex(),
    # (ref null func) spelled as a two-byte heap type (-16 as a non-canonical s33).
    "a heap type in a non-canonical encoding": (
        wasmbin.MAGIC + _section(1, b"\x01\x60\x01\x63\xf0\x7f\x00")
        + _section(3, b"\x01\x00") + _section(7, b"\x01\x01f\x00\x00")
        + _section(10, b"\x01\x02\x00\x0b")).hex(),
}

_PROBE = textwrap.dedent("""
    import json, sys
    import wasmtime
    from omnicore.capabilities.builtin import builtin_registry
    from omnicore.errors import InvalidModule
    from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
    from tests.sandbox.test_gc_attack import plugin
    cases = json.loads(sys.stdin.read())
    engines = {"cranelift": SandboxEngine(), "winch": SandboxEngine(baseline=True)}
    for case, (kind, text) in cases.items():
        wasm = plugin(text) if kind == "wat" else bytes.fromhex(text)
        for which, eng in engines.items():
            print(json.dumps([case, which, "start"]), flush=True)
            out = {}
            report = PluginModule.inspect(wasm, name="attack", engine=eng)
            out["inspect"] = None if report["ok"] else report["error"]
            try:
                mod = PluginModule.load(eng, wasm, "attack")
            except InvalidModule as exc:
                out["load"] = str(exc)
            else:
                rt = PluginRuntime(eng, mod, builtin_registry(),
                                   limits=Limits(timeout_ms=2000))
                out["load"] = None
                out["answer"] = rt.call("ok", b"fine").decode()
                rt.close()
            try:
                eng.compile(wasm)
                out["compile"] = None
            except wasmtime.WasmtimeError as exc:
                out["compile"] = str(exc)
            print(json.dumps([case, which, out]), flush=True)
    for eng in engines.values():
        eng.close()
""")


def _probe(cases: dict[str, tuple[str, str]]) -> dict[tuple[str, str], dict[str, str | None]]:
    """Each case loaded, inspected and compiled on a Cranelift and a Winch engine, in a
    subprocess (an abort there ends it: its exit status and the case it was on say so)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE], input=json.dumps(cases), cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, (proc.returncode, lines[-1:], proc.stderr[-2000:])
    return {(case, which): out for case, which, out in lines if out != "start"}


def test_gc_references_in_signatures_are_found_wherever_they_hide() -> None:
    got = _probe({case: ("wat", body) for case, (body, _) in SIGNATURES.items()})
    for case, (_body, where) in SIGNATURES.items():
        for which in ("cranelift", "winch"):
            out = got[(case, which)]
            if where is None:
                assert out["inspect"] is None and out["load"] is None, (case, which, out)
                assert out["answer"] == "fine", (case, which, out)
                continue
            for step in ("inspect", "load", "compile"):
                message = out[step]
                assert message is not None and where in message \
                    and "GC/typed reference" in message, (case, which, step, message)
                assert "\n" not in message


def test_type_and_global_sections_the_reader_cannot_read_are_refused() -> None:
    got = _probe({case: ("hex", text) for case, text in MALFORMED.items()})
    for case in MALFORMED:
        for which in ("cranelift", "winch"):
            out = got[(case, which)]
            for step in ("inspect", "load", "compile"):
                assert out[step] is not None, (case, which, step, out)
            # What a user reads is one line (compile's own error is wasmtime's text).
            assert "\n" not in out["inspect"] and "\n" not in out["load"], (case, which, out)


# -- Winch ------------------------------------------------------------------------------------

#: GC used where the type section does not show it (wasmbin.uses_gc reads only that section).
GC_OUTSIDE_TYPES = {
    "ref.i31 in a function body": '(func (export "go") (param i32 i32) (result i64) '
                                  '(i64.extend_i32_u (i31.get_u (ref.i31 (local.get 1)))))',
    "an anyref global": '(global $g (mut anyref) (ref.null any))',
    "an externref global made from an i31": (
        '(global (export "g") (mut externref) (extern.convert_any (ref.i31 (i32.const 5))))'),
}


@pytest.mark.parametrize("case", list(GC_OUTSIDE_TYPES))
def test_a_gc_module_without_gc_types_runs_on_cranelift_too(case: str) -> None:
    # On Cranelift each answers: the GC proposals are on.
    with SandboxEngine(epoch_tick_ms=5) as eng:
        rt = runtime(eng, GC_OUTSIDE_TYPES[case])
        still_answers(rt)
        rt.close()


@pytest.mark.parametrize("case", list(GC_OUTSIDE_TYPES))
def test_a_gc_module_without_gc_types_runs_on_a_winch_engines_cranelift_sibling(
        case: str) -> None:
    # Found here (issue 64): wasmbin.uses_gc reads the type section only, so such a module
    # went to Winch, which refused it at load ("gc support is not enabled", "gc types are
    # disallowed"); Winch's refusal now sends it to the Cranelift sibling, and
    # inspect's validation (compile=False) too.
    with SandboxEngine(baseline=True, epoch_tick_ms=5) as eng:
        wasm = plugin(GC_OUTSIDE_TYPES[case])
        assert not wasmbin.uses_gc(wasm)
        described = PluginModule.load(eng, wasm, "attack", compile=False)
        assert isinstance(described, PluginModule) and described.needs_gc
        rt = runtime(eng, GC_OUTSIDE_TYPES[case])
        assert rt.module.needs_gc and rt.engine is eng.gc
        still_answers(rt)
        rt.close()


def test_a_tiered_cold_start_serves_gc_without_gc_types_then_tiers_it_up(
        tmp_path: Path) -> None:
    # A Cranelift host compiles a cold file with Winch first (plugins/tiers.py): Winch
    # refuses these for GC, its sibling compiles them, and the tier-up swaps in the main
    # engine's code.
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "i31.wasm").write_bytes(plugin(GC_OUTSIDE_TYPES["ref.i31 in a function body"]))
    (folder / "tail.wasm").write_bytes(plugin(TAIL_LOOP))
    with PluginHost(engine_factory=lambda fuel=False: SandboxEngine(
            cache_dir=tmp_path / "cache", fuel=fuel)) as host:
        host.watch_folder(folder, watch=False)
        assert {i.name: i.state for i in host} == {"i31": "loaded", "tail": "loaded"}
        for name in ("i31", "tail"):
            assert host.call(name, "ok", b"served") == b"served"
        tiers = host._linker._tiers
        eventually(lambda: not any(tiers.is_baseline(host._entries.require(n).module)
                                   for n in ("i31", "tail")), "the tier-up")
        with pytest.raises(DeadlineExceeded):
            host.call("tail", "go", b"")
        assert host.call("tail", "ok", b"after") == b"after"


def test_a_winch_engines_gc_sibling_counts_fuel() -> None:
    with SandboxEngine(baseline=True, epoch_tick_ms=5, fuel=True) as eng:
        rt = runtime(eng, TAIL_LOOP, fuel=1_000_000, timeout_ms=60_000)
        assert rt.engine is eng.gc and eng.gc.fuel
        with pytest.raises(FuelExhausted, match="'go' used all of its fuel"):
            rt.call("go", b"")
        still_answers(rt)
        again = runtime(eng, TAIL_LOOP)  # the same bytes again: the sibling's module
        assert again.module.needs_gc
        still_answers(again)


def test_a_winch_engines_gc_sibling_keeps_the_memory_verdict_for_huge_arrays() -> None:
    with SandboxEngine(baseline=True, epoch_tick_ms=5) as eng:
        for case in ("2 GiB of i64", "arrays kept in a table", "i32 max length"):
            body, verdict, text = ALLOCATIONS[case]
            rt = runtime(eng, body)
            assert rt.engine is eng.gc
            with pytest.raises(verdict, match=text):
                rt.call("go", b"")
            still_answers(rt)
            rt.close()


# -- Extism -----------------------------------------------------------------------------------

def test_wasm_gc_in_an_extism_plugin_is_refused_in_its_main_and_its_linked_modules(
        tmp_path: Path) -> None:
    # The linked module hoards structs: before the fix it loaded and ran (bounded by the
    # manifest's memory, but an Extism plugin using GC is refused: specs/security.md).
    (tmp_path / "math.wasm").write_bytes(wasmtime.wat2wasm("""(module
      (type $n (struct (field (ref null $n)) (field i64)))
      (global $k (mut (ref null $n)) (ref.null $n))
      (func (export "add") (param i64) (result i64)
        (loop $l (global.set $k (struct.new $n (global.get $k) (i64.const 0))) (br $l))
        (i64.const 0)))"""))
    (tmp_path / "p.wasm").write_bytes(wat_plugin("link_main"))
    (tmp_path / "p.json").write_text(json.dumps(
        {"wasm": [{"path": "math.wasm", "name": "math"}, {"path": "p.wasm"}]}))
    (tmp_path / "g.wasm").write_bytes(wasmtime.wat2wasm("""(module
      (type $n (struct (field i64)))
      (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
      (func (export "run") (result i32) (drop (struct.new $n (i64.const 1))) (i32.const 0)))"""))
    with PluginHost(failure_threshold=100) as host:
        with pytest.raises(InvalidModule, match="an Extism plugin using Wasm GC is not "
                           "supported"):
            host.load(tmp_path / "g.wasm")
        with pytest.raises(InvalidModule, match=r"the module linked as 'math' .* uses Wasm GC"):
            host.load(tmp_path / "p.wasm")


# -- many instances ---------------------------------------------------------------------------

def test_gc_instances_take_two_pool_slots_and_a_full_pool_is_refused_cleanly() -> None:
    # With the pooling allocator a GC instance holds a memory slot for its linear memory and
    # one for its GC heap: 512 slots hold 256 of them. The 257th is refused at load (the pool
    # is wasmtime's limit, not the process's), and one freed makes room again.
    with SandboxEngine(epoch_tick_ms=5, pooling=True) as eng:
        module = PluginModule.load(eng, wasmtime.wat2wasm(GC_WAT), "gc")
        assert isinstance(module, PluginModule)
        limits = Limits(timeout_ms=2000, max_memory_bytes=MEMORY, pool_size=1)
        made: list[PluginRuntime] = []
        refused: PluginLoadError | None = None
        for _ in range(300):
            try:
                rt = PluginRuntime(eng, module, builtin_registry(), limits=limits)
            except PluginLoadError as exc:
                refused = exc
                break
            assert rt.call("echo", b"gc") == b"gc"
            made.append(rt)
        assert refused is not None and len(made) == 256
        assert "maximum concurrent limit of 512" in str(refused)
        made.pop().close()
        rt = PluginRuntime(eng, module, builtin_registry(), limits=limits)
        assert rt.call("echo", b"room again") == b"room again"
        for held in (*made, rt):
            held.close()


def test_many_hoarding_instances_leave_the_host_resident_memory_bounded() -> None:
    # In a process of its own: 24 runtimes (pool_size 1), each hoarding structs to its 8 MiB
    # limit, two threads at a time: every instance is discarded with its GC heap, so the
    # process keeps far less than the 24 x 8 MiB the guests allocated (VmRSS after).
    probe = textwrap.dedent("""
        import threading
        import wasmtime
        from omnicore.capabilities.builtin import builtin_registry
        from omnicore.errors import MemoryLimitExceeded
        from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
        from tests.sandbox.test_gc import GC_WAT
        def rss():
            with open("/proc/self/status") as f:
                return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS"))
        with SandboxEngine(epoch_tick_ms=5) as eng:
            mod = PluginModule.load(eng, wasmtime.wat2wasm(GC_WAT), "gc")
            lim = Limits(timeout_ms=20000, max_memory_bytes=8 * 2**20, pool_size=2)
            rts = [PluginRuntime(eng, mod, builtin_registry(), limits=lim) for _ in range(12)]
            assert all(rt.call("echo", b"x") == b"x" for rt in rts)
            before = rss()
            verdicts = []
            def hoard(rt):
                try:
                    rt.call("hoard", b"")
                except MemoryLimitExceeded:
                    verdicts.append(1)
            for rt in rts:
                pair = [threading.Thread(target=hoard, args=(rt,)) for _ in range(2)]
                for t in pair:
                    t.start()
                for t in pair:
                    t.join()
            assert len(verdicts) == 24, verdicts
            assert all(rt.call("echo", b"after") == b"after" for rt in rts)
            print(rss() - before)
    """)
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    grew = int(proc.stdout.split()[-1])
    assert grew <= 48 * 2**20, grew  # 24 x 8 MiB were allocated and dropped


# -- through an app ---------------------------------------------------------------------------

def test_an_apps_plugins_call_gives_each_verdict_and_answers_after(
        make_app: Callable[..., OmniApp]) -> None:
    app = make_app(builtin_extensions=None, overrides={
        "sandbox": {"limits": {"max_memory_bytes": MEMORY, "timeout_ms": 300}},
        "plugins": {"fresh": {"limits": {"isolation": "per-call"}}}})
    folder = Path(app.config.plugins_dir)
    folder.mkdir(parents=True)
    for name in ("gc", "fresh"):
        (folder / f"{name}.wasm").write_bytes(wasmtime.wat2wasm(GC_WAT))
    (folder / "tail.wasm").write_bytes(plugin(TAIL_LOOP))
    app.start()
    plugins = app.plugins
    for name in ("gc", "fresh"):
        assert plugins.call(name, "echo", b"in") == b"in"
        with pytest.raises(MemoryLimitExceeded, match="GC heap out of memory"):
            plugins.call(name, "hoard", b"")
        with pytest.raises(DeadlineExceeded):
            plugins.call(name, "churn", b"")
        assert plugins.call(name, "echo", b"out") == b"out"
    with pytest.raises(DeadlineExceeded):
        plugins.call("tail", "go", b"")
    assert plugins.call("tail", "ok", b"still") == b"still"


def test_concurrent_attacks_on_one_runtime_each_get_their_verdict(
        engine: SandboxEngine) -> None:
    rt = runtime(engine, ALLOCATIONS["struct chain holding arrays"][0] + TAIL_LOOP.replace(
        '"go"', '"spin"'), pool_size=4, timeout_ms=500)
    results: list[type[Exception]] = []
    barrier = threading.Barrier(4)

    def attack(handler: str) -> None:
        barrier.wait()
        try:
            rt.call(handler, b"")
        except errors.PluginError as exc:
            results.append(type(exc))

    threads = [threading.Thread(target=attack, args=(h,)) for h in ("go", "go", "spin", "spin")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.__name__ for r in results) == [
        "DeadlineExceeded", "DeadlineExceeded", "MemoryLimitExceeded", "MemoryLimitExceeded"]
    still_answers(rt)


def test_a_gc_module_importing_a_host_function_with_a_funcref_is_refused_at_link(
        engine: SandboxEngine) -> None:
    # funcref is describable, so the module loads; the host function's type is i32, and the
    # link refuses the import in one line, naming both types.
    body = ('(type $s (struct))'
            '(import "omnicore:log" "enabled" (func (param funcref) (result i32)))')
    with pytest.raises(InvalidModule, match=r"import omnicore:log\.enabled has type "
                       r"\(funcref\) -> i32, expected \(i32\) -> i32"):
        runtime(engine, body)
    runtime(engine, "").close()
