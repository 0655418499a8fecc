"""Tool calls as MCP tasks (omnicore.mcp.tasks) over HTTP with the official SDK's client,
against a real host: each task a durable job, held open at a gate (tests/mcp/gate.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import mcp_types as types
import pytest
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from omnicore.storage.mcp_task_rows import TaskRow
from tests.mcp.gate import Gate, gate_config, gate_server
from tests.mcp.mcp_fixtures import PASSWORD, Host, http_session, text_of, wasm


@pytest.fixture
def gate() -> Iterator[Gate]:
    with gate_server() as g:
        yield g


@pytest.fixture
def host(tmp_path: Path, gate: Gate) -> Iterator[Host]:
    h = Host(tmp_path / "app", ["gate/*"], files={"gate": wasm("gate")},
             plugins=gate_config(gate.url))
    try:
        yield h
    finally:
        h.stop()


async def create_task(s: ClientSession, name: str, args: dict[str, object],
                      ttl: int | None = 60000) -> types.Task:
    """``tools/call`` in task mode. The SDK (2.3) has the task types but checks a tools/call
    answer as a CallToolResult, so this sends the same request through its raw path."""
    params = types.CallToolRequestParams(name=name, arguments=args,
                                         task=types.TaskMetadata(ttl=ttl))
    raw = await s._dispatcher.send_raw_request(
        "tools/call", params.model_dump(by_alias=True, mode="json", exclude_none=True))
    return types.CreateTaskResult.model_validate(raw, by_name=False).task


async def get_task(s: ClientSession, task_id: str) -> types.GetTaskResult:
    return await s.send_request(types.GetTaskRequest(
        params=types.GetTaskRequestParams(task_id=task_id)), types.GetTaskResult)


async def task_result(s: ClientSession, task_id: str) -> types.CallToolResult:
    return await s.send_request(types.GetTaskPayloadRequest(
        params=types.GetTaskPayloadRequestParams(task_id=task_id)), types.CallToolResult)


def test_a_task_runs_as_a_job_and_the_client_fetches_its_result(host: Host, gate: Gate) -> None:
    async def main() -> None:
        async with http_session(host.url, host.admin_token) as s:
            caps = s.server_capabilities
            assert caps is not None and caps.tasks is not None
            assert caps.tasks.requests.tools.call is not None  # type: ignore[union-attr]
            listed = {t.name: t for t in (await s.list_tools()).tools}
            assert listed["gate.fetch"].execution.task_support == "optional"  # type: ignore[union-attr]
            task = await create_task(s, "gate.fetch", gate.args())
            assert task.status == "working" and task.ttl == 60000
            await asyncio.to_thread(gate.wait_hits, 1)
            job = host.app.jobs.list(plugin="gate")[0]
            assert (job.state, job.source) == ("running", f"mcp:{task.task_id}")
            assert (await get_task(s, task.task_id)).status == "working"
            gate.open()
            result = await task_result(s, task.task_id)
            assert not result.is_error and "opened" in text_of(result)
            assert result.meta is not None
            assert result.meta["io.modelcontextprotocol/related-task"] == {
                "taskId": task.task_id}
            assert (await get_task(s, task.task_id)).status == "completed"
            listing = await s.send_request(types.ListTasksRequest(), types.ListTasksResult)
            assert [t.task_id for t in listing.tasks] == [task.task_id]
            # A long-running tool called plainly runs as a job too, and answers its result.
            slow = await s.call_tool("gate.slow", gate.args())
            assert "opened" in text_of(slow)
            assert {j.handler for j in host.app.jobs.list(plugin="gate")} == {"fetch", "slow"}

    asyncio.run(main())


def test_a_cancelled_task_stays_cancelled_and_a_second_cancel_is_refused(
        host: Host, gate: Gate) -> None:
    async def main() -> None:
        async with http_session(host.url, host.admin_token) as s:
            queued = await create_task(s, "gate.fetch", gate.args())
            await asyncio.to_thread(gate.wait_hits, 1)
            cancelled = await s.send_request(types.CancelTaskRequest(
                params=types.CancelTaskRequestParams(task_id=queued.task_id)),
                types.CancelTaskResult)
            assert cancelled.status == "cancelled"
            with pytest.raises(MCPError) as refused:
                await s.send_request(types.CancelTaskRequest(
                    params=types.CancelTaskRequestParams(task_id=queued.task_id)),
                    types.CancelTaskResult)
            assert refused.value.error.code == -32602
            assert "cancelled already" in refused.value.error.message
            gate.open()  # the running call ends; its outcome is dropped
            result = await task_result(s, queued.task_id)
            assert result.is_error and "cancelled" in text_of(result)
            assert (await get_task(s, queued.task_id)).status == "cancelled"

    asyncio.run(main())


def test_another_users_task_id_is_an_unknown_one(host: Host, gate: Gate) -> None:
    host.store.add("eve", PASSWORD, "admin")
    eve_token, _ = host.store.new_token("eve", "tests")
    gate.open()

    async def main() -> None:
        async with http_session(host.url, host.admin_token) as s:
            task = await create_task(s, "gate.fetch", gate.args())
            assert "opened" in text_of(await task_result(s, task.task_id))
        async with http_session(host.url, eve_token) as eve:
            for ask in (get_task(eve, task.task_id), task_result(eve, task.task_id)):
                with pytest.raises(MCPError) as refused:
                    await ask
                assert refused.value.error.code == -32602
                assert "another user's" in refused.value.error.message
            listing = await eve.send_request(types.ListTasksRequest(), types.ListTasksResult)
            assert listing.tasks == []

    asyncio.run(main())


class _ModernTask(types.Result):
    """The extension's CreateTaskResult (``resultType: "task"``)."""

    result_type: Literal["task"] = "task"  # type: ignore[assignment]
    task_id: str
    status: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TasksExtension(ClientExtension):
    """The client's side of the 2026-07-28 tasks extension, as the SDK lets one be written:
    a claim on tools/call's ``resultType: "task"`` that polls ``tasks/get`` to the end."""

    identifier = "io.modelcontextprotocol/tasks"

    def __init__(self) -> None:
        self.seen: list[_ModernTask] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=_ModernTask, resolve=self._resolve)]

    async def _resolve(self, task: _ModernTask, ctx: ClaimContext) -> types.CallToolResult:
        self.seen.append(task)
        while True:
            got = await _raw(ctx.session, "tasks/get", {"taskId": task.task_id})
            if got["status"] != "working":
                assert got["status"] == "completed", got
                return types.CallToolResult.model_validate(got["result"], by_name=False)
            await asyncio.sleep(got["pollIntervalMs"] / 1000)


