"""The plugin catalog on three ``omnicore run`` hosts sharing one PostgreSQL (issue 44).

Run: ``.venv/bin/python bench/bench_catalog.py [--jobs N] [--quick]``

A private PostgreSQL cluster (Debian's binaries, ``tests/pgcluster.py``) and three real host
processes with different plugin folders (``tests/cluster/hosts.py``): host 0 has counter-rust
and greeter-rust, hosts 1 and 2 greeter-rust only. Rows:

* publish → every host serving it (each host's report on the instance table names the new
  digest), and of that the part after the publish returned (the publisher's own check
  compiles the module before anything is stored): a small plugin (textstats-rust, 0.8 MiB:
  the baseline compiler serves it first) and the Python example (counter-python, a 17.6 MiB
  component: Cranelift only), each with the hosts' compiled-module caches cold (a digest
  they never compiled) and warm (the same bytes published under another name);
* a rollback → every host serving the version before;
* the mixed-folder run: N jobs of counter-rust (only host 0 has it) and N jobs of a plugin
  no host has, published to the catalog mid-run; how many ended dead, how many needed more
  than one attempt, how many ran on a host without the plugin, and the wall time.

Each publish row is measured ``--repeats`` times on fresh names (a cold row needs bytes no host
compiled: the module's custom section is changed, so its digest is new).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests package (tests/pgcluster.py, tests/cluster/hosts.py)
sys.path.insert(0, str(ROOT / "bench"))

from _measure import scratch  # noqa: E402

from omnicore.config.schema import CatalogConfig  # noqa: E402
from omnicore.plugins.catalog import Catalog, app_catalog  # noqa: E402
from omnicore.plugins.host import PluginHost  # noqa: E402
from omnicore.sandbox import SandboxEngine  # noqa: E402
from omnicore.storage import JobSpec  # noqa: E402
from omnicore.storage.postgres import PostgresStorage  # noqa: E402
from tests.cluster.hosts import Host, hosts_serving, wait_for  # noqa: E402
from tests.pgcluster import Cluster  # noqa: E402

BUILT = ROOT / "build" / "plugins"
SMALL, PYTHON = BUILT / "textstats-rust.wasm", BUILT / "counter-python.wasm"
COUNTER, GREETER = BUILT / "counter-rust.wasm", BUILT / "greeter-rust.wasm"


def renamed(wasm: bytes, tag: str) -> bytes:
    """``wasm`` with a custom section ``bench`` holding ``tag`` appended: the same module, a
    new digest (a cold compile on every host)."""
    name = b"bench"
    payload = bytes([len(name)]) + name + tag.encode()
    size = len(payload)
    leb = bytearray()
    while True:
        byte, size = size & 0x7F, size >> 7
        leb.append(byte | (0x80 if size else 0))
        if not size:
            break
    return wasm + b"\x00" + bytes(leb) + payload


def converge(store: PostgresStorage, hosts: list[Host], name: str, digest: str) -> float:
    start = time.monotonic()
    wait_for(lambda: len(hosts_serving(store, name, digest)) == len(hosts),
             f"{name} on every host", hosts, timeout=600, every=0.005)
    return time.monotonic() - start


def compiled_everywhere(hosts: list[Host], digest: str) -> None:
    """Wait for each host's optimizing compile of ``digest`` to land in its module cache (the
    baseline tier served first): a warm row must not share the CPU with the cold row's tail."""
    sha = digest.removeprefix("sha256:")
    wait_for(lambda: all(any((h.dir / "data" / "cache").glob(f"{sha}-*")) for h in hosts),
             "the optimized code in every host's cache", hosts, timeout=600, every=0.05)


def publish_rows(catalog: Catalog, store: PostgresStorage, hosts: list[Host], repeats: int,
                 python: bool) -> list[tuple[str, list[float]]]:
    rows = []
    kinds = [("small (textstats-rust, 0.8 MiB)", SMALL)]
    if python:
        kinds.append(("Python (counter-python, 17.6 MiB component)", PYTHON))
    for label, path in kinds:
        base = path.read_bytes()
        cold, warm, cold_hosts, warm_hosts = [], [], [], []
        for i in range(repeats):
            wasm = renamed(base, f"{time.time_ns()}-{i}")
            started = time.monotonic()
            version, _ = catalog.publish(wasm, name=f"cold-{path.stem}-{i}", by="bench")
            cold_hosts.append(converge(store, hosts, version.name, version.digest))
            cold.append(time.monotonic() - started)
            compiled_everywhere(hosts, version.digest)
            started = time.monotonic()
            again, _ = catalog.publish(wasm, name=f"warm-{path.stem}-{i}", by="bench")
            warm_hosts.append(converge(store, hosts, again.name, again.digest))
            warm.append(time.monotonic() - started)
        rows += [(f"publish → 3 hosts serving, {label}, cache cold", cold),
                 ("  of which: stored → 3 hosts serving", cold_hosts),
                 (f"publish → 3 hosts serving, {label}, cache warm", warm),
                 ("  of which: stored → 3 hosts serving", warm_hosts)]
    return rows


