"""Long tool calls as MCP tasks, each run as a durable job of the host's job service.

A task is a ``tools/call`` that answers at once with a task id, and whose result the client
fetches later, from this host or another one of the same database. Two protocol forms:

* **2025-11-25** (the ``tasks`` utility): the client asks for it, ``params.task`` (with an
  optional ``ttl``) on any tool (every tool says ``execution.taskSupport: "optional"``); the
  answer is a ``CreateTaskResult``; then ``tasks/get``, ``tasks/result`` (blocks until the
  task ends, then answers what the call would have), ``tasks/list`` (paged) and
  ``tasks/cancel``. A tool result with ``isError`` is a ``failed`` task.
* **2026-07-28** (the ``io.modelcontextprotocol/tasks`` extension): the server decides. A
  call of a long-running tool from a client that declared the extension in the request's
  ``_meta`` capabilities answers ``resultType: "task"``; ``tasks/get`` carries the result
  once ``completed`` (tool errors included), ``tasks/cancel`` answers empty;
  ``tasks/result`` and ``tasks/list`` are gone (-32601). A task's call may ask its client
  (omnicore.capabilities.mcp_task): the task is ``input_required`` with the questions as
  ``inputRequests`` on ``tasks/get``, and ``tasks/update`` answers them (empty ack). A tool
  whose questions come first (``asks_first``) asks them in ``input_required`` rounds of the
  call itself (SEP-2322), and becomes a task once the client answered, the answers carried
  into it. ``tasks/get``, ``tasks/update`` and ``tasks/cancel`` over HTTP carry the task id in
  ``Mcp-Name`` too (omnicore.mcp.http checks it).

A handler the plugin's manifest marks ``"long_running": true`` (specs/abi.md §5) runs as a job
whatever the client asked: a plain call waits for the job and answers its result, so a host
that dies under it loses nothing but the wait. One marked ``"required"`` runs only as a task:
a plain call is refused, -32021 naming the extension on 2026-07-28, -32601 before.

Each task is a row of ``storage.mcp_tasks`` made before its job is queued (the job's source is
``mcp:TASK_ID``); the job service hands the call's outcome to that row on whichever host ran it
(``app.py`` keeps the sink on every host), and never retries a tool call that failed: the
failure is the answer. A host killed mid-call leaves the job leased: on PostgreSQL another host
takes it as soon as the dead one is found, on SQLite the restarted host does. A task belongs to
the principal that made it (the console user behind the token): a task id of anyone else is
answered like an unknown one (``-32602``). Cancelling a task whose job has not started cancels
the job; a running call runs on to its deadline and its outcome is dropped.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError

from omnicore.capabilities.mcp_task import TaskRounds
from omnicore.errors import OmniError
from omnicore.mcp.tools import Tool, handler_input
from omnicore.storage.mcp_task_rows import McpTaskRows, TaskRow

if TYPE_CHECKING:
    from mcp.server.lowlevel.server import Server

    from omnicore.app import OmniApp
    from omnicore.mcp.context import Caller

__all__ = ["EXTENSION", "MODERN", "NAMED", "POLL_MS", "SOURCE", "Tasks", "refuse_plain"]

#: The job source of a task's job (``mcp:TASK_ID``).
SOURCE = "mcp"
#: The 2026-07-28 extension's identifier.
EXTENSION = "io.modelcontextprotocol/tasks"
#: Where a 2026-07-28 request declares its capabilities.
_CLIENT_CAPS = "io.modelcontextprotocol/clientCapabilities"
_RELATED = "io.modelcontextprotocol/related-task"
#: The revisions that speak the extension rather than the utility.
MODERN = frozenset({"2026-07-28"})
#: The extension's methods whose ``taskId`` an HTTP request repeats in ``Mcp-Name``.
NAMED = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
#: What a task's call may ask its client, by the capability that says the client can answer.
_ASKABLE = ("elicitation", "sampling", "roots")
#: How often a client should poll (ms); how often a wait reads the row (s): at first, at most.
POLL_MS = 500
_WAIT_S = (0.02, 0.5)
#: How long a task is kept (ms): the client's ``ttl`` within these bounds.
DEFAULT_TTL_MS = 3_600_000
MAX_TTL_MS = 7 * 86_400_000
#: The owner of tasks made over stdio (the operator runs that process).
OPERATOR = "operator"
_PAGE = 50
#: How long a task may wait for its job to be named before it is taken for orphaned (s).
_ORPHAN_S = 60.0

Status = Literal["working", "input_required", "completed", "failed", "cancelled"]
#: A task's row with its status, result (once it ended) and status message.
Outcome = tuple[TaskRow, Status, types.CallToolResult | None, str | None] | None


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _owner(caller: Caller | None) -> str:
    return OPERATOR if caller is None else caller.name


def declares_extension(params: Mapping[str, Any] | None) -> bool:
    """Whether a 2026-07-28 request's ``_meta`` capabilities name the tasks extension."""
    meta = params.get("_meta") if isinstance(params, Mapping) else None
    caps = meta.get(_CLIENT_CAPS) if isinstance(meta, Mapping) else None
    ext = caps.get("extensions") if isinstance(caps, Mapping) else None
    return isinstance(ext, Mapping) and EXTENSION in ext


