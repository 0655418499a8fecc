"""The plugins in the REST API: list, upload, delete, reload, settings, grants, invoke, MCP
tools and log lines (``/api/v1/plugins...``).

Changes go through :mod:`omnicore.console.plugins.operations` (and :func:`grant`), as the
plugin pages' forms do.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from omnicore.accounts.audit import Actor, record
from omnicore.console import base
from omnicore.console.base import actor, choice, guarded, need, omni, page_params, paginate, state
from omnicore.console.bodies import MAX_JSON_BYTES, decode_text, json_body, read_body
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.live import LEVELS
from omnicore.console.plugins import operations
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError, PluginNotFound
from omnicore.plugins.info import PluginInfo

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.console.auth import Principal
    from omnicore.console.state import ConsoleState

__all__ = ["call_plugin", "capability_names", "grant", "plugin_doc", "routes"]

#: An invoke body's room beyond its input (base64 of it): the JSON around it.
INVOKE_SLACK = 64 * 1024


def plugin_doc(info: PluginInfo) -> dict[str, Any]:
    doc = info.as_dict()
    sdk = info.manifest.get("sdk")
    doc["language"] = sdk.get("language") if isinstance(sdk, dict) else None
    doc["config"] = dict(info.config)
    doc["manifest"] = info.manifest
    doc["breaker"] = info.breaker
    doc["stale"] = info.stale
    doc["loaded_at"] = info.loaded_at
    return doc



@guarded
async def list_plugins(request: Request) -> Response:
    need(request)
    wanted = choice(request, "state", ("loaded", "needs-grant", "failed", "disabled",
                                       "circuit-open", "half-open", "compiling"))
    infos = [plugin_doc(i) for i in omni(request).plugins if wanted in (None, i.state)]
    return JSONResponse(paginate(infos, *page_params(request)))


@guarded
async def get_plugin(request: Request) -> Response:
    need(request)
    return JSONResponse(plugin_doc(omni(request).plugins.get(request.path_params["name"])))


@guarded
async def upload(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    filename = request.query_params.get("filename", "")
    replace = request.query_params.get("replace", "false").lower() in ("1", "true", "yes")
    data = await read_body(request, st.max_upload_bytes)
    info = await st.off_loop(operations.upload_plugin, st.app, filename, data,
                             max_bytes=st.max_upload_bytes, replace=replace,
                             by=actor(request, who))
    return JSONResponse(plugin_doc(info), status_code=201)


@guarded
async def delete(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    await st.off_loop(operations.delete_plugin, st.app, request.path_params["name"],
                      actor(request, who))
    return Response(status_code=204)


@guarded
async def reload(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    info = await st.off_loop(operations.reload_plugin, st.app, request.path_params["name"],
                             actor(request, who))
    return JSONResponse(plugin_doc(info))


def _object(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    if not isinstance(value, dict):
        raise ApiError(422, f"'{key}' must be a JSON object", type="ConfigError")
    return value


@guarded
async def put_enabled(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    enabled = doc.get("enabled")
    if not isinstance(enabled, bool):
        raise ApiError(422, "'enabled' must be true or false", type="ConfigError")
    return await _set_settings(request, who, enabled=enabled)


@guarded
async def put_config(request: Request) -> Response:
    who = need(request, "admin")
    return await _set_settings(request, who, config=_object(await json_body(request), "config"))


@guarded
async def put_limits(request: Request) -> Response:
    who = need(request, "admin")
    return await _set_settings(request, who, limits=_object(await json_body(request), "limits"))


async def _set_settings(request: Request, who: Principal, **change: Any) -> Response:
    """One operator setting of the plugin in the path changed; the plugin as it is now."""
    st = state(request)
    info = await st.off_loop(operations.set_settings, st.app, request.path_params["name"],
                             actor(request, who), **change)
    return JSONResponse(plugin_doc(info))


@guarded
async def get_settings(request: Request) -> Response:
    """The operator's settings of the plugin (what ``omnicore settings show`` prints)."""
    need(request)
    st = state(request)
    return JSONResponse(await st.off_loop(operations.operator_settings, st.app,
                                          request.path_params["name"]))


