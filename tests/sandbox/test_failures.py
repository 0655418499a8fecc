"""One verdict per failure (sandbox/failures.py): each cause of a failed call, run for real on
each runtime (an ABI v1 plugin, an Extism plugin, a component), gets one error class and one
message shape; and a store that trapped is never called again (the next call's counter starts
over on a fresh instance), on the C and the Python call path, pooled and per call."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import wasmtime

from omnicore.errors import (
    DeadlineExceeded,
    FuelExhausted,
    MemoryLimitExceeded,
    OmniError,
    PluginLoadError,
    Trap,
)
from omnicore.extism import ExtismRuntime, host_fn
from omnicore.sandbox import CapabilityRegistry, Limits, PluginModule, PluginRuntime, SandboxEngine
from omnicore.sandbox.capability import Capability, HostFunction, WitFunction
from omnicore.sandbox.component import ComponentRuntime
from omnicore.sandbox.fastcall import NATIVE, HostTrap
from tests.component_fixtures import wat_component

RUNTIMES = ("native", "extism", "component")
REFUSED = "refused by the gate"


def _refuse(*_: Any) -> None:
    raise HostTrap(REFUSED)


#: A capability whose one function refuses every call, for core modules and components.
GATE = Capability("gate", [HostFunction("refuse", (), (), _refuse)],
                  wit=[WitFunction("refuse", "func()", _refuse)])


@host_fn(name="refuse", signature=([], []))
def extism_refuse(*_: Any) -> None:
    raise HostTrap(REFUSED)


# Each cause's body, the same wasm in both core dialects (ABI v1 handlers take (ptr, len) and
# answer an i64; Extism ones take nothing and answer an i32).
_BODIES = {
    "memory-limit": "(loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) "
                    "unreachable",
    "deadline": "(loop (br 0)) unreachable",
    "fuel": "(loop (br 0)) unreachable",
    "stack-overflow": "(drop (call $deep)) unreachable",
    "unreachable": "unreachable",
    "host-refusal": "(call $refuse) unreachable",
    "exit": "(call $exit (i32.const 1)) unreachable",
    # Bulk operations out of bounds: the trap comes in the middle of the operation.
    "fill": "(memory.fill (i32.const 200000) (i32.const 7) (i32.const 1000)) unreachable",
    "copy": "(table.copy (i32.const 0) (i32.const 2) (i32.const 3)) unreachable",
}


def _core(extism: bool) -> bytes:
    sig = "(result i32)" if extism else "(param i32 i32) (result i64)"
    refuse = ('(import "extism:host/user" "refuse" (func $refuse))' if extism
              else '(import "omnicore:gate" "refuse" (func $refuse))')
    # The counter: native handlers answer its byte at offset 16; Extism ones set it as output.
    if extism:
        locals_ = "(local $h i64)"
        count = ("(local.set $h (call $alloc (i64.const 1))) "
                 "(call $store8 (local.get $h) (global.get $count)) "
                 "(call $out (local.get $h) (i64.const 1)) i32.const 0")
        env = ('(import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))'
               '(import "extism:host/env" "store_u8" (func $store8 (param i64 i32)))'
               '(import "extism:host/env" "output_set" (func $out (param i64 i64)))')
        abi = ""
    else:
        count = ("(i32.store8 (i32.const 16) (global.get $count)) "
                 "(i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 1))")
        env = locals_ = ""
        abi = ('(func (export "omni_alloc") (param i32) (result i32) i32.const 1024)'
               '(func (export "omni_free") (param i32 i32))')
    handlers = "".join(f'(func (export "{name}") {sig} {body})' for name, body in _BODIES.items())
    return bytes(wasmtime.wat2wasm(f"""(module {env} {refuse}
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 2) (table 4 funcref) {abi}
      (global $count (mut i32) (i32.const 0))
      (func $deep (result i32) (i32.add (call $deep) (i32.const 1)))
      (func (export "count") {sig} {locals_}
        (global.set $count (i32.add (global.get $count) (i32.const 1))) {count})
      {handlers})"""))


def _table_core(extism: bool) -> bytes:
    env = ('(import "extism:host/env" "alloc" (func (param i64) (result i64)))' if extism else
           '(func (export "omni_alloc") (param i32) (result i32) i32.const 1024)'
           '(func (export "omni_free") (param i32 i32))')
    return bytes(wasmtime.wat2wasm(f'(module {env} (memory (export "memory") 1) '
                                   '(table 100000 funcref) (func (export "count") '
                                   '(result i32) i32.const 1))'))


LIMITS = {"timeout_ms": 200, "max_memory_bytes": 4 * 2**20, "max_table_elements": 10_000,
          "pool_size": 1}


@dataclass
class Runner:
    """Builds one runtime kind and calls it with the same word for every cause."""

    kind: str
    engine: SandboxEngine
    made: list[Any]

    def build(self, *, table: bool = False, **limits: Any) -> Any:
        lim = Limits(**{**LIMITS, **limits})
        registry = CapabilityRegistry([GATE])
        if self.kind == "component":
            path = wat_component("failures-table" if table else "failures")
            module = PluginModule.load(self.engine, path, "p")
            rt: Any = ComponentRuntime(self.engine, module, lim,  # type: ignore[arg-type]
                                       registry=registry, grants=["gate"])
        elif self.kind == "extism":
            wasm = _table_core(True) if table else _core(True)
            rt = ExtismRuntime(self.engine, PluginModule.load(self.engine, wasm, "p"),
                               registry, limits=lim, functions=[extism_refuse])
        else:
            wasm = _table_core(False) if table else _core(False)
            rt = PluginRuntime(self.engine, PluginModule.load(self.engine, wasm, "p"),
                               registry, ["gate"], {}, lim)
        self.made.append(rt)
        return rt

    def call(self, rt: Any, handler: str) -> int:
        out = rt.call(handler, b"[]" if self.kind == "component" else b"")
        return int(json.loads(out)) if self.kind == "component" else out[0]


@pytest.fixture(params=RUNTIMES)
def runner(request: pytest.FixtureRequest) -> Iterator[Runner]:
    made: list[Any] = []
    with SandboxEngine(epoch_tick_ms=5) as engine:
        yield Runner(request.param, engine, made)
        for rt in made:
            rt.close()


@pytest.fixture(params=RUNTIMES)
def fuel_runner(request: pytest.FixtureRequest) -> Iterator[Runner]:
    made: list[Any] = []
    with SandboxEngine(epoch_tick_ms=5, fuel=True) as engine:
        yield Runner(request.param, engine, made)
        for rt in made:
            rt.close()


WHO = r"plugin 'p' (handler|export) '[a-z-]+'"
END = "; the instance was discarded"

#: cause -> (error class, message shape). Every cause can arise on every runtime; where it
#: arises differs for one: a table over the limit is declared, so the instance never starts
#: (at load), on every runtime alike: a table.grow past it is answered -1, not a failure.
TABLE: dict[str, tuple[type[OmniError], str]] = {
    "memory-limit": (MemoryLimitExceeded,
                     rf"{WHO}: oom: its memory reached limits\.max_memory_bytes \(4194304[^)]*\): "
                     rf".*unreachable.*{END}$"),
    "deadline": (DeadlineExceeded,
                 rf"{WHO} exceeded its deadline of 200 ms \(limits\.timeout_ms[^)]*\): "
                 rf"timeout{END}$"),
    "fuel": (FuelExhausted, rf"{WHO} used all of its fuel \(100000, limits\.fuel\){END}$"),
    "stack-overflow": (Trap, rf"{WHO} overflowed its call stack \(trap: call stack exhausted; "
                             rf"deep recursion\?\){END}$"),
    "unreachable": (Trap, rf"{WHO} trapped: wasm trap: wasm `unreachable` instruction "
                          rf"executed{END}$"),
    "host-refusal": (Trap, rf"{WHO} trapped: host function \S+refuse: {REFUSED}{END}$"),
    "exit": (Trap, rf"{WHO} called proc_exit\(1\) \(WASI exit code 1\){END}$"),
    "table-limit": (PluginLoadError,
                    r"plugin 'p' failed to start: plugin 'p' declares more or larger tables "
                    r"than its limits allow \(limits\.max_tables 4, limits\.max_table_elements "
                    r"10000\): .*table"),
}


def _raised(run: Callable[[], object]) -> OmniError:
    try:
        run()
    except OmniError as exc:
        return exc
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("cause", [c for c in TABLE if c not in ("fuel", "table-limit")])
def test_each_cause_has_one_verdict_on_every_runtime(runner: Runner, cause: str) -> None:
    rt = runner.build()
    error = _raised(lambda: runner.call(rt, cause))
    cls, shape = TABLE[cause]
    assert type(error) is cls, f"{runner.kind}: {error!r}"
    assert re.match(shape, str(error)), f"{runner.kind}: {error}"
    assert (error.plugin, error.handler) == ("p", cause)  # type: ignore[attr-defined]
    assert runner.call(rt, "count") == 1  # and the host keeps serving, on a fresh instance


def test_fuel_has_one_verdict_on_every_runtime(fuel_runner: Runner) -> None:
    # Fuel needs a metering engine: the same three runtimes on one.
    rt = fuel_runner.build(fuel=100_000)
    error = _raised(lambda: fuel_runner.call(rt, "fuel"))
    cls, shape = TABLE["fuel"]
    assert type(error) is cls and re.match(shape, str(error)), f"{fuel_runner.kind}: {error}"


def test_a_table_over_the_limit_has_one_verdict_on_every_runtime(runner: Runner) -> None:
    error = _raised(lambda: runner.build(table=True))
    cls, shape = TABLE["table-limit"]
    assert type(error) is cls and re.match(shape, str(error)), f"{runner.kind}: {error}"


# ---- a store that trapped is never called again -------------------------------------------

@pytest.mark.parametrize("isolation", ["pooled", "per-call"])
@pytest.mark.parametrize("bulk", ["fill", "copy"])
def test_a_trap_in_a_bulk_operation_discards_the_store(runner: Runner, bulk: str,
                                                       isolation: str) -> None:
    # wasmtime's 2026 advisory on VM state after a trapped bulk operation: the instance that
    # trapped mid-memory.fill / table.copy must not serve another call. The counter the
    # module keeps starts over only on a fresh instance.
    rt = runner.build(isolation=isolation)
    per_call = isolation == "per-call"
    assert [runner.call(rt, "count") for _ in range(2)] == ([1, 1] if per_call else [1, 2])
    discarded = rt.instances_discarded
    with pytest.raises(Trap, match="out of bounds"):
        runner.call(rt, bulk)
    assert rt.instances_discarded == discarded + 1
    assert runner.call(rt, "count") == 1
    with pytest.raises(DeadlineExceeded):
        runner.call(rt, "deadline")
    assert runner.call(rt, "count") == 1  # after a deadline too


@pytest.mark.parametrize("bulk", ["fill", "copy"])
def test_the_python_call_path_discards_the_store_too(fuel_runner: Runner, bulk: str) -> None:
    # A metering engine runs core modules' calls on the Python path even where the C one is
    # built (fastcall.RawInstance): both paths are checked in one run.
    rt = fuel_runner.build()
    assert [fuel_runner.call(rt, "count") for _ in range(2)] == [1, 2]
    with pytest.raises(Trap, match="out of bounds"):
        fuel_runner.call(rt, bulk)
    assert fuel_runner.call(rt, "count") == 1
    if fuel_runner.kind == "native" and NATIVE:
        assert rt._pool.idle[0].slot is None  # it was the Python path
