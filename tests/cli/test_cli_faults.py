"""Faults around ``omnicore run``, with real child hosts: a damaged database, a second host on
the same data dir, a host killed with -9 mid-job, an unsafe module cache."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from omnicore.sandbox import wasmbin
from omnicore.storage import JobSpec, SQLiteStorage
from tests.dbservers import free_port
from tests.hosts import Host

#: ``slow`` counts its calls in kv key ``calls`` and spins forever on the first one, so a
#: host can be killed while it holds the job; a second delivery returns at once.
SLOW_WAT = r"""
(module
  (import "omnicore:kv" "incr" (func $incr (param i32 i32 i64 i32) (result i32)))
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 0x10000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (data (i32.const 0x100) "calls")
  (func (export "slow") (param i32 i32) (result i64)
    (drop (call $incr (i32.const 0x100) (i32.const 5) (i64.const 1) (i32.const 0x200)))
    (if (i64.eq (i64.load (i32.const 0x200)) (i64.const 1))
      (then (loop $forever (br $forever))))
    (i64.const 0))
)
"""


def _slow_wasm() -> bytes:
    return wasmbin.set_custom_section(wasmtime.wat2wasm(SLOW_WAT), "omnicore.manifest",
                                      json.dumps({"name": "sp"}).encode())


def _app(tmp_path: Path, console: bool = True) -> Path:
    appdir = tmp_path / "app"
    (appdir / "plugins").mkdir(parents=True)
    (appdir / "plugins" / "sp.wasm").write_bytes(_slow_wasm())
    (appdir / "omnicore.yaml").write_text(
        f"name: faults\ndata_dir: data\nplugins_dir: plugins\n"
        f"console: {{enabled: {str(console).lower()}, auth: false}}\n"
        "sandbox: {watch: false}\n"
        "plugins: {sp: {grants: [kv, memory, vectors], limits: {timeout_ms: 120000}}}\n")
    return appdir


@pytest.fixture
def hosts() -> Iterator[Callable[..., Host]]:
    """``omnicore run APPDIR`` in a child process, logging JSON lines."""
    started: list[Host] = []

    def start(appdir: Path, **env: str) -> Host:
        host = Host(appdir).start({"OMNICORE_LOG__FORMAT": "json", **env})
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


def _line(host: Host, fragment: str) -> dict[str, Any]:
    """The first line of its log containing ``fragment``, once it came."""
    found = host.until(lambda: next((line for line in host.text.splitlines()
                                     if fragment in line), None), f"{fragment!r} in its log")
    return dict(json.loads(found))


def _one_error_line(host: Host) -> str:
    text = host.text
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, text
    return errors[0]


def _read(db: Path, sql: str) -> Any:
    conn = sqlite3.connect(db, timeout=5)
    try:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


# -- a damaged database ----------------------------------------------------------------------

def _overwrite_head(db: Path) -> None:
    store = SQLiteStorage(db)
    store.kv("sp").set("k", b"v" * 10_000)
    store.close()
    with db.open("r+b") as f:
        f.write(os.urandom(4096))


def _a_directory(db: Path) -> None:
    db.mkdir(parents=True)


@pytest.mark.parametrize("name", ["omnicore.db", "console.db"])
@pytest.mark.parametrize("damage", [_overwrite_head, _a_directory])
def test_a_damaged_database_ends_the_start_in_one_line_before_anything_listens(
        tmp_path: Path, hosts: Callable[..., Host], damage: Callable[[Path], None],
        name: str) -> None:
    appdir = _app(tmp_path)
    damage(appdir / "data" / name)
    port = free_port()
    host = hosts(appdir, OMNICORE_CONSOLE__PORT=str(port))
    bound: list[bool] = []

    def probe() -> None:   # for as long as the host lives, nothing may answer on its port
        while host.alive():
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    bound.append(True)
            time.sleep(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    assert host.proc.wait(60) == 1
    prober.join(5)
    error = _one_error_line(host)
    assert "storage" in error and "cannot open" in error, error
    assert name in error
    assert not bound
    assert "console at" not in host.text and "plugins:" not in host.text, host.text
    assert "job worker" not in host.text


# -- two hosts, one data dir -----------------------------------------------------------------

def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_a_second_host_is_refused_naming_the_first_and_touches_nothing_of_it(
        tmp_path: Path, hosts: Callable[..., Host]) -> None:
    appdir = _app(tmp_path)
    first = hosts(appdir)
    line = _line(first, "console at")
    _line(first, "started")
    console_file = appdir / "data" / "console.json"
    before = console_file.read_text()
    doc = json.loads(before)
    second = hosts(appdir)
    assert second.proc.wait(60) == 1
    error = _one_error_line(second)
    assert f"pid {first.proc.pid}" in error, error
    assert f"runtime id {doc['runtime_id']}" in error, error
    assert f"console {doc['url']}" in error, error
    assert line["runtime_id"] == doc["runtime_id"]
    # The refused host left the running one whole: its file, its console, its storage.
    assert console_file.read_text() == before
    with urllib.request.urlopen(f"{doc['url']}/healthz", timeout=10) as resp:
        assert resp.status == 200
    # Short commands keep working beside the running host: none takes the lock.
    assert _cli("kv", "set", "sp", "note", "hello", "--app", str(appdir)).returncode == 0
    got = _cli("kv", "get", "sp", "note", "--app", str(appdir))
    assert got.returncode == 0 and "hello" in got.stdout, got
    # (An enqueue goes through the running host, which refuses a handler the plugin lacks.)
    queued = _cli("tasks", "enqueue", "sp", "slow", "--delay", "3600", "--app", str(appdir))
    assert queued.returncode == 0, queued
    first.stop()
    assert first.proc.returncode == 0, first.text
    assert not console_file.exists()     # the first host removes its own file on stop


# -- kill -9 mid-job -------------------------------------------------------------------------

def test_a_killed_hosts_job_runs_again_at_the_restart_not_at_its_lease_end(
        tmp_path: Path, hosts: Callable[..., Host]) -> None:
    appdir = _app(tmp_path, console=False)
    db = appdir / "data" / "omnicore.db"
    store = SQLiteStorage(db)
    job = store.queue.add(JobSpec("sp", "slow", b"", 0.0))
    store.close()
    first = hosts(appdir)        # the default 30 s lease: only the restart can free the job
    first.until(lambda: _read(db, "SELECT value FROM kv WHERE key='calls'") == b"1",
                "the first delivery running")
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    assert _read(db, f"SELECT state FROM jobs WHERE id={job}") == "running"
    second = hosts(appdir)
    _line(second, "lease(s) of a host that stopped")
    started_at = time.monotonic()
    _line(second, "started")
    second.until(lambda: _read(db, "SELECT value FROM kv WHERE key='calls'") == b"2",
                 "the job run again", every=0.01)
    elapsed = time.monotonic() - started_at
    # The lease had 30 s left: well under that, the restart freed it (about a second on an
    # idle machine; a bound of 2.5 s failed at a load average of 20).
    assert elapsed < 10, elapsed
    second.until(lambda: _read(db, f"SELECT state FROM jobs WHERE id={job}") == "succeeded",
                 "the job succeeded")
    assert _read(db, f"SELECT attempts FROM jobs WHERE id={job}") == 2
    assert f"pid {first.proc.pid}" in second.text
    # A one-off call in its own process beside the running host (no console to forward to).
    called = _cli("call", "sp", "slow", "--app", str(appdir), "--embedded")
    assert called.returncode == 0, called.stderr
    assert _read(db, "SELECT value FROM kv WHERE key='calls'") == b"3"


# -- an unsafe module cache ------------------------------------------------------------------

@pytest.mark.parametrize("mode", [0o777, 0o770])
def test_a_cache_dir_others_can_write_is_refused_at_start(
        tmp_path: Path, hosts: Callable[..., Host], mode: int) -> None:
    appdir = _app(tmp_path)
    cache = appdir / "data" / "cache"
    cache.mkdir(parents=True)
    cache.chmod(mode)
    host = hosts(appdir)
    assert host.proc.wait(60) == 1
    error = _one_error_line(host)
    assert str(cache) in error and "writable by other users" in error, error
    assert "console at" not in host.text
