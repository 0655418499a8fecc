"""MCP tasks that ask their client, and tools that run only as tasks (omnicore.mcp.tasks, its
job's side in omnicore.capabilities.mcp_task): 2026-07-28 requests over HTTP to a real host,
whose plugin asks for elicitation from its task's job, from a tool that runs only as a task,
and from one whose question comes before its work."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import wasmtime
import yaml
from mcp.shared.exceptions import MCPError

from omnicore.sandbox import wasmbin
from tests.capabilities.test_mcp import ELICIT, MCP_WAT
from tests.mcp.mcp_fixtures import Host, http_session
from tests.waiting import eventually

MODERN = "2026-07-28"
TASKS = {"extensions": {"io.modelcontextprotocol/tasks": {}}, "elicitation": {}}
#: The asker's question (its input is the question; its output the client's answer).
QUESTION = {**ELICIT, "key": "who"}
ACCEPT = {"action": "accept", "content": {"name": "Ada"}}


def _asker(name: str, **handler: Any) -> bytes:
    return wasmbin.set_custom_section(
        wasmtime.wat2wasm(MCP_WAT), "omnicore.manifest",
        json.dumps({"name": name, "handlers": [{"name": "ask", **handler}]}).encode())


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    root = tmp_path_factory.mktemp("asking") / "app"
    (root / "plugins").mkdir(parents=True)
    plugins = {"slow": _asker("slow", long_running=True),
               "only": _asker("only", long_running="required"),
               "first": _asker("first", long_running="required", asks_first=True)}
    for name in list(plugins):
        (root / "plugins" / f"{name}.yaml").write_text(yaml.safe_dump(
            {"grants": {"mcp": {"ask": ["elicitation"]}}}))
    # Without the mcp grant: its plain calls take the server's direct path (no stream).
    plugins["bare"] = _asker("bare", long_running="required")
    h = Host(root, ["*/*"], files=plugins)
    try:
        yield h
    finally:
        h.stop()


def rpc(host: Host, method: str, params: dict[str, Any], *, caps: dict[str, Any] | None = None,
        name: str | None = None) -> httpx.Response:
    """One 2026-07-28 request with its envelope and routing headers (``name``: another
    ``Mcp-Name`` than the body's)."""
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": {
        **params, "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN,
                            "io.modelcontextprotocol/clientCapabilities": caps or {}}}}
    headers = {"Authorization": f"Bearer {host.admin_token}", "MCP-Protocol-Version": MODERN,
               "Accept": "application/json, text/event-stream", "Mcp-Method": method}
    named = name or params.get("name") or params.get("taskId")
    if named:
        headers["Mcp-Name"] = named
    return httpx.post(f"{host.url}/mcp", json=body, headers=headers, timeout=30)


def answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC answer, from a JSON body or the SSE stream's last message."""
    if response.headers["content-type"].startswith("text/event-stream"):
        lines = [line[5:] for line in response.text.splitlines() if line.startswith("data:")]
        messages = [json.loads(line) for line in lines if line.strip()]
        return next(m for m in reversed(messages) if "id" in m)
    message: dict[str, Any] = response.json()
    return message


def result(response: httpx.Response) -> dict[str, Any]:
    got = answer(response)
    assert "result" in got, got
    out: dict[str, Any] = got["result"]
    return out


def settled(host: Host, task_id: str) -> dict[str, Any]:
    """``tasks/get`` of a task, polled until it is no longer working (faster than the
    interval the server suggests: a job here ends in milliseconds)."""
    def done() -> dict[str, Any] | None:
        got = result(rpc(host, "tasks/get", {"taskId": task_id}, caps=TASKS))
        assert got["pollIntervalMs"] > 0 or got["status"] != "working"
        return got if got["status"] != "working" else None

    return eventually(done, f"task {task_id} settled", every=0.02)


def test_a_task_that_asks_waits_for_tasks_update_then_finishes(host: Host) -> None:
    created = result(rpc(host, "tools/call", {"name": "slow.ask", "arguments": QUESTION},
                         caps=TASKS))
    assert created["resultType"] == "task"
    task_id = created["taskId"]
    waiting = settled(host, task_id)
    assert waiting["status"] == "input_required"
    assert waiting["inputRequests"]["who"]["method"] == "elicitation/create"
    # An answer to no open question is ignored; an answer that is no elicitation result is
    # kept, and asked again by the next round.
    ack = result(rpc(host, "tasks/update", {"taskId": task_id, "inputResponses": {
        "nobody-asked": ACCEPT}}, caps=TASKS))
    assert ack["resultType"] == "complete" and "status" not in ack
    assert settled(host, task_id)["status"] == "input_required"
    ack = result(rpc(host, "tasks/update", {"taskId": task_id, "inputResponses": {
        "who": ACCEPT}}, caps=TASKS))
    assert ack["resultType"] == "complete"
    done = settled(host, task_id)
    assert done["status"] == "completed", done
    assert json.loads(done["result"]["content"][0]["text"]) == ACCEPT
    # Two jobs ran the call: the round that asked, the round that had the answer; both
    # succeeded (a question is no failure).
    assert [j.state for j in host.app.jobs.list(plugin="slow")] == ["succeeded"] * 2


