"""Scale-out: several ``omnicore run`` hosts on one PostgreSQL, beside one on SQLite.

Run: ``.venv/bin/python bench/bench_scaleout.py [--markdown] [--quick]``

A private PostgreSQL cluster (Debian's binaries, ``tests/pgcluster.py``) and real host
processes serving the scale-out tests' plugin (``tests/cluster/plugins/worker``). Rows:

* enqueue → handler start, p50/p99 (``started_at - created_at`` of each job, the claim being
  the start), with jobs enqueued one at a time, 20 ms apart, while the hosts are idle: the
  wake-up path (LISTEN/NOTIFY on PostgreSQL, the in-process wake on SQLite);
* jobs/s: a burst of trivial jobs (``noop``) enqueued at once, until the last succeeded;
* failover: SIGKILL the host running a job → the job running on another host, over N kills;
* kv get through a plugin (``app.plugins.call``, in process) beside the same SELECT through
  psycopg alone (the floor) and beside the SQLite backend.

Anchors measured on this kind of machine (issue 20): a PostgreSQL SKIP LOCKED lease takeover
1.25 s and enqueue→start p50 827 µs; Redis Streams reclaim 1.5 s; NATS JetStream redelivery
1.2 s; Celery's default visibility timeout is an hour.
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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _measure import machine, measure, render, scratch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests package (tests/pgcluster.py)

from omnicore.app import OmniApp  # noqa: E402
from omnicore.config import load_config  # noqa: E402
from omnicore.sandbox import PluginModule, SandboxEngine  # noqa: E402
from omnicore.storage import JobSpec, Storage, open_storage  # noqa: E402
from omnicore.toolchains import build  # noqa: E402
from tests.pgcluster import Cluster  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Host:
    def __init__(self, root: Path, wasm: Path, index: int, url: str | None) -> None:
        self.dir = root / f"host-{index}"
        (self.dir / "plugins").mkdir(parents=True)
        shutil.copy(wasm, self.dir / "plugins" / "worker.wasm")
        (self.dir / "omnicore.yaml").write_text(json.dumps({
            "name": "bench", "data_dir": "data", "plugins_dir": "plugins",
            "console": {"enabled": False}, "log": {"level": "warning"},
            "sandbox": {"watch": False},
            "plugins": {"worker": {"grants": ["kv", "events"],
                                   "limits": {"timeout_ms": 20000}}},
            "capabilities": {"tasks": {"workers": 2}}}))
        self.url = url
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "OMNICORE_CONSOLE__ENABLED": "false"}
        env.pop("OMNICORE_STORAGE__URL", None)
        if self.url:
            env["OMNICORE_STORAGE__URL"] = self.url
        self.proc = subprocess.Popen([sys.executable, "-m", "omnicore.cli", "run",
                                      str(self.dir)], env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def wait(pred: Callable[[], bool], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(0.01)


def precompile(host: Host) -> None:
    """Fill the host's module cache, as ``omnicore build --app`` does: a host that starts on
    an empty cache serves Winch code first and swaps in Cranelift's in the background, and
    that compile and swap would fall inside the measurement."""
    cfg = load_config(host.dir / "omnicore.yaml")
    with SandboxEngine.for_config(cfg.sandbox) as engine:
        PluginModule.load(engine, host.dir / "plugins" / "worker.wasm")


def start_hosts(root: Path, wasm: Path, n: int, url: str | None
                ) -> tuple[list[Host], Storage]:
    hosts = [Host(root, wasm, i, url) for i in range(n)]
    for h in hosts:
        precompile(h)
        h.start()
    store = open_storage(hosts[0].dir / "data", url=url)
    wait(lambda: len(store.instances.all()) == n)
    return hosts, store


def latency_and_rate(store: Storage, probes: int, burst: int) -> tuple[list[float], float]:
    ids = []
    for _ in range(probes):
        ids.append(store.queue.add(JobSpec("worker", "noop", b"", time.time())))
        time.sleep(0.02)
    wait(lambda: all(store.queue.get(i).state == "succeeded" for i in ids))  # type: ignore[union-attr]
    lat = [(t.started_at - t.created_at) * 1e6 for i in ids
           if (t := store.queue.get(i)) is not None and t.started_at is not None]
    start = time.perf_counter()
    last = 0
    for _ in range(burst):
        last = store.queue.add(JobSpec("worker", "noop", b"", time.time()))
    wait(lambda: store.queue.get(last).state == "succeeded"  # type: ignore[union-attr]
         and not store.queue.list(plugin="worker", states=("queued", "running"), limit=1),
         timeout=600)
    return lat, burst / (time.perf_counter() - start)


def failovers(root: Path, wasm: Path, url: str, kills: int) -> list[float]:
    hosts, store = start_hosts(root, wasm, 3, url)
    took = []
    try:
        for k in range(kills):
            job = store.queue.add(JobSpec("worker", "slow", json.dumps(
                {"id": f"k{k}", "ms": 4000}).encode(), time.time()))
            wait(lambda: store.queue.get(job).state == "running")  # type: ignore[union-attr]  # noqa: B023
            task = store.queue.get(job)
            assert task is not None and task.owner is not None
            pid = next(i.pid for i in store.instances.all() if i.runtime_id == task.owner)
            victim = next(h for h in hosts if h.proc is not None and h.proc.pid == pid)
            assert victim.proc is not None
            victim.proc.send_signal(signal.SIGKILL)
            killed = time.time()
            victim.proc.wait(10)
            wait(lambda: (t := store.queue.get(job)) is not None and t.attempts >= 2  # noqa: B023
                 and t.owner is not None and t.owner != task.owner)  # noqa: B023
            again = store.queue.get(job)
            assert again is not None and again.started_at is not None
            took.append(again.started_at - killed)
            victim.start()  # back to three
            wait(lambda: len(store.instances.all()) == 3)
            wait(lambda: store.queue.get(job).state == "succeeded")  # type: ignore[union-attr]  # noqa: B023
    finally:
        for h in hosts:
            h.stop()
        store.close()
    return took


def kv_through_plugin(root: Path, wasm: Path, url: str | None, iters: int) -> Any:
    app_dir = root / ("kv-pg" if url else "kv-sqlite")
    (app_dir / "plugins").mkdir(parents=True)
    shutil.copy(wasm, app_dir / "plugins" / "worker.wasm")
    overrides: dict[str, Any] = {"data_dir": str(app_dir / "data"),
                                 "plugins_dir": str(app_dir / "plugins"),
                                 "plugins": {"worker": {"grants": ["kv", "events"]}}}
    if url:
        overrides["storage"] = {"url": url}
    app = OmniApp("bench-kv", overrides=overrides, entry_points=False)
    app.start()
    try:
        wait(lambda: any(p.name == "worker" for p in app.plugins))
        app.storage.kv("worker").set("k", b"v" * 32)
        assert app.plugins.call("worker", "get", b"k") == b"v" * 32
        return measure(lambda: app.plugins.call("worker", "get", b"k"), iters)
    finally:
        app.stop()


def psycopg_floor(url: str, iters: int) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        sql = "SELECT value FROM kv WHERE plugin=%s AND key=%s"
        conn.execute(sql, ("worker", "k")).fetchone()  # prepared after a few runs
        return measure(lambda: conn.execute(sql, ("worker", "k")).fetchone(), iters)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    probes, burst, kills, iters = (40, 300, 3, 300) if args.quick else (200, 2000, 10, 2000)
    work = scratch("omnicore-bench-scaleout-")
    cluster = Cluster.start()
    try:
        build(ROOT / "tests" / "cluster" / "plugins" / "worker", work / "build")
        wasm = work / "build" / "worker.wasm"
        rows = []
        for label, n, backend in (("SQLite, 1 host", 1, None), ("PostgreSQL, 1 host", 1, "pg"),
                                  ("PostgreSQL, 3 hosts", 3, "pg")):
            url = cluster.database(f"bench_{n}_{backend or 'sqlite'}") if backend else None
            hosts, store = start_hosts(work / f"{n}-{backend}", wasm, n, url)
            try:
                lat, rate = latency_and_rate(store, probes, burst)
            finally:
                for h in hosts:
                    h.stop()
                store.close()
            rows.append([f"enqueue → start, {label}", f"p50 {statistics.median(lat):.0f} µs",
                         f"p99 {pct(lat, 0.99):.0f} µs", f"{rate:.0f} jobs/s"])
        took = failovers(work / "failover", wasm, cluster.database("bench_failover"), kills)
        rows.append([f"failover after SIGKILL ({kills} kills, 3 hosts)",
                     f"p50 {statistics.median(took):.2f} s", f"p99 {pct(took, 0.99):.2f} s",
                     f"max {max(took):.2f} s"])
        url = cluster.database("bench_kv")
        pg = kv_through_plugin(work, wasm, url, iters)
        floor = psycopg_floor(url, iters)
        lite = kv_through_plugin(work, wasm, None, iters)
        rows.append(["kv get through a plugin, PostgreSQL", f"{pg} µs",
                     f"psycopg alone {floor} µs", f"{pg.ratio(floor):.2f}x"])
        rows.append(["kv get through a plugin, SQLite", f"{lite} µs", "", ""])
    finally:
        cluster.stop()
    print(f"Measured on: {machine()}")
    print(render(["what", "median / p50", "p99 / floor", "rate / ratio"], rows,
                 markdown=args.markdown))
    print("Anchors (issue 20, this kind of machine): PostgreSQL SKIP LOCKED takeover 1.25 s, "
          "enqueue→start p50 827 µs; Redis Streams reclaim 1.5 s; NATS JetStream redelivery "
          "1.2 s; Celery visibility timeout 1 h.")


if __name__ == "__main__":
    main()
