"""The MCP server over an app's plugins, built on the official SDK's low-level ``Server``.

``tools/list`` answers the exposed handlers of the plugins that can be called
(:mod:`omnicore.mcp.tools`); ``tools/call`` runs one through ``app.plugins.acall`` (the async
twin of ``call_json``: the same grants, limits, deadline and breaker, on the plugin's own
worker threads) with the tool's arguments as the handler's JSON input. The output comes back as
the first text content, and as structured content too when it is a JSON object. A failure of
the call (trap, deadline, limit, needs-grant, the handler's own error) is a tool result with
``isError`` and the host's one-line message; the server keeps serving. A tool with an output
schema whose output does not match it answers a tool error too.

A call reports progress (start and finish) when the request carries ``_meta.progressToken``;
after ``logging/setLevel``, the plugin's log lines of the call at or above that level reach
the client as ``notifications/message`` before the result. ``completion/complete`` answers an
empty list: no prompt or resource template has arguments to complete; ``prompts/list`` is
empty (plugins declare no prompts yet) and ``prompts/get`` an invalid-params error.

Any call may run as a durable job, an MCP task (omnicore.mcp.tasks): the client asks for one
(2025-11-25), or the tool is long-running (its manifest's ``long_running``).

When plugins load, reload or unload (or the console exposes or hides a handler), every
connected client gets ``notifications/tools/list_changed``: on the handshake protocol
revisions over its connection, on 2026-07-28 through the ``subscriptions/listen`` stream it
opened.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.shared.exceptions import MCPError
from mcp_types import methods as _methods

from omnicore import __version__
from omnicore.capabilities.mcp import CLIENT
from omnicore.core.events import Event
from omnicore.errors import OmniError
from omnicore.mcp.callclient import CallClient
from omnicore.mcp.context import Caller, McpApp
from omnicore.mcp.declared import Declared, declared_of
from omnicore.mcp.expose import McpToolsChanged
from omnicore.mcp.resources import list_resources, read_resource
from omnicore.mcp.results import Listing, content_result, output_result, tool_error
from omnicore.mcp.rounds import Rounds, StateKey
from omnicore.mcp.tasks import Tasks
from omnicore.mcp.tools import LISTED_STATES, Exposure, Tool, output_problem, tools_of
from omnicore.sandbox.logring import LogLine

__all__ = ["CALLER_KEY", "STDIO", "Caller", "McpApp", "ToolServer"]

#: Where the HTTP endpoint leaves the authenticated :class:`Caller` in the ASGI scope.
CALLER_KEY = "omnicore.mcp.caller"
#: The session key of the one connection of a process serving stdio (it has no session id).
STDIO = ""
#: MCP's log levels, least severe first.
_SEVERITY = {level: i for i, level in enumerate(
    ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"))}
#: A plugin log's levels as MCP's (trace is finer than MCP goes: debug).
_MCP_LEVEL: dict[str, types.LoggingLevel] = {
    "trace": "debug", "debug": "debug", "info": "info", "warn": "warning", "error": "error"}
#: The first protocol revision without a handshake (each request declares its client's
#: capabilities), and its error for a request that needs one the client did not declare.
MODERN = "2026-07-28"
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

    def __init__(self, app: McpApp, *, tasks: bool = True) -> None:
        self.app = app
        self._exposed: tuple[object, Exposure] | None = None
        self.bus = InMemorySubscriptionBus()
        self.server: Server[Any] = _Server(
            "omnicore", version=__version__,
            description=f"the WebAssembly plugins of app '{app.config.name}' as tools",
            on_list_tools=self._list_tools, on_call_tool=self._call_tool,
            on_list_resources=self._list_resources, on_read_resource=self._read_resource,
            on_list_resource_templates=self._list_templates,
            on_subscribe_resource=self._subscribe, on_unsubscribe_resource=self._unsubscribe,
            on_completion=self._complete, on_list_prompts=self._list_prompts,
            on_get_prompt=self._get_prompt, on_subscriptions_listen=ListenHandler(self.bus))
        # Registered by hand: the constructor's argument warns that the 2026-07-28 revision
        # deprecates logging, which the handshake revisions still have.
        self.server.add_request_handler("logging/setLevel", types.SetLevelRequestParams,
                                        self._set_level)
        self.server.middleware.append(self._track_peers)
        #: The input_required rounds of tool calls and prompts (2026-07-28).
        self.rounds = Rounds(StateKey(lambda: app.storage.mcp_tasks))
        #: Calls as durable jobs: tasks/* and task-mode tools/call (None: this process runs
        #: no jobs, as over stdio; long-running tools are called like any other there).
        self.tasks: Tasks | None = None
        if tasks:
            self.tasks = Tasks(self, _caller)
            self.tasks.install()
        #: The log level each connection asked for (logging/setLevel), by connection.
        self._levels: dict[int, int] = {}
        #: The connections that asked for a log level, by :data:`STDIO` or HTTP session id.
        self._logging_sessions: set[str] = set()
        #: The connections past their handshake (the same keys), with the protocol revision
        #: negotiated.
        self._ready: dict[str, str] = {}
        #: Each plugin's tools in their wire forms (:meth:`_listings`).
        self._listing: dict[str, Listing] = {}
        #: Handshake-era clients, told about list changes over their own connection.
        self._peers: dict[int, ServerSession] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscriptions: list[Any] = []
        self._pending = False
        #: The resource URIs each connection subscribed to (resources/subscribe).
        self._watched: dict[int, set[str]] = {}

    # -- tools ---------------------------------------------------------------------------

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
        return types.ListToolsResult(tools=[t for listing in self._listings()
                                            for t in listing.listed])

    def resolve(self, name: str) -> Tool | None:
        """The exposed tool ``name``, whatever its plugin's state (a needs-grant plugin's tool
        answers with the grant it needs rather than "unknown tool")."""
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

    def callable(self, name: str, caller: Caller | None) -> Tool | types.CallToolResult:
        """The tool ``name`` if ``caller`` may call it, else the tool error that says why."""
        if caller is not None and not caller.is_admin:
            return tool_error(f"user '{caller.name}' is a viewer, and calling a plugin needs an "
                          f"admin; use an admin's token (omnicore users token NAME)")
        # An OAuth caller (omnicore.oauth.OAuthCaller) may call the tools it was granted.
        granted: frozenset[str] | None = getattr(caller, "tools", None)
        if caller is not None and granted is not None and name not in granted:
            return tool_error(f"tool '{name}' is not among those {caller.name} approved for this "
                          "agent; approve it again (a new sign-in) to add the tools exposed "
                          "since")
        tool = self.resolve(name)
        if tool is None:
            return tool_error(f"no tool '{name}': it is not an exposed handler of a loaded "
                          "plugin (mcp.expose in omnicore.yaml or the plugin's sidecar); "
                          "tools/list shows the tools")
        return tool

    async def _run(self, tool: Tool, arguments: dict[str, Any] | None,
                   caller: Caller | None, client: CallClient | None = None
                   ) -> types.CallToolResult:
        if tool.long_running and self.tasks is not None:
            return await self.tasks.run_durable(tool, arguments, caller)
        return await self._inline(tool, arguments, client)

    async def _inline(self, tool: Tool, arguments: dict[str, Any] | None,
                      client: CallClient | None) -> types.CallToolResult:
        """``tool`` called here, its questions put to ``client``."""
        data = json.dumps(arguments or {}, separators=(",", ":")).encode()
        token = CLIENT.set(client)  # acall runs the plugin in a copy of this context
        try:
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
        sha = self.app.plugins.get(tool.plugin).sha256 if tool.plugin in self.app.plugins \
            else None
        problem = output_problem(tool, sha, result.structured_content)
        return tool_error(problem) if problem else result

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any],
                         params: types.CallToolRequestParams) -> types.CallToolResult:
        caller = _caller(ctx)
        tool = self.callable(params.name, caller)
        if isinstance(tool, types.CallToolResult):
            return tool
        level = self._levels.get(id(ctx.session._connection))
        log = self.app.plugins.logs(tool.plugin) if level is not None else None
        mark = log.written if log is not None else 0
        meta = ctx.meta
        asked_progress = meta is not None and meta.get("progress_token",
                                                        meta.get("progressToken")) is not None
        client = None
        if "mcp" in self.app.plugins.get(tool.plugin).granted:
            answers = await self.rounds.answers(params, _name(caller), "tool") \
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
                    client, params, _name(caller), "tool")
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
                            await self.rounds.answers(params, _name(caller), "tool"),
                            escalate=True)
        result = await self._inline(tool, params.arguments, client)
        if client.escalated:
            return {**(client.answers or {}), **client.used}
        if client.pending:
            return await self.rounds.input_required(client, params, _name(caller), "tool")
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
            result = tool if isinstance(tool, types.CallToolResult) else \
                await self._run(tool, params.arguments, caller)
            dumped = result.model_dump(by_alias=True, mode="json", exclude_none=True)
            wire = _methods.serialize_server_result("tools/call", version, dumped)
            return head + json.dumps(wire, separators=(",", ":")).encode() + b"}"

        async def listing() -> bytes:
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
            if plugin and "mcp" in self.app.plugins.get(plugin).granted:
                return True  # it may ask the client, or report progress
        meta = params.get("_meta") if isinstance(params, dict) else None
        return isinstance(meta, dict) and meta.get("progressToken") is not None

    # -- prompts and plugin resources (declared in manifests: omnicore.mcp.declared) -----

    def declared(self) -> Declared:
        """The exposed prompts and resources plugins declare."""
        return declared_of(self.app.plugins, self.exposure)

    async def _list_prompts(self, ctx: ServerRequestContext[Any, Any],
                            params: types.PaginatedRequestParams | None
                            ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[p.prompt for p in
                                                self.declared().prompts.values()])

    async def _get_prompt(self, ctx: ServerRequestContext[Any, Any],
                          params: types.GetPromptRequestParams) -> types.GetPromptResult:
        caller = _caller(ctx)
        if caller is not None and not caller.is_admin:
            raise MCPError(-32602, f"user '{caller.name}' is a viewer, and rendering a prompt "
                                   "calls a plugin: use an admin's token")
        prompt = self.declared().prompts.get(params.name)
        if prompt is None:
            raise MCPError(-32602, f"no prompt {params.name[:200]!r}: prompts/list shows the "
                                   "prompts of the exposed plugins")
        missing = [a.name for a in prompt.prompt.arguments or ()
                   if a.required and a.name not in (params.arguments or {})]
        if missing:
            raise MCPError(-32602, f"prompt {params.name!r} needs the argument(s) "
                                   f"{', '.join(missing)}")
        client = None
        if ctx.protocol_version >= MODERN and "mcp" in self.app.plugins.get(prompt.plugin).granted:
            # 2026-07-28: a prompt's handler may ask the client too (SEP-2322).
            client = CallClient(asyncio.get_running_loop(), ctx, False,
                                await self.rounds.answers(params, _name(caller), "prompt"))
        token = CLIENT.set(client)
        try:
            value = await self._render(prompt.plugin, prompt.handler, params.arguments or {})
        except MCPError:
            if client is None or not client.pending:
                raise
        finally:
            CLIENT.reset(token)
        if client is not None and client.pending:
            return await self.rounds.input_required(  # type: ignore[return-value]
                client, params, _name(caller), "prompt")
        try:
            return types.GetPromptResult.model_validate(value, by_name=False)
        except ValueError:
            raise MCPError(-32603, f"handler '{prompt.handler}' of plugin '{prompt.plugin}' "
                                   "did not answer a prompt ({\"messages\": [...]})") from None

    async def _render(self, plugin: str, handler: str, obj: object) -> Any:
        """``handler`` of ``plugin`` called with ``obj``, its JSON answer; a failure is an
        internal error with the host's one-line reason."""
        data = json.dumps(obj, separators=(",", ":")).encode()
        try:
            out = await self.app.plugins.acall(plugin, handler, data)
            return json.loads(out)
        except OmniError as exc:
            raise MCPError(-32603, str(exc).strip().partition("\n")[0]) from None
        except ValueError:
            raise MCPError(-32603, f"handler '{handler}' of plugin '{plugin}' answered no "
                                   "JSON") from None

    # -- completions (no prompts or resource templates have arguments to complete) -------

    async def _complete(self, ctx: ServerRequestContext[Any, Any],
                        params: types.CompleteRequestParams) -> types.CompleteResult:
        return types.CompleteResult(completion=types.Completion(values=[], total=0,
                                                                has_more=False))

    # -- resources (read-only; off unless mcp.resources) ---------------------------------

    async def _list_resources(self, ctx: ServerRequestContext[Any, Any],
                              params: types.PaginatedRequestParams | None
                              ) -> types.ListResourcesResult:
        declared = [r.resource for r in self.declared().resources if r.resource is not None]
        return types.ListResourcesResult(resources=declared + list_resources(self.app.plugins,
                                                                             self.exposure))

    async def _list_templates(self, ctx: ServerRequestContext[Any, Any],
                              params: types.PaginatedRequestParams | None
                              ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[
            r.template for r in self.declared().resources if r.template is not None])

    async def _subscribe(self, ctx: ServerRequestContext[Any, Any],
                         params: types.SubscribeRequestParams) -> types.EmptyResult:
        # Accepted for the plugins' resources; updates come when a plugin can announce them
        # (not yet), so a subscription is a promise the server keeps by saying nothing.
        if self.declared().resource(params.uri) is None:
            raise MCPError(-32002, f"no resource {params.uri[:200]!r} to subscribe to: "
                                   "resources/list shows them")
        connection = ctx.session._connection
        key = id(connection)
        if key not in self._watched:
            self._watched[key] = set()
            connection.exit_stack.callback(self._watched.pop, key, None)
        if len(self._watched[key]) >= 1000:
            raise MCPError(-32602, "at most 1000 subscriptions per connection")
        self._watched[key].add(params.uri)
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any, Any],
                           params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self._watched.get(id(ctx.session._connection), set()).discard(params.uri)
        return types.EmptyResult()

    async def _read_resource(self, ctx: ServerRequestContext[Any, Any],
                             params: types.ReadResourceRequestParams
                             ) -> types.ReadResourceResult:
        found = self.declared().resource(params.uri)
        if found is not None:
            caller = _caller(ctx)
            if caller is not None and not caller.is_admin:
                raise MCPError(-32602, f"user '{caller.name}' is a viewer, and reading this "
                                       "resource calls a plugin: use an admin's token")
            entry, variables = found
            value = await self._render(entry.plugin, entry.handler,
                                       {"uri": params.uri, "params": variables})
            contents = value.get("contents") if isinstance(value, dict) else None
            try:
                return types.ReadResourceResult.model_validate({"contents": [
                    {"uri": params.uri, **({"mimeType": entry.mime_type}
                                           if entry.mime_type else {}), **c}
                    for c in contents if isinstance(c, dict)]} if isinstance(contents, list)
                    else None, by_name=False)
            except ValueError:
                raise MCPError(-32603, f"handler '{entry.handler}' of plugin '{entry.plugin}' "
                                       "did not answer resource contents ({\"contents\": "
                                       "[...]})") from None
        infos = {info.name: info for info in self.app.plugins}
        text = await anyio.to_thread.run_sync(read_resource, self.app, infos, self.exposure,
                                              params.uri)
        if text is None:
            raise MCPError(-32002, f"no resource {params.uri[:200]!r}: resources are "
                                   "omnicore://PLUGIN/memory and omnicore://PLUGIN/vectors of "
                                   "plugins with mcp.resources on; resources/list shows them")
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=params.uri, mime_type="application/json", text=text)])

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

    def _on_event(self, event: Event) -> None:
        # Delivered on whatever thread changed the plugin (the folder watcher): hop onto the
        # serving loop, and fold a burst of events (a reload publishes several) into one.
        loop = self._loop
        if event.topic not in _CHANGES or loop is None or self._pending:
            return
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


def _name(caller: Caller | None) -> str:
    """Whom a request's signed state is bound to ("" over stdio: the operator)."""
    return caller.name if caller is not None else ""


def _key(connection: Any) -> str:
    return connection.session_id if connection.session_id is not None else STDIO


def _caller(ctx: ServerRequestContext[Any, Any]) -> Caller | None:
    request = ctx.request
    scope = getattr(request, "scope", None)
    caller: Caller | None = scope.get(CALLER_KEY) if isinstance(scope, dict) else None
    return caller
