"""Host function dispatch, kind by kind (sandbox/hostfunc.py: the ctypes trampoline on the
Python call path, ``_callpath.HostFunction`` on the C one): every parameter kind at its edges,
every result kind wrapped as the guest reads it, a result of the wrong type, and a call from a
store no runtime knows. Part of the call-path contract (tests/callpath_contract.py): this
file runs on both paths, and both must answer alike.
"""

from __future__ import annotations

import math
import struct
from typing import Any, ClassVar

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import Trap
from omnicore.sandbox import (
    Capability,
    CapabilityRegistry,
    GuestMemory,
    HostFunction,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
)
from omnicore.sandbox.fastcall import RawInstance
from omnicore.sandbox.hostfunc import define_host_function

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

PROBE_WAT = """
(module
  (import "omnicore:probe" "edges"
    (func $edges (param i32 i32 i32 i32 i64 i64 f32 f64) (result i64)))
  (import "omnicore:probe" "floats" (func $floats (param f32 f64 f32 f64) (result i32)))
  (import "omnicore:probe" "answer32" (func $answer32 (param i32) (result i32)))
  (import "omnicore:probe" "answer64" (func $answer64 (param i32) (result i64)))
  (import "omnicore:probe" "nothing" (func $nothing (param i32)))
  (memory (export "memory") 2)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  ;; Each handler stores what the host function answered at 64 and returns it (8 bytes).
  (func (export "edges") (param i32 i32) (result i64)
    (i64.store (i32.const 64)
      (call $edges (i32.const -2147483648) (i32.const 2147483647) (i32.const -1)
                   (i32.const -2) (i64.const -9223372036854775808)
                   (i64.const 9223372036854775807) (f32.const -3.5) (f64.const 1e300)))
    (i64.const 0x0000004000000008))
  (func (export "floats") (param i32 i32) (result i64)
    (i64.store (i32.const 64)
      (i64.extend_i32_s (call $floats (f32.const -inf) (f64.const -0.0)
                                      (f32.const 0x1p-149) (f64.const nan))))
    (i64.const 0x0000004000000008))
  ;; The input's first byte says which answer the host gives (see ANSWERS).
  (func (export "answer32") (param $p i32) (param i32) (result i64)
    (i64.store (i32.const 64)
      (i64.extend_i32_s (call $answer32 (i32.load8_u (local.get $p)))))
    (i64.const 0x0000004000000008))
  (func (export "answer64") (param $p i32) (param i32) (result i64)
    (i64.store (i32.const 64) (call $answer64 (i32.load8_u (local.get $p))))
    (i64.const 0x0000004000000008))
  (func (export "nothing") (param i32 i32) (result i64)
    (call $nothing (i32.const -5))
    (i64.const 0))
)
"""

#: What answer32/answer64 return for each input byte: a value in range, ones that wrap (the
#: low 32 or 64 bits, as ctypes stores an int), and ones of no integer type.
ANSWERS: list[Any] = [-7, 2**32 + 5, 2**31, I64_MIN, 2**64 + 3, -(2**64) - 1, True, None,
                      "12", 1.5]


class Seen:
    """A plugin's probe state: the arguments its host functions were called with."""

    #: The state of each plugin by name (bind makes one per runtime).
    of: ClassVar[dict[str, Seen]] = {}

    def __init__(self, ctx: Any) -> None:
        self.args: list[tuple[Any, ...]] = []
        Seen.of[ctx.plugin] = self


def _edges(state: Seen, _mem: GuestMemory, *args: Any) -> int:
    state.args.append(args)
    return I64_MIN


def _floats(state: Seen, _mem: GuestMemory, *args: float) -> int:
    state.args.append(args)
    return -1


def _answer(_state: Seen, _mem: GuestMemory, which: int) -> Any:
    return ANSWERS[which]


def _nothing(state: Seen, _mem: GuestMemory, value: int) -> None:
    state.args.append((value,))


PROBE = Capability(name="probe", functions=(
    HostFunction("edges", ("i32", "i32", "ptr", "len", "i64", "i64", "f32", "f64"), ("i64",),
                 _edges),
    HostFunction("floats", ("f32", "f64", "f32", "f64"), ("i32",), _floats),
    HostFunction("answer32", ("i32",), ("i32",), _answer),
    HostFunction("answer64", ("i32",), ("i64",), _answer),
    HostFunction("nothing", ("i32",), (), _nothing)), bind=Seen)


