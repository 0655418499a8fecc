"""Every error a plugin call raises is an OmniError, whatever the allocator and the result
look like, and the plugin serves the next call (specs/abi.md §2, specs/security.md).

A property test: hypothesis draws an allocator (what ``omni_alloc`` returns when the plugin
starts, and what it returns later: at a call whose input outgrows the input buffer, or
re-entrantly from a host function), a handler result (pointer, length, E bit) and an input
size; the modules are WAT written here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnicore.capabilities.builtin import builtin_capabilities
from omnicore.errors import OmniError, PluginLoadError, Trap
from omnicore.sandbox import (
    Capability,
    CapabilityRegistry,
    GuestMemory,
    HostFunction,
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
)

_END = "(i32.shl (memory.size) (i32.const 16))"
#: What omni_alloc returns, by name.
ALLOCATORS = {
    "ok": f"""(local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
             (local.set $end (i32.add (local.get $p) (local.get $n)))
             (if (i32.gt_u (local.get $end) {_END})
               (then (drop (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end) {_END})
                                                            (i32.const 16)) (i32.const 1))))))
             (global.set $heap (local.get $end))
             (local.get $p)""",
    "zero": "(i32.const 0)",
    "end of memory": _END,
    "past the end": f"(i32.add {_END} (i32.const 4096))",
    "straddling the end": f"(i32.sub {_END} (i32.const 8))",
    "top of the address space": "(i32.const -8)",
    "trap": "(unreachable)",
}
#: Where the handler's result points.
POINTERS = {
    "zero": "(i32.const 0)",
    "inside": "(i32.const 1024)",
    "straddling the end": f"(i32.sub {_END} (i32.const 8))",
    "end of memory": _END,
    "past the end": f"(i32.add {_END} (i32.const 100))",
    "top of the address space": "(i32.const -1)",
}
MAX_OUTPUT = 4096
LENGTHS = (0, 8, 100, MAX_OUTPUT + 1, 0x7FFF_FFFF)
INPUTS = (0, 10, 70_000)  # 70,000 outgrows the 64 KiB input buffer: omni_alloc at call time


def _reentrant(_state: object, mem: GuestMemory) -> int:
    # Like http.request and vectors.search: a block from the guest's allocator (abi.md §3.3).
    return mem.alloc_result(b"a result the host hands back")


REGISTRY = CapabilityRegistry([*builtin_capabilities(), Capability(
    "blocks", (HostFunction("get", (), ("i64",), _reentrant),))])


def plugin(first: str, later: str, ptr: str, length: int, error: bool, reentrant: bool) -> bytes:
    low = length | (1 << 31 if error else 0)
    call = "(drop (call $get))" if reentrant else ""
    return wasmtime.wat2wasm(f"""(module
      (import "omnicore:blocks" "get" (func $get (result i64)))
      (memory (export "memory") 2)
      (global $heap (mut i32) (i32.const 4096))
      (global $calls (mut i32) (i32.const 0))
      (func (export "omni_alloc") (param $n i32) (result i32) (local $p i32) (local $end i32)
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (if (result i32) (i32.eq (global.get $calls) (i32.const 1))
          (then {ALLOCATORS[first]}) (else {ALLOCATORS[later]})))
      (func (export "omni_free") (param i32 i32))
      (func (export "ok") (param i32 i32) (result i64) (i64.const 0))
      (func (export "h") (param i32 i32) (result i64)
        {call}
        (i64.or (i64.shl (i64.extend_i32_u {POINTERS[ptr]}) (i64.const 32))
                (i64.const {low}))))""")


@pytest.fixture(scope="module")
def engine() -> Iterator[SandboxEngine]:
    with SandboxEngine(epoch_tick_ms=5) as eng:
        yield eng


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=st.sampled_from(["ok"] * 6 + sorted(ALLOCATORS)),  # mostly a plugin that starts
       later=st.sampled_from(sorted(ALLOCATORS)), ptr=st.sampled_from(sorted(POINTERS)),
       length=st.sampled_from(LENGTHS), error=st.booleans(), reentrant=st.booleans(),
       size=st.sampled_from(INPUTS))
def test_every_raise_is_an_omni_error_and_the_plugin_serves_on(
        engine: SandboxEngine, first: str, later: str, ptr: str, length: int, error: bool,
        reentrant: bool, size: int) -> None:
    mod = PluginModule.load(engine, plugin(first, later, ptr, length, error, reentrant), "p")
    limits = Limits(max_output_bytes=MAX_OUTPUT, timeout_ms=2000)
    try:
        rt = PluginRuntime(engine, mod, REGISTRY, ["blocks"], limits=limits)
    except PluginLoadError:
        assert first != "ok"  # a broken allocator at start is a load error, and only that
        return
    with rt:
        try:
            rt.call("h", b"x" * size)
        except OmniError:
            pass
        except BaseException as exc:  # reported with the example hypothesis found
            pytest.fail(f"{type(exc).__module__}.{type(exc).__name__} outside the error "
                        f"tree: {exc}")
        assert rt.call("ok", b"next") == b""


def test_an_out_of_bounds_block_at_call_time_is_a_trap(engine: SandboxEngine) -> None:
    # The reported case: it reached the embedding app as a raw HostTrap.
    mod = PluginModule.load(engine, plugin("ok", "past the end", "inside", 0, False, False))
    with PluginRuntime(engine, mod, REGISTRY, ["blocks"]) as rt:
        with pytest.raises(Trap, match=r"omni_alloc\(131072\) returned an out-of-bounds block"):
            rt.call("h", b"x" * 70_000)
        assert rt.call("ok", b"") == b""


def test_an_empty_result_ignores_its_pointer(engine: SandboxEngine) -> None:
    # abi.md §2.2: len == 0 is empty output whatever ptr says, even past memory.
    for ptr in ("past the end", "top of the address space", "end of memory"):
        mod = PluginModule.load(engine, plugin("ok", "ok", ptr, 0, False, False))
        with PluginRuntime(engine, mod, REGISTRY, ["blocks"]) as rt:
            assert rt.call("h", b"") == b""
