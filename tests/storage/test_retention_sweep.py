"""The retention sweep (omnicore.storage.retention) on every backend: one sweep deletes exactly
the ended rows older than their retention in every table and keeps the rest; one host of a
cluster sweeps at a time.

The sweep's clock is a seam: rows written before :func:`_cut` are a day older than a clock set
to ``cut + 1 day``, rows written after it are younger.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from omnicore.config.retention import RetentionConfig
from omnicore.storage import JobSpec, Storage
from omnicore.storage.retention import CLAIM, RetentionMetrics, Sweeper
from omnicore.storage.workflows import NewStep

pytestmark = pytest.mark.store("workflows")  # it sweeps every table: the backends serving all

DAY = 86400.0


def _cut() -> float:
    before = time.time()
    while (now := time.time()) <= before:
        pass
    return now


def _settings(**keys: object) -> RetentionConfig:
    return RetentionConfig.model_validate({"jobs": "1d", "dead_letter": "1d", "audit": "1d",
                                           "events": "1d", "workflow_runs": "1d", **keys})


def _fill(storage: Storage, tag: str) -> dict[str, list[int]]:
    """One row of each kind in every table, written now: ended ones, and work still to do."""
    queue = storage.queue
    ids: dict[str, list[int]] = {}

    def job(run_at: float = 0.0) -> int:
        return queue.add(JobSpec("p", "h", tag.encode(), run_at, 1, 10))

    done, dead, cancelled = job(), job(), job()
    for job_id, ok in ((done, True), (dead, False)):
        claimed = queue.claim("w", time.time(), 30)
        assert claimed is not None and claimed.id == job_id
        if ok:
            assert queue.finish(job_id, "w", time.time())
        else:
            assert queue.fail(job_id, "w", time.time(), "boom", None) == "dead"
    assert queue.cancel(cancelled, time.time())
    running = job()
    assert queue.claim("w", time.time(), 30) is not None
    ids["jobs"] = [done, cancelled]
    ids["dead_letter"] = [dead]
    ids["jobs_kept"] = [running, job(run_at=time.time() + 100 * DAY)]  # queued, not due
    ids["audit"] = [storage.audit.append("ada", "grant.add", tag, None, None, None,
                                         time.time())]
    ids["events"] = [storage.events.append("plugin.p.x", "p", tag.encode(), retain=10_000)]
    wf = storage.workflows
    runs = [wf.create_run("wf", "v1", {}, None, "test") for _ in range(2)]
    assert runs[0] is not None and runs[1] is not None
    for made in runs:
        wf.add_steps(made[0], [NewStep("a", -1, "queued", run_at=time.time())])
    assert wf.finish_run(runs[0][0], "failed", error="boom")
    ids["workflow_runs"] = [runs[0][0]]
    ids["runs_kept"] = [runs[1][0]]
    return ids


def _left(storage: Storage, ids: dict[str, list[int]]) -> dict[str, list[int]]:
    """Which of ``ids`` each table still has."""
    queue, wf = storage.queue, storage.workflows
    audit = {e.id for e in storage.audit.entries(limit=10_000)}
    events = {e.id for e in storage.events.get_many(ids["events"])}
    has = {"jobs": lambda i: queue.get(i) is not None,
           "dead_letter": lambda i: queue.get(i) is not None,
           "jobs_kept": lambda i: queue.get(i) is not None,
           "audit": lambda i: i in audit,
           "events": lambda i: i in events,
           "workflow_runs": lambda i: wf.run(i) is not None,
           "runs_kept": lambda i: wf.run(i) is not None}
    return {k: [i for i in v if has[k](i)] for k, v in ids.items()}


def test_one_sweep_deletes_exactly_the_old_ended_rows_of_every_table(
        storage: Storage, caplog: pytest.LogCaptureFixture) -> None:
    old = _fill(storage, "old")
    cut = _cut()
    new = _fill(storage, "new")
    sweeper = Sweeper(lambda: storage, _settings(), clock=lambda: cut + DAY)
    with caplog.at_level("INFO", logger="omnicore"):
        swept = sweeper.tick()
    assert swept == {"jobs": 2, "dead_letter": 1, "audit": 1, "events": 1, "workflow_runs": 1}
    assert "retention: deleted 2 finished jobs, 1 dead job, 1 audit entry, 1 event, " \
        "1 workflow run in " in caplog.text
    assert _left(storage, old) == {k: (v if k.endswith("_kept") else [])
                                   for k, v in old.items()}
    assert _left(storage, new) == new
    assert sweeper.deleted == swept
    # Counted for /metrics.
    family = next(iter(RetentionMetrics(lambda: sweeper).collect()))
    assert {s.labels["table"]: s.value for s in family.samples
            if s.name.endswith("_total")} == {k: float(n) for k, n in swept.items()}


def test_a_table_kept_for_ever_is_not_swept(storage: Storage) -> None:
    old = _fill(storage, "old")
    cut = _cut()
    sweeper = Sweeper(lambda: storage, _settings(events="never", audit=0, dead_letter="0"),
                      clock=lambda: cut + DAY)
    assert sweeper.tick() == {"jobs": 2, "workflow_runs": 1}
    left = _left(storage, old)
    assert left["events"] == old["events"] and left["audit"] == old["audit"]
    assert left["dead_letter"] == old["dead_letter"]


def test_a_sweep_deletes_in_batches_of_retention_batch(storage: Storage) -> None:
    for i in range(5):
        storage.audit.append("ada", "grant.add", "p", None, None, None, float(i))
    batches: list[tuple[str, int]] = []
    sweeper = Sweeper(lambda: storage, _settings(batch=2),
                      between=lambda key, n: batches.append((key, n)))
    assert sweeper.sweep(time.time()) == {"audit": 5}
    assert [n for key, n in batches if key == "audit"] == [2, 2, 1]
    assert storage.audit.entries() == []


def test_a_sweep_stops_at_the_end_of_the_period_it_claimed(storage: Storage) -> None:
    for i in range(5):
        storage.audit.append("ada", "grant.add", "p", None, None, None, float(i))
    now = [time.time()]
    settings = _settings(batch=2)

    def between(key: str, n: int) -> None:
        if key == "audit":
            now[0] += settings.sweep_every  # the first batch took the whole period

    sweeper = Sweeper(lambda: storage, settings, clock=lambda: now[0], between=between)
    assert sweeper.tick() == {"audit": 2}
    assert len(storage.audit.entries()) == 3  # left to the next period's sweep
    # Each batch here takes a period: each period's sweep does one.
    assert [sweeper.tick(), sweeper.tick(), sweeper.tick()] == [{"audit": 2}, {"audit": 1}, {}]


def test_a_period_is_swept_once_and_the_next_one_again(storage: Storage) -> None:
    now = [time.time()]
    first = Sweeper(lambda: storage, _settings(), clock=lambda: now[0])
    second = Sweeper(lambda: storage, _settings(), clock=lambda: now[0])
    assert first.tick() == {}
    assert second.tick() is None  # this period is the first's
    assert storage.schedules.next_fire(*CLAIM) == pytest.approx(now[0] + 3600)
    now[0] += 3600
    assert second.tick() == {}
    assert first.tick() is None


@pytest.fixture
def other_host(storage: Storage, request: pytest.FixtureRequest) -> Iterator[Storage]:
    """Another host of the same cluster: its own connection to the same database (SQLite:
    one host holds the file, so the same storage)."""
    if not storage.shared:
        yield storage
        return
    from omnicore.storage.postgres import PostgresStorage

    other = PostgresStorage(request.getfixturevalue("pg_url"))
    yield other
    other.close()


def test_a_second_host_does_not_sweep_while_the_first_does(storage: Storage,
                                                           other_host: Storage) -> None:
    for i in range(4):
        storage.audit.append("ada", "grant.add", "p", None, None, None, float(i))
    inside, release = threading.Event(), threading.Event()

    def gate(key: str, n: int) -> None:
        if key == "audit":
            inside.set()
            assert release.wait(30)

    now = time.time()
    first = Sweeper(lambda: storage, _settings(batch=2), clock=lambda: now, between=gate)
    second = Sweeper(lambda: other_host, _settings(batch=2), clock=lambda: now)
    done: list[dict[str, int] | None] = []
    thread = threading.Thread(target=lambda: done.append(first.tick()))
    thread.start()
    try:
        assert inside.wait(30)  # the first host is between two batches of its sweep
        assert second.tick() is None  # the period is claimed: the second host does nothing
        assert len(other_host.audit.entries()) == 2
    finally:
        release.set()
        thread.join(30)
    assert done == [{"audit": 4}]
    assert second.tick() is None  # still the first host's period
    assert second.deleted == {}


def test_a_running_app_sweeps_on_its_own(make_app: Any) -> None:
    from tests.waiting import eventually

    app = make_app(default_modules=False, overrides={"retention": {"audit": "1m",
                                                                    "sweep_every": "1s"}})
    app.start()
    try:
        names = [m.name for m in app.services]
        assert names.index("retention") > names.index("cluster")  # it sweeps as one host
        audit = app.storage.audit
        audit.append("ada", "grant.add", "p", None, None, None, time.time() - 3600)
        kept = audit.append("ada", "grant.add", "p", None, None, None, time.time())
        eventually(lambda: [e.id for e in audit.entries()] == [kept] or None,
                   "the hour-old audit entry swept by the app's own sweep")
    finally:
        app.stop()
