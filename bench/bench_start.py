"""How soon ``omnicore run`` of the demo answers: /healthz, /readyz, the first and every plugin.

Run: ``.venv/bin/python bench/bench_start.py [--quick] [--markdown]`` after
``scripts/dev setup`` built the demo plugins (``build/demo/plugins``). Each run is a real
``omnicore run`` of a copy of the demo app (its ``plugins/demo.yaml`` config, console on a free
port), timed from spawn: when ``/healthz`` first answers, when the first plugin is ``loaded``
and when every one is (``GET /api/v1/plugins`` polled every 20 ms). A cold start begins with
an empty module cache (the first tier is Winch, plugins/tiers.py); a cached start reuses the
cache the cold one wrote once it held every plugin's optimized code. The floor is the
same app with an empty plugins folder, in the same run. A pod start is what a new container
of the image's demo target does: a fresh data folder and a module cache that
``omnicore precompile`` filled at image build (``sandbox.cache_dir`` outside the data folder).
Medians with min-max over the repeats.
Targets (issue 25): every plugin <= 3 s cold, the first <= 0.5 s, all <= 1 s cached;
(issue 33) a pod with the example plugins ready within 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from _measure import Sample, machine, render

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "build" / "demo" / "plugins"
CONFIG = ROOT / "plugins" / "demo.yaml"
READY = ("loaded", "needs-grant", "disabled", "failed")  # compiling no more


def _get(url: str, token: str, timeout: float = 5.0) -> bytes:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return bytes(resp.read())


def one_start(app: Path, env: dict[str, str], expect: int,
              settle: bool = False) -> tuple[float, float, float, float]:
    """Seconds from spawn to /healthz, to /readyz 200 (ready means serving: before the
    plugins have loaded, issue 63), to the first plugin loaded, to ``expect`` loaded;
    with ``settle``, the host then runs on until its module cache holds every plugin (the
    optimized code compiled after the first tier), so that the next start is a cached one."""
    console = app / ".omnicore" / "console.json"
    console.unlink(missing_ok=True)
    start = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "omnicore.cli", "run", str(app)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    health = ready = first = every = float("nan")
    try:
        while not console.is_file():
            if server.poll() is not None or time.perf_counter() - start > 120:
                sys.exit("omnicore run did not start")
            time.sleep(0.005)
        doc = json.loads(console.read_text())
        while time.perf_counter() - start < 300:
            try:
                if health != health:
                    _get(doc["url"] + "/healthz", doc["token"])
                    health = time.perf_counter() - start
                if ready != ready:
                    try:
                        _get(doc["url"] + "/readyz", doc["token"])
                        ready = time.perf_counter() - start
                    except urllib.error.HTTPError:
                        pass  # 503: not serving yet
                items = json.loads(_get(doc["url"] + "/api/v1/plugins?limit=200",
                                        doc["token"]))["items"]
            except OSError:
                time.sleep(0.02)
                continue
            loaded = sum(1 for i in items if i["state"] == "loaded")
            now = time.perf_counter() - start
            if loaded and first != first:
                first = now
            if loaded >= expect and all(i["state"] in READY for i in items):
                every = now
                break
            time.sleep(0.02)
        deadline = time.perf_counter() + 300
        while settle and len(list((app / ".omnicore" / "cache").glob("*.cwasm"))) < expect:
            if time.perf_counter() > deadline:
                sys.exit("the module cache never filled")
            time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return health, ready, first, every


def _sample(values: list[float]) -> Sample:
    ms = [v * 1000 for v in values]
    return Sample(statistics.median(ms), min(ms), max(ms))


def table(quick: bool = False, markdown: bool = False) -> str:
    if not DEMO.is_dir():
        sys.exit(f"no demo plugins in {DEMO}: run scripts/dev setup first")
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        work = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(PYTHONPYCACHEPREFIX=str(work / "pyc"), OMNICORE_CONSOLE__PORT="0")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "host"),
                                                          env.get("PYTHONPATH")]))
        empty = work / "empty"
        (empty / "plugins").mkdir(parents=True)
        (empty / "omnicore.yaml").write_text("name: empty\nplugins_dir: plugins\n")
        app = work / "demo"
        shutil.copytree(DEMO, app / "plugins")
        shutil.copy(CONFIG, app / "omnicore.yaml")
        expect = len(list((app / "plugins").glob("*.wasm")))
        floor = [one_start(empty, env, 0) for _ in range(repeats + 1)][1:]  # one to warm .pyc
        cold, cached, pod = [], [], []
        for _ in range(repeats):
            shutil.rmtree(app / ".omnicore", ignore_errors=True)
            cold.append(one_start(app, env, expect, settle=True))
            cached.append(one_start(app, env, expect))
        image_cache = work / "image-cache"
        pod_env = {**env, "OMNICORE_SANDBOX__CACHE_DIR": str(image_cache)}
        subprocess.run([sys.executable, "-m", "omnicore.cli", "precompile", str(app)],
                       env=pod_env, check=True, stdout=subprocess.DEVNULL)
        for _ in range(repeats):
            shutil.rmtree(app / ".omnicore", ignore_errors=True)  # a new pod's empty volume
            pod.append(one_start(app, pod_env, expect))
    rows = [("empty app (floor)", _sample([h for h, _, _, _ in floor]),
             str(_sample([r for _, r, _, _ in floor])), "-", "-", "-")]
    for label, runs, goals in (("demo, empty cache", cold, ("<= 500", "<= 3000")),
                               ("demo, cached", cached, ("-", "<= 1000")),
                               ("demo, pod: precompiled image cache, new data dir", pod,
                                ("-", "<= 3000"))):
        rows.append((label, _sample([h for h, _, _, _ in runs]),
                     str(_sample([r for _, r, _, _ in runs])),
                     f"{_sample([f for _, _, f, _ in runs])} ({goals[0]})",
                     f"{_sample([e for _, _, _, e in runs])} ({goals[1]})",
                     str(_sample([e - h for h, _, _, e in runs]))))
    out = [(name, str(h), ready, first, every, after)
           for name, h, ready, first, every, after in rows]
    return (f"{machine()}; {expect} demo plugins\n\n"
            + render(["omnicore run (ms from spawn, median [min-max])", "/healthz",
                      "/readyz 200", "first plugin loaded (target)", "every plugin loaded (target)",
                      "every plugin, after /healthz"], out, markdown=markdown))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one run of each (smoke run)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()
    print(table(quick=args.quick, markdown=args.markdown))


if __name__ == "__main__":
    main()
