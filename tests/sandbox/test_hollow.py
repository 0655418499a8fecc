"""Hollow code (``wasmbin.hollow``, ``SandboxEngine(hollow=True)``): what ``omnicore inspect``
and ``workflows validate`` compile instead of a plugin's code (issue 63). It must describe and
link exactly as the plugin does, on the real toolchains' output, and run nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import wasmtime

from omnicore.sandbox import PluginModule, SandboxEngine, wasmbin

ROOT = Path(__file__).resolve().parents[2]
BUILT = ROOT / "build" / "plugins"  # scripts/dev setup builds every SDK's examples here

# Core modules of every kind the SDKs build (Go's runtime, Kotlin's Wasm GC, Ruby's
# interpreter) and components (componentize-js, componentize-py).
REAL = ("counter-c", "counter-rust", "counter-zig", "counter-as", "counter-go",
        "counter-kotlin", "counter-ruby", "counter-ts", "counter-python")


@pytest.fixture(scope="module")
def engines() -> tuple[SandboxEngine, SandboxEngine]:
    with SandboxEngine(baseline=True) as real, SandboxEngine(baseline=True, hollow=True) as hollow:
        yield real, hollow


@pytest.mark.parametrize("name", REAL)
def test_hollow_code_describes_a_real_plugin_as_its_own_code_does(
        name: str, engines: tuple[SandboxEngine, SandboxEngine]) -> None:
    real, hollow = engines
    wasm = (BUILT / f"{name}.wasm").read_bytes()
    # Every import and export with its type, the handlers, and a component's WIT world, as
    # wasmtime reads them from each compiled form.
    assert PluginModule.load(hollow, wasm).describe() == PluginModule.load(real, wasm).describe()
    # A fraction of the bytes: no function but the exported ones, no data.
    assert len(wasmbin.hollow(wasm)) < len(wasm) // 2 or len(wasm) < 200_000


# A plugin whose own code would run at instantiation and at start: a start function that
# traps, data that fills a page, an _initialize that never returns, a table of functions.
BUSY = wasmtime.wat2wasm(r"""
(module
  (import "omnicore:log" "write" (func $log (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "a page of data the hollow form does not carry")
  (table 2 funcref)
  (elem (i32.const 0) $spin $inner)
  (func $spin (loop (br 0)))
  (func $inner (result i32) (i32.const 7))
  (func $trap unreachable)
  (start $trap)
  (func (export "_initialize") (call $spin))
  (func (export "omni_alloc") (param i32) (result i32) (call $inner))
  (func (export "omni_free") (param i32 i32))
  (func (export "run") (param i32 i32) (result i64) (i64.const 0))
  (global (export "depth") (mut i32) (i32.const 3)))
""")


def _typed(t: object) -> tuple[object, ...]:
    """An import's or export's type as values (wasmtime-py's types compare by identity)."""
    if isinstance(t, wasmtime.FuncType):
        return "func", [str(p) for p in t.params], [str(r) for r in t.results]
    if isinstance(t, wasmtime.MemoryType):
        return "memory", t.limits.min, t.limits.max, t.is_64, t.is_shared
    if isinstance(t, wasmtime.TableType):
        return "table", str(t.element), t.limits.min, t.limits.max
    assert isinstance(t, wasmtime.GlobalType)
    return "global", str(t.content), t.mutable


def _faces(module: wasmtime.Module) -> tuple[list[object], list[object]]:
    return ([(i.module, i.name, _typed(i.type)) for i in module.imports],
            [(e.name, _typed(e.type)) for e in module.exports])


def test_hollow_code_links_as_the_plugin_and_runs_nothing() -> None:
    hollow = wasmbin.hollow(BUSY)
    engine = wasmtime.Engine()
    original, shown = wasmtime.Module(engine, BUSY), wasmtime.Module(engine, hollow)
    assert _faces(shown) == _faces(original)
    assert len(_faces(shown)[1]) == 6
    # The original traps at instantiation (its start); the hollow form instantiates, its
    # memory empty, and every function it has traps at once.
    store = wasmtime.Store(engine)
    linker = wasmtime.Linker(engine)
    linker.define_func("omnicore:log", "write",
                       wasmtime.FuncType([wasmtime.ValType.i32()] * 3, []), lambda *a: None)
    with pytest.raises(wasmtime.Trap):
        linker.instantiate(store, original)
    inst = linker.instantiate(store, shown)
    exports = inst.exports(store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    assert memory.read(store, 0, 8) == bytearray(8)
    for name in ("_initialize", "omni_alloc", "run"):
        func = exports[name]
        assert isinstance(func, wasmtime.Func)
        with pytest.raises(wasmtime.Trap, match="unreachable"):
            func(store, *([0] * len(func.type(store).params)))


def test_a_function_referenced_by_a_global_keeps_every_function() -> None:
    # ref.func in a global's initialiser names a function by index: renumbering would break
    # it, so every function stays (hollow bodies all the same).
    wasm = wasmtime.wat2wasm(r"""
    (module
      (func $a) (func $b (result i32) (i32.const 1))
      (global (export "g") funcref (ref.func $b))
      (func (export "c") (param i32) (result i32) (local.get 0)))""")
    engine = wasmtime.Engine()
    shown = wasmtime.Module(engine, wasmbin.hollow(wasm))
    assert _faces(shown) == _faces(wasmtime.Module(engine, wasm))
    inst = wasmtime.Instance(store := wasmtime.Store(engine), shown, [])
    g = inst.exports(store)["g"]
    assert isinstance(g, wasmtime.Global) and g.value(store) is not None


def test_a_hollow_engine_keeps_no_compiled_code(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no cache_dir"):
        SandboxEngine(cache_dir=tmp_path, hollow=True)


def test_bytes_the_reader_cannot_read_fail_as_wasm_format_errors_only() -> None:
    # inspect reads a user's file: anything but WasmFormatError would be a crash there.
    import random

    rng = random.Random(63)
    wasm = wasmtime.wat2wasm(
        '(module (import "m" "f" (func (param i32))) (memory 1) (data (i32.const 0) "abc")'
        ' (table 1 funcref) (elem (i32.const 0) $g) (func $g (export "g") (result i32)'
        ' i32.const 1) (export "mem" (memory 0)) (start $g2) (func $g2))')
    for _ in range(2000):
        broken = bytearray(wasm)
        for _ in range(rng.randint(1, 3)):
            broken[rng.randrange(8, len(broken))] = rng.randrange(256)
        try:
            wasmbin.hollow(bytes(broken))
        except wasmbin.WasmFormatError:
            pass
    # A hollow engine compiles what its reader refuses as it is: wasmtime names the fault.
    with SandboxEngine(hollow=True) as engine, pytest.raises(wasmtime.WasmtimeError):
        engine.compile(wasm[:8] + b"\x0a\x05\x01\x03\x00")


def _component(*sections: tuple[int, bytes]) -> bytes:
    return wasmbin.MAGIC[:4] + wasmbin.COMPONENT_HEADER + b"".join(
        bytes([sid]) + wasmbin.write_uleb(len(body)) + body for sid, body in sections)


def test_components_nested_thousands_deep_are_refused_as_the_host_refuses_them() -> None:
    # 3,000 components each in the next: 35 KB, and a Python frame a level (a RecursionError
    # was a crash in inspect). wasmtime's verdict, as for a host.
    from omnicore.errors import InvalidModule

    deep = _component()
    for _ in range(3000):
        deep = _component((4, deep))
    with pytest.raises(wasmbin.WasmFormatError, match="nested"):
        wasmbin.hollow(deep)
    for hollow in (False, True):
        with SandboxEngine(baseline=True, hollow=hollow) as engine, \
                pytest.raises(InvalidModule, match="count exceeds limit"):
            PluginModule.load(engine, deep)


def test_a_component_start_section_is_refused_on_hollow_code_as_on_the_plugins() -> None:
    # wasmtime refuses a component's start (component model values): dropping it made hollow
    # code load where the plugin does not (inspect said "would load yes").
    from omnicore.errors import InvalidModule

    wasm = wasmtime.wat2wasm("""(component
      (core module $m (func (export "f")) (func (export "g") (result i32) i32.const 1))
      (core instance $i (instantiate $m))
      (func $f (canon lift (core func $i "f")))
      (func $g (result u32) (canon lift (core func $i "g")))
      (start $f)
      (export "run" (func $g)))""")
    for hollow in (False, True):
        with SandboxEngine(baseline=True, hollow=hollow) as engine, \
                pytest.raises(InvalidModule, match="component model `value`s"):
            PluginModule.load(engine, wasm)
