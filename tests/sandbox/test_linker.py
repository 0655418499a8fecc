"""Capability-scoped linking: grants, needs-grant, per-plugin state, custom capabilities."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import ConfigError, NeedsGrant, Trap
from omnicore.sandbox import (
    Capability,
    CapabilityRegistry,
    GuestMemory,
    HostFunction,
    HostTrap,
    Limits,
    PluginContext,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
)

Make = Callable[..., PluginRuntime]

# A third-party style capability: a per-plugin counter, plus a function that traps.
COUNTER_WAT = """
(module
  (import "omnicore:counter" "next" (func $next (result i64)))
  (import "omnicore:counter" "boom" (func $boom (param i32)))
  (import "omnicore:counter" "whoami" (func $who (param i32 i32) (result i32)))
  (import "omnicore:counter" "mix" (func $mix (param i64 i32 f64 i32 f32) (result i64)))
  (memory (export "memory") 2)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "next") (param i32 i32) (result i64)
    (i64.store (i32.const 64) (call $next))
    (i64.const 0x0000004000000008))
  (func (export "boom") (param i32 i32) (result i64) (call $boom (i32.const 7)) (i64.const 0))
  (func (export "bug") (param i32 i32) (result i64) (call $boom (i32.const 8)) (i64.const 0))
  (func (export "mix") (param i32 i32) (result i64)
    (i64.store (i32.const 64)
      (call $mix (i64.const -5000000000) (i32.const -7) (f64.const 2.5) (i32.const -1)
                 (f32.const 0.25)))
    (i64.const 0x0000004000000008))
  (func (export "whoami") (param i32 i32) (result i64)
    (i64.or (i64.const 0x0000008000000000)
            (i64.extend_i32_u (call $who (i32.const 128) (i32.const 64)))))
)
"""


class Counter:
    def __init__(self, ctx: PluginContext) -> None:
        self.ctx = ctx
        self.value = int(ctx.grant.get("start", 0))


def _next(state: Counter, mem: GuestMemory) -> int:
    state.value += 1
    return state.value


def _boom(state: Counter, mem: GuestMemory, code: int) -> None:
    if code == 7:
        raise HostTrap("boom 7")
    raise RuntimeError("unexpected")


def _whoami(state: Counter, mem: GuestMemory, ptr: int, cap: int) -> int:
    return mem.write_result(state.ctx.plugin.encode(), ptr, cap)


def _mix(state: Counter, mem: GuestMemory, wide: int, small: int, real: float, ptr: int,
         half: float) -> int:
    assert (wide, small, real, ptr, half) == (-5_000_000_000, -7, 2.5, 0xFFFF_FFFF, 0.25)
    return -(2**40)


def _check(opts: Mapping[str, Any]) -> None:
    if set(opts) - {"start"}:
        raise ConfigError("counter grant takes only 'start'")


COUNTER = Capability(
    name="counter",
    functions=(HostFunction("next", (), ("i64",), _next),
               HostFunction("boom", ("i32",), (), _boom),
               HostFunction("whoami", ("ptr", "len"), ("i32",), _whoami),
               HostFunction("mix", ("i64", "i32", "f64", "ptr", "f32"), ("i64",), _mix)),
    bind=Counter, check_grant=_check)


@pytest.fixture
def reg() -> CapabilityRegistry:
    r = builtin_registry()
    r.add(COUNTER)
    return r


def load(engine: SandboxEngine, reg: CapabilityRegistry, name: str, **kw: Any) -> PluginRuntime:
    mod = PluginModule.load(engine, wasmtime.wat2wasm(COUNTER_WAT), name)
    return PluginRuntime(engine, mod, reg, **kw)


def test_custom_capability_state_is_per_plugin(engine: SandboxEngine,
                                               reg: CapabilityRegistry) -> None:
    a = load(engine, reg, "alpha", grants={"counter": {"start": 100}})
    b = load(engine, reg, "beta", grants=["counter"])
    assert int.from_bytes(a.call("next", b""), "little") == 101
    assert int.from_bytes(a.call("next", b""), "little") == 102
    assert int.from_bytes(b.call("next", b""), "little") == 1  # beta never sees alpha's state
    assert a.call("whoami", b"") == b"alpha" and b.call("whoami", b"") == b"beta"
    a.close()
    b.close()


def test_host_trap_and_host_exception(engine: SandboxEngine, reg: CapabilityRegistry) -> None:
    rt = load(engine, reg, "alpha", grants=["counter"])
    with pytest.raises(Trap, match=r"host function omnicore:counter\.boom: boom 7"):
        rt.call("boom", b"")
    assert rt.call("whoami", b"") == b"alpha"
    # A bug in a host function (any exception) traps the guest too, never the host.
    with pytest.raises(Trap, match=r"counter\.boom failed: RuntimeError: unexpected"):
        rt.call("bug", b"")
    assert rt.call("whoami", b"") == b"alpha"
    rt.close()


def test_needs_grant_then_granted(engine: SandboxEngine, reg: CapabilityRegistry) -> None:
    with pytest.raises(NeedsGrant) as info:
        load(engine, reg, "alpha")
    assert info.value.missing == ("counter",) and info.value.plugin == "alpha"
    rt = load(engine, reg, "alpha", grants={"omnicore:counter": None})  # prefix tolerated
    assert rt.granted >= {"counter", "log"}
    rt.close()
    with pytest.raises(NeedsGrant):
        load(engine, reg, "alpha", grants={"counter": False})  # false = not granted


def test_grant_validation(engine: SandboxEngine, reg: CapabilityRegistry) -> None:
    with pytest.raises(ConfigError, match="only 'start'"):
        load(engine, reg, "alpha", grants={"counter": {"bogus": 1}})
    with pytest.raises(ConfigError, match="unknown capability 'telepathy'"):
        load(engine, reg, "alpha", grants=["counter", "telepathy"])
    with pytest.raises(ConfigError, match="options of grant 'counter' must be a table/mapping"):
        load(engine, reg, "alpha", grants={"counter": 5})


def test_granting_more_than_requested_links_nothing_extra(make: Make) -> None:
    rt = make("echo", grants=["config"])  # echo never imports config: grant unused, harmless
    assert rt.call("echo", b"x") == b"x"
    assert rt.module.requested == frozenset({"log"})


def test_registry_rejects_duplicates_and_non_capabilities() -> None:
    r = builtin_registry()
    assert {"config", "log"} <= set(r.names()) and r.defaults() == frozenset({"log"})
    with pytest.raises(ConfigError, match="registered twice"):
        r.add(COUNTER)
        r.add(COUNTER)
    with pytest.raises(ConfigError, match="not a Capability"):
        r.add("log")  # type: ignore[arg-type]


def test_host_function_types_validated() -> None:
    with pytest.raises(ValueError, match="unsupported types"):
        HostFunction("x", ("str",), (), lambda *a: None)
    with pytest.raises(ValueError):
        HostFunction("x", (), ("i32", "i32"), lambda *a: None)


def test_pool_runs_calls_in_parallel_threads(make: Make) -> None:
    import threading

    rt = make("echo", limits=Limits(pool_size=3))
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(500):
                data = f"{i}-{j}".encode() * (j % 7 + 1)
                assert rt.call("echo", data) == data
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert rt.stats()["live"] <= 3


def test_close_waits_and_refuses(make: Make) -> None:
    from omnicore.errors import PluginNotFound

    rt = make("echo")
    rt.close()
    with pytest.raises(PluginNotFound, match="was unloaded"):
        rt.call("echo", b"x")
    assert rt.stats()["live"] == 0


def test_host_function_argument_kinds(engine: SandboxEngine, reg: CapabilityRegistry) -> None:
    # i64 and negative i32 arrive signed, ptr unsigned, floats exact; an i64 result goes back.
    rt = load(engine, reg, "alpha", grants=["counter"])
    assert int.from_bytes(rt.call("mix", b""), "little", signed=True) == -(2**40)
    rt.close()


# §3.3: a host function returns a guest-owned block allocated with the guest's omni_alloc.
BLOB_WAT = """
(module
  (import "omnicore:blob" "fetch" (func $fetch (param i32 i32) (result i64)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (global $allocs (export "allocs") (mut i32) (i32.const 0))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (global.set $allocs (i32.add (global.get $allocs) (i32.const 1)))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p)
                               (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; The input names what to fetch; the host's packed block is returned as the output as-is.
  (func (export "get") (param $p i32) (param $n i32) (result i64)
    (call $fetch (local.get $p) (local.get $n)))
  (func (export "count") (param i32 i32) (result i64)
    (i32.store (i32.const 0) (global.get $allocs))
    (i64.const 4))
)
"""


def _fetch(state: None, mem: GuestMemory, ptr: int, length: int) -> int:
    what = mem.read(ptr, length)
    if what == b"missing":
        return mem.alloc_result(b"NOT_FOUND: no such thing", error=True)
    return mem.alloc_result(b"payload:" + what * 1000)


BLOB = Capability(name="blob", functions=(
    HostFunction("fetch", ("ptr", "len"), ("i64",), _fetch),), bind=lambda ctx: None)


def test_reentrant_allocation(engine: SandboxEngine) -> None:
    reg = builtin_registry()
    reg.add(BLOB)
    rt = PluginRuntime(engine, PluginModule.load(engine, wasmtime.wat2wasm(BLOB_WAT), "blob"),
                       reg, grants=["blob"])
    before = int.from_bytes(rt.call("count", b""), "little")
    assert rt.call("get", b"ab") == b"payload:" + b"ab" * 1000
    after = int.from_bytes(rt.call("count", b""), "little")
    assert after == before + 1  # the host called the guest's omni_alloc once, re-entrantly
    from omnicore.errors import GuestError

    with pytest.raises(GuestError, match="NOT_FOUND: no such thing"):
        rt.call("get", b"missing")
    rt.close()


def test_mixed_traps_and_calls_across_threads(make: Make) -> None:
    import threading

    from omnicore.errors import Trap

    rt = make("unreachable", limits=Limits(pool_size=2))
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(200):
                if (i + j) % 3 == 0:
                    with pytest.raises(Trap):
                        rt.call("crash", b"")
                else:
                    assert rt.call("ok", b"") == b""
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = rt.stats()
    assert stats["live"] <= 2 and stats["busy"] == 0 and stats["discarded"] == 267