def rollback_row(catalog: Catalog, store: PostgresStorage, hosts: list[Host],
                 repeats: int) -> tuple[str, list[float]]:
    base = GREETER.read_bytes()
    times = []
    for i in range(repeats):
        name = f"rolled-{i}"
        one, _ = catalog.publish(renamed(base, f"a{i}"), name=name, by="bench")
        converge(store, hosts, name, one.digest)
        two, _ = catalog.publish(renamed(base, f"b{i}"), name=name, by="bench")
        converge(store, hosts, name, two.digest)
        started = time.monotonic()
        catalog.rollback(name, by="bench")
        times.append(time.monotonic() - started + converge(store, hosts, name, one.digest))
    return "rollback → 3 hosts serving the version before", times


def mixed_run(catalog: Catalog, store: PostgresStorage, hosts: list[Host], jobs: int) -> str:
    now = time.time()
    counter = store.queue.add_many([JobSpec("counter-rust", "count", b"{}", now)
                                    for _ in range(jobs)])
    late = store.queue.add_many([JobSpec("textstats-rust", "analyze",
                                         json.dumps({"text": f"job {i}"}).encode(), now)
                                 for i in range(jobs)])
    started = time.monotonic()
    time.sleep(0.5)  # mid-run: host 0 is working through the counter jobs
    catalog.publish(SMALL.read_bytes(), by="bench")
    ids = [*counter, *late]
    wait_for(lambda: store.queue.counts().get(("counter-rust", "succeeded"), 0)
             + store.queue.counts().get(("textstats-rust", "succeeded"), 0)
             + store.queue.counts().get(("counter-rust", "dead"), 0)
             + store.queue.counts().get(("textstats-rust", "dead"), 0) == len(ids),
             "every job ended", hosts, timeout=900, every=0.1)
    took = time.monotonic() - started
    ended = [store.queue.get(j) for j in ids]
    dead = sum(1 for j in ended if j is not None and j.state == "dead")
    retried = sum(1 for j in ended if j is not None and j.attempts != 1)
    a = hosts[0].runtime_id
    elsewhere = sum(1 for j in ended[:jobs] if j is not None and j.owner != a)
    per_host = {h.runtime_id: sum(1 for j in ended[jobs:] if j is not None
                                  and j.owner == h.runtime_id) for h in hosts}
    return (f"mixed folders: {jobs} counter-rust jobs (host 0 only) + {jobs} for a plugin "
            f"published mid-run: {dead} dead, {retried} with more than one attempt, "
            f"{elsewhere} counter jobs run off host 0; the published one's jobs per host "
            f"{sorted(per_host.values(), reverse=True)}; {took:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true",
                        help="one repeat, no Python plugin, 100 jobs")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.jobs = 1, 100
    grants = {"plugins": {name: {"grants": ["kv", "config"]} for name in (
        "counter-rust", "greeter-rust", "textstats-rust",
        *(f"{kind}-{stem}-{i}" for kind in ("cold", "warm")
          for stem in ("counter-python", "textstats-rust") for i in range(args.repeats)),
        *(f"rolled-{i}" for i in range(args.repeats)))}}
    cluster = Cluster.start()
    hosts: list[Host] = []
    # The publisher compiles through a module cache too, as `omnicore plugins publish --app`
    # and a host's REST API do.
    checker = PluginHost(engine=SandboxEngine(cache_dir=scratch("omnicore-bench-catalog-cache-")))
    try:
        url = cluster.database("bench_catalog")
        store = PostgresStorage(url)
        root = scratch("omnicore-bench-catalog-")
        for i, folder in enumerate([[COUNTER, GREETER], [GREETER], [GREETER]]):
            host = Host(root, url, i, folder, {**grants, "log": {"level": "warning"}})
            hosts.append(host)
            host.start()
        wait_for(lambda: len(store.instances.all()) == 3 and all(h.ready() for h in hosts),
                 "3 hosts ready", hosts, timeout=180)
        catalog = app_catalog(lambda: store, checker.published.check_module, CatalogConfig())
        rows = publish_rows(catalog, store, hosts, args.repeats, python=not args.quick)
        rows.append(rollback_row(catalog, store, hosts, args.repeats))
        print(f"# plugin catalog, 3 hosts on one PostgreSQL ({args.repeats} runs each; "
              "seconds: median [min-max])")
        for label, times in rows:
            print(f"{label:<82} {statistics.median(times):7.3f} "
                  f"[{min(times):.3f}-{max(times):.3f}]")
        print(mixed_run(catalog, store, hosts, args.jobs))
        store.close()
    finally:
        checker.close()
        for h in hosts:
            h.stop()
        cluster.stop()


if __name__ == "__main__":
    main()
