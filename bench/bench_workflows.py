"""Workflow engine overhead over calling the same plugin handlers directly.

Run: ``.venv/bin/python bench/bench_workflows.py [--markdown] [--quick]``

Rows:
* a 10-step linear workflow of ``greeter-rust/greet`` (each step's input an expression over
  the previous output) from start to the run's end, against the same 10 calls made directly
  with ``app.plugins.call`` from Python (the floor) — the difference per step is the engine's
  overhead: durable rows, leases, history, expression evaluation, the worker hand-off;
* a 1,000-item ``for_each`` with parallelism 8 (per-item overhead over one direct call);
* trigger latency: from ``app.events.publish`` to the first step's start (the ``step.started``
  history time).

Every step is a committed SQLite transaction or three (``storage.synchronous: normal``, WAL),
so the engine's floor is the database, not Python.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

from _measure import machine, render, scratch

from omnicore.app import OmniApp
from omnicore.capabilities.events import PluginEvent

ROOT = Path(__file__).resolve().parents[1]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"


def linear(n: int) -> str:
    steps = ["  - {id: s0, uses: plugin:greeter-rust/greet, with: {name: x}}"]
    steps += [f"  - {{id: s{i}, uses: plugin:greeter-rust/greet, "
              f"with: {{name: \"${{{{ steps.s{i - 1}.output.message }}}}\"}}}}"
              for i in range(1, n)]
    return "format: omniflow/v1\nname: linear\nsteps:\n" + "\n".join(steps) + "\n"


FAN = """\
format: omniflow/v1
name: fan
steps:
  - {id: each, for_each: inputs.items, parallelism: 8, uses: plugin:greeter-rust/greet,
     with: {name: "${{ item }}"}}
"""
TRIGGERED = """\
format: omniflow/v1
name: triggered
triggers: [{event: "plugin.bench.go"}]
steps: [{id: a, uses: plugin:greeter-rust/greet, with: {name: t}}]
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if not GREETER.is_file():
        sys.exit(f"{GREETER} is missing: run `omnicore build plugins/ --out build/plugins`")
    runs, items, triggers = (5, 200, 10) if args.quick else (30, 1000, 50)
    tmp = scratch("bench-wf-")
    (tmp / "plugins").mkdir()
    shutil.copy(GREETER, tmp / "plugins")
    app = OmniApp("bench-wf", entry_points=False, overrides={
        "data_dir": str(tmp / "data"), "plugins_dir": str(tmp / "plugins"),
        "console": {"enabled": False}, "log": {"level": "warning"},
        "workflows": {"dir": str(tmp / "workflows"), "workers": 8, "watch": False},
        "plugins": {"greeter-rust": {"grants": ["config"], "limits": {"pool_size": 8}}}})
    app.start()
    try:
        wf = app.workflows
        for text in (linear(10), FAN, TRIGGERED):
            wf.add(text)
        rows = []

        def direct_chain() -> None:
            out = json.loads(app.plugins.call("greeter-rust", "greet", b'{"name":"x"}'))
            for _ in range(9):
                out = json.loads(app.plugins.call("greeter-rust", "greet",
                                                  json.dumps({"name": out["message"]}).encode()))

        direct = []
        for _ in range(runs):
            t = time.perf_counter()
            direct_chain()
            direct.append(time.perf_counter() - t)
        engine = []
        for _ in range(runs):
            t = time.perf_counter()
            run = wf.wait(wf.start("linear").id, 60)
            engine.append(time.perf_counter() - t)
            assert run.state == "succeeded", run.error
        d, e = statistics.median(direct) * 1e3, statistics.median(engine) * 1e3
        rows.append(["10-step linear run (median)", f"{d:.2f} ms", f"{e:.2f} ms",
                     f"{(e - d) / 10:.2f} ms"])

        names = [f"n{i}" for i in range(items)]
        t = time.perf_counter()
        for name in names:
            app.plugins.call("greeter-rust", "greet", json.dumps({"name": name}).encode())
        d_fan = time.perf_counter() - t
        t = time.perf_counter()
        run = wf.wait(wf.start("fan", {"items": names}).id, 600)
        e_fan = time.perf_counter() - t
        assert run.state == "succeeded", run.error
        rows.append([f"{items}-item for_each, parallelism 8 (wall)", f"{d_fan * 1e3:.1f} ms",
                     f"{e_fan * 1e3:.1f} ms", f"{(e_fan - d_fan) / items * 1e3:.2f} ms"])

        latencies = []
        for _ in range(triggers):
            before = {r.id for r in wf.runs("triggered", limit=10_000)}
            t0 = time.time()
            app.events.publish(PluginEvent(topic="plugin.bench.go", plugin="bench", data=b"{}"))
            deadline = time.monotonic() + 30
            while True:
                new = [r for r in wf.runs("triggered", limit=5) if r.id not in before]
                started = [h.at for r in new for h in wf.store.history(r.id)
                           if h.kind == "step.started"]
                if started:
                    latencies.append(started[0] - t0)
                    break
                assert time.monotonic() < deadline, "the triggered run did not start"
                time.sleep(0.0005)
        p50 = statistics.median(latencies) * 1e3
        p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1e3
        rows.append(["event publish -> first step started (p50 / p99)", "-",
                     f"{p50:.2f} / {p99:.2f} ms", "-"])
    finally:
        app.stop()
    print(f"# bench_workflows on {machine()}")
    print(render(["case", "direct app.plugins.call", "workflow engine", "overhead per step"],
                 rows, markdown=args.markdown))


if __name__ == "__main__":
    main()
