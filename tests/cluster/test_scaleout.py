"""Several ``omnicore run`` processes on one PostgreSQL, for real (issue: scale-out).

Three hosts, each with its own data dir and plugin folder, share a private PostgreSQL cluster
the tests start (tests/pgcluster.py). The tests drive them from outside as an operator would:
enqueue through the shared storage, SIGKILL a host mid-job, stop the database, and read the
outcome from kv, which every instance shares.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.storage import JobSpec
from omnicore.storage.postgres import PostgresStorage
from omnicore.toolchains import build
from tests.cluster.hosts import Host as ClusterHost
from tests.waiting import seconds_until

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def worker_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("worker-build")
    build(HERE / "plugins" / "worker", out)
    return out / "worker.wasm"


class Host(ClusterHost):
    """One ``omnicore run`` child of the cluster, serving the worker plugin."""

    def __init__(self, root: Path, url: str, wasm: Path, index: int,
                 schedules: list[dict[str, Any]], *, cache_dir: Path | None = None) -> None:
        config: dict[str, Any] = {
            "name": "scaleout",
            "plugins": {"worker": {"grants": ["kv", "events"],
                                   "limits": {"timeout_ms": 20000}}},
            "capabilities": {"tasks": {"schedules": {"worker": schedules}}}}
        if cache_dir is not None:
            # Compiled modules from the tests' shared cache, as an image's hosts take them
            # precompiled (docs/operations/image.md): each host compiled the worker twice
            # (Winch, then Cranelift), three hosts a test, for tests about jobs and events.
            config["sandbox"] = {"watch": False, "cache_dir": str(cache_dir)}
        super().__init__(root, url, index, [wasm], config)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def until(pred: Callable[[], bool], what: str, hosts: list[Host], timeout: float = 60.0,
          every: float = 0.05) -> float:
    """Wait for ``pred``; the time it took. A host that died unasked fails the test."""
    return seconds_until(pred, what, watch=hosts, ok_exits=(-signal.SIGKILL,), timeout=timeout,
                         every=every)


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, worker_wasm: Path, module_cache: Path
            ) -> Iterator[Callable[..., tuple[list[Host], PostgresStorage]]]:
    hosts: list[Host] = []
    stores: list[PostgresStorage] = []

    def start(n: int = 3, schedules: list[dict[str, Any]] | None = None
              ) -> tuple[list[Host], PostgresStorage]:
        store = PostgresStorage(pg_url)
        stores.append(store)
        for _ in range(n):
            host = Host(tmp_path, pg_url, worker_wasm, len(hosts), schedules or [],
                        cache_dir=module_cache)
            hosts.append(host)
            host.start()
        until(lambda: len(store.instances.all()) == n and all(h.readyz() == 200 for h in hosts),
              f"{n} instances registered and ready", hosts, timeout=120)
        return hosts, store

    yield start
    for h in hosts:
        h.stop()
    for s in stores:
        s.close()


def _count(store: PostgresStorage, key: str) -> int:
    return int(store.kv("worker").get(key) or 0)


def test_a_sigkilled_hosts_jobs_finish_elsewhere_once(cluster: Any) -> None:
    hosts, store = cluster(3)
    ids = [store.queue.add(JobSpec("worker", "slow", json.dumps({"id": i, "ms": 1500})
                                   .encode(), time.time())) for i in range(6)]
    pids = {i.pid: i.runtime_id for i in store.instances.all()}
    victim = next(h for h in hosts if h.proc is not None)
    victim_id = pids[victim.proc.pid]  # type: ignore[union-attr]
    until(lambda: any(t.owner == victim_id and t.state == "running"
                      for t in store.queue.list(plugin="worker")),
          "the victim to hold a job", hosts)
    held = [t.id for t in store.queue.list(plugin="worker") if t.owner == victim_id
            and t.state == "running"]
    victim.kill()
    killed = time.time()
    until(lambda: all(store.queue.get(i).state == "succeeded" for i in ids),  # type: ignore[union-attr]
          "every job to succeed", hosts, timeout=90)
    for job in held:
        task = store.queue.get(job)
        assert task is not None and task.attempts == 2  # delivered twice: at-least-once
        # Who ran each delivery: the victim, then the host that took it over (its owner).
        assert task.runs == (victim_id, task.owner) and task.owner != victim_id
        assert task.started_at is not None
        # The second delivery started within the takeover bound, not after the 30 s lease.
        assert task.started_at - killed < 5.0, task.started_at - killed
    assert _count(store, "effects") == 6  # the guarded effect happened once per job
    assert victim_id not in {i.runtime_id for i in store.instances.all()}


def test_a_one_second_schedule_fires_once_per_period_across_the_cluster(cluster: Any) -> None:
    _hosts, store = cluster(3, [{"name": "tick", "handler": "tick", "every": "1s"}])
    start = _count(store, "ticks")
    time.sleep(10)
    fired = _count(store, "ticks") - start
    assert 9 <= fired <= 11, fired


def test_a_durable_subscription_delivers_once_and_a_live_one_on_every_host(
        cluster: Any) -> None:
    hosts, store = cluster(3)
    store.queue.add(JobSpec("worker", "emit", b'{"n": 20}', time.time()))
    until(lambda: _count(store, "pings") >= 20 and _count(store, "live") >= 60,
          "20 durable deliveries and 3 x 20 live ones", hosts, timeout=60)
    time.sleep(2)  # a duplicate would land in this time
    assert _count(store, "pings") == 20  # once across the cluster
    assert _count(store, "live") == 60  # each host's live subscriber, each event once


def test_postgres_going_away_and_coming_back(cluster: Any, pg_cluster: Any) -> None:
    hosts, store = cluster(2)
    store.kv("worker").set("before", b"kept")
    pg_cluster.halt()
    try:
        # (No bound on how soon beyond the wait's own: on a loaded machine running several
        # test workers a host's health check can lag seconds behind.)
        until(lambda: all(h.readyz() == 503 for h in hosts), "/readyz 503", hosts, timeout=60)
        time.sleep(4)
        assert all(h.proc is not None and h.proc.poll() is None for h in hosts)
    finally:
        pg_cluster.resume()
    until(lambda: all(h.readyz() == 200 for h in hosts), "/readyz 200 again", hosts, timeout=30)
    job = store.queue.add(JobSpec("worker", "slow", b'{"id": 99, "ms": 0}', time.time()))
    until(lambda: store.queue.get(job).state == "succeeded",  # type: ignore[union-attr]
          "a job after the outage", hosts, timeout=30)
    assert store.kv("worker").get("before") == b"kept"
    for h in hosts:
        text = h.log.read_text()
        assert "cluster heartbeat paused" in text and "cluster heartbeat resumed" in text


def test_a_drained_host_finishes_its_work_and_exits(cluster: Any) -> None:
    hosts, store = cluster(2)
    victim = hosts[0]
    rid = next(i.runtime_id for i in store.instances.all()
               if i.pid == victim.proc.pid)  # type: ignore[union-attr]
    assert store.instances.set_draining(rid, True)
    assert victim.proc is not None and victim.proc.wait(30) == 0  # a clean stop
    assert rid not in {i.runtime_id for i in store.instances.all()}
    job = store.queue.add(JobSpec("worker", "slow", b'{"id": 7, "ms": 0}', time.time()))
    until(lambda: store.queue.get(job).state == "succeeded",  # type: ignore[union-attr]
          "the other host to run new work", hosts[1:], timeout=30)


def test_hosts_sharing_one_data_dir_keep_their_own_files(tmp_path: Path, pg_url: str,
                                                         worker_wasm: Path) -> None:
    """Two hosts of one database on one app dir (a shared volume): each writes its console
    file under its runtime id, neither removes the other's, and the CLI finds a live one."""
    from omnicore.cli.remote import find_running

    host = Host(tmp_path, pg_url, worker_wasm, 0, [])
    twin = Host(tmp_path, pg_url, worker_wasm, 1, [])
    twin.dir, twin.data = host.dir, host.data  # the same app dir, data dir and plugin folder
    twin.log = host.dir / "twin.log"
    store = PostgresStorage(pg_url)
    try:
        host.start()
        twin.start()
        data = host.dir / "data"
        until(lambda: len(list(data.glob("instances/*/console.json"))) == 2
              and len(store.instances.all()) == 2, "both hosts up", [host, twin], timeout=120)
        ids = {i.runtime_id for i in store.instances.all()}
        assert {p.parent.name for p in data.glob("instances/*/console.json")} == ids
        assert not (data / "console.json").exists()
        # (Asked until a host answers: the CLI gives each /healthz 2 s, which a loaded CI
        # machine's host missed once.)
        until(lambda: find_running(data) is not None, "the CLI finding a live host",
              [host, twin])
        twin.stop()
        assert [p.parent.name for p in data.glob("instances/*/console.json")] == [
            i.runtime_id for i in store.instances.all()]  # the survivor's file is intact
        until(lambda: find_running(data) is not None, "the CLI finding the survivor", [host])
    finally:
        host.stop()
        twin.stop()
        store.close()
