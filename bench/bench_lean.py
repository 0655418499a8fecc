"""A lean host (issue 63): memory that does not depend on who compiled, and commands that
describe plugins without compiling them.

Run: ``.venv/bin/python bench/bench_lean.py [--quick] [--plugins N] [--markdown]`` after
``scripts/dev setup`` built the demo plugins (``build/demo/plugins``).

* **RSS, cold vs warm**: a real ``omnicore run`` of a copy of the demo app (its
  ``plugins/demo.yaml``), first on an empty module cache, left running until the cache holds
  every plugin (its compiles done: first tier, then the optimized code), then on the cache it
  wrote. VmRSS and VmHWM (peak) from /proc once every plugin is loaded, and again after
  calling one handler of each. Goal: the cold host within 1.2x of the warm one.
* **Describe without compiling**: ``omnicore workflows validate --app`` of the demo and
  ``omnicore inspect`` of each of its files, each on an empty module cache
  (``OMNICORE_CACHE_DIR``), wall and CPU seconds (the children's rusage). Goal: <= 2 s for
  validate and for each file's inspect (the slowest file is shown; the sum of all is shown
  too). ``--describe-only`` runs these alone.

``--plugins N`` (``--quick``: 3) takes the demo's N smallest files, so a run takes minutes,
not the tens of minutes a cold demo takes on a loaded machine. Medians with min-max.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from _measure import machine, render, runs, scratch

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "build" / "demo" / "plugins"
CONFIG = ROOT / "plugins" / "demo.yaml"
WORKFLOW = ROOT / "examples" / "workflows" / "text-report.yaml"
READY = ("loaded", "needs-grant", "disabled", "failed")


def _env(**extra: str) -> dict[str, str]:
    # As bench_cli.py: an installed omnicore has its bytecode (pip compiles it at install);
    # where the environment says not to write it, every command compiles its sources anew
    # (0.3-0.5 s of each describing command's figure).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update({"OMNICORE_CONSOLE__PORT": "0", **extra})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "host"),
                                                      env.get("PYTHONPATH")]))
    return env


def _request(url: str, token: str, body: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=body, headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return bytes(resp.read())


def _memory(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM of ``pid`` in MiB."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def one_host(app: Path, settle: bool) -> tuple[float, float, float]:
    """RSS once every plugin is loaded (with ``settle``: and the module cache holds them
    all), RSS after one call of each, and the peak, in MiB."""
    console = app / ".omnicore" / "console.json"
    console.unlink(missing_ok=True)
    expect = len(list((app / "plugins").glob("*.wasm")))
    server = subprocess.Popen([sys.executable, "-m", "omnicore.cli", "run", str(app)],
                              env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 1800
    try:
        while not console.is_file():
            if server.poll() is not None or time.monotonic() > deadline:
                sys.exit("omnicore run did not start")
            time.sleep(0.05)
        doc = json.loads(console.read_text())
        items: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            try:
                items = json.loads(_request(doc["url"] + "/api/v1/plugins?limit=200",
                                            doc["token"]))["items"]
            except OSError:
                items = []
            if len(items) >= expect and all(i["state"] in READY for i in items):
                break
            time.sleep(0.1)
        cache = app / ".omnicore" / "cache"
        # Compiled when every plugin's entry is stored and no compile holds a lock.
        while settle and time.monotonic() < deadline and (
                len(list(cache.glob("*.cwasm"))) < expect or list(cache.glob(".*.lock"))):
            time.sleep(0.2)
        time.sleep(2)
        loaded, _ = _memory(server.pid)
        for item in items:
            handlers = item.get("handlers")
            if item["state"] != "loaded" or not isinstance(handlers, list) or not handlers:
                continue
            try:
                _request(f"{doc['url']}/api/v1/plugins/{item['name']}/invoke", doc["token"],
                         json.dumps({"handler": handlers[0], "input": "{}"}).encode())
            except OSError:
                pass  # a handler refusing "{}" (or a connector down) still ran the plugin
        time.sleep(1)
        called, peak = _memory(server.pid)
        return loaded, called, peak
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def _timed(args: list[str], cache: Path, cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one ``omnicore`` command on the module cache ``cache``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "omnicore.cli", *args], cwd=cwd,
                          env=_env(OMNICORE_CACHE_DIR=str(cache)), capture_output=True,
                          text=True, timeout=1800, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode not in (0, 1):
        sys.exit(f"omnicore {' '.join(args)} failed: {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cell(values: list[float], fmt: str = "{:.0f}") -> str:
    return (f"{fmt.format(statistics.median(values))} "
            f"[{fmt.format(min(values))}-{fmt.format(max(values))}]")


def table(plugins: int | None, repeats: int, markdown: bool = False,
          describe_only: bool = False) -> str:
    if not DEMO.is_dir():
        sys.exit(f"no demo plugins in {DEMO}: run scripts/dev setup first")
    files = sorted(DEMO.glob("*.wasm"), key=lambda p: p.stat().st_size)[:plugins]
    work = scratch("bench-lean-")
    app = work / "demo"
    (app / "plugins").mkdir(parents=True)
    for f in files:
        shutil.copy(f, app / "plugins" / f.name)
    shutil.copy(CONFIG, app / "omnicore.yaml")
    repeats = runs(repeats)
    cold: list[tuple[float, float, float]] = []
    warm: list[tuple[float, float, float]] = []
    for _ in range(0 if describe_only else repeats):
        shutil.rmtree(app / ".omnicore", ignore_errors=True)
        cold.append(one_host(app, settle=True))
        warm.append(one_host(app, settle=False))
    rows = []
    for label, at in () if describe_only else (
            ("RSS, every plugin loaded (MiB)", 0), ("RSS, after a call of each (MiB)", 1),
            ("peak RSS, VmHWM (MiB)", 2)):
        got, base = [r[at] for r in cold], [r[at] for r in warm]
        ratio = [a / b for a, b in zip(got, base, strict=True)]
        goal = "<= 1.2x" if at < 2 else "-"
        rows.append((label, _cell(got), _cell(base),
                     f"{statistics.median(ratio):.2f}x ({goal})"))
    validate: list[tuple[float, float]] = []
    inspect: list[tuple[float, float]] = []
    #: Each file's inspect, by file: the goal is each file's (`omnicore inspect FILE`).
    each: dict[str, list[tuple[float, float]]] = {f.name: [] for f in files}
    for i in range(repeats):
        cache = work / f"cache-{i}"
        validate.append(_timed(["workflows", "validate", str(WORKFLOW), "--app", str(app)],
                               cache / "validate", work))
        wall = cpu = 0.0
        for f in files:  # every file, as one figure
            took = _timed(["inspect", str(app / "plugins" / f.name)], cache / "inspect", work)
            each[f.name].append(took)
            wall, cpu = wall + took[0], cpu + took[1]
        inspect.append((wall, cpu))
    slowest = max(each, key=lambda name: statistics.median(w for w, _ in each[name]))
    described = [(label, _cell([s[0] for s in samples], "{:.2f}"),
                  _cell([s[1] for s in samples], "{:.2f}"), goal)
                 for label, samples, goal in (
                     ("workflows validate --app", validate, "wall <= 2 s"),
                     (f"inspect, the slowest file ({slowest})", each[slowest], "wall <= 2 s"),
                     (f"inspect, each of the {len(files)} files in turn", inspect, "-"))]
    lean = "" if describe_only else render(
        ["lean host (median [min-max])", "cold: empty cache", "warm: its cache",
         "cold/warm (goal)"], rows, markdown=markdown) + "\n\n"
    return (f"{machine()}; {len(files)} demo plugins, {repeats} run(s)\n\n" + lean
            + render(["on an empty module cache", "wall s", "CPU s", "goal"], described,
                     markdown=markdown))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 plugins, one run (smoke run)")
    ap.add_argument("--plugins", type=int, default=None, help="the N smallest demo plugins")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--describe-only", action="store_true",
                    help="only the commands that describe plugins (no host is started)")
    args = ap.parse_args()
    plugins = args.plugins if args.plugins is not None else (3 if args.quick else None)
    print(table(plugins, 1 if args.quick else args.repeats, markdown=args.markdown,
                describe_only=args.describe_only))


if __name__ == "__main__":
    main()