class ToolCalls(Protocol):
    """What tasks need of the tool server (:class:`~omnicore.mcp.server.ToolServer`): its app,
    its SDK server, and how it finds, checks and answers a tool."""

    @property
    def app(self) -> OmniApp: ...

    @property
    def server(self) -> Server[Any]: ...

    def resolve(self, name: str) -> Tool | None: ...

    def callable(self, name: str, caller: Caller | None) -> Tool | types.CallToolResult: ...

    def may_arrive(self, name: str) -> bool: ...

    async def arrive(self, name: str) -> bool: ...

    def still_loading(self, name: str) -> types.CallToolResult: ...

    def answer(self, tool: Tool | None, name: str, output: bytes | None,
               error: str | None) -> types.CallToolResult: ...

    async def ask_first(self, ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams, tool: Tool,
                        caller: Caller | None) -> dict[str, Any] | types.Result: ...


class Tasks:
    """The tasks of one :class:`~omnicore.mcp.server.ToolServer`: register :meth:`install`
    on its SDK server; :meth:`run_durable` is the plain call of a long-running tool."""

    def __init__(self, tools: ToolCalls, caller: Callable[[ServerRequestContext[Any, Any]],
                                                            Caller | None]) -> None:
        self.tools = tools
        self._caller = caller

    @property
    def _rows(self) -> McpTaskRows:
        return self.tools.app.storage.mcp_tasks

    def install(self) -> None:
        server = self.tools.server
        server.add_request_handler("tasks/get", types.GetTaskRequestParams, self._get)
        server.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams,
                                   self._result)
        server.add_request_handler("tasks/list", types.PaginatedRequestParams, self._list)
        server.add_request_handler("tasks/cancel", types.CancelTaskRequestParams,
                                   self._cancel)
        server.add_request_handler("tasks/update", types.GetTaskRequestParams, self._update)
        server.extensions[EXTENSION] = {}
        server.middleware.append(self._intercept)

    # -- making a task -----------------------------------------------------------------

    def wants_task(self, params: Mapping[str, Any] | None, version: str) -> bool:
        """Whether a ``tools/call`` with ``params`` on revision ``version`` answers with a
        task (before its tool is known: on 2026-07-28 only a long-running tool does)."""
        if not isinstance(params, Mapping):
            return False
        if version in MODERN:
            return declares_extension(params) and self._tool(params, lambda t: t.long_running)
        return params.get("task") is not None

    def _tool(self, params: Mapping[str, Any], test: Callable[[Tool], bool]) -> bool:
        name = params.get("name")
        tool = self.tools.resolve(name) if isinstance(name, str) else None
        return tool is not None and test(tool)

    async def create(self, tool: Tool, arguments: Mapping[str, Any] | None,
                     caller: Caller | None, ttl_ms: int | None,
                     rounds: TaskRounds | None = None) -> TaskRow:
        """Keep a task for calling ``tool`` and queue its job; the task's row. ``rounds``:
        what its call may ask the client, and the answers it has (None: it asks nothing)."""
        ttl = min(max(ttl_ms or DEFAULT_TTL_MS, 1000), MAX_TTL_MS)
        now = time.time()
        row = TaskRow(secrets.token_urlsafe(18), _owner(caller), tool.name, None, "working",
                      None if rounds is None else rounds.dump(), None, now, now,
                      now + ttl / 1000)

        def make() -> int | None:
            # The row first: the job's outcome must find it, whichever host runs it.
            self._rows.add(row)
            return self._queue(row.id, tool, arguments)
        job_id = await anyio.to_thread.run_sync(make)
        return TaskRow(row.id, row.owner, row.tool, job_id, row.status, None, None,
                       row.created_at, row.updated_at, row.expires_at)

    def _queue(self, task_id: str, tool: Tool, arguments: Mapping[str, Any] | None
               ) -> int | None:
        """Queue the job that calls ``tool`` for task ``task_id`` and name it in the row;
        None when the plugin lost the handler since it was listed (the task then failed)."""
        try:
            data = handler_input(tool, arguments)
            job_id = self.tools.app.jobs.enqueue(tool.plugin, tool.handler, data,
                                                 source=f"{SOURCE}:{task_id}")
        except OmniError as exc:
            self._rows.settle(task_id, None, str(exc).strip().partition("\n")[0], time.time())
            return None
        self._rows.set_job(task_id, job_id)
        return job_id

    async def run_durable(self, tool: Tool, arguments: Mapping[str, Any] | None,
                          caller: Caller | None) -> types.CallToolResult:
        """A plain call of a long-running tool: a task the client is not told of, waited
        for here (it is in ``tasks/list`` all the same)."""
        row = await self.create(tool, arguments, caller, None)
        return await self._wait(row.id)

    async def _intercept(self, ctx: ServerRequestContext[Any, Any],
                         call_next: CallNext) -> HandlerResult:
        # A task's answer is no CallToolResult, which the SDK checks a tools/call against
        # on the handshake revisions: answered here, before the handler.
        version = ctx.protocol_version
        if ctx.method == "tools/call" and isinstance(ctx.params, Mapping):
            name = ctx.params.get("name")
            if isinstance(name, str) and self.tools.may_arrive(name) \
                    and self.tools.resolve(name) is None:
                # Whether it is a task depends on the tool: wait for it first.
                if not await self.tools.arrive(name):
                    return self.tools.still_loading(name)
        if ctx.method != "tools/call" or not isinstance(ctx.params, Mapping) or not (
                self.wants_task(ctx.params, version)
                or self._tool(ctx.params, lambda t: t.task_required)):
            return await call_next(ctx)
        try:
            params = types.CallToolRequestParams.model_validate(ctx.params, by_name=False)
        except ValueError:
            return await call_next(ctx)  # the SDK answers its own invalid-params error
        caller = self._caller(ctx)
        tool = self.tools.callable(params.name, caller)
        if not isinstance(tool, Tool):
            return await call_next(ctx)  # the same tool error a plain call gets
        modern = version in MODERN
        if not (declares_extension(ctx.params) if modern else params.task is not None):
            refuse_plain(tool, modern)  # a tool that runs only as a task
        rounds = None
        if modern:
            answers: dict[str, Any] = {}
            if tool.asks_first:
                first = await self.tools.ask_first(ctx, params, tool, caller)
                if not isinstance(first, dict):
                    return first  # input_required, or it asked nothing and is done
                answers = first
            declared = ctx.session.client_capabilities
            asks = [c for c in _ASKABLE if getattr(declared, c, None) is not None]
            rounds = TaskRounds(asks, params.arguments, answers=answers)
        ttl = params.task.ttl if params.task is not None else None
        row = await self.create(tool, params.arguments, caller, ttl, rounds)
        if modern:
            return {"resultType": "task", **self._wire(row, "working", version)}
        return {"task": self._wire(row, "working", ctx.protocol_version),
                "_meta": {"io.modelcontextprotocol/model-immediate-response":
                          f"{tool.name} runs as task {row.id}"}}

    # -- reading tasks -----------------------------------------------------------------

    def _find(self, task_id: str, ctx: ServerRequestContext[Any, Any]) -> TaskRow:
        row = self._rows.get(task_id)
        if row is None or row.owner != _owner(self._caller(ctx)) \
                or (row.expires_at is not None and row.expires_at < time.time()):
            raise MCPError(-32602, f"no task {task_id[:80]!r}: it is unknown, expired, or "
                                   "another user's (tasks/list shows yours)")
        return row

    def _read(self, task_id: str, ctx: ServerRequestContext[Any, Any] | None) -> Outcome:
        """Task ``task_id`` (``ctx``: checked as its caller's) and what it says; on a worker
        thread (it reads the database)."""
        row = self._rows.get(task_id) if ctx is None else self._find(task_id, ctx)
        return None if row is None else self._outcome(row)

    def _outcome(self, row: TaskRow
                 ) -> tuple[TaskRow, Status, types.CallToolResult | None, str | None]:
        """What ``row`` says: the row as it is now (moved to its end if its job ended), its
        status, the call's result once it ended, a message. The row comes back with them: a
        job that ends while this reads leaves the caller's copy working, and its output (the
        client's rounds) would then pass for a result."""
        if row.status == "working":
            ended = self._ended_without_outcome(row)
            if ended is None:
                return row, "working", None, f"{row.tool} runs as job {row.job_id}"
            row = ended
        if row.status == "cancelled":
            return row, "cancelled", _error(f"task {row.id} was cancelled"), "cancelled"
        if row.status == "input_required":
            return row, "input_required", None, f"{row.tool} waits for the client's answers"
        tool = self.tools.resolve(row.tool)
        result = self.tools.answer(tool, row.tool, row.output, row.error)
        text = result.content[0].text if result.is_error and result.content and \
            isinstance(result.content[0], types.TextContent) else None
        return row, ("failed" if result.is_error else "completed"), result, text

    def _ended_without_outcome(self, row: TaskRow) -> TaskRow | None:
        """The row as it is once moved to its end, if its job ended and left it working: an
        operator cancelled or deleted the job, a host that keeps no task outcomes (an older
        release, in a rolling upgrade) ran it, or the host that made the task stopped before
        queueing it. None while the job is still to run or running."""
        now = time.time()
        if row.job_id is None:
            # Since it was made, or since the client's answers made it work again.
            if now - row.updated_at < _ORPHAN_S:
                return None
            self._rows.settle(row.id, None, "the host that took the call stopped before "
                                            "queueing it; call the tool again", now)
        else:
            job = self.tools.app.jobs.get(row.job_id)
            if job is not None and job.state in ("queued", "running"):
                return None
            if job is not None and job.state == "dead":
                self._rows.settle(row.id, None, job.last_error or "the job failed", now)
            elif job is not None and job.state == "succeeded":
                self._rows.settle(row.id, None, f"job {job.id} ran on a host that does not "
                                                "keep task results; call the tool again", now)
            else:  # cancelled or deleted by an operator
                self._rows.cancel(row.id, now)
        return self._rows.get(row.id) or row

    def _wire(self, row: TaskRow, status: Status, version: str,
              message: str | None = None) -> dict[str, Any]:
        ttl = None if row.expires_at is None else round((row.expires_at - row.created_at) * 1000)
        modern = version in MODERN
        task: dict[str, Any] = {"taskId": row.id, "status": status,
                                "createdAt": _iso(row.created_at),
                                "lastUpdatedAt": _iso(row.updated_at),
                                "ttlMs" if modern else "ttl": ttl,
                                "pollIntervalMs" if modern else "pollInterval": POLL_MS}
        if message:
            task["statusMessage"] = message[:500]
        return task

    async def _get(self, ctx: ServerRequestContext[Any, Any],
                   params: types.GetTaskRequestParams) -> dict[str, Any]:
        _negotiated(ctx)
        found = await anyio.to_thread.run_sync(self._read, params.task_id, ctx)
        assert found is not None  # _find raised for an unknown one
        row, status, result, message = found
        if ctx.protocol_version not in MODERN:
            return self._wire(row, status, ctx.protocol_version, message)
        # The extension: a tool error is a completed call, the result inline; a call that
        # gave no result (the plugin failed) is a failed task with a JSON-RPC error.
        if status == "failed" and row.error is None and row.output is not None:
            status = "completed"
        wire = self._wire(row, status, ctx.protocol_version, message)
        if status == "completed" and result is not None:
            wire["result"] = _dump(result, ctx.protocol_version)
        elif status == "failed":
            wire["error"] = {"code": -32603, "message": message or "the call failed"}
        elif status == "input_required":
            rounds = TaskRounds.load(row.output)
            wire["inputRequests"] = rounds.open if rounds is not None else {}
        return wire

    async def _wait(self, task_id: str, ctx: ServerRequestContext[Any, Any] | None = None
                    ) -> types.CallToolResult:
        """The result of task ``task_id`` once it ended (``ctx``: checked as its owner's).
        The row is read again and again: the job may end on any host of the database."""
        pause = _WAIT_S[0]
        while True:
            found = await anyio.to_thread.run_sync(self._read, task_id, ctx)
            if found is None:
                return _error(f"task {task_id} is gone (its time to live ran out)")
            result = found[2]
            if result is not None:
                return result
            await anyio.sleep(pause)
            pause = min(pause * 1.5, _WAIT_S[1])

    async def _result(self, ctx: ServerRequestContext[Any, Any],
                      params: types.GetTaskPayloadRequestParams) -> dict[str, Any]:
        _legacy_only(ctx, "tasks/get carries the result of a completed task")
        dumped = _dump(await self._wait(params.task_id, ctx), ctx.protocol_version)
        dumped.setdefault("_meta", {})[_RELATED] = {"taskId": params.task_id}
        return dumped

    async def _list(self, ctx: ServerRequestContext[Any, Any],
                    params: types.PaginatedRequestParams) -> dict[str, Any]:
        _legacy_only(ctx, "a client keeps the ids of the tasks it made")
        cursor = params.cursor
        if cursor is not None and not cursor.isdecimal():
            raise MCPError(-32602, f"invalid cursor {cursor[:40]!r}: pass back a nextCursor "
                                   "of tasks/list as it came")
        owner = _owner(self._caller(ctx))

        def page() -> tuple[list[dict[str, Any]], int | None]:
            rows, after = self._rows.page(owner, None if cursor is None else int(cursor), _PAGE)
            now = time.time()
            return [self._wire(r, s, ctx.protocol_version, m)
                    for found in rows if found.expires_at is None or found.expires_at >= now
                    for r, s, _res, m in (self._outcome(found),)], after
        tasks, after = await anyio.to_thread.run_sync(page)
        out: dict[str, Any] = {"tasks": tasks}
        if after is not None:
            out["nextCursor"] = str(after)
        return out

    async def _cancel(self, ctx: ServerRequestContext[Any, Any],
                      params: types.CancelTaskRequestParams) -> dict[str, Any]:
        _negotiated(ctx)
        row = await anyio.to_thread.run_sync(self._find, params.task_id, ctx)

        def cancel() -> bool:
            if not self._rows.cancel(row.id, time.time()):
                return False
            if row.job_id is not None:
                self.tools.app.jobs.cancel(row.job_id)  # a running call runs on; dropped
            return True
        if not await anyio.to_thread.run_sync(cancel):
            if ctx.protocol_version in MODERN:
                return {}  # the extension's cancel is idempotent: an ended task acks too
            found = await anyio.to_thread.run_sync(self._read, row.id, ctx)
            status = found[1] if found is not None else "gone"
            raise MCPError(-32602, f"task {row.id} is {status} already: only a working task "
                                   "can be cancelled")
        if ctx.protocol_version in MODERN:
            return {}
        row = await anyio.to_thread.run_sync(self._find, row.id, ctx)
        return self._wire(row, "cancelled", ctx.protocol_version, "cancelled")


    async def _update(self, ctx: ServerRequestContext[Any, Any],
                      params: types.GetTaskRequestParams) -> dict[str, Any]:
        # The client's answers to an input_required task's questions; an answer to no open
        # question is ignored, as the extension says. Once none is open, a new job calls
        # the tool again with every answer.
        if ctx.protocol_version not in MODERN:
            raise MCPError(-32601, "tasks/update is the 2026-07-28 tasks extension's")
        _negotiated(ctx)
        raw = ctx.params.get("inputResponses") if isinstance(ctx.params, Mapping) else None
        if raw is not None and not isinstance(raw, Mapping):
            raise MCPError(-32602, "inputResponses must be an object of answers by key")
        responses = {k: v for k, v in (raw or {}).items() if isinstance(v, Mapping)}
        row = await anyio.to_thread.run_sync(self._find, params.task_id, ctx)
        await anyio.to_thread.run_sync(self._answer, row, responses)
        return {}

    def _answer(self, row: TaskRow, responses: dict[str, Any]) -> None:
        """Keep ``responses`` to the open questions of ``row``; once none is open, queue the
        job of its next round. Read again when another answer or a cancel came between (a
        few times: each retry means another request changed the task)."""
        for _ in range(8):
            rounds = TaskRounds.load(row.output) if row.status == "input_required" else None
            given = {k: v for k, v in responses.items()
                     if rounds is not None and k in rounds.open}
            if rounds is None or not given:
                return
            rounds.answers.update(given)
            resume = not rounds.open
            if self._rows.answer(row.id, rounds.dump(), row.updated_at, time.time(),
                                 resume=resume):
                if not resume:
                    return
                tool = self.tools.resolve(row.tool)
                if tool is None:
                    self._rows.settle(row.id, None, f"tool '{row.tool}' is no longer served",
                                      time.time())
                    return
                self._queue(row.id, tool, rounds.arguments)
                return
            found = self._rows.get(row.id)
            if found is None:
                return
            row = found