@pytest.fixture
def probe(engine: SandboxEngine) -> Any:
    reg: CapabilityRegistry = builtin_registry()
    reg.add(PROBE)
    rt = PluginRuntime(engine, PluginModule.load(engine, wasmtime.wat2wasm(PROBE_WAT), "probe"),
                       reg, grants=["probe"])
    yield rt
    rt.close()


def _state(rt: PluginRuntime) -> Seen:
    return Seen.of[rt.name]


def _i64(out: bytes) -> int:
    return int.from_bytes(out, "little", signed=True)


def test_every_parameter_kind_arrives_exact_at_its_edges(probe: PluginRuntime) -> None:
    # i32 signed, ptr and len unsigned (the same bits), i64 signed to both ends, floats exact;
    # an i64 result goes back whole.
    assert _i64(probe.call("edges", b"")) == I64_MIN
    assert _i64(probe.call("floats", b"")) == -1
    assert probe.call("nothing", b"") == b""
    edges, floats, nothing = _state(probe).args
    assert edges == (I32_MIN, I32_MAX, 0xFFFF_FFFF, 0xFFFF_FFFE, I64_MIN, I64_MAX, -3.5, 1e300)
    assert [type(a) for a in edges] == [int] * 6 + [float] * 2
    inf, zero, tiny, nan = floats
    assert inf == -math.inf and math.copysign(1, zero) == -1 and zero == 0
    assert tiny == struct.unpack("<f", struct.pack("<I", 1))[0]  # the smallest subnormal
    assert math.isnan(nan)
    assert nothing == (-5,)


@pytest.mark.parametrize("which", range(len(ANSWERS)), ids=[repr(a) for a in ANSWERS])
def test_a_result_is_its_low_bits_and_one_of_no_integer_type_traps(probe: PluginRuntime,
                                                                   which: int) -> None:
    answer = ANSWERS[which]
    for handler, bits in (("answer32", 32), ("answer64", 64)):
        if isinstance(answer, int):
            low = int(answer) & ((1 << bits) - 1)
            want = low - (1 << bits) if low >= 1 << (bits - 1) else low
            assert _i64(probe.call(handler, bytes([which]))) == want, handler
        else:
            with pytest.raises(Trap, match=rf"host function omnicore:probe\.{handler} failed: "
                                           r"TypeError"):
                probe.call(handler, bytes([which]))
        # The plugin serves the next call either way.
        assert _i64(probe.call(handler, bytes([0]))) == -7


def test_a_call_from_a_store_no_runtime_knows_traps_naming_the_function(
        engine: SandboxEngine) -> None:
    # A host function finds its instance in its runtime's live map by store context; one
    # called from another store (a host bug, never a guest's) traps instead of guessing.
    live: dict[int, RawInstance] = {}
    called: list[int] = []
    keep: list[Any] = []
    linker = wasmtime.Linker(engine.wasmtime)
    define_host_function(linker, "env", "ping", ("i32",), ("i32",),
                         lambda _s, _m, v: called.append(v) or v, None, live, keep)
    wasm = wasmtime.wat2wasm("""(module (import "env" "ping" (func $p (param i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "go") (result i32) (call $p (i32.const 3))))""")
    store = wasmtime.Store(engine.wasmtime)
    store.set_epoch_deadline(1 << 30)
    instance = linker.instantiate(store, wasmtime.Module(engine.wasmtime, wasm))
    go = instance.exports(store)["go"]
    with pytest.raises(wasmtime.WasmtimeError, match=r"host function env\.ping was called "
                                                     r"from a store its runtime does not know"):
        go(store)  # type: ignore[operator]
    assert called == [] and live == {}


def test_a_host_function_of_more_than_sixteen_parameters_is_refused_on_both_paths(
        engine: SandboxEngine) -> None:
    linker = wasmtime.Linker(engine.wasmtime)
    keep: list[Any] = []
    define_host_function(linker, "env", "wide", ("i32",) * 16, (), lambda *a: None, None, {},
                         keep)  # sixteen: the most
    kept = len(keep)
    with pytest.raises(ValueError, match=r"at most 16 parameters, env\.wider takes 17"):
        define_host_function(linker, "env", "wider", ("i32",) * 17, (), lambda *a: None, None,
                             {}, keep)
    assert len(keep) == kept  # the refused one made nothing
