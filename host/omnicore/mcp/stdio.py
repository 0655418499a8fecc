"""``omnicore mcp --app DIR``: the tools of one app over stdio, for agents that spawn them.

The process is a plugin host only: it loads the app's plugins with the app's config,
sidecars, grants, limits, module cache and data, and follows the plugins folder (a reload
changes the tool list and tells the client). Schedules, jobs, event subscriptions, workflows
and the console are ``omnicore run``'s; a job a tool call queues is run by that host (so are
MCP tasks: they are /mcp's, and a long-running tool is called here like any other). While
serving, stdout carries JSON-RPC only: fd 1 points at stderr for everything else (and fd 0 at
the null device), and logs go to stderr.

The wire is read and written on the event loop (asyncio pipes) when stdin and stdout are
pipes, as an agent spawning the server makes them: the SDK's own stdio transport reads and
writes each line on a worker thread, three thread hops per call. A tool call or list that
needs nothing but its answer is answered there without the SDK's session loop
(:meth:`ToolServer.direct`), each in a task of its own; every other line goes to the SDK. On
anything else (a file, a terminal) the SDK's transport serves it all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from mcp.server.stdio import stdio_server

from omnicore.capabilities import guestjson
from omnicore.mcp.server import STDIO, ToolServer

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["MAX_LINE", "serve_stdio"]

#: The longest message a client may send (one line of JSON); a longer one is answered as
#: invalid JSON and skipped.
MAX_LINE = 64 * 1024 * 1024
#: The deepest JSON answered directly (deeper lines go to the SDK, which refuses them).
MAX_DEPTH = 64
#: JSON-RPC's code for an error of the server's own.
INTERNAL_ERROR = -32603

log = logging.getLogger("omnicore.mcp")


class _Lines:
    """The lines of a pipe, as the SDK's transport reads them from ``anyio.AsyncFile``; the
    requests ``tools`` answers directly are answered on ``out``, each in an asyncio task of
    its own held in ``tasks`` until it ends (an anyio task group's costs a call 13 us more)."""

    def __init__(self, reader: asyncio.StreamReader, tools: ToolServer, out: _Out,
                 tasks: set[asyncio.Task[None]]) -> None:
        self._reader = reader
        self._tools = tools
        self._out = out
        self._tasks = tasks

    def __aiter__(self) -> _Lines:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                line = await self._reader.readline()
            except ValueError:  # longer than MAX_LINE: dropped; the SDK answers a parse error
                return "\n"
            if not line:
                raise StopAsyncIteration
            found = self._direct(line)
            if found is None:
                return line.decode("utf-8", errors="replace")
            task = asyncio.get_running_loop().create_task(self._answer(*found))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _direct(self, line: bytes) -> tuple[Callable[[], Awaitable[bytes]], object] | None:
        if b'"tools/' not in line:  # most lines are not: spare them a parse
            return None
        try:
            message = guestjson.loads(line, max_depth=MAX_DEPTH)
        except ValueError:
            return None  # the SDK answers it
        call = self._tools.direct(message, STDIO, None)
        return (call, message["id"]) if call is not None else None

    async def _answer(self, call: Callable[[], Awaitable[bytes]], request_id: object) -> None:
        try:
            body = await call()
        except Exception:  # a bug of ours: the request is answered, the server serves on
            log.exception("mcp: answering request %r failed", request_id)
            body = json.dumps({"jsonrpc": "2.0", "id": request_id, "error": {
                "code": INTERNAL_ERROR, "message": "internal error in the host (its log says "
                                                   "why)"}}).encode()
        self._out.line(body)


class _Out:
    """A pipe, written as the SDK's transport writes ``anyio.AsyncFile``."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode())

    def line(self, data: bytes) -> None:
        """Write one message: whole, between the SDK's (its writes are whole lines too)."""
        self._writer.write(data + b"\n")

    async def flush(self) -> None:
        await self._writer.drain()


@asynccontextmanager
async def _pipes(tools: ToolServer) -> AsyncIterator[tuple[Any, Any]]:
    """The SDK's stdio transport over the wire's pipes read on the event loop, with fd 0 and
    fd 1 diverted meanwhile (the SDK does the same when it reads them itself)."""
    loop = asyncio.get_running_loop()
    wire_in, wire_out = os.dup(0), os.dup(1)
    try:
        reader = asyncio.StreamReader(limit=MAX_LINE)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                     os.fdopen(wire_in, "rb", closefd=False))
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(wire_out, "wb", closefd=False))
    except (ValueError, OSError):  # not pipes: the SDK reads them on its threads
        os.close(wire_in)
        os.close(wire_out)
        async with stdio_server() as streams:
            yield streams
        return
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    out = _Out(writer)
    tasks: set[asyncio.Task[None]] = set()
    try:
        async with stdio_server(stdin=_Lines(reader, tools, out, tasks),  # type: ignore[arg-type]
                                stdout=out) as streams:  # type: ignore[arg-type]
            yield streams
    finally:
        for task in list(tasks):
            task.cancel()  # calls still running when the client left
        if tasks:
            await asyncio.wait(tasks)
        transport.close()
        os.dup2(wire_in, 0)
        os.dup2(wire_out, 1)
        os.close(wire_in)
        os.close(wire_out)


async def serve_stdio(app: OmniApp) -> None:
    """Serve ``app``'s exposed handlers over stdin/stdout until the client closes stdin."""
    tools = ToolServer(app, tasks=False)  # this process runs no jobs
    tools.attach(asyncio.get_running_loop())
    try:
        async with _pipes(tools) as (read, write):
            await tools.server.run(read, write, tools.server.create_initialization_options())
    finally:
        tools.detach()
