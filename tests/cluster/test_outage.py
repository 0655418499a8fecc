"""A host on PostgreSQL lives through the database stopping for ten seconds under load.

One host (embedded here, so the test sees its threads and its log records) on a private
PostgreSQL cluster serves, all at once: jobs enqueued in a stream, slow jobs running when the
server stops, a one-second schedule, a durable event subscription and workflow runs. The
server is stopped as an operator's restart stops it (``pg_ctl stop -m fast``) and started
again ten seconds later. Every side effect is a plugin log line carrying its input, counted
outside the database (tests/cluster/outage_worker.wat).

Then: no thread died and each loop made progress after the return; every job, event and run
the host accepted ran, and none ran twice; the jobs the host held through the outage were
recorded within seconds of the return (their lease is 30 s); each loop logged its outage in
one line and its return in one; no record carries a traceback; the host stops cleanly.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.core.lifecycle import State
from omnicore.sandbox import wasmbin
from omnicore.sandbox.pluginlog import flush
from omnicore.storage import StorageError
from tests.pgcluster import Cluster
from tests.waiting import eventually, seconds_until

FIXTURE = Path(__file__).parent / "outage_worker.wat"
OUTAGE_S = 10.0
#: The held jobs must be recorded within this of the server's return: the loops' back-off
#: bound (2 s) plus the pool's reconnect, with room for a loaded two-core machine; far below
#: the 30 s lease they would otherwise wait for.
HELD_WITHIN_S = 8.0
NOTE = """\
format: omniflow/v1
name: note
inputs: {type: object, properties: {wf: {type: integer}}, required: [wf]}
steps:
  - {id: write, uses: "plugin:worker/log", with: {wf: "${{ inputs.wf }}"}}
"""


class Records(logging.Handler):
    """Every record under ``omnicore`` (the plugin's log lines among them)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock2:
            self.records.append(record)

    def effects(self) -> Counter[str]:
        """The plugin's side effects: its log lines' JSON, by kind and number."""
        flush()
        seen: Counter[str] = Counter()
        with self._lock2:
            lines = [r.getMessage() for r in self.records if r.name == "omnicore.plugin.worker"]
        for line in lines:
            doc = json.loads(line)
            if "data" in doc:  # an event's body: {"topic", "data"}
                doc = doc["data"]
            ((kind, n),) = doc.items()
            seen[f"{kind}-{n}"] += 1
        return seen

    def messages(self) -> list[str]:
        with self._lock2:
            return [r.getMessage() for r in self.records]

    def said(self, marker: str) -> Counter[str]:
        """How many lines each loop wrote with ``marker`` (``" paused: "``), by the loop's
        name (what comes before it)."""
        return Counter(m.split(marker)[0] for m in self.messages() if marker in m)


@pytest.fixture
def server() -> Iterator[Cluster]:
    """A cluster of this test's own: it is stopped and started again under the host."""
    cluster = Cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger("omnicore")
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def host(tmp_path: Path, server: Cluster) -> Iterator[OmniApp]:
    manifest = {"name": "worker", "version": "1.0.0", "handlers": ["log", "slow"],
                "subscriptions": [{"topic": "plugin.pub.ping", "handler": "log",
                                   "durable": True}]}
    wasm = wasmbin.set_custom_section(wasmtime.wat2wasm(FIXTURE.read_text()),
                                      "omnicore.manifest", json.dumps(manifest).encode())
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "worker.wasm").write_bytes(wasm)
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "note.yaml").write_text(NOTE)
    (tmp_path / "omnicore.yaml").write_text(json.dumps({
        "name": "outage", "data_dir": "data", "plugins_dir": "plugins",
        "storage": {"url": server.database("outage")},
        "console": {"enabled": False}, "sandbox": {"watch": False},
        "workflows": {"dir": "workflows", "watch": False, "poll_s": 0.2},
        "capabilities": {"tasks": {"workers": 4, "poll_s": 0.2, "schedules": {
            "worker": [{"name": "tick", "handler": "log", "every": "1s",
                        "payload": {"tick": 0}}]}}},
        "plugins": {"worker": {"grants": ["log", "events", "tasks"],
                               "limits": {"timeout_ms": 60000}}}}))
    app = OmniApp(config_path=tmp_path / "omnicore.yaml", entry_points=False)
    app.start()
    yield app
    if app.state is State.RUNNING:
        app.stop(grace=5)


class Load:
    """Jobs, events and workflow runs offered in a stream from one thread; what the host
    accepted (it refuses while the database is away) is kept."""

    def __init__(self, app: OmniApp) -> None:
        self.app = app
        self.jobs: dict[int, int] = {}      # number -> job id
        self.events: list[int] = []
        self.runs: dict[int, int] = {}      # number -> run id
        self.refused = 0
        self.offered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-load")

    def _run(self) -> None:
        app = self.app
        n = 0
        while not self._stop.wait(0.05):
            n += 1
            self.offered = n
            try:
                self.jobs[n] = app.jobs.enqueue("worker", "log", json.dumps({"job": n}).encode())
            except StorageError:
                self.refused += 1
            data = json.dumps({"ping": n}).encode()
            if app.subscriptions.publish("pub", "ping", len(data),
                                         functools.partial(bytes, data)) is None:
                self.events.append(n)
            if n % 4 == 0:
                try:
                    self.runs[n] = app.workflows.start("note", {"wf": n}).id
                except StorageError:
                    pass

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_a_host_lives_through_a_ten_second_database_outage(host: OmniApp, server: Cluster,
                                                          records: Records) -> None:
    died: list[str] = []
    hook = threading.excepthook
    threading.excepthook = lambda args: died.append(
        f"{args.thread.name if args.thread else '?'}: {args.exc_type.__name__}")
    try:
        _outage(host, server, records)
    finally:
        threading.excepthook = hook
    assert died == []


