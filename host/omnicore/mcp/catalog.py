"""What the MCP server offers besides tools: the prompts and resources plugins declare in
their manifests (omnicore.mcp.declared), each served by calling one of their handlers; the
plugins' memories and vectors as resources (omnicore.mcp.resources, off unless
``mcp.resources``); and completions (none: no prompt or resource template has arguments to
complete, so ``completion/complete`` answers an empty list).

A prompt's handler may ask the client like a tool's (specs/abi.md §4.13): on 2026-07-28 its
questions come back as an ``input_required`` result, in the same signed rounds as tool calls
(:class:`~omnicore.mcp.rounds.Rounds`, shared with the tool server). Rendering a prompt or
reading a declared resource calls a plugin, which only an admin may; a subscription to a
declared resource is accepted and kept per connection (the plugins announce no updates yet).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from omnicore.capabilities.mcp import CLIENT
from omnicore.errors import OmniError
from omnicore.mcp.callclient import CallClient
from omnicore.mcp.context import caller_of, name_of
from omnicore.mcp.declared import Declared, declared_of
from omnicore.mcp.resources import list_resources, read_resource
from omnicore.mcp.rounds import MODERN, Rounds
from omnicore.mcp.tools import Exposure

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["Catalog"]

#: Subscriptions one connection may hold.
MAX_WATCHED = 1000


class Catalog:
    """The prompts, resources and completions of ``app``'s plugins, for one tool server:
    register its ``list_*``, ``get_prompt``, ``read_resource``, ``subscribe``,
    ``unsubscribe`` and ``complete`` as the SDK server's handlers. ``exposure()``: what the
    app's ``mcp`` config exposes now; ``rounds``: the server's ``input_required`` rounds."""

    def __init__(self, app: OmniApp, exposure: Callable[[], Exposure], rounds: Rounds) -> None:
        self.app = app
        self._exposure = exposure
        self._rounds = rounds
        #: The resource URIs each connection subscribed to (resources/subscribe).
        self._watched: dict[int, set[str]] = {}

    def declared(self) -> Declared:
        """The exposed prompts and resources plugins declare."""
        return declared_of(self.app.plugins, self._exposure())

    async def _declared(self) -> Declared:
        """:meth:`declared` once the start's plugins are loaded (at most
        ``sandbox.load_wait_ms``), as ``tools/list`` waits for them: ``omnicore mcp``
        answers the handshake while its folder loads, and an agent lists prompts and
        resources right after it. Unlike tools, their lists have no ``list_changed`` here (the
        server declares none): a list answered without the plugins still loading stayed so
        for the session, and a prompt or resource of one answered "no prompt" or "no
        resource"."""
        await self.app.plugins.start_loaded()
        return self.declared()

    async def list_prompts(self, ctx: ServerRequestContext[Any, Any],
                           params: types.PaginatedRequestParams | None
                           ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[p.prompt for p in
                                                (await self._declared()).prompts.values()])

    async def get_prompt(self, ctx: ServerRequestContext[Any, Any],
                         params: types.GetPromptRequestParams) -> types.GetPromptResult:
        caller = caller_of(ctx)
        if caller is not None and not caller.is_admin:
            raise MCPError(-32602, f"user '{caller.name}' is a viewer, and rendering a prompt "
                                   "calls a plugin: use an admin's token")
        prompt = (await self._declared()).prompts.get(params.name)
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
                                await self._rounds.answers(params, name_of(caller), "prompt"))
        token = CLIENT.set(client)
        try:
            value = await self._render(prompt.plugin, prompt.handler, params.arguments or {})
        except MCPError:
            if client is None or not client.pending:
                raise
        finally:
            CLIENT.reset(token)
        if client is not None and client.pending:
            return await self._rounds.input_required(  # type: ignore[return-value]
                client, params, name_of(caller), "prompt")
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

    async def complete(self, ctx: ServerRequestContext[Any, Any],
                       params: types.CompleteRequestParams) -> types.CompleteResult:
        return types.CompleteResult(completion=types.Completion(values=[], total=0,
                                                                has_more=False))

    async def list_resources(self, ctx: ServerRequestContext[Any, Any],
                             params: types.PaginatedRequestParams | None
                             ) -> types.ListResourcesResult:
        declared = [r.resource for r in (await self._declared()).resources
                    if r.resource is not None]
        return types.ListResourcesResult(resources=declared + list_resources(self.app.plugins,
                                                                             self._exposure()))

    async def list_templates(self, ctx: ServerRequestContext[Any, Any],
                             params: types.PaginatedRequestParams | None
                             ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[
            r.template for r in (await self._declared()).resources if r.template is not None])

    async def subscribe(self, ctx: ServerRequestContext[Any, Any],
                        params: types.SubscribeRequestParams) -> types.EmptyResult:
        # Accepted for the plugins' resources; updates come when a plugin can announce them
        # (not yet), so a subscription is a promise the server keeps by saying nothing.
        if (await self._declared()).resource(params.uri) is None:
            raise MCPError(-32002, f"no resource {params.uri[:200]!r} to subscribe to: "
                                   "resources/list shows them")
        connection = ctx.session._connection
        key = id(connection)
        if key not in self._watched:
            self._watched[key] = set()
            connection.exit_stack.callback(self._watched.pop, key, None)
        if len(self._watched[key]) >= MAX_WATCHED:
            raise MCPError(-32602, f"at most {MAX_WATCHED} subscriptions per connection")
        self._watched[key].add(params.uri)
        return types.EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any],
                          params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self._watched.get(id(ctx.session._connection), set()).discard(params.uri)
        return types.EmptyResult()

    async def read_resource(self, ctx: ServerRequestContext[Any, Any],
                            params: types.ReadResourceRequestParams
                            ) -> types.ReadResourceResult:
        found = (await self._declared()).resource(params.uri)
        if found is not None:
            caller = caller_of(ctx)
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
        text = await anyio.to_thread.run_sync(read_resource, self.app, infos, self._exposure(),
                                              params.uri)
        if text is None:
            raise MCPError(-32002, f"no resource {params.uri[:200]!r}: resources are "
                                   "omnicore://PLUGIN/memory and omnicore://PLUGIN/vectors of "
                                   "plugins with mcp.resources on; resources/list shows them")
        return types.ReadResourceResult(contents=[types.TextResourceContents(
            uri=params.uri, mime_type="application/json", text=text)])