def test_a_cancelled_waiting_task_takes_no_more_answers(host: Host) -> None:
    task_id = result(rpc(host, "tools/call", {"name": "slow.ask", "arguments": QUESTION},
                         caps=TASKS))["taskId"]
    assert settled(host, task_id)["status"] == "input_required"
    assert result(rpc(host, "tasks/cancel", {"taskId": task_id}, caps=TASKS))[
        "resultType"] == "complete"
    rpc(host, "tasks/update", {"taskId": task_id, "inputResponses": {"who": ACCEPT}},
        caps=TASKS)
    assert settled(host, task_id)["status"] == "cancelled"


def test_a_task_of_a_client_that_cannot_answer_fails_its_question(host: Host) -> None:
    caps = {"extensions": TASKS["extensions"]}  # no elicitation
    task_id = result(rpc(host, "tools/call", {"name": "slow.ask", "arguments": QUESTION},
                         caps=caps))["taskId"]
    done = settled(host, task_id)
    assert done["status"] == "failed" and "elicitation" in done["error"]["message"]


def test_a_tool_that_runs_only_as_a_task_refuses_a_plain_call(host: Host) -> None:
    async def handshake() -> None:
        async with http_session(host.url, host.admin_token) as s:
            listed = {t.name: t for t in (await s.list_tools()).tools}
            assert listed["only.ask"].execution.task_support == "required"  # type: ignore[union-attr]
            assert listed["slow.ask"].execution.task_support == "optional"  # type: ignore[union-attr]
            for name in ("only.ask", "bare.ask"):
                with pytest.raises(MCPError) as plain:
                    await s.call_tool(name, QUESTION)
                assert plain.value.error.code == -32601
                assert "runs only as a task" in plain.value.error.message
    asyncio.run(handshake())
    refused = rpc(host, "tools/call", {"name": "only.ask", "arguments": QUESTION},
                  caps={"elicitation": {}})
    error = answer(refused)["error"]
    assert error["code"] == -32021
    assert error["data"] == {"requiredCapabilities": {"extensions": {
        "io.modelcontextprotocol/tasks": {}}}}
    created = result(rpc(host, "tools/call", {"name": "only.ask", "arguments": QUESTION},
                         caps=TASKS))
    assert created["resultType"] == "task"
    rpc(host, "tasks/cancel", {"taskId": created["taskId"]}, caps=TASKS)


def test_a_tool_that_asks_first_asks_in_rounds_then_becomes_a_task(host: Host) -> None:
    call = {"name": "first.ask", "arguments": QUESTION}
    first = result(rpc(host, "tools/call", call, caps=TASKS))
    assert first["resultType"] == "input_required" and "taskId" not in first
    assert list(first["inputRequests"]) == ["who"]
    second = result(rpc(host, "tools/call", {**call, "inputResponses": {"who": ACCEPT},
                                             "requestState": first["requestState"]},
                        caps=TASKS))
    assert second["resultType"] == "task" and "requestState" not in second
    done = settled(host, second["taskId"])
    assert done["status"] == "completed", done
    assert json.loads(done["result"]["content"][0]["text"]) == ACCEPT
    assert len(host.app.jobs.list(plugin="first")) == 1  # the work ran once, as the task


def test_a_task_method_whose_mcp_name_is_not_its_task_id_is_refused(host: Host) -> None:
    task_id = result(rpc(host, "tools/call", {"name": "slow.ask", "arguments": QUESTION},
                         caps=TASKS))["taskId"]
    for wrong in ("another-task", ""):
        refused = rpc(host, "tasks/get", {"taskId": task_id}, caps=TASKS, name=wrong or None)
        if not wrong:  # no Mcp-Name at all
            refused = httpx.post(refused.request.url, content=refused.request.content,
                                 headers={k: v for k, v in refused.request.headers.items()
                                          if k.lower() != "mcp-name"})
        assert refused.status_code == 400
        assert refused.json()["error"]["code"] == -32020
    assert result(rpc(host, "tasks/get", {"taskId": task_id}, caps=TASKS))["taskId"] == task_id
    rpc(host, "tasks/cancel", {"taskId": task_id}, caps=TASKS)
