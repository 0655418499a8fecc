"""A host killed (SIGKILL) in the middle of an MCP task loses nothing: on SQLite the restarted
host runs the task's job again, on PostgreSQL the other host does, and the client fetches the
result with ``tasks/result``. Real ``omnicore run`` processes; the call waits at a gate
(tests/mcp/gate.py) until the test opens it."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.storage.postgres import PostgresStorage
from tests.hosts import Host
from tests.mcp.gate import Gate, gate_config, gate_server
from tests.mcp.mcp_fixtures import http_session, text_of, wasm
from tests.mcp.test_tasks import create_task, get_task, task_result
from tests.waiting import eventually


def served(host: Host) -> dict[str, Any] | None:
    """Its console file (url, token), once it is ready."""
    return host.console_file if host.ready() else None


def until(pred: Any, what: str, procs: list[Host], timeout: float = 90.0) -> Any:
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
def procs() -> Iterator[list[Host]]:
    started: list[Host] = []
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
                                                     procs: list[Host]) -> None:
    appdir = make_app(tmp_path / "app", gate)
    first = Host(appdir, log=appdir / "first.log").start()
    procs.append(first)
    console = until(lambda: served(first), "the host to serve", procs)
    task_id = asyncio.run(_start_task(console, gate))
    gate.wait_hits(1)
    first.stop(signal.SIGKILL)
    second = Host(appdir, log=appdir / "second.log").start()
    procs.append(second)
    console = until(lambda: served(second), "the restarted host to serve", procs)
    gate.wait_hits(2)  # the job ran again after the restart
    gate.open()
    text, status = asyncio.run(_finish(console, task_id))
    assert "opened" in text and status == "completed"


def test_postgres_another_host_finishes_the_task(tmp_path: Path, gate: Gate, pg_url: str,
                                                 procs: list[Host]) -> None:
    hosts = []
    for i in range(2):
        p = Host(make_app(tmp_path / f"host-{i}", gate)).start({"OMNICORE_STORAGE__URL": pg_url})
        procs.append(p)
        hosts.append(p)
    consoles = [until(lambda h=h: served(h), f"host {i} to serve", procs)
                for i, h in enumerate(hosts)]
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
        victim.stop(signal.SIGKILL)
        gate.wait_hits(2)  # the other host took the job over
        gate.open()
        text, status = asyncio.run(_finish(survivor, task_id))
        assert "opened" in text and status == "completed"
        job = store.queue.get(row.job_id)
        assert job is not None and job.state == "succeeded" and len(job.runs) == 2
    finally:
        store.close()
