"""A host killed (SIGKILL) in the middle of an MCP task loses nothing: on SQLite the restarted
host runs the task's job again, on PostgreSQL the other host does, and the client fetches the
result with ``tasks/result``. Real ``omnicore run`` processes; the call waits at a gate
(tests/mcp/gate.py) until the test opens it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.storage.postgres import PostgresStorage
from tests.mcp.gate import Gate, gate_config, gate_server
from tests.mcp.mcp_fixtures import http_session, text_of, wasm
from tests.mcp.test_tasks import create_task, get_task, task_result
from tests.waiting import eventually


class Proc:
    """One ``omnicore run`` of an app dir; its console's URL and local token once up."""

    def __init__(self, appdir: Path, env: dict[str, str], name: str) -> None:
        self.dir = appdir
        self.env = env
        self.log = appdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMNICORE_CONSOLE__PORT": "0", **self.env}
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen([sys.executable, "-m", "omnicore.cli", "run",
                                          str(self.dir)], env=env, stdout=sink, stderr=sink)

    def console(self) -> dict[str, Any] | None:
        """The console file this process wrote (url, token), once it serves."""
        assert self.proc is not None
        for path in (self.dir / "data").glob("**/console.json"):
            doc = json.loads(path.read_text())
            if doc.get("pid", self.proc.pid) == self.proc.pid and _ready(doc["url"]):
                return dict(doc)
        return None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
            return int(r.status) == 200
    except (OSError, ValueError):
        return False


def until(pred: Any, what: str, procs: list[Proc], timeout: float = 90.0) -> Any:
    return eventually(pred, what, watch=procs, ok_exits=(-signal.SIGKILL,), timeout=timeout,
                      every=0.05)


def make_app(root: Path, gate: Gate) -> Path:
    (root / "plugins").mkdir(parents=True)
    (root / "plugins" / "gate.wasm").write_bytes(wasm("gate"))
    (root / "omnicore.yaml").write_text(json.dumps({
        "name": "tasks-kill", "data_dir": "data", "plugins_dir": "plugins",
        "sandbox": {"watch": False}, "mcp": {"expose": ["gate/*"]},
        "plugins": gate_config(gate.url)}))
    return root


@pytest.fixture
def gate() -> Iterator[Gate]:
    with gate_server() as g:
        yield g


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for p in started:
        p.stop()


async def _start_task(console: dict[str, Any], gate: Gate) -> str:
    async with http_session(console["url"], console["token"]) as s:
        task = await create_task(s, "gate.slow", gate.args())
        return task.task_id


async def _finish(console: dict[str, Any], task_id: str) -> tuple[str, str]:
    async with http_session(console["url"], console["token"]) as s:
        result = await task_result(s, task_id)
        return text_of(result), (await get_task(s, task_id)).status


def test_sqlite_the_restarted_host_finishes_the_task(tmp_path: Path, gate: Gate,
                                                     procs: list[Proc]) -> None:
    appdir = make_app(tmp_path / "app", gate)
    first = Proc(appdir, {}, "first")
    procs.append(first)
    first.start()
    console = until(first.console, "the host to serve", procs)
    task_id = asyncio.run(_start_task(console, gate))
    gate.wait_hits(1)
    first.kill()
    second = Proc(appdir, {}, "second")
    procs.append(second)
    second.start()
    console = until(second.console, "the restarted host to serve", procs)
    gate.wait_hits(2)  # the job ran again after the restart
    gate.open()
    text, status = asyncio.run(_finish(console, task_id))
    assert "opened" in text and status == "completed"


def test_postgres_another_host_finishes_the_task(tmp_path: Path, gate: Gate, pg_url: str,
                                                 procs: list[Proc]) -> None:
    hosts = []
    for i in range(2):
        p = Proc(make_app(tmp_path / f"host-{i}", gate), {"OMNICORE_STORAGE__URL": pg_url},
                 f"host-{i}")
        procs.append(p)
        hosts.append(p)
        p.start()
    consoles = [until(h.console, f"host {i} to serve", procs) for i, h in enumerate(hosts)]
    task_id = asyncio.run(_start_task(consoles[0], gate))
    gate.wait_hits(1)
    store = PostgresStorage(pg_url)
    try:
        row = store.mcp_tasks.get(task_id)
        assert row is not None and row.job_id is not None
        job = store.queue.get(row.job_id)
        assert job is not None and job.state == "running"
        pids = {i.runtime_id: i.pid for i in store.instances.all()}
        victim = next(h for h in hosts if h.proc is not None and h.proc.pid == pids[job.owner])
        survivor = consoles[1 - hosts.index(victim)]
        victim.kill()
        gate.wait_hits(2)  # the other host took the job over
        gate.open()
        text, status = asyncio.run(_finish(survivor, task_id))
        assert "opened" in text and status == "completed"
        job = store.queue.get(row.job_id)
        assert job is not None and job.state == "succeeded" and len(job.runs) == 2
    finally:
        store.close()
