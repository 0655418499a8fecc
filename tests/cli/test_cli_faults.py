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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Host:
    """``omnicore run APPDIR`` in a child process, its JSON log lines read as they come."""

    def __init__(self, appdir: Path, **env: str) -> None:
        cmd = [sys.executable, "-m", "omnicore.cli", "run", str(appdir)]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "OMNICORE_LOG__FORMAT": "json", "PYTHONUNBUFFERED": "1", **env})
        self.lines: list[tuple[float, str]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                with self._cond:
                    self.lines.append((time.monotonic(), line.rstrip("\n")))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(line for _, line in self.lines)

    def wait_for(self, fragment: str, timeout: float = 60.0) -> tuple[float, dict[str, Any]]:
        """When the first log line containing ``fragment`` came, and that line."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for at, line in self.lines:
                    if fragment in line:
                        return at, json.loads(line)
                assert self.proc.poll() is None or self._reader.is_alive(), \
                    f"the host exited ({self.proc.returncode}) first:\n{self.text}"
                left = deadline - time.monotonic()
                assert left > 0, f"no {fragment!r} in the log:\n{self.text}"
                self._cond.wait(min(left, 0.5))

    def finish(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)


@pytest.fixture
def hosts() -> Iterator[Callable[..., Host]]:
    started: list[Host] = []

    def start(appdir: Path, **env: str) -> Host:
        host = Host(appdir, **env)
        started.append(host)
        return host

    yield start
    for host in started:
        host.stop()


def _one_error_line(host: Host) -> str:
    text = host.text
    assert "Traceback" not in text, text
    errors = [line for _, line in host.lines if line.startswith("Error:")]
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
    port = _free_port()
    host = hosts(appdir, OMNICORE_CONSOLE__PORT=str(port))
    bound: list[bool] = []

    def probe() -> None:   # for as long as the host lives, nothing may answer on its port
        while host.proc.poll() is None:
            with socket.socket() as s:
                s.settimeout(0.2)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    bound.append(True)
            time.sleep(0.01)

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    assert host.finish(timeout=60) == 1
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
    _, line = first.wait_for("console at")
    first.wait_for("started")
    console_file = appdir / "data" / "console.json"
    before = console_file.read_text()
    doc = json.loads(before)
    second = hosts(appdir)
    assert second.finish(timeout=60) == 1
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

def test_a_killed_hosts_job_runs_again_within_a_second_of_the_restart(
        tmp_path: Path, hosts: Callable[..., Host]) -> None:
    appdir = _app(tmp_path, console=False)
    db = appdir / "data" / "omnicore.db"
    store = SQLiteStorage(db)
    job = store.queue.add(JobSpec("sp", "slow", b"", 0.0))
    store.close()
    first = hosts(appdir)        # the default 30 s lease: only the restart can free the job
    deadline = time.monotonic() + 60
    while _read(db, "SELECT value FROM kv WHERE key='calls'") != b"1":
        assert first.proc.poll() is None and time.monotonic() < deadline, first.text
        time.sleep(0.05)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(10)
    assert _read(db, f"SELECT state FROM jobs WHERE id={job}") == "running"
    second = hosts(appdir)
    started_at, _ = second.wait_for("lease(s) of a host that stopped")
    second.wait_for("started")
    while _read(db, "SELECT value FROM kv WHERE key='calls'") != b"2":
        assert second.proc.poll() is None, second.text
        assert time.monotonic() < started_at + 30, "the job did not run again"
        time.sleep(0.01)
    elapsed = time.monotonic() - started_at
    assert elapsed < 1.0 + 1.5, elapsed       # the lease had 30 s left
    deadline = time.monotonic() + 30
    while _read(db, f"SELECT state FROM jobs WHERE id={job}") != "succeeded":
        assert time.monotonic() < deadline
        time.sleep(0.05)
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
    assert host.finish(timeout=60) == 1
    error = _one_error_line(host)
    assert str(cache) in error and "writable by other users" in error, error
    assert "console at" not in host.text
