"""Extism calls on both call paths: the C one (sandbox/_callpath.c) and fastcall's Python one.

An Extism handler takes no arguments and returns an i32 code (or nothing); the C path was made
for omnicore's ``(ptr, len) -> packed`` handlers, so the Extism runtime reads the code from
the packed result it hands back. Every code, both handler shapes, a trap, a deadline, input
growth (by the host and by the plugin during a call) must come out the same on both paths.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import weakref
from pathlib import Path

import pytest

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import PluginError
from omnicore.extism import ExtismRuntime, host_fn
from omnicore.sandbox import Limits, PluginModule, SandboxEngine, fastcall
from tests.extism.extism_fixtures import wat_plugin

ROOT = Path(__file__).resolve().parents[2]

CALLS = [("echo", 100), ("code_3", 0), ("code_minus_1", 0), ("code_min", 0),
         ("code_2_pow_31_less_1", 0), ("void_out", 0), ("void_nothing", 5), ("echo", 0),
         ("echo", 200_000), ("echo", 7), ("grow", 0), ("echo", 250_000), ("echo", 1),
         ("spin", 0), ("echo", 3)]


def outcomes(fuel: bool = False) -> dict[str, object]:
    """Every call of CALLS on one instance (pool of one), as text: output or error."""
    with SandboxEngine(fuel=fuel) as engine:
        module = PluginModule.load(engine, wat_plugin("codes"), "codes")
        rt = ExtismRuntime(engine, module, builtin_registry(),
                           limits=Limits(pool_size=1, timeout_ms=300))
        with rt:
            inst = rt._pool.acquire("echo")
            slot = inst.slot is not None
            rt._pool.release(inst, True)
            seen = []
            for i, (handler, n) in enumerate(CALLS):
                data = bytes((i + j) % 251 for j in range(n))
                try:
                    out = rt.call(handler, data)
                    seen.append(f"ok {len(out)} {out == data or out[:8]!r}")
                except PluginError as exc:
                    seen.append(f"{type(exc).__name__}: {str(exc).split(';')[0]}")
            return {"slot": slot, "native": fastcall.NATIVE, "seen": seen}


def test_codes_shapes_traps_and_growth() -> None:
    seen = outcomes()["seen"]
    assert seen[0] == "ok 100 True"
    assert seen[1:5] == [
        f"GuestError: plugin 'codes' handler {h!r} failed: Error code: {c}"
        for h, c in (("code_3", 3), ("code_minus_1", -1), ("code_min", -2**31),
                     ("code_2_pow_31_less_1", 2**31 - 1))]
    # A () -> () export has no code: the C path's packed result (the input block) is not one.
    assert seen[5] == "ok 2 b'hi'" and seen[6] == "ok 0 b''"
    assert seen[7:10] == ["ok 0 True", "ok 200000 True", "ok 7 True"]
    # The plugin grew kernel memory during a call: the next input fits without the host
    # growing it, past what the C path last heard the memory holds.
    assert seen[10:13] == ["ok 0 True", "ok 250000 True", "ok 1 True"]
    assert seen[13].startswith("DeadlineExceeded: plugin 'codes' handler 'spin' exceeded its "
                              "deadline of")
    assert seen[14] == "ok 3 True"


def test_the_c_path_runs_unmetered_calls_and_fuel_keeps_the_python_path() -> None:
    plain, metered = outcomes(), outcomes(fuel=True)
    assert plain["slot"] is fastcall.NATIVE and metered["slot"] is False
    assert plain["seen"] == metered["seen"]


def test_both_call_paths_give_the_same_answers() -> None:
    # The call path is chosen once per process: the other one runs in a subprocess.
    here = outcomes()
    other = "python" if fastcall.NATIVE else "native"
    if other == "native" and os.environ.get("OMNICORE_CALLPATH") == "python":
        other = "python"  # the C path is not built here; the subprocess checks Python again
    code = ("import json; from tests.extism.test_extism_callpath import outcomes; "
            "print(json.dumps(outcomes()))")
    env = {**os.environ, "OMNICORE_CALLPATH": other if fastcall.NATIVE else "auto"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    there = json.loads(done.stdout.strip().splitlines()[-1])
    if fastcall.NATIVE:
        assert (here["slot"], there["slot"]) == (True, False)
    assert there["seen"] == here["seen"]



def _closed_runtime_in_a_cycle(engine: SandboxEngine, wasm: Path) -> weakref.ref[object]:
    """A runtime whose user host function refers back to it, closed: only the cycle holds it
    once this returns."""
    holder: dict[str, object] = {}

    @host_fn(name="shout")
    def shout(text: str) -> str:
        return f"{text} from {type(holder.get('rt')).__name__}"

    module = PluginModule.load(engine, wasm)
    rt = ExtismRuntime(engine, module, builtin_registry(), ["config"], functions=[shout])
    holder["rt"] = rt
    assert rt.call("echo", b"abc") == b"abc"
    rt.close()
    return weakref.ref(rt)


def test_a_closed_runtime_whose_host_function_refers_back_to_it_is_freed(
        pdk_wasm: Path) -> None:
    # The cycle runs through the host function's callback object, which the collector must
    # see through: the C path's HostFunction is a GC type (the ctypes closure always was).
    with SandboxEngine() as engine:
        gone = _closed_runtime_in_a_cycle(engine, pdk_wasm)
        gc.collect()
        assert gone() is None, "the closed runtime was kept alive by its own host function"


START_LOOP_WAT = """\
(module
  (import "extism:host/env" "input_length" (func $il (result i64)))
  (memory (export "memory") 1)
  (func $init (loop $forever (br $forever)))
  (start $init)
  (func (export "run") (result i32) (i32.const 0)))
"""


def start_loop_error(folder: str) -> str:
    """The load error of an Extism plugin whose start function never returns (as a JS
    plugin's initialisation that loops), with the manifest's timeout_ms of 300."""
    import wasmtime

    from omnicore.errors import PluginLoadError
    from omnicore.plugins.host import PluginHost

    path = Path(folder)
    (path / "p.wasm").write_bytes(wasmtime.wat2wasm(START_LOOP_WAT))
    (path / "p.json").write_text(json.dumps({"timeout_ms": 300}))
    with PluginHost() as host:
        try:
            host.load(path / "p.wasm")
        except PluginLoadError as exc:
            return str(exc)
    return "loaded"


# Each path in a process of its own: the suite's second run on the Python path has nothing
# to add (and its process has no C path), so the test runs once.
@pytest.mark.native
@pytest.mark.parametrize("path", ["auto", "python"])
def test_a_start_function_past_its_deadline_names_it_on_both_call_paths(
        tmp_path: Path, path: str) -> None:
    """Issue 48: on the C path the load said `could not be instantiated: wasm trap:
    interrupt`, the Python path `exceeded its deadline of 500 ms`."""
    if path == "auto" and not fastcall.NATIVE:
        pytest.fail("the C call path is not built here")  # the set-up builds it
    code = ("import sys; from tests.extism.test_extism_callpath import start_loop_error; "
            "print(start_loop_error(sys.argv[1]))")
    env = {**os.environ, "OMNICORE_CALLPATH": path}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    said = done.stdout.strip().splitlines()[-1]
    assert "could not be instantiated" not in said, said
    assert said == ("plugin 'p' failed to start: plugin 'p' handler '(start)' exceeded its "
                    "deadline of 300 ms (limits.timeout_ms, from the Extism manifest's "
                    "timeout_ms): timeout; the instance was discarded"), said
