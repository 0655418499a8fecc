"""Another process's enqueue wakes a host on the same SQLite file at once (storage/sqlite/
wakeup.py), where it used to wait for the host's idle poll; and a flood of wake-ups from
anyone costs the host a bounded number of wake-ups."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from click.testing import CliRunner

from omnicore.cli import main
from omnicore.storage import JobSpec, SQLiteStorage, open_storage
from omnicore.storage.sqlite.wakeup import MIN_INTERVAL_S
from tests.hosts import Host
from tests.waiting import eventually, seconds_until

ROOT = Path(__file__).resolve().parents[2]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"


def test_an_enqueue_through_another_storage_wakes_the_listener_of_its_queue(
        tmp_path: Path) -> None:
    host, cli = SQLiteStorage(tmp_path / "o.db"), SQLiteStorage(tmp_path / "o.db")
    jobs, steps = threading.Event(), threading.Event()
    try:
        host.on_wakeup(jobs.set, "jobs")
        host.on_wakeup(steps.set, "steps")
        cli.queue.add(JobSpec("p", "h", b"", time.time()))
        assert jobs.wait(5)
        jobs.clear()
        cli.jobs("p").enqueue("h", b"", time.time(), max_attempts=1, backoff_ms=1,
                              max_queued=10)
        assert jobs.wait(5)
        time.sleep(0.2)
        assert not steps.is_set()  # a job enqueue does not wake the step workers
    finally:
        host.close()
        cli.close()


def test_a_second_listener_on_the_same_file_falls_back_to_polling(tmp_path: Path) -> None:
    first, second, cli = (SQLiteStorage(tmp_path / "o.db") for _ in range(3))
    woke = threading.Event()
    try:
        first.on_wakeup(woke.set, "jobs")
        second.on_wakeup(lambda: None, "jobs")  # cannot bind: no error, no channel
        cli.queue.add(JobSpec("p", "h", b"", time.time()))
        assert woke.wait(5)
    finally:
        for s in (first, second, cli):
            s.close()


def test_a_flood_of_datagrams_costs_a_bounded_number_of_wake_ups(tmp_path: Path) -> None:
    host = SQLiteStorage(tmp_path / "o.db")
    count = 0

    def woke() -> None:
        nonlocal count
        count += 1

    try:
        host.on_wakeup(woke, None)
        flood = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sent, start = 0, time.monotonic()
        while time.monotonic() - start < 1.0:
            try:
                flood.sendto(b"jobs" * 16, socket.MSG_DONTWAIT, host.backend.wakeup.address)
                sent += 1
            except BlockingIOError:
                time.sleep(0)
        took = time.monotonic() - start
        time.sleep(0.2)
        flood.close()
        assert sent > 1000
        assert count <= took / MIN_INTERVAL_S + 50, (count, sent)
        before = count
        cli = SQLiteStorage(tmp_path / "o.db")
        cli.queue.add(JobSpec("p", "h", b"", time.time()))
        cli.close()
        eventually(lambda: count > before, "a real enqueue heard after the flood")
    finally:
        host.close()


def test_a_cli_enqueue_runs_on_a_running_sqlite_host_without_waiting_for_its_poll(
        tmp_path: Path) -> None:
    app = tmp_path / "app"
    # A 30 s idle poll: only the wake-up can start the job within the bound below.
    with Host(app, {"name": "wake", "data_dir": "data", "plugins_dir": "plugins",
                    "sandbox": {"watch": False},
                    "plugins": {"greeter-rust": {"grants": ["config"]}},
                    "capabilities": {"tasks": {"poll_s": 30}}}, [GREETER]).start() as host:
        host.until((app / "data" / "console.json").exists, "the host serving")
        time.sleep(0.5)  # its workers are idle in their 30 s poll
        result = CliRunner().invoke(main, ["tasks", "enqueue", "greeter-rust", "greet",
                                           '{"name": "Ada"}', "--app", str(app)])
        assert result.exit_code == 0, result.output
        store = open_storage(app / "data")
        try:
            took = seconds_until(lambda: (t := store.queue.get(1)) is not None
                                 and t.state == "succeeded", "the job succeeded", watch=[host])
            assert took < 10, took  # well inside the 30 s poll
        finally:
            store.close()
