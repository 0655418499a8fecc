"""The MCP server over an app's plugins, built on the official SDK's low-level ``Server``.

``tools/list`` answers the exposed handlers of the plugins that can be called
(:mod:`omnicore.mcp.tools`), once the start's plugins are loaded (a list asked while the host
starts waits for them, at most ``sandbox.load_wait_ms``: an agent lists once, after its
handshake, and the handshake is answered at once); ``tools/call`` runs one through
``app.plugins.acall`` (the async twin of ``call_json``: the same grants, limits, deadline and
breaker, on the plugin's own worker threads) with the tool's arguments as the handler's JSON
input (a text tool's one argument as its text: :func:`~omnicore.mcp.tools.handler_input`). The
output comes back as the first text content, and as structured content too when it is a JSON
object. A failure of the call (trap, deadline, limit, needs-grant, the handler's own error) is
a tool result with ``isError`` and the host's one-line message; the server keeps serving. A
tool with an output schema whose output does not match it answers a tool error too.

A call reports progress (start and finish) when the request carries ``_meta.progressToken``;
after ``logging/setLevel``, the plugin's log lines of the call at or above that level reach
the client as ``notifications/message`` before the result. A plugin holding the ``mcp`` grant
talks to the client itself (omnicore.mcp.callclient); on 2026-07-28 its questions come back
as ``input_required`` rounds (omnicore.mcp.rounds).

Any call may run as a durable job, an MCP task (omnicore.mcp.tasks): the client asks for one
(2025-11-25), or the tool is long-running (its manifest's ``long_running``). Prompts,
resources and completions are the catalog's (omnicore.mcp.catalog), which shares the rounds.

When plugins load, reload or unload (or the console exposes or hides a handler), every
connected client gets ``notifications/tools/list_changed``: on the handshake protocol
revisions over its connection, on 2026-07-28 through the ``subscriptions/listen`` stream it
opened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_types import methods as _methods

from omnicore import __version__, telemetry
from omnicore.capabilities.mcp import CLIENT
from omnicore.core.events import Event
from omnicore.core.lifecycle import State
from omnicore.errors import ConfigError, OmniError
from omnicore.mcp.callclient import CallClient
from omnicore.mcp.catalog import Catalog
from omnicore.mcp.context import Caller, caller_of, name_of
from omnicore.mcp.expose import McpToolsChanged
from omnicore.mcp.results import Listing, content_result, output_result, tool_error
from omnicore.mcp.rounds import MODERN, Rounds, StateKey
from omnicore.mcp.tasks import Tasks, refuse_plain
from omnicore.mcp.tools import (
    LISTED_STATES,
    Exposure,
    Tool,
    Where,
    check_expose,
    handler_input,
    output_problem,
    tools_of,
)
from omnicore.sandbox.logring import LogLine

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["STDIO", "Caller", "ToolServer"]

#: The session key of the one connection of a process serving stdio (it has no session id).
STDIO = ""
#: MCP's log levels, least severe first.
_SEVERITY = {level: i for i, level in enumerate(
    ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"))}
#: A plugin log's levels as MCP's (trace is finer than MCP goes: debug).
_MCP_LEVEL: dict[str, types.LoggingLevel] = {
    "trace": "debug", "debug": "debug", "info": "info", "warn": "warning", "error": "error"}
#: 2026-07-28's error for a request that needs a capability the client did not declare (each
#: request declares its client's: there is no handshake).
MISSING_CAPABILITY = -32021
#: Plugin events after which the tool list may differ.
_CHANGES = frozenset({"plugin.loaded", "plugin.unloaded", "plugin.reloaded",
                      "plugin.state_changed", "plugin.failed", "plugin.settings_changed",
                      McpToolsChanged.topic})


class _Server(Server[Any]):
    # The streamable HTTP manager builds each session's `initialize` answer from the default
    # options; the tool list does change, so every transport advertises listChanged.
    def create_initialization_options(
        self, notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities, extensions)

    def get_capabilities(self, *args: Any, **kwargs: Any) -> types.ServerCapabilities:
        # The SDK derives no tasks capability (its task methods are types only): every
        # tools/call may be a task (omnicore.mcp.tasks), listed and cancelled.
        caps = super().get_capabilities(*args, **kwargs)
        if "tasks/get" in self._request_handlers:
            caps.tasks = types.ServerTasksCapability(
                list=types.TasksListCapability(), cancel=types.TasksCancelCapability(),
                requests=types.ServerTasksRequestsCapability(
                    tools=types.TasksToolsCapability(call=types.TasksCallCapability())))
        return caps


class ToolServer:
    """The plugins of ``app`` as MCP tools; one per process, shared by every connection.

    :meth:`attach` (on the event loop that serves) starts following plugin changes;
    :meth:`detach` stops. ``server`` is the SDK's low-level server to run on a transport.
    """

    def __init__(self, app: OmniApp, *, tasks: bool = True) -> None:
        self.app = app
        self._exposed: tuple[object, Exposure] | None = None
        self.bus = InMemorySubscriptionBus()
        #: The input_required rounds of tool calls and prompts (2026-07-28).
        self.rounds = Rounds(StateKey(lambda: app.storage.mcp_tasks))
        #: Prompts, resources and completions (omnicore.mcp.catalog).
        self.catalog = catalog = Catalog(app, lambda: self.exposure, self.rounds)
        self.server: Server[Any] = _Server(
            "omnicore", version=__version__,
            description=f"the WebAssembly plugins of app '{app.config.name}' as tools",
            on_list_tools=self._list_tools, on_call_tool=self._call_tool,
            on_list_resources=catalog.list_resources, on_read_resource=catalog.read_resource,
            on_list_resource_templates=catalog.list_templates,
            on_subscribe_resource=catalog.subscribe, on_unsubscribe_resource=catalog.unsubscribe,
            on_completion=catalog.complete, on_list_prompts=catalog.list_prompts,
            on_get_prompt=catalog.get_prompt, on_subscriptions_listen=ListenHandler(self.bus))
        # Registered by hand: the constructor's argument warns that the 2026-07-28 revision
        # deprecates logging, which the handshake revisions still have.
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams,
                                        self._set_level)
        self.server.middleware.append(self._track_peers)
        #: Calls as durable jobs: tasks/* and task-mode tools/call (None: this process runs
        #: no jobs, as over stdio; long-running tools are called like any other there).
        self.tasks: Tasks | None = None
        if tasks:
            self.tasks = Tasks(self, caller_of)
            self.tasks.install()
        #: The log level each connection asked for (logging/setLevel), by connection.
        self._levels: dict[int, int] = {}
        #: The connections that asked for a log level, by :data:`STDIO` or HTTP session id.
        self._logging_sessions: set[str] = set()
        #: The connections past their handshake (the same keys), with the protocol revision
        #: negotiated.
        self._ready: dict[str, str] = {}
        #: Tools found by name (:meth:`resolve`): the plugin changes counted then, the
        #: exposure, the plugin's name and file and its rules then, the tool.
        self._found: dict[str, tuple[int, Exposure, Where, tuple[object, ...], Tool]] = {}
        #: Each plugin's tools in their wire forms (:meth:`_listings`).
        self._listing: dict[str, Listing] = {}
        #: Handshake-era clients, told about list changes over their own connection.
        self._peers: dict[int, ServerSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: list[Any] = []
        self._pending = False
        #: Whether a list was answered while the start's plugins still loaded (its wait ran
        #: out): from then on their arrivals are announced too (:meth:`_on_event`).
        self._listed_early = False
        #: Plugin changes seen (:meth:`_on_event`), and the verdict on mcp.expose: (the
        #: config's mcp section, the changes count, why it is refused or None).
        self._changes = 0
        self._refusal: tuple[object, int, str | None] | None = None

    # -- tools ---------------------------------------------------------------------------

    def expose_refusal(self) -> str | None:
        """Why omnicore.yaml's ``mcp.expose`` is refused — a pattern that exposes nothing
        (:func:`~omnicore.mcp.tools.check_expose`), a typo — or None. Judged once the app
        runs (its plugins loaded) and whenever its config is read again; a refusal is judged
        again as plugins change (one arriving may make the pattern match), but a plugin that
        goes away never turns a pattern into a typo."""
        if self.app.state is not State.RUNNING:
            return None
        mcp, cached = self.app.config.mcp, self._refusal
        if cached is not None and cached[0] is mcp and (cached[2] is None
                                                        or cached[1] == self._changes):
            return cached[2]
        try:
            check_expose(mcp.expose, self.app.config.source_of("mcp.expose"), self.app.plugins)
            why = None
        except ConfigError as exc:
            why = str(exc)
        self._refusal = (mcp, self._changes, why)
        return why

    def tools(self) -> dict[str, Tool]:
        """The tools listed now, by name."""
        return tools_of(self.app.plugins, self.exposure)

    def _listings(self) -> list[Listing]:
        """The listed plugins' tools in their wire forms, made again only for a plugin whose
        tools changed (:meth:`Exposure.tools` answers the same dict until then)."""
        out = []
        for info in self.app.plugins:
            if info.state not in LISTED_STATES:
                continue
            tools = self.exposure.tools(info)
            listing = self._listing.get(info.name)
            if listing is None or listing.tools is not tools:
                listing = self._listing[info.name] = Listing(tools, self.tasks is not None)
            out.append(listing)
        return out

    async def _list_tools(self, ctx: ServerRequestContext[Any, Any],
                          params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        await self._start_loaded()
        return types.ListToolsResult(tools=[t for listing in self._listings()
                                            for t in listing.listed])

    async def _start_loaded(self) -> None:
        """Wait for the start's plugins (every list holds them), at most
        ``sandbox.load_wait_ms``."""
        if not await self.app.plugins.start_loaded():
            self._listed_early = True

    def resolve(self, name: str) -> Tool | None:
        """The exposed tool ``name``, whatever its plugin's state (a needs-grant plugin's tool
        answers with the grant it needs rather than "unknown tool").

        Every call asks, so a tool found is kept (while attached: :meth:`attach`) until a
        plugin changes (any of :data:`_CHANGES`, counted as they are published), the config
        is read again, or its plugin's sidecar or operator rules differ (asked again each
        time, as :meth:`Exposure.tools` asks them); finding it costs a snapshot of the
        plugin and the check of everything it is made of."""
        exposure = self.exposure
        changes = self._changes
        found = self._found.get(name)
        if found is not None and found[0] == changes and found[1] is exposure \
                and exposure.rules_of(found[2]) == found[3]:
            return found[4]
        tool = self._resolve(name)
        if tool is not None and self._loop is not None and tool.plugin in self.app.plugins:
            where = Where(tool.plugin, self.app.plugins.get(tool.plugin).source)
            if len(self._found) > 10_000:
                self._found.clear()  # names come and go over a long life; stay bounded
            self._found[name] = (changes, exposure, where, exposure.rules_of(where), tool)
        return tool

    def _resolve(self, name: str) -> Tool | None:
        plugin = name.partition(".")[0]
        if plugin in self.app.plugins:
            tool = tools_of([self.app.plugins.get(plugin)], self.exposure,
                            listed_only=False).get(name)
            if tool is not None:
                return tool
        # A plugin whose sidecar sets mcp.prefix names its tools otherwise; the first
        # plugin serving the name wins.
        for info in self.app.plugins:
            if self.exposure.prefix(info) is not None:
                tool = self.exposure.tools(info).get(name)
                if tool is not None:
                    return tool
        return None

    def may_arrive(self, name: str) -> bool:
        """Whether tool ``name``, not served now, may yet be: its plugin is still loading, or
        plugin files are (the folder at a start, a file dropped in)."""
        plugins = self.app.plugins
        if plugins.loading:
            return True
        plugin = name.partition(".")[0]
        return plugin in plugins and plugins.serving_module(plugin) is None \
            and plugins.get(plugin).state == "compiling"  # the snapshot only when none serves

    async def arrive(self, name: str) -> bool:
        """Wait on the loop, through the door every call waits at (plugins.arrivals), until
        tool ``name`` is served or cannot be any more (its plugin settled without it, the
        folder's load ended without it), at most ``sandbox.load_wait_ms``: False when that
        ran out first."""
        plugins = self.app.plugins
        loop = asyncio.get_running_loop()
        deadline = loop.time() + plugins.load_wait_s
        while self.resolve(name) is None and self.may_arrive(name):
            left = deadline - loop.time()
            if left <= 0:
                return False
            plugin = name.partition(".")[0]
            if plugin in plugins and plugins.get(plugin).state != "compiling":
                # Its plugin settled without it, other files still load (a prefixed tool's
                # may be among them): wait for that load to end. No plugin is named ".".
                plugin = "."
            await plugins.arrival(plugin, left)
        return True

    async def reach(self, name: str, caller: Caller | None) -> Tool | types.CallToolResult:
        """:meth:`callable`, once tool ``name`` arrived if its plugin is still loading
        (:meth:`arrive`); a tool error saying it still loads when the wait ran out."""
        refused = self._refused(name, caller)
        if refused is not None:
            return refused
        if self.may_arrive(name) and self.resolve(name) is None \
                and not await self.arrive(name):
            return self.still_loading(name)
        return self.callable(name, caller)

    def still_loading(self, name: str) -> types.CallToolResult:
        """The tool error of a call of ``name`` that waited for it as long as it may."""
        wait_ms = self.app.plugins.load_wait_s * 1000
        return tool_error(f"tool '{name}' is not served yet: plugins are still loading "
                          f"(waited {wait_ms:.0f} ms, sandbox.load_wait_ms); call it again "
                          "in a moment")

    def _refused(self, name: str, caller: Caller | None) -> types.CallToolResult | None:
        if caller is not None and not caller.is_admin:
            return tool_error(f"user '{caller.name}' is a viewer, and calling a plugin needs an "
                          f"admin; use an admin's token (omnicore users token NAME)")
        # An OAuth caller (omnicore.oauth.OAuthCaller) may call the tools it was granted.
        granted: frozenset[str] | None = getattr(caller, "tools", None)
        if caller is not None and granted is not None and name not in granted:
            return tool_error(f"tool '{name}' is not among those {caller.name} approved for this "
                          "agent; approve it again (a new sign-in) to add the tools exposed "
                          "since")
        return None

    def callable(self, name: str, caller: Caller | None) -> Tool | types.CallToolResult:
        """The tool ``name`` if ``caller`` may call it, else the tool error that says why."""
        refused = self._refused(name, caller)
        if refused is not None:
            return refused
        tool = self.resolve(name)
        if tool is None:
            return tool_error(f"no tool '{name}': it is not an exposed handler of a loaded "
                          "plugin (mcp.expose in omnicore.yaml or the plugin's sidecar); "
                          "tools/list shows the tools")
        return tool

    async def _run(self, tool: Tool, arguments: dict[str, Any] | None,
                   caller: Caller | None, client: CallClient | None = None
                   ) -> types.CallToolResult:
        # A span of the MCP conventions' names, beneath /mcp's request span (stdio: a root).
        with telemetry.span(f"tools/call {tool.name}", {
                "mcp.method.name": "tools/call", "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": tool.name, "omnicore.plugin.name": tool.plugin,
                "omnicore.plugin.handler": tool.handler}) as made:
            if tool.long_running and self.tasks is not None:
                result = await self.tasks.run_durable(tool, arguments, caller)
            else:
                result = await self._inline(tool, arguments, client)
            if made is not None and result.is_error:
                made.set_attribute("error.type", "tool_error")
            return result

    async def _inline(self, tool: Tool, arguments: dict[str, Any] | None,
                      client: CallClient | None) -> types.CallToolResult:
        """``tool`` called here, its questions put to ``client``."""
        token = CLIENT.set(client)  # acall runs the plugin in a copy of this context
        try:
            data = handler_input(tool, arguments)
            out = await self.app.plugins.acall(tool.plugin, tool.handler, data)
        except OmniError as exc:
            return tool_error(str(exc).strip().partition("\n")[0])
        finally:
            CLIENT.reset(token)
        return self.answer(tool, tool.name, out, None)

    def answer(self, tool: Tool | None, name: str, output: bytes | None,
               error: str | None) -> types.CallToolResult:
        """The result of a call of tool ``name`` (``tool``, None if it is no longer served)
        that returned ``output`` or failed with the one-line ``error``."""
        if output is None:
            return tool_error(error or f"tool '{name}' failed")
        result = content_result(tool, output) if tool is not None and tool.content \
            else output_result(output)
        if result.is_error or tool is None or tool.output_schema is None:
            return result
        sha = self.app.plugins.sha256_of(tool.plugin) if tool.plugin in self.app.plugins \
            else None
        problem = output_problem(tool, sha, result.structured_content)
        return tool_error(problem) if problem else result

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any],
                         params: types.CallToolRequestParams) -> types.CallToolResult:
        caller = caller_of(ctx)
        tool = await self.reach(params.name, caller)
        if isinstance(tool, types.CallToolResult):
            return tool
        level = self._levels.get(id(ctx.session._connection))
        log = self.app.plugins.logs(tool.plugin) if level is not None else None
        mark = log.written if log is not None else 0
        meta = ctx.meta
        asked_progress = meta is not None and meta.get("progress_token",
                                                        meta.get("progressToken")) is not None
        client = None
        if "mcp" in self.app.plugins.granted_to(tool.plugin):
            answers = await self.rounds.answers(params, name_of(caller), "tool") \
                if ctx.protocol_version >= MODERN else None
            client = CallClient(asyncio.get_running_loop(), ctx, asked_progress, answers)
        # A no-op unless the request carried _meta.progressToken; a plugin holding the mcp
        # grant reports its own.
        if client is None:
            await ctx.session.report_progress(0, 1, f"calling {tool.plugin}/{tool.handler}")
        try:
            result = await self._run(tool, params.arguments, caller, client)
            if client is not None and client.pending:
                # 2026-07-28: the questions go back to the client, which retries the call
                # with its answers; those of earlier rounds ride in the signed state.
                return await self.rounds.input_required(  # type: ignore[return-value]
                    client, params, name_of(caller), "tool")
            if client is not None and ctx.protocol_version >= MODERN:
                _refuse_missing(tool, client)
            return result
        finally:
            if log is not None and level is not None:
                await self._forward_log(ctx, tool.plugin, log.since(mark), level)
            if client is None or not client.reported:
                await ctx.session.report_progress(1, 1, "done")

    async def ask_first(self, ctx: ServerRequestContext[Any, Any],
                        params: types.CallToolRequestParams, tool: Tool,
                        caller: Caller | None) -> dict[str, Any] | types.Result:
        """2026-07-28: the rounds of a tool whose questions come before its work
        (``asks_first``). The call runs here up to its first answered question; then it goes
        on as a task, and this answers the client's answers so far. Until then it answers
        what to send now: ``input_required`` with the questions, or the call's result when
        it asked nothing."""
        client = CallClient(asyncio.get_running_loop(), ctx, False,
                            await self.rounds.answers(params, name_of(caller), "tool"),
                            escalate=True)
        result = await self._inline(tool, params.arguments, client)
        if client.escalated:
            return {**(client.answers or {}), **client.used}
        if client.pending:
            return await self.rounds.input_required(client, params, name_of(caller), "tool")
        _refuse_missing(tool, client)
        return result

    def direct(self, message: object, session_id: str | None,
               caller: Caller | None) -> Callable[[], Awaitable[bytes]] | None:
        """The request ``message`` (parsed JSON-RPC) on session ``session_id`` (:data:`STDIO`
        over stdio), to answer without the SDK's session loop: a coroutine function returning
        the JSON-RPC response's body. None unless it is a valid ``tools/call`` whose answer
        is its result alone (:meth:`needs_stream`) or a ``tools/list``, on a session past its
        handshake; the SDK answers the rest, invalid ones with its errors.

        The SDK's loop costs a tool call more than the call: the request crosses two memory
        streams and three tasks each way, and a list of 1,000 tools is validated and dumped
        twice over. This path validates the request and shapes the result as the SDK does
        (``mcp_types.methods``, at the revision the session negotiated) with the same
        :meth:`callable`, :meth:`_run` and tools. A client's ``notifications/cancelled``
        does not reach a call run here; the call's deadline still bounds it."""
        version = self._ready.get(session_id) if session_id is not None else None
        method = message.get("method") if isinstance(message, dict) else None
        if version is None or method not in ("tools/call", "tools/list") \
                or self.needs_stream(message, session_id):
            return None
        assert isinstance(message, dict)
        raw = message.get("params")
        name = raw.get("name") if isinstance(raw, dict) else None
        if method == "tools/call" and isinstance(name, str) and self.may_arrive(name) \
                and self.resolve(name) is None:
            return None  # what it needs is known once it arrived: _call_tool waits for it
        if method == "tools/call" and self.tasks is not None \
                and self.tasks.wants_task(raw, version):
            return None  # a task's answer is the SDK's loop's (Tasks._intercept)
        try:
            request = types.jsonrpc_message_adapter.validate_python(message, by_name=False)
            _methods.validate_client_request(method, version, raw)
            params = types.CallToolRequestParams.model_validate(raw, by_name=False) \
                if method == "tools/call" else None
        except (ValueError, KeyError):  # pydantic's ValidationError is a ValueError
            return None
        if not isinstance(request, types.JSONRPCRequest):
            return None
        head = f'{{"jsonrpc":"2.0","id":{json.dumps(request.id)},"result":'.encode()

        async def call() -> bytes:
            assert params is not None
            tool = self.callable(params.name, caller)
            if isinstance(tool, Tool) and tool.task_required and self.tasks is not None:
                try:  # a plain call of a tool that runs only as a task
                    refuse_plain(tool, version >= MODERN)
                except MCPError as exc:
                    error = exc.error.model_dump(mode="json", exclude_none=True)
                    return json.dumps({"jsonrpc": "2.0", "id": request.id, "error": error},
                                      separators=(",", ":")).encode()
            result = tool if isinstance(tool, types.CallToolResult) else \
                await self._run(tool, params.arguments, caller)
            dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            wire = _methods.serialize_server_result("tools/call", version, dumped)
            return head + json.dumps(wire, separators=(",", ":")).encode() + b"}"

        async def listing() -> bytes:
            await self._start_loaded()
            tools = b",".join(part for listing in self._listings()
                              for part in listing.wire(version))
            return head + b'{"tools":[' + tools + b"]}}"

        return call if params is not None else listing

    async def _forward_log(self, ctx: ServerRequestContext[Any, Any], plugin: str,
                           lines: list[LogLine], level: int) -> None:
        """The plugin's log lines of a call, at or above the client's level, as
        ``notifications/message`` on the call's stream. The lines are those written while
        the call ran: another call of the same plugin at the same time adds its own."""
        for line in lines:
            mcp_level = _MCP_LEVEL.get(line.level, "info")
            if _SEVERITY[mcp_level] >= level:
                await ctx.session.send_notification(types.LoggingMessageNotification(
                    params=types.LoggingMessageNotificationParams(
                        level=mcp_level, logger=plugin, data=line.message)),
                    related_request_id=ctx.request_id)

    async def _set_level(self, ctx: ServerRequestContext[Any, Any],
                         params: types.SetLevelRequestParams) -> types.EmptyResult:
        # A session object serves one request; the connection (its private name is pinned
        # with _track_peers') is what the level belongs to.
        connection = ctx.session._connection
        key = id(connection)
        if key not in self._levels:
            connection.exit_stack.callback(self._levels.pop, key, None)
            self._logging_sessions.add(_key(connection))
            connection.exit_stack.callback(self._logging_sessions.discard, _key(connection))
        self._levels[key] = _SEVERITY[params.level]
        return types.EmptyResult()

    def negotiated(self, session_id: str | None) -> str | None:
        """The protocol revision session ``session_id`` negotiated; None before its
        handshake completed (or for no session)."""
        return self._ready.get(session_id) if session_id is not None else None

    def needs_stream(self, message: object, session_id: str | None) -> bool:
        """Whether the answer to JSON-RPC ``message`` (parsed; None if it did not parse) on
        session ``session_id`` (:data:`STDIO` over stdio) may need more than its result on
        its stream: a tool call
        that reports progress (its request carries ``_meta.progressToken``) or forwards log
        lines (its session set a level). Anything else is answered with one JSON body.
        Whatever comes to send a call more (a request to the client) must say so here."""
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return isinstance(message, list)  # a batch: whatever its parts need
        if session_id is not None and session_id in self._logging_sessions:
            return True
        params = message.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if isinstance(name, str):
            # The plugin of PLUGIN.HANDLER without resolving the tool (this runs before every
            # call); another name may be a prefixed plugin's.
            plugin = name.partition(".")[0]
            if plugin not in self.app.plugins:
                tool = self.resolve(name)
                plugin = tool.plugin if tool is not None else ""
            if plugin and "mcp" in self.app.plugins.granted_to(plugin):
                return True  # it may ask the client, or report progress
        meta = params.get("_meta") if isinstance(params, dict) else None
        return isinstance(meta, dict) and meta.get("progressToken") is not None

    # -- list changes --------------------------------------------------------------------

    async def _track_peers(self, ctx: ServerRequestContext[Any, Any],
                           call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "notifications/initialized":
            key = id(ctx.session)
            self._peers[key] = ctx.session
            # The SDK keeps the per-connection teardown on the connection the session
            # belongs to; tests/mcp/test_mcp_server.py pins this private name.
            connection = ctx.session._connection
            connection.exit_stack.callback(self._peers.pop, key, None)
            self._ready[_key(connection)] = connection.protocol_version
            connection.exit_stack.callback(self._ready.pop, _key(connection), None)
        return result

    @property
    def exposure(self) -> Exposure:
        """What ``mcp.*`` of the app's config exposes (followed when the config reloads)."""
        mcp = self.app.config.mcp
        if self._exposed is None or self._exposed[0] is not mcp:
            self._exposed = (mcp, Exposure(mcp.expose, mcp.resources,
                                           operator=self.app.plugins.operator))
        return self._exposed[1]

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Follow plugin changes; notifications are sent on ``loop``."""
        self._loop = loop
        self._subscriptions = [self.app.events.subscribe(topic, self._on_event)
                               for topic in ("plugin.*", McpToolsChanged)]

    def detach(self) -> None:
        """Stop following plugin changes."""
        for subscription in self._subscriptions:
            self.app.events.unsubscribe(subscription)
        self._subscriptions = []
        self._loop = None
        self._found.clear()  # kept only while plugin changes are counted

    def _on_event(self, event: Event) -> None:
        # Delivered on whatever thread changed the plugin (the folder watcher): hop onto the
        # serving loop, and fold a burst of events (a reload publishes several) into one.
        loop = self._loop
        if event.topic in _CHANGES:
            self._changes += 1
        if event.topic not in _CHANGES or loop is None or self._pending:
            return
        if self.app.plugins.start_loading and not self._listed_early:
            return  # a plugin of the start: every list waits for them, none is out of date
        self._pending = True
        try:
            loop.call_soon_threadsafe(lambda: loop.create_task(self._announce()))
        except RuntimeError:  # the loop closed while stopping
            self._pending = False

    async def _announce(self) -> None:
        self._pending = False
        for session in list(self._peers.values()):
            await session.send_tool_list_changed()  # best effort: never raises
        await self.bus.publish(ToolsListChanged())


def _refuse_missing(tool: Tool, client: CallClient) -> None:
    """2026-07-28: a request needing a capability the client did not declare is refused as a
    whole (SEP-2575), not answered with a tool error."""
    if client.missing:
        raise MCPError(MISSING_CAPABILITY, f"tool '{tool.name}' asks the client for "
                                           f"{client.missing}, which it did not declare",
                       data={"requiredCapabilities": {client.missing: {}}})


def _key(connection: Any) -> str:
    return connection.session_id if connection.session_id is not None else STDIO