@guarded
async def clear_settings(request: Request) -> Response:
    """Drop the plugin's operator settings, or only ``?key=``; the settings left."""
    who = need(request, "admin")
    st = state(request)
    doc = await st.off_loop(operations.clear_settings, st.app, request.path_params["name"],
                            actor(request, who), request.query_params.get("key"))
    return JSONResponse(doc)


@guarded
async def put_grant(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    options = doc.get("options")
    if options is not None and not isinstance(options, dict):
        raise ApiError(422, "'options' must be a JSON object", type="ConfigError")
    st = state(request)
    name, cap = request.path_params["name"], request.path_params["capability"]
    if options is None:  # no options: those omnicore.yaml and the sidecar give it, else {}
        options = await st.off_loop(folder_options, st.app, name, cap)
    info = await st.off_loop(grant, st.app, name, cap, options, actor(request, who))
    return JSONResponse(plugin_doc(info))


def folder_options(app: OmniApp, name: str, capability: str) -> dict[str, Any]:
    """The options the app config and the plugin's sidecar grant ``capability`` with
    (``{}`` when they do not grant it): what a grant without options restores."""
    from omnicore.plugins.operator import folder_grant

    source = app.plugins.get(name).source
    settings = app.config.plugins.get(name)
    found = folder_grant(settings.grants if settings is not None else None,
                         Path(source) if source is not None else None, capability)
    return {} if found is None else found


def grant(app: OmniApp, name: str, capability: str, options: dict[str, Any] | None,
          by: Actor) -> PluginInfo:
    """Grant (``options`` a dict) or revoke (None), persisted to the sidecar when the plugin
    has one to write (a plugin loaded from bytes keeps it for this process only); recorded
    in the audit log."""
    _known_capability(app, capability)
    before = app.plugins.get(name)
    persist = before.source is not None
    if options is None:
        info = app.plugins.revoke(name, capability, persist=persist)
    else:
        info = app.plugins.grant(name, capability, options, persist=persist)
    record(app.storage, by, "grant.revoke" if options is None else "grant.add",
           f"{name}/{capability}", before.granted.get(capability), options)
    return info


def _known_capability(app: OmniApp, capability: str) -> None:
    names = capability_names(app)
    if capability not in names:
        raise ApiError(404, f"no capability {capability[:60]!r} on this host (it has "
                            f"{', '.join(names)})", type="UnknownCapability")


def capability_names(app: OmniApp) -> list[str]:
    return sorted(cap.name for cap in app.extensions.capabilities())


@guarded
async def delete_grant(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    name, cap = request.path_params["name"], request.path_params["capability"]
    info = await st.off_loop(grant, st.app, name, cap, None, actor(request, who))
    return JSONResponse(plugin_doc(info))


@guarded
async def invoke(request: Request) -> Response:
    # need() written out, and each lookup made once: scripts call this in a loop, and every
    # Python call is a share of the request's CPU (issue 63, bench/bench_invoke.py).
    st, name = state(request), request.path_params["name"]
    st.auth.require(request, "admin")
    # One input limit: the body may carry what the plugin takes (base64 and JSON around it),
    # still capped as it streams in, before the whole body is read. An unknown plugin is
    # answered 404 after the body's own checks (call_plugin), as before.
    try:
        limits = st.app.plugins.limits_of(name)
    except PluginNotFound:
        limits = None
    cap = max_input = None
    if limits is not None:
        max_input = limits.max_input_bytes
        cap = max(MAX_JSON_BYTES, max_input * 4 // 3 + INVOKE_SLACK)
    try:
        doc = await json_body(request, cap or MAX_JSON_BYTES)
    except ApiError as exc:
        if exc.status != 413 or max_input is None:
            raise
        raise ApiError(413, f"the input is over plugin '{name}''s limits.max_input_bytes "
                            f"({max_input} bytes); raise it in its sidecar or "
                            f"plugins.{name}.limits (omnicore.yaml)", type="InputTooLarge",
                       plugin=name, headers=exc.headers) from None
    return JSONResponse(await call_plugin(st, name, doc))


async def call_plugin(st: ConsoleState, name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Run one call from an invoke request: ``handler``, ``input``, ``encoding``."""
    handler = doc.get("handler")
    text = doc.get("input", "")
    encoding = doc.get("encoding", "text")
    if not isinstance(handler, str) or not handler:
        raise ApiError(422, "'handler' must name one of the plugin's handlers",
                       type="BadRequest")
    data = decode_text(text, encoding, "input")
    st.app.plugins.require(name)  # a 404 before anything else (a lookup, no snapshot)
    start = time.perf_counter()
    try:
        out = await st.app.plugins.acall(name, handler, data)
    except OmniError as exc:
        ms = round((time.perf_counter() - start) * 1000, 3)
        raise from_omni(exc, duration_ms=ms) from exc
    ms = round((time.perf_counter() - start) * 1000, 3)
    try:
        return {"output": out.decode(), "encoding": "text", "duration_ms": ms}
    except UnicodeDecodeError:
        return {"output": base64.b64encode(out).decode(), "encoding": "base64",
                "duration_ms": ms}


@guarded
async def get_mcp(request: Request) -> Response:
    """The plugin's handlers as MCP tools: name, and whether (and by what) each is exposed."""
    from omnicore.mcp.expose import handler_tools

    need(request)
    st = state(request)
    tools = await st.off_loop(handler_tools, st.app, request.path_params["name"])
    return JSONResponse({"items": [t.as_dict() for t in tools]})


@guarded
async def set_mcp(request: Request) -> Response:
    """PUT exposes one handler as an MCP tool, DELETE hides it (the plugin's sidecar)."""
    from omnicore.mcp.expose import set_exposed

    who = need(request, "admin")
    st = state(request)
    tools = await st.off_loop(set_exposed, st.app, request.path_params["name"],
                              request.path_params["handler"], request.method == "PUT",
                              by=who.user.name, origin=actor(request, who).origin)
    return JSONResponse({"items": [t.as_dict() for t in tools]})


@guarded
async def plugin_logs(request: Request) -> Response:
    need(request)
    level = choice(request, "level", LEVELS)
    lines = omni(request).plugins.logs(request.path_params["name"]).lines()
    floor = LEVELS.index(level) if level else 0
    items = [{"time": ln.time, "level": ln.level, "message": ln.message} for ln in lines
             if ln.level not in LEVELS or LEVELS.index(ln.level) >= floor]
    items.reverse()  # newest first
    return JSONResponse(paginate(items, *page_params(request, 100)))


def routes() -> list[BaseRoute]:
    return [
        # First: it is the route scripts call in a loop, and the router tries routes in
        # order. It shadows none: no other pattern matches /plugins/X/invoke ({name} takes
        # no "/").
        *base.api("/plugins/{name}/invoke", POST=invoke),
        *base.api("/plugins", GET=list_plugins, POST=upload),
        *base.api("/plugins/{name}", GET=get_plugin, DELETE=delete),
        *base.api("/plugins/{name}/reload", POST=reload),
        *base.api("/plugins/{name}/enabled", PUT=put_enabled),
        *base.api("/plugins/{name}/config", PUT=put_config),
        *base.api("/plugins/{name}/limits", PUT=put_limits),
        *base.api("/plugins/{name}/settings", GET=get_settings, DELETE=clear_settings),
        *base.api("/plugins/{name}/grants/{capability}", PUT=put_grant, DELETE=delete_grant),
        *base.api("/plugins/{name}/mcp", GET=get_mcp),
        *base.api("/plugins/{name}/mcp/{handler}", PUT=set_mcp, DELETE=set_mcp),
        *base.api("/plugins/{name}/logs", GET=plugin_logs),
    ]