def _negotiated(ctx: ServerRequestContext[Any, Any]) -> None:
    """On 2026-07-28 the task methods are the extension's: a request that does not declare
    it is refused with -32021 (SEP-2663)."""
    if ctx.protocol_version in MODERN and not declares_extension(ctx.params):
        raise MCPError(-32021, f"{ctx.method} needs the {EXTENSION} extension in the "
                               "request's client capabilities",
                       data={"requiredCapabilities": {"extensions": {EXTENSION: {}}}})


def refuse_plain(tool: Tool, modern: bool) -> None:
    """A plain call of a tool that runs only as a task: -32021 naming the extension on
    2026-07-28 (SEP-2663), -32601 on 2025-11-25 (its tools' ``taskSupport: "required"``)."""
    if not tool.task_required:
        return
    if modern:
        raise MCPError(-32021, f"tool '{tool.name}' runs only as a task: declare the "
                               f"{EXTENSION} extension in the request's client capabilities",
                       data={"requiredCapabilities": {"extensions": {EXTENSION: {}}}})
    raise MCPError(-32601, f"tool '{tool.name}' runs only as a task: call it with "
                           "params.task")


def _legacy_only(ctx: ServerRequestContext[Any, Any], instead: str) -> None:
    if ctx.protocol_version in MODERN:
        raise MCPError(-32601, f"{ctx.method} is not in the 2026-07-28 tasks extension: "
                               f"{instead}")


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def _dump(result: types.CallToolResult, version: str) -> dict[str, Any]:
    dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    if version not in MODERN:
        dumped.pop("resultType", None)  # 2026-07-28's; the SDK sieves it off a tools/call
    return dumped
