"""The benchmarks still run (a moved fixture once broke two of them silently). Not timed:
each runs in its quick mode with every measurement taken once (``OMNICORE_BENCH_SMOKE``,
bench/_measure.py) and must print its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parents[1] / "bench"


@pytest.mark.slow
@pytest.mark.parametrize(("script", "args", "expect"), [
    ("bench_core.py", ["--quick"], "state transition"),
    ("bench_sandbox.py", ["--quick"], "C API floor"),
    ("bench_host.py", [], "app.plugins.call"),
    ("bench_capabilities.py", ["--quick"], "sqlite3"),
    ("bench_connectors.py", ["--quick"], "reset per hand-over"),
    # One case of each table (a refused cell, a cell that fits, many rows): each case is a
    # fresh child process a server.
    ("bench_connector_memory.py", ["--size", "16", "--fits", "20", "--rows", "14x2048"],
     "through the connector"),
    ("bench_registry.py", ["--quick"], "oras alone"),
    ("bench_workflows.py", ["--quick"], "step"),
    ("bench_extism.py", ["--quick"], "count_vowels"),
    ("bench_components.py", ["--quick"], "u32 round trip"),
    ("bench_mcp.py", ["--quick"], "tools/call over stdio"),
    ("bench_log.py", ["--quick"], "Logger.log to a StreamHandler"),
    ("bench_cli.py", ["--quick"], "omnicore --help"),
    ("bench_density.py", ["--quick"], "RSS per idle plugin"),
    ("bench_jobs.py", ["--quick"], "REST enqueue on one host"),
    ("bench_lean.py", ["--quick"], "workflows validate --app"),
    ("bench_telemetry.py", ["--quick"], "tracing flipped every"),
    ("bench_routes.py", ["--quick"], "bare Starlette endpoint"),
    ("bench_invoke.py", ["--quick"], "bare Starlette endpoint, same call"),
    ("bench_bridges.py", ["--quick"], "client alone (floor)"),
])
def test_benchmark_runs_and_prints_its_table(script: str, args: list[str], expect: str,
                                             module_cache: Path) -> None:
    # The run's compiled modules (a bench that compiles the Python greeter takes it from
    # there, as from the user's cache between two runs by hand).
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH,
                          env={**os.environ, "OMNICORE_BENCH_SMOKE": "1",
                               "OMNICORE_CACHE_DIR": str(module_cache)},
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert expect in proc.stdout