async def _raw(s: ClientSession, method: str, params: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"method": method, "params": params}
    opts: dict[str, Any] = {}
    s._stamp(data, opts)  # the 2026-07-28 envelope, as the SDK stamps its own requests
    if "taskId" in params:  # the SDK (2.3) names no task in Mcp-Name; SEP-2663 asks for it
        opts.setdefault("headers", {})["Mcp-Name"] = params["taskId"]
    return await s._dispatcher.send_raw_request(method, data["params"], opts)  # type: ignore[arg-type]


def test_on_2026_07_28_a_long_running_tool_answers_a_task_with_its_result_inline(
        host: Host, gate: Gate) -> None:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> None:
        headers = {"Authorization": f"Bearer {host.admin_token}"}
        tasks = TasksExtension()
        async with httpx2.AsyncClient(headers=headers, timeout=30) as hc, \
                Client(streamable_http_client(f"{host.url}/mcp", http_client=hc),
                       mode="auto", extensions=[tasks]) as c:
            assert c.protocol_version == "2026-07-28"
            gate.open()
            answer = await c.call_tool("gate.slow", gate.args())
            assert "opened" in text_of(answer)
            assert [t.status for t in tasks.seen] == ["working"]
            assert tasks.seen[0].ttl_ms and tasks.seen[0].poll_interval_ms
            # An ordinary tool answers plainly, though the client declared the extension.
            assert "opened" in text_of(await c.call_tool("gate.fetch", gate.args()))
            assert len(tasks.seen) == 1
            # The extension has no tasks/result or tasks/list; tasks/update is acknowledged;
            # cancelling a finished task is acknowledged too (idempotent, SEP-2663).
            task_id = tasks.seen[0].task_id
            for method, params in (("tasks/result", {"taskId": task_id}), ("tasks/list", {})):
                with pytest.raises(MCPError) as gone:
                    await _raw(c.session, method, params)
                assert gone.value.error.code == -32601
            ack = await _raw(c.session, "tasks/update", {"taskId": task_id,
                                                         "inputResponses": {}})
            assert ack["resultType"] == "complete"
            done = await _raw(c.session, "tasks/cancel", {"taskId": task_id})
            assert done["resultType"] == "complete"
        async with httpx2.AsyncClient(headers=headers, timeout=30) as hc, \
                Client(streamable_http_client(f"{host.url}/mcp", http_client=hc),
                       mode="auto") as plain:
            # Without the extension declared, a long-running tool answers its result.
            assert "opened" in text_of(await plain.call_tool("gate.slow", gate.args()))

    asyncio.run(main())


def test_a_task_whose_job_ended_without_it_ends_too(host: Host, gate: Gate) -> None:
    """An operator cancelled its job, or the host that took the call died before queueing it:
    the task says so rather than work forever."""
    now = time.time()
    tasks = host.app.storage.mcp_tasks
    job = host.app.jobs.enqueue("gate", "fetch", b"{}", delay_s=3600, source="mcp:by-operator")
    tasks.add(TaskRow("by-operator", "admin", "gate.fetch", job, "working", None, None,
                      now, now, now + 3600))
    assert host.app.jobs.cancel(job) is True  # the console's Cancel on the Jobs page
    tasks.add(TaskRow("orphan", "admin", "gate.fetch", None, "working", None, None,
                      now - 120, now - 120, now + 3600))

    async def main() -> None:
        async with http_session(host.url, host.admin_token) as s:
            assert (await get_task(s, "by-operator")).status == "cancelled"
            orphan = await get_task(s, "orphan")
            assert orphan.status == "failed"
            assert "stopped before queueing it" in (orphan.status_message or "")
            assert "call the tool again" in text_of(await task_result(s, "orphan"))

    asyncio.run(main())
