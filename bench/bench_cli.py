"""How long the ``omnicore`` command makes a user wait, beside the interpreter's own floor.

Run: ``.venv/bin/python bench/bench_cli.py [--quick] [--markdown]``. Every row is a fresh
process timed from spawn to exit (wall clock), the median of the repeats with its min-max;
the floors are ``python -c pass`` and ``python -c "import wasmtime"`` in the same run. The
processes write and reuse bytecode (a private ``PYTHONPYCACHEPREFIX``), as an installed
omnicore does, and each row is run once untimed first, so the module cache is warm: a
``call`` or ``inspect`` row measures an unchanged plugin. Targets (issue 25): ``--help``
<= 150 ms, ``call`` of a cached plugin <= 300 ms; ``inspect`` of an unchanged Go plugin
answers from the module cache. Issue 34: the commands that talk to a running host (``call
NAME --app``, ``jobs enqueue``, ``logs``, ``settings``; the bench starts ``omnicore run`` for
them) <= 150 ms, as they import no host code; a bare file's ``call`` <= 250 ms, and <= 200 ms
(issue 63: jsonschema only for a config schema it takes to judge), also for greeter-rust, whose
manifest has a config schema, with the CPU time of its process beside. Without
``--quick``, a plugin's first call on an empty cache (Go and Ruby greeters, compiled by Winch),
beside Cranelift's compile of the same module alone (what a first call took before).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import wasmtime
from _measure import Sample, machine, render, runs

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "build" / "demo" / "plugins"
FIXTURE = ROOT / "tests" / "fixtures" / "host_echo.wat"


def echo_wasm() -> bytes:
    src = FIXTURE.read_text().replace("NAME_TAG", "echo").replace("VERSION_LEN", "5")
    return wasmtime.wat2wasm(src.replace("VERSION_TAG", "1.0.0"))


def wall_ms(argv: list[str], env: dict[str, str], cwd: Path, repeats: int) -> Sample:
    """Median [min-max] wall time of ``argv`` as a fresh process, after one untimed run."""
    def once() -> float:
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
        elapsed = (time.perf_counter() - start) * 1000
        if proc.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-800:]}")
        return elapsed

    once()
    times = [once() for _ in range(repeats)]
    return Sample(statistics.median(times), min(times), max(times))


def cpu_ms(argv: list[str], env: dict[str, str], cwd: Path, repeats: int) -> Sample:
    """Median [min-max] CPU time (user + system) of ``argv`` as a fresh process: on a shared
    machine the wall clock also measures the neighbours."""
    def once() -> float:
        before = os.times()
        subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=True)
        after = os.times()
        return ((after.children_user - before.children_user)
                + (after.children_system - before.children_system)) * 1000

    once()
    times = [once() for _ in range(repeats)]
    return Sample(statistics.median(times), min(times), max(times))


@contextmanager
def running(argv: list[str], app: Path, env: dict[str, str]) -> Iterator[None]:
    """``omnicore run APP`` with its console on a free port, until the block ends."""
    console = app / ".omnicore" / "console.json"
    log = app.parent / "run.log"
    with log.open("wb") as out:
        server = subprocess.Popen([*argv, "run", str(app)], stdout=out, stderr=subprocess.STDOUT,
                                  env={**env, "OMNICORE_CONSOLE__PORT": "0"})
    try:
        deadline = time.monotonic() + 60
        while not console.is_file():  # written once the console serves
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"omnicore run did not start: {log.read_text()[-800:]}")
            time.sleep(0.05)
        yield
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def first_calls(omnicore: list[str], env: dict[str, str], work: Path,
                repeats: int) -> list[tuple[str, Sample, str]]:
    """A plugin's first call, on an empty module cache each time: ``omnicore call`` compiles
    it with the baseline compiler (Winch); beside it, the same module compiled by Cranelift
    alone in a fresh process (what that call took before, less the call itself)."""
    rows = []
    for name in ("greeter-go", "greeter-ruby"):
        wasm = DEMO / f"{name}.wasm"
        if not wasm.is_file():
            continue
        cache = work / f"first-{name}"
        call = [*omnicore, "call", str(wasm), "greet", "--grant", "config", "--input",
                '{"name": "Ada"}']
        cranelift = [sys.executable, "-c", "import sys; from omnicore.sandbox import "
                     "PluginModule, SandboxEngine; PluginModule.load(SandboxEngine(), sys.argv[1])",
                     str(wasm)]
        times = max(1, repeats // 3)
        rows += [(f"omnicore call FILE.wasm, first call ({name}, empty cache)",
                  cold_ms(call, env, work, cache, times), "Winch"),
                 (f"  Cranelift compile of {name} alone (the first call before)",
                  cold_ms(cranelift, env, work, cache, times), "")]
    return rows


def cold_ms(argv: list[str], env: dict[str, str], cwd: Path, cache: Path,
            repeats: int) -> Sample:
    """Median [min-max] wall time of ``argv`` as a fresh process on an empty module cache."""
    times = []
    for _ in range(repeats):
        shutil.rmtree(cache, ignore_errors=True)
        start = time.perf_counter()
        subprocess.run(argv, env={**env, "OMNICORE_CACHE_DIR": str(cache)}, cwd=cwd,
                       capture_output=True, check=True)
        times.append((time.perf_counter() - start) * 1000)
    return Sample(statistics.median(times), min(times), max(times))


def table(quick: bool = False, markdown: bool = False) -> str:
    repeats = runs(3 if quick else 9)
    py = sys.executable
    omnicore = [py, "-m", "omnicore.cli"]
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPYCACHEPREFIX=str(work / "pyc"), OMNICORE_CACHE_DIR=str(work / "cache"))
        src = ROOT / "host"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
        app = work / "app"
        (app / "plugins").mkdir(parents=True)
        (app / "omnicore.yaml").write_text(
            "name: bench\nplugins_dir: plugins\ndata_dir: .omnicore\n"
            "plugins:\n  greeter-rust:\n    grants: [config]\n")
        (app / "plugins" / "echo.wasm").write_bytes(echo_wasm())
        app_opt = ["--app", str(app)]
        rows: list[tuple[str, Sample, str]] = [
            ("python -c pass (floor)", wall_ms([py, "-c", "pass"], env, work, repeats), ""),
            ('python -c "import wasmtime" (floor)',
             wall_ms([py, "-c", "import wasmtime"], env, work, repeats), ""),
            ("omnicore --help", wall_ms([*omnicore, "--help"], env, work, repeats), "<= 150"),
            ("omnicore call NAME --app (echo, WAT; no host: embedded)",
             wall_ms([*omnicore, "call", "echo", "echo", "--input", "hi", "--app", str(app)],
                     env, work, repeats), "<= 300"),
        ]
        greeter = DEMO / "greeter-rust.wasm"
        if greeter.is_file():
            shutil.copy(greeter, app / "plugins" / greeter.name)
            rows.append(("omnicore call NAME --app (greeter-rust; embedded)",
                         wall_ms([*omnicore, "call", "greeter-rust", "greet", "--input",
                                  '{"name": "Ada"}', "--app", str(app)], env, work, repeats),
                         "<= 300"))
        with running(omnicore, app, env):
            for name, args in (
                    ("omnicore call NAME --app (running host)",
                     ["call", "echo", "echo", "--input", "hi"]),
                    ("omnicore jobs enqueue --app (running host)",
                     ["jobs", "enqueue", "echo", "echo", "hi"]),
                    ("omnicore tasks enqueue --app (old name)",
                     ["tasks", "enqueue", "echo", "echo", "hi"]),
                    ("omnicore logs NAME --app (running host)", ["logs", "echo"]),
                    ("omnicore settings show NAME --app (running host)",
                     ["settings", "show", "echo"]),
                    ("omnicore settings limits NAME K=V --app (running host)",
                     ["settings", "limits", "echo", "timeout_ms=900"])):
                rows.append((name, wall_ms([*omnicore, *args, *app_opt], env, work, repeats),
                             "<= 150"))
        bare = work / "echo.wasm"
        bare.write_bytes(echo_wasm())
        rows.append(("omnicore call FILE.wasm (bare, user cache)",
                     wall_ms([*omnicore, "call", str(bare), "echo", "--input", "hi"], env, work,
                             repeats), "<= 200"))
        if greeter.is_file():
            argv = [*omnicore, "call", str(greeter), "greet", "--grant", "config", "--input",
                    '{"name": "Ada"}']
            rows.append(("omnicore call FILE.wasm (bare greeter-rust: a config schema)",
                         wall_ms(argv, env, work, repeats), "<= 200"))
            rows.append(("  its CPU time (user + system)", cpu_ms(argv, env, work, repeats),
                         "<= 200"))
        if not quick:
            rows += first_calls(omnicore, env, work, repeats)
        go = DEMO / "greeter-go.wasm"
        target = go if go.is_file() else bare
        rows.append((f"omnicore inspect {target.name} (unchanged)",
                     wall_ms([*omnicore, "inspect", str(target)], env, work, repeats),
                     "from the cache"))
    floor = rows[0][1]
    out = [(name, str(s), f"{s.ratio(floor):.1f}x", goal) for name, s, goal in rows]
    return (f"{machine()}\n\n"
            + render(["process (wall)", "ms, median [min-max]", "x python -c pass", "target"],
                     out, markdown=markdown))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    print(table(quick=args.quick, markdown=args.markdown))


if __name__ == "__main__":
    main()
