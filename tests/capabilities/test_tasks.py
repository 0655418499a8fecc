"""omnicore:tasks (specs/abi.md §4.6) and app.jobs: durable, retried, scheduled, survives kill -9.

The guest is a WAT plugin: ``enq`` calls ``tasks.enqueue`` with what the input says, ``work``
increments the kv key named by its payload, ``boom`` always fails, ``slow`` blocks on its first
delivery (so a test can kill the host under it) and finishes on the next.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.errors import ConfigError, PluginLoadError
from omnicore.jobs import JobDead, JobFailed, JobSucceeded
from omnicore.sandbox import wasmbin
from omnicore.storage import JobSpec, SQLiteStorage
from tests.hosts import Host
from tests.waiting import eventually

TASKS_WAT = r"""
(module
  (import "omnicore:tasks" "enqueue" (func $enqueue (param i32 i32 i32 i32 i64) (result i64)))
  (import "omnicore:tasks" "cancel" (func $cancel (param i64) (result i32)))
  (import "omnicore:kv" "incr" (func $incr (param i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 16)
  (global $bump (mut i32) (i32.const 0x40000))
  (data (i32.const 0x100) "boom")
  (data (i32.const 0x110) "slow_calls")
  (data (i32.const 0x120) "slow_done")
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; input: delay i64 | handler_len u32 | handler | payload  -> output: the i64 result
  (func (export "enq") (param $p i32) (param $n i32) (result i64)
    (local $h i32)
    (local.set $h (i32.load (i32.add (local.get $p) (i32.const 8))))
    (i64.store (i32.const 0x20000)
      (call $enqueue (i32.add (local.get $p) (i32.const 12)) (local.get $h)
                     (i32.add (i32.add (local.get $p) (i32.const 12)) (local.get $h))
                     (i32.sub (i32.sub (local.get $n) (i32.const 12)) (local.get $h))
                     (i64.load (local.get $p))))
    (i64.or (i64.shl (i64.const 0x20000) (i64.const 32)) (i64.const 8)))
  (func (export "cancel") (param $p i32) (param $n i32) (result i64)
    (i32.store (i32.const 0x20000) (call $cancel (i64.load (local.get $p))))
    (i64.or (i64.shl (i64.const 0x20000) (i64.const 32)) (i64.const 4)))
  (func (export "work") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (local.get $p) (local.get $n) (i64.const 1) (i32.const 0x20000)))
    (i64.const 0))
  (func (export "boom") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.const 0x100) (i64.const 32)) (i64.const 0x80000004)))
  (func (export "slow") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (i32.const 0x110) (i32.const 10) (i64.const 1) (i32.const 0x20000)))
    (if (i64.eq (i64.load (i32.const 0x20000)) (i64.const 1))
      (then (loop $spin (br $spin))))
    (drop (call $incr (i32.const 0x120) (i32.const 9) (i64.const 1) (i32.const 0x20000)))
    (i64.const 0))
)
"""


def tasks_wasm(name: str = "tp", manifest: dict[str, Any] | None = None) -> bytes:
    return wasmbin.set_custom_section(wasmtime.wat2wasm(TASKS_WAT), "omnicore.manifest",
                                      json.dumps({"name": name, **(manifest or {})}).encode())


def enq(app: OmniApp, handler: str, payload: bytes = b"", delay_ms: int = 0,
        plugin: str = "tp") -> int:
    h = handler.encode()
    out = app.plugins.call(plugin, "enq", struct.pack("<qI", delay_ms, len(h)) + h + payload)
    return int(struct.unpack("<q", out)[0])


def cancel(app: OmniApp, job_id: int, plugin: str = "tp") -> int:
    return int(struct.unpack("<i", app.plugins.call(plugin, "cancel",
                                                    struct.pack("<q", job_id)))[0])


class Waiter:
    """Collects events from the bus; ``wait(pred)`` blocks on a condition, not a sleep."""

    def __init__(self, app: OmniApp, topic: str) -> None:
        self.seen: list[Any] = []
        self._cond = threading.Condition()
        app.events.subscribe(topic, self._on)

    def _on(self, event: Any) -> None:
        with self._cond:
            self.seen.append(event)
            self._cond.notify_all()

    def wait(self, pred: Callable[[list[Any]], bool], timeout: float = 30.0) -> list[Any]:
        with self._cond:
            assert self._cond.wait_for(lambda: pred(self.seen), timeout), self.seen
            return list(self.seen)


@pytest.fixture
def tasks_app(make_app: Callable[..., OmniApp]) -> Iterator[Callable[..., OmniApp]]:
    made: list[OmniApp] = []

    def start(grants: Any = None, tasks_opts: dict[str, Any] | None = None,
              manifest: dict[str, Any] | None = None, name: str = "app") -> OmniApp:
        opts = {"backoff_ms": 20, "poll_s": 0.2, **(tasks_opts or {})}
        app = make_app(name, builtin_extensions=None, overrides={
            "sandbox": {"watch": False}, "capabilities": {"tasks": opts}})
        app.start()
        app.plugins.load(tasks_wasm(manifest=manifest),
                         grants=grants if grants is not None else ["kv", "tasks"])
        made.append(app)
        return app

    yield start
    for app in made:
        if app.state.value == "running":
            app.stop(grace=1)


def test_enqueued_job_runs_the_plugins_handler(tasks_app: Callable[..., OmniApp]) -> None:
    app = tasks_app()
    done = Waiter(app, "job.succeeded")
    job = enq(app, "work", b"hits")
    assert job >= 1
    event = done.wait(lambda seen: len(seen) == 1)[0]
    assert isinstance(event, JobSucceeded) and event.job_id == job and event.attempt == 1
    assert app.kv.for_plugin("tp").get("hits") == b"1"
    task = app.jobs.get(job)
    assert task is not None and task.state == "succeeded" and task.attempts == 1


@pytest.mark.parametrize("door", ["plugin", "operator"])
def test_every_enqueue_wakes_the_workers_at_once(tasks_app: Callable[..., OmniApp],
                                                 door: str) -> None:
    # A 30 s idle poll: only the wake of the one enqueue door can make the job run soon.
    app = tasks_app(tasks_opts={"poll_s": 30})
    time.sleep(0.3)  # the workers are in their idle wait
    done = Waiter(app, "job.succeeded")
    started = time.monotonic()
    job = enq(app, "work", b"woken") if door == "plugin" else \
        app.jobs.enqueue("tp", "work", b"woken")
    done.wait(lambda seen: any(e.job_id == job for e in seen), timeout=20)
    assert time.monotonic() - started < 10
    assert app.kv.for_plugin("tp").get("woken") == b"1"


def test_bad_enqueues_get_statuses_and_write_nothing(tasks_app: Callable[..., OmniApp]) -> None:
    app = tasks_app(grants={"kv": {}, "tasks": {"max_payload_bytes": 10, "max_queued": 2}})
    assert enq(app, "nope") == -1                       # unknown handler
    assert enq(app, "work", delay_ms=-5) == -3          # negative delay
    assert enq(app, "work", b"x" * 11) == -6            # payload over the grant
    assert enq(app, "\udcff".encode("utf-8", "surrogatepass").decode("latin-1")) in (-1, -3)
    first = enq(app, "work", b"a", delay_ms=3_600_000)
    second = enq(app, "work", b"b", delay_ms=3_600_000)
    assert enq(app, "work", b"c") == -4                 # a plugin hammering enqueue
    assert [t.id for t in app.jobs.list(plugin="tp")] == [second, first]
    assert cancel(app, first) == 1
    assert cancel(app, first) == 0
    assert cancel(app, 999_999) == -1
    assert enq(app, "work", b"c", delay_ms=3_600_000) > 0  # the cancelled one freed a slot


def test_retries_with_backoff_then_dead_with_the_error_kept(
        tasks_app: Callable[..., OmniApp]) -> None:
    app = tasks_app(grants={"kv": {}, "tasks": {"max_attempts": 3, "backoff_ms": 10}})
    failed, dead = Waiter(app, "job.failed"), Waiter(app, "job.dead")
    ok = Waiter(app, "job.succeeded")
    poisoned = enq(app, "boom")
    healthy = enq(app, "work", b"k")
    ok.wait(lambda seen: any(e.job_id == healthy for e in seen))  # never blocked by poison
    final = dead.wait(lambda seen: len(seen) == 1)[0]
    assert isinstance(final, JobDead) and final.attempt == 3 and "boom" in final.error
    attempts = [e for e in failed.seen if isinstance(e, JobFailed)]
    assert [e.attempt for e in attempts] == [1, 2]
    task = app.jobs.get(poisoned)
    assert task is not None and task.state == "dead" and task.attempts == 3
    assert "GuestError" in (task.last_error or "") and "boom" in (task.last_error or "")
    assert app.jobs.retry(poisoned) is True
    dead.wait(lambda seen: len(seen) == 2)
    assert app.jobs.get(poisoned).attempts == 3  # type: ignore[union-attr]
    sample = app.metrics.registry.get_sample_value
    assert sample("omnicore_job_attempts_total", {"plugin": "tp", "outcome": "dead"}) == 2
    assert sample("omnicore_job_attempts_total", {"plugin": "tp", "outcome": "failed"}) == 4
    assert sample("omnicore_job_attempts_total", {"plugin": "tp", "outcome": "succeeded"}) == 1
    assert sample("omnicore_jobs", {"plugin": "tp", "state": "dead"}) == 1
    assert sample("omnicore_jobs", {"plugin": "tp", "state": "succeeded"}) == 1
    assert b'omnicore_jobs{plugin="tp",state="dead"} 1.0' in app.metrics.render()


def test_tasks_are_scoped_to_their_plugin(tasks_app: Callable[..., OmniApp]) -> None:
    app = tasks_app()
    app.plugins.load(tasks_wasm("other"), grants=["kv", "tasks"])
    mine = enq(app, "work", b"k", delay_ms=3_600_000)
    assert cancel(app, mine, plugin="other") == -1
    assert app.jobs.get(mine).state == "queued"  # type: ignore[union-attr]


def test_a_delayed_job_survives_an_app_restart(tasks_app: Callable[..., OmniApp]) -> None:
    app = tasks_app(name="same")
    job = enq(app, "work", b"later", delay_ms=300)
    app.stop(grace=1)
    again = tasks_app(name="same")
    done = Waiter(again, "job.succeeded")
    done.wait(lambda seen: any(e.job_id == job for e in seen))
    assert again.kv.for_plugin("tp").get("later") == b"1"


def test_interval_schedule_from_the_manifest(tasks_app: Callable[..., OmniApp]) -> None:
    app = tasks_app(manifest={"schedules": [{"handler": "work", "every": "1s",
                                             "payload": "ticks"}]})
    done = Waiter(app, "job.succeeded")
    done.wait(lambda seen: len(seen) >= 2, timeout=20)
    sources = {app.jobs.get(e.job_id).source for e in done.seen}  # type: ignore[union-attr]
    assert sources == {"schedule:work"}
    assert int(app.kv.for_plugin("tp").get("ticks") or 0) >= 2
    assert [s.describe() for s in app.jobs.schedules()] == ["every 1s"]


def test_catch_up_none_and_one_after_real_downtime(tasks_app: Callable[..., OmniApp]) -> None:
    every = 1.0
    opts = {"misfire_grace_s": 0.2, "schedules": {"tp": [
        {"name": name, "handler": "work", "every": "1s", "catch_up": name, "payload": name}
        for name in ("none", "one")]}}
    app = tasks_app(name="down", tasks_opts=opts)
    store = app.storage.schedules
    eventually(lambda: all(store.next_fire("tp", n) is not None for n in ("none", "one")),
               "both schedules to be stored")
    app.stop(grace=1)
    # Real downtime: the host is off while three periods pass beyond the last due time.
    last_due = max(float(_read(app.data_dir / "omnicore.db",
                               f"SELECT next_fire FROM schedules WHERE name='{n}'"))
                   for n in ("none", "one"))
    time.sleep(max(0.0, last_due + 3 * every - time.time()))
    restarted = time.time()
    again = tasks_app(name="down", tasks_opts=opts)

    def fired(name: str) -> list[float]:
        return sorted(t.run_at for t in again.jobs.list(plugin="tp", limit=1000)
                      if t.source == f"schedule:{name}" and t.created_at >= restarted)

    # One tick after the restart handles both schedules with the same clock reading: 'one'
    # fires there once for all the missed periods, 'none' skips them and waits a period.
    eventually(lambda: bool(fired("none")), "the first regular fire of 'none'")
    first_tick = fired("one")[0]
    assert [t for t in fired("one") if t < first_tick + every] == [first_tick]
    assert [t for t in fired("none") if t < first_tick + every] == []
    assert fired("none")[0] >= first_tick + every


def test_malformed_cron_in_app_config_fails_at_load(make_app: Callable[..., OmniApp]) -> None:
    # Written under the section's old name, named by its new one, as every key of it is.
    with pytest.raises(ConfigError, match=r"capabilities\.jobs\.schedules\.tp\[0\]\.cron"):
        make_app(builtin_extensions=None, overrides={"capabilities": {"tasks": {
            "schedules": {"tp": [{"handler": "work", "cron": "every day"}]}}}})


@pytest.mark.parametrize(("schedule", "reason"), [
    ({"handler": "work", "cron": "61 * * * *"}, r"manifest schedules\[0\]\.cron: '61 \* \* \* \*' "
                                               "is not a valid cron expression"),
    ({"handler": "work", "every": "often"}, r"schedules\[0\]\.every must be a period"),
    ({"handler": "nope", "every": "5s"}, r"schedules\[0\]: no handler 'nope'"),
])
def test_a_bad_schedule_in_the_manifest_fails_the_plugin_at_load(
        make_app: Callable[..., OmniApp], schedule: dict[str, Any], reason: str) -> None:
    app = make_app(builtin_extensions=None, overrides={"sandbox": {"watch": False},
                                                       "plugins": {"tp": {"grants": ["kv"]}}})
    folder = app.config.plugins_dir
    folder.mkdir(parents=True)
    (folder / "tp.wasm").write_bytes(tasks_wasm(manifest={"schedules": [schedule]}))
    app.start()
    info = app.plugins.get("tp")   # a dropped-in file: shown as failed, with the reason
    assert info.state == "failed"
    assert re.search(reason, info.last_error or ""), info.last_error
    with pytest.raises(PluginLoadError, match=reason):  # an explicit load says it at once
        app.plugins.load(tasks_wasm("tp2", {"schedules": [schedule]}), grants=["kv"])
    assert "tp2" not in app.plugins
    assert app.jobs.schedules() == []


def test_two_schedules_of_one_name_are_refused_where_they_are_written(
        tasks_app: Callable[..., OmniApp], make_app: Callable[..., OmniApp]) -> None:
    """Two schedules of one name (two without a name share their handler's) would leave one
    in force without a word: a manifest's fail its plugin's load, the operator's the start."""
    app = tasks_app()
    twice = {"schedules": [{"handler": "work", "every": "1h"},
                           {"handler": "work", "every": "5s"}]}
    with pytest.raises(PluginLoadError, match="two schedules are named 'work'"):
        app.plugins.load(tasks_wasm("tp2", twice), grants=["kv", "tasks"])
    assert "tp2" not in app.plugins
    with pytest.raises(ConfigError, match=r"capabilities\.jobs\.schedules\.tp: two schedules "
                                          "are named 'work'"):
        make_app("twice", builtin_extensions=None, overrides={"capabilities": {"jobs": {
            "schedules": {"tp": [{"handler": "work", "every": "1h", "name": "work"},
                                 {"handler": "work", "every": "2h"}]}}}})


def test_the_operators_schedule_replaces_the_manifests_of_its_name(
        tasks_app: Callable[..., OmniApp]) -> None:
    """The manifest proposes; a schedule of the same name in capabilities.jobs.schedules is
    the one in force (the manifest's no longer fires), and another name adds to it."""
    app = tasks_app(
        manifest={"schedules": [{"handler": "work", "every": "1h"},
                                {"name": "nightly", "handler": "work", "cron": "0 3 * * *"}]},
        tasks_opts={"schedules": {"tp": [{"name": "work", "handler": "work", "every": "2h"},
                                         {"name": "extra", "handler": "work", "every": "3h"}]}})
    assert {s.name: s.describe() for s in app.jobs.schedules()} == {
        "work": "every 7200s", "nightly": "cron '0 3 * * *' (UTC)", "extra": "every 10800s"}


def test_tasks_grant_outside_an_app_is_a_clear_error(tmp_path: Path) -> None:
    from omnicore.plugins.host import PluginHost

    with PluginHost(data_dir=tmp_path) as host, pytest.raises(ConfigError, match="run in an app"):
        host.load(tasks_wasm(), grants=["kv", "tasks"])


# -- kill -9 ------------------------------------------------------------------------------------

def _read(db: Path, sql: str) -> Any:
    conn = sqlite3.connect(db, timeout=5)
    try:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def test_a_job_survives_kill_9_of_the_host_and_completes_after_restart(tmp_path: Path) -> None:
    appdir = tmp_path / "app"
    (appdir / "plugins").mkdir(parents=True)
    (appdir / "plugins" / "tp.wasm").write_bytes(tasks_wasm())
    (appdir / "omnicore.yaml").write_text(
        "name: killtest\ndata_dir: data\nplugins_dir: plugins\nconsole: {enabled: false}\n"
        "capabilities: {tasks: {lease_s: 1, poll_s: 0.2}}\n"
        "plugins: {tp: {grants: [kv, tasks], limits: {timeout_ms: 120000}}}\n")
    db = appdir / "data" / "omnicore.db"
    store = SQLiteStorage(db)
    job = store.queue.add(JobSpec("tp", "slow", b"", 0.0))
    store.close()
    with Host(appdir).start() as first:
        first.until(lambda: _read(db, "SELECT value FROM kv WHERE key='slow_calls'") == b"1",
                    "the job to start")
        first.stop(signal.SIGKILL)
    assert _read(db, f"SELECT state FROM jobs WHERE id={job}") == "running"
    with Host(appdir).start() as second:
        second.until(lambda: _read(db, f"SELECT state FROM jobs WHERE id={job}") == "succeeded",
                     "the job to complete after restart")
        assert _read(db, f"SELECT attempts FROM jobs WHERE id={job}") == 2  # at least once
        assert _read(db, "SELECT value FROM kv WHERE key='slow_done'") == b"1"