def _outage(app: OmniApp, server: Cluster, records: Records) -> None:
    store = app.storage
    eventually(lambda: records.effects()["tick-0"] >= 1, "the schedule's first fire")
    loops = {t.name for t in threading.enumerate() if t.name.startswith("omnicore-")}
    for name in ("omnicore-job-ticker", "omnicore-wf-ticker", "omnicore-cluster",
                 "omnicore-pg-liveness", "omnicore-job-worker-0", "omnicore-wf-worker-0"):
        assert name in loops, sorted(loops)
    with Load(app) as load:
        eventually(lambda: len(load.jobs) >= 20 and len(load.events) >= 20 and len(load.runs) >= 5,
                   "load before the outage")
        held = [app.jobs.enqueue("worker", "slow", json.dumps({"held": i}).encode())
                for i in range(4)]
        eventually(lambda: {t.id for t in app.jobs.running()} >= set(held),
                   "the slow jobs to run on this host")

        server.halt()
        stopped = time.monotonic()
        eventually(lambda: load.refused >= 1, "the host to refuse work while the database is away")
        # The slow jobs end during the outage; their outcome waits for the database.
        eventually(lambda: all(records.effects()[f"held-{i}"] == 1 for i in range(4)),
                   "the held jobs' calls to end")
        assert {t.id for t in app.jobs.running()} >= set(held)  # still held, not dropped
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))  # the outage itself
        ticks_before = records.effects()["tick-0"]
        server.resume()
        resumed_at = time.time()
        back = time.monotonic()
        outage_s = back - stopped

        held_s = seconds_until(lambda: all(store.queue.get(j).state == "succeeded"  # type: ignore[union-attr]
                                           for j in held), "the held jobs to be recorded")
        assert held_s < HELD_WITHIN_S, f"held jobs recorded {held_s:.1f}s after the return"
        offered = load.offered
        eventually(lambda: load.offered >= offered + 20, "more load after the return")
    accepted_jobs, events, runs = dict(load.jobs), list(load.events), dict(load.runs)
    # Every loop made progress after the return.
    eventually(lambda: records.effects()["tick-0"] > ticks_before, "the schedule to fire again")
    eventually(lambda: all(store.queue.get(j).state == "succeeded"  # type: ignore[union-attr]
                           for j in accepted_jobs.values()), "every accepted job to succeed")
    eventually(lambda: all(app.workflows.get_run(r).state == "succeeded" for r in runs.values()),
               "every accepted workflow run to succeed")
    eventually(lambda: all(records.effects()[f"ping-{n}"] >= 1 for n in events),
               "every accepted event to reach its durable subscriber")
    # The membership heartbeat beats again: a beat written after the return (a loaded
    # machine can delay it past any fixed window, so none is assumed).
    eventually(lambda: next(i for i in store.instances.all()
                            if i.runtime_id == app.runtime_id).heartbeat_at > resumed_at,
               "the membership heartbeat to beat again")
    assert {t.name for t in threading.enumerate() if t.name.startswith("omnicore-")} >= loops
    # Every loop that paused says it resumed before the host stops. The effects above do not
    # show that each loop has stepped since the return (the schedule's fire can be a tick job
    # queued before the outage, run after it), and a loop's first step can wait out its
    # back-off (up to 2 s) and then a pool's connect (2 s) on a loaded machine.
    eventually(lambda: records.said(" resumed after ") == records.said(" paused: "),
               "every paused loop to say it resumed")

    # Nothing accepted was lost, nothing ran twice.
    effects = records.effects()
    assert all(effects[f"job-{n}"] == 1 for n in accepted_jobs), \
        {n: effects[f"job-{n}"] for n in accepted_jobs if effects[f"job-{n}"] != 1}
    assert all(effects[f"wf-{n}"] == 1 for n in runs)
    assert all(effects[f"ping-{n}"] == 1 for n in events)
    assert all(effects[f"held-{i}"] == 1 for i in range(4))

    app.stop(grace=5)
    assert not [t.name for t in threading.enumerate()
                if t.name.startswith(("omnicore-job", "omnicore-wf", "omnicore-cluster"))]

    # One line per loop and outage, each way; no traceback anywhere.
    errors = [r for r in records.records if r.levelno >= logging.ERROR]
    assert not [r for r in errors if r.exc_info], [records.format(r) for r in errors
                                                   if r.exc_info]
    paused, resumed = records.said(" paused: "), records.said(" resumed after ")
    # A loop of several threads can see one step work while the server ends its backends one
    # by one (a connection not yet ended): that is an outage, a resume and another outage, two
    # lines each way (seen once on a loaded machine). Never more, and every pause resumed.
    assert paused and all(n <= 2 for n in paused.values()), paused
    assert resumed == paused, (paused, resumed)
    print(f"\noutage {outage_s:.1f}s; held jobs recorded {held_s:.2f}s after the return; "
          f"{len(accepted_jobs)} jobs, {len(events)} events, {len(runs)} runs accepted, "
          f"{load.refused} jobs refused during the outage; loops paused: {sorted(paused)}")
