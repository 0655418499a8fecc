"""A host killed during a database outage loses no durable delivery (issue 63, item 6).

A real ``omnicore run`` on a private PostgreSQL cluster: plugin ``pub`` publishes
``plugin.pub.ping`` (tests/event_fixtures.py's guest, called through the REST API), plugin
``worker`` subscribes to it durably (tests/cluster/outage_worker.wat: its handler logs its
input). The server is stopped, events are published (each taken: the host spools them,
fsynced), the host is killed with SIGKILL, the server started again, the host started again:
it adopts the dead host's spool and every delivery runs, exactly once, in the jobs table and
in the worker's log.
"""

from __future__ import annotations

import json
import os
import signal
import struct
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.core import spool
from omnicore.sandbox import wasmbin
from tests.event_fixtures import events_wasm
from tests.hosts import Host
from tests.pgcluster import Cluster

WORKER = Path(__file__).parent / "outage_worker.wat"
BEFORE, DURING = 5, 30


@pytest.fixture
def server() -> Iterator[Cluster]:
    cluster = Cluster.start()
    yield cluster
    cluster.stop()


def _plugins(folder: Path) -> list[Path]:
    folder.mkdir()
    manifest = {"name": "worker", "version": "1.0.0", "handlers": ["log", "slow"],
                "subscriptions": [{"topic": "plugin.pub.ping", "handler": "log",
                                   "durable": True}]}
    worker = folder / "worker.wasm"
    worker.write_bytes(wasmbin.set_custom_section(wasmtime.wat2wasm(WORKER.read_text()),
                                                  "omnicore.manifest",
                                                  json.dumps(manifest).encode()))
    pub = folder / "pub.wasm"
    pub.write_bytes(events_wasm("pub"))
    return [worker, pub]


def _publish(host: Host, n: int) -> int:
    topic = b"ping"
    out = host.remote().call("pub", "pub", struct.pack("<I", len(topic)) + topic +
                             json.dumps({"ping": n}).encode())
    return int(struct.unpack("<i", out)[0])


def _spooled(data: Path) -> list[dict[str, object]]:
    found = []
    for path in sorted((data / "spool").glob("events-*.spool")):
        fd = os.open(path, os.O_RDONLY)
        try:
            found += list(spool._records(fd))
        finally:
            os.close(fd)
    return found


def _deliveries(server: Cluster) -> Counter[str]:
    """Each delivery job of the worker by its ping number and state."""
    rows = server.psql("SELECT convert_from(payload, 'UTF8'), state FROM jobs "
                       "WHERE plugin='worker'", db="outbox").splitlines()
    seen: Counter[str] = Counter()
    for row in rows:
        body, _, state = row.rpartition("|")
        seen[f"{json.loads(body)['data']['ping']}:{state}"] += 1
    return seen


def test_a_host_killed_during_a_database_outage_loses_no_durable_delivery(
        tmp_path: Path, server: Cluster) -> None:
    url = server.database("outbox")
    config = {"name": "outbox", "data_dir": "data", "plugins_dir": "plugins",
              "log": {"format": "json"}, "sandbox": {"watch": False},
              "capabilities": {"jobs": {"poll_s": 0.2}},
              # The first publish of the outage waits for the pool's connect timeout (2 s)
              # before it is spooled: more than the default deadline on a loaded machine.
              "plugins": {"pub": {"grants": ["events", "kv"], "limits": {"timeout_ms": 30000}},
                          "worker": {"grants": ["log", "events"]}}}
    host = Host(tmp_path / "app", config, _plugins(tmp_path / "wasm"))
    env = {"OMNICORE_STORAGE__URL": url}
    host.start(env)
    try:
        host.logged("plugins: 2 loaded", timeout=180)
        assert [_publish(host, n) for n in range(BEFORE)] == [0] * BEFORE
        host.until(lambda: _deliveries(server) == Counter(
            {f"{n}:succeeded": 1 for n in range(BEFORE)}), "the deliveries before the outage")

        server.halt()
        # Each publish is taken (0), not refused: the host spools it, fsynced, for later.
        taken = [_publish(host, n) for n in range(BEFORE, BEFORE + DURING)]
        assert taken == [0] * DURING
        held = _spooled(host.data)
        assert [r["k"] for r in held] == ["event"] * DURING
        assert host.stop(signal.SIGKILL) == -signal.SIGKILL

        server.resume()
        host.start(env)
        want = Counter({f"{n}:succeeded": 1 for n in range(BEFORE + DURING)})
        host.until(lambda: _deliveries(server) == want, "every durable delivery, once",
                   timeout=180)
        host.until(lambda: _spooled(host.data) == [], "the adopted spool drained")
        assert "are queued from" in host.text  # the restarted host said it adopted them
        events = server.psql("SELECT count(*) FROM events WHERE topic='plugin.pub.ping'",
                             db="outbox").strip()
        assert events == str(BEFORE + DURING)  # each logged once
    finally:
        code = host.stop()
    assert code == 0
    # The worker's side effects, counted outside the database: one line per ping.
    lines: Counter[int] = Counter()
    for line in host.text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("logger") == "omnicore.plugin.worker":
            lines[json.loads(doc["msg"])["data"]["ping"]] += 1
    assert lines == Counter(range(BEFORE + DURING)), lines
