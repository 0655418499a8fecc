"""The REST API under ``/api/v1`` (documented by :mod:`omnicore.console.openapi`).

Everything the pages do goes through the same functions here or in
:mod:`omnicore.console.operations`. Reads need any signed-in user; every change needs an
admin. Lists are paginated with ``limit`` / ``offset`` and answer
``{"items": [...], "total": n, "limit": l, "offset": o}``. Failures use the one error shape
of :mod:`omnicore.console.errors`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from omnicore.config import render_config
from omnicore.console import operations
from omnicore.console.audit import Actor, record
from omnicore.console.auth import Principal
from omnicore.console.bodies import MAX_JSON_BYTES, json_body, read_body
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.live import LEVELS, TooManySubscribers
from omnicore.console.responses import JSONResponse
from omnicore.console.state import ConsoleState
from omnicore.errors import OmniError
from omnicore.plugins.info import PluginInfo

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["routes"]

MAX_PAGE = 500
Handler = Callable[[Request], Awaitable[Response]]


def state(request: Request) -> ConsoleState:
    st: ConsoleState = request.app.state.console
    return st


def omni(request: Request) -> OmniApp:
    return state(request).app


def need(request: Request, role: str = "viewer") -> Principal:
    """Who asks, checked for ``role`` and (changes) the CSRF token in the header: every API
    route calls it before reading the body."""
    return state(request).auth.require(request, "admin" if role == "admin" else "viewer")


def page_params(request: Request, default: int = 50) -> tuple[int, int]:
    def number(key: str, fallback: int, low: int, high: int) -> int:
        raw = request.query_params.get(key)
        if raw is None or raw == "":
            return fallback
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"query parameter {key} must be an integer, got {raw[:40]!r}",
                           type="BadParameter") from None
        if not low <= value <= high:
            raise ApiError(400, f"query parameter {key} must be within {low}..{high}",
                           type="BadParameter")
        return value

    return number("limit", default, 1, MAX_PAGE), number("offset", 0, 0, 1 << 31)


def paginate(items: Sequence[Any], limit: int, offset: int) -> dict[str, Any]:
    return {"items": list(items[offset:offset + limit]), "total": len(items), "limit": limit,
            "offset": offset}


def choice(request: Request, key: str, allowed: Sequence[str]) -> str | None:
    value = request.query_params.get(key) or None
    if value is not None and value not in allowed:
        raise ApiError(400, f"query parameter {key} must be one of {', '.join(allowed)}",
                       type="BadParameter")
    return value


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


def guarded(fn: Handler) -> Handler:
    """Turn omnicore errors into the API's error shape."""
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except OmniError as exc:
            await _drain(request)
            raise from_omni(exc) from exc
        except ApiError as exc:
            if exc.status not in (408, 413):
                await _drain(request)
            raise
    wrapper.__name__ = fn.__name__
    return wrapper


async def _drain(request: Request) -> None:
    """Read what is left of a small body before answering early (a refused request): a
    client that is still sending would otherwise see the connection dropped."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) <= MAX_JSON_BYTES:
        with contextlib.suppress(Exception):
            await request.body()


# -- the host ------------------------------------------------------------------------------

def overview(app: OmniApp) -> dict[str, Any]:
    states: dict[str, int] = {}
    for info in app.plugins:
        states[info.state] = states.get(info.state, 0) + 1
    return {"name": app.name, "runtime_id": app.runtime_id, "state": app.state.value,
            "uptime_s": round(app.uptime, 1), "started_at": app.started_at,
            "environment": app.config.environment or _environment(), "plugins": len(app.plugins),
            "plugins_by_state": states, "data_dir": str(app.data_dir),
            "plugins_dir": str(app.config.plugins_dir)}


def _environment() -> str:
    from omnicore.adapters import detect

    return detect().kind


@guarded
async def get_info(request: Request) -> Response:
    need(request)
    return JSONResponse(overview(omni(request)))


@guarded
async def get_health(request: Request) -> Response:
    need(request)
    return JSONResponse(omni(request).health.check().to_dict())


@guarded
async def get_settings(request: Request) -> Response:
    need(request)
    rows = render_config(omni(request).config, mask=True)
    return JSONResponse(paginate([{"key": k, "value": v, "source": s} for k, v, s in rows],
                                 *page_params(request, MAX_PAGE)))


@guarded
async def get_me(request: Request) -> Response:
    who = need(request)
    return JSONResponse({"name": who.user.name, "role": who.user.role, "via": who.via,
                         "csrf": who.csrf})


# -- plugins -------------------------------------------------------------------------------

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
                             by=Actor.of(request, who))
    return JSONResponse(plugin_doc(info), status_code=201)


@guarded
async def delete(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    await st.off_loop(operations.delete_plugin, st.app, request.path_params["name"],
                      Actor.of(request, who))
    return Response(status_code=204)


@guarded
async def reload(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    info = await st.off_loop(operations.reload_plugin, st.app, request.path_params["name"],
                             Actor.of(request, who))
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
    st = state(request)
    info = await st.off_loop(operations.set_settings, st.app, request.path_params["name"],
                             Actor.of(request, who), enabled=enabled)
    return JSONResponse(plugin_doc(info))


@guarded
async def put_config(request: Request) -> Response:
    who = need(request, "admin")
    config = _object(await json_body(request), "config")
    st = state(request)
    info = await st.off_loop(operations.set_settings, st.app, request.path_params["name"],
                             Actor.of(request, who), config=config)
    return JSONResponse(plugin_doc(info))


@guarded
async def put_limits(request: Request) -> Response:
    who = need(request, "admin")
    limits = _object(await json_body(request), "limits")
    st = state(request)
    info = await st.off_loop(operations.set_settings, st.app, request.path_params["name"],
                             Actor.of(request, who), limits=limits)
    return JSONResponse(plugin_doc(info))


@guarded
async def put_grant(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    options = doc.get("options", {})
    if not isinstance(options, dict):
        raise ApiError(422, "'options' must be a JSON object", type="ConfigError")
    st = state(request)
    name, cap = request.path_params["name"], request.path_params["capability"]
    info = await st.off_loop(grant, st.app, name, cap, options, Actor.of(request, who))
    return JSONResponse(plugin_doc(info))


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
    info = await st.off_loop(grant, st.app, name, cap, None, Actor.of(request, who))
    return JSONResponse(plugin_doc(info))


@guarded
async def invoke(request: Request) -> Response:
    need(request, "admin")
    doc = await json_body(request)
    return JSONResponse(await call_plugin(state(request), request.path_params["name"], doc))


async def call_plugin(st: ConsoleState, name: str, doc: dict[str, Any]) -> dict[str, Any]:
    """Run one call from an invoke request: ``handler``, ``input``, ``encoding``."""
    handler = doc.get("handler")
    text = doc.get("input", "")
    encoding = doc.get("encoding", "text")
    if not isinstance(handler, str) or not handler:
        raise ApiError(422, "'handler' must name one of the plugin's handlers",
                       type="BadRequest")
    if not isinstance(text, str):
        raise ApiError(422, "'input' must be a string (text, or base64 with "
                            "encoding=base64)", type="BadRequest")
    if encoding == "text":
        data = text.encode()
    elif encoding == "base64":
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, "'input' is not valid base64", type="BadRequest") from None
    else:
        raise ApiError(422, "'encoding' must be text or base64", type="BadRequest")
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
                              by=who.user.name, origin=Actor.of(request, who).origin)
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


# -- live feed -----------------------------------------------------------------------------

def feed_filters(request: Request) -> dict[str, Any]:
    kinds = [k for k in request.query_params.getlist("kind") if k]
    for k in kinds:
        if k not in ("log", "host", "event"):
            raise ApiError(400, "query parameter kind must be log, host or event",
                           type="BadParameter")
    return {"plugin": request.query_params.get("plugin") or None,
            "level": choice(request, "level", LEVELS), "kinds": kinds}


@guarded
async def recent_events(request: Request) -> Response:
    need(request)
    entries = state(request).feed.recent(**feed_filters(request), limit=None)
    entries.reverse()
    return JSONResponse(paginate([e.as_dict() for e in entries], *page_params(request, 100)))


@guarded
async def stream(request: Request) -> Response:
    need(request)
    try:
        raw = request.query_params.get("backlog") or "100"
        if not raw.isdecimal() or int(raw) > 1000:
            raise ApiError(400, "query parameter backlog must be an integer from 0 to 1000",
                           type="BadParameter")
        frames = state(request).feed.stream(**feed_filters(request), backlog=int(raw))
    except TooManySubscribers as exc:
        raise ApiError(429, f"{exc}; close a live view and retry") from None
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def run_version(app: OmniApp, run_id: int) -> str:
    """What changes when workflow run ``run_id`` or one of its steps moves."""
    try:
        run = app.workflows.get_run(run_id)
        steps = app.workflows.steps(run_id)
    except OmniError:
        return "gone"
    return f"{run.state}|" + ",".join(f"{s.step}.{s.index}:{s.state}" for s in steps)


@guarded
async def live(request: Request) -> Response:
    """One page's stream of live figures (:mod:`omnicore.console.pulse`), with the log feed
    when ``feed=1``."""
    need(request)
    st = state(request)
    q = request.query_params
    scope = q.get("scope") or "host"
    run = scope.removeprefix("run:")
    if scope not in ("host", "plugins") and not scope.startswith("plugin:") and not (
            scope.startswith("run:") and run.isdecimal() and int(run) < 1 << 62):
        raise ApiError(400, "query parameter scope must be host, plugins, plugin:NAME or "
                            "run:ID", type="BadParameter")
    versions = [v for v in q.getlist("version") if v][:8]
    filters = feed_filters(request)
    try:
        frames = st.pulse.stream(scope, versions, (lambda: st.feed.stream(
            **filters, backlog=100)) if q.get("feed") == "1" else None,
            (lambda: {"version.run": run_version(st.app, int(run))})
            if scope.startswith("run:") else None)
    except TooManySubscribers as exc:
        raise ApiError(429, f"{exc}; close a live page and retry") from None
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


# -- users and tokens ----------------------------------------------------------------------

@guarded
async def list_users(request: Request) -> Response:
    need(request, "admin")
    users = state(request).auth.store.users()
    return JSONResponse(paginate([{"name": u.name, "role": u.role, "created": u.created}
                                  for u in users], *page_params(request)))


@guarded
async def add_user(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    st = state(request)
    name, password, role = doc.get("name"), doc.get("password"), doc.get("role", "viewer")
    if not all(isinstance(v, str) for v in (name, password, role)):
        raise ApiError(422, "'name', 'password' and 'role' must be strings", type="ConfigError")
    user = await st.auth.hashing(st.auth.store.add, name, password, role)
    record(st.app.storage, Actor.of(request, who), "user.add", f"user:{user.name}", None,
           {"role": user.role})
    return JSONResponse({"name": user.name, "role": user.role, "created": user.created},
                        status_code=201)


@guarded
async def delete_user(request: Request) -> Response:
    who = need(request, "admin")
    name = request.path_params["user"]
    if name == who.user.name:
        raise ApiError(409, "you cannot delete yourself; sign in as another admin",
                       type="Conflict")
    st = state(request)
    if not st.auth.store.delete(name):
        raise ApiError(404, f"no user {name[:64]!r}")
    record(st.app.storage, Actor.of(request, who), "user.delete", f"user:{name}")
    return Response(status_code=204)


@guarded
async def list_tokens(request: Request) -> Response:
    who = need(request)
    store = state(request).auth.store
    tokens = store.tokens(None if who.user.is_admin else who.user.name)
    return JSONResponse(paginate([vars(t) for t in tokens], *page_params(request)))


@guarded
async def add_token(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    label = doc.get("label", "token")
    if not isinstance(label, str):
        raise ApiError(422, "'label' must be a string", type="ConfigError")
    if who.user.name in ("local", "operator"):
        raise ApiError(409, "tokens belong to users; sign in as one (omnicore users add)",
                       type="Conflict")
    st = state(request)
    secret, token = st.auth.store.new_token(who.user.name, label)
    record(st.app.storage, Actor.of(request, who), "token.add", f"token:{token.id}", None,
           {"label": token.label, "user": token.user})
    return JSONResponse({**vars(token), "token": secret}, status_code=201)


@guarded
async def delete_token(request: Request) -> Response:
    who = need(request, "admin")
    raw = request.path_params["token_id"]
    if not str(raw).isdecimal() or int(raw) > 1 << 62:
        raise ApiError(404, f"no token {str(raw)[:40]!r}")
    st = state(request)
    if not st.auth.store.delete_token(int(raw)):
        raise ApiError(404, f"no token {raw}")
    record(st.app.storage, Actor.of(request, who), "token.revoke", f"token:{raw}")
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    p = "/api/v1"
    return [
        # First: it is the route scripts call in a loop, and the router tries routes in
        # order. It shadows none: no other pattern matches /plugins/X/invoke ({name} takes
        # no "/").
        Route(f"{p}/plugins/{{name}}/invoke", invoke, methods=["POST"]),
        Route(f"{p}/info", get_info),
        Route(f"{p}/health", get_health),
        Route(f"{p}/settings", get_settings),
        Route(f"{p}/me", get_me),
        Route(f"{p}/plugins", list_plugins, methods=["GET"]),
        Route(f"{p}/plugins", upload, methods=["POST"]),
        Route(f"{p}/plugins/{{name}}", get_plugin, methods=["GET"]),
        Route(f"{p}/plugins/{{name}}", delete, methods=["DELETE"]),
        Route(f"{p}/plugins/{{name}}/reload", reload, methods=["POST"]),
        Route(f"{p}/plugins/{{name}}/enabled", put_enabled, methods=["PUT"]),
        Route(f"{p}/plugins/{{name}}/config", put_config, methods=["PUT"]),
        Route(f"{p}/plugins/{{name}}/limits", put_limits, methods=["PUT"]),
        Route(f"{p}/plugins/{{name}}/grants/{{capability}}", put_grant, methods=["PUT"]),
        Route(f"{p}/plugins/{{name}}/grants/{{capability}}", delete_grant, methods=["DELETE"]),
        Route(f"{p}/plugins/{{name}}/mcp", get_mcp, methods=["GET"]),
        Route(f"{p}/plugins/{{name}}/mcp/{{handler}}", set_mcp, methods=["PUT", "DELETE"]),
        Route(f"{p}/plugins/{{name}}/logs", plugin_logs),
        Route(f"{p}/events", recent_events),
        Route(f"{p}/stream", stream),
        Route(f"{p}/live", live),
        Route(f"{p}/users", list_users, methods=["GET"]),
        Route(f"{p}/users", add_user, methods=["POST"]),
        Route(f"{p}/users/{{user}}", delete_user, methods=["DELETE"]),
        Route(f"{p}/tokens", list_tokens, methods=["GET"]),
        Route(f"{p}/tokens", add_token, methods=["POST"]),
        Route(f"{p}/tokens/{{token_id}}", delete_token, methods=["DELETE"]),
    ]
