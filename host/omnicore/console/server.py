"""The console's Starlette application: API, pages, static files, orchestrator endpoints."""

from __future__ import annotations

import logging
import typing
from functools import partial

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from omnicore import telemetry
from omnicore.console import (
    audit,
    bridges,
    catalog,
    chart_api,
    connectors,
    events,
    feed,
    instances,
    jobs,
    kv,
    memory,
    overview,
    plugins,
    secrets,
    users,
    vectors,
    workflow_editor,
    workflows,
)
from omnicore.console.bodies import MAX_JSON_BYTES, BodyLimits
from omnicore.console.errors import ApiError, disk_full, error_response, from_omni, full_disk_error
from omnicore.console.guard import refusal
from omnicore.console.openapi import document
from omnicore.console.plugins.page import UPLOAD_SLACK
from omnicore.console.render import WEB, render_error
from omnicore.console.responses import JSONResponse
from omnicore.console.state import ConsoleState
from omnicore.errors import OmniError
from omnicore.routes import RoutesServer

__all__ = ["create_app"]

log = logging.getLogger("omnicore.console")

#: No inline scripts or styles anywhere: whatever a plugin manages to put into a page cannot
#: run. Frames are refused (clickjacking).
SECURITY_HEADERS = (
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if _is_api(request):
        return error_response(exc)
    return render_error(request, exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error = ApiError(exc.status_code, str(exc.detail))
    if _is_api(request):
        return error_response(error)
    return render_error(request, error)


async def on_omni_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OmniError)
    return await on_api_error(request, from_omni(exc))


async def on_io_error(request: Request, exc: Exception) -> Response:
    """A full disk answers 507 with one log line; any other OS error is a bug."""
    cause = disk_full(exc)
    if cause is None:
        raise exc
    return await on_api_error(request, full_disk_error(cause))


async def on_crash(request: Request, exc: Exception) -> Response:
    log.exception("console: %s %s failed", request.method, request.url.path, exc_info=exc)
    error = ApiError(500, "internal error in the console; the host log has the traceback",
                     type="InternalError")
    response = error_response(error)
    # Starlette sends this answer from its outermost layer, past the console's middleware.
    response.raw_headers.extend(SECURITY_HEADERS)
    return response


async def healthz(request: Request) -> Response:
    # The app folder's id (omnicore/appid.py): the CLI asks a host only when it is its own.
    # The id is no proof (anyone reads it): a challenge is answered with an HMAC of it under
    # the folder's secret (app-key.json, 0600), which only this folder's owner can check.
    from omnicore.appid import is_challenge, proof

    identity = getattr(request.app.state, "app_id", None)
    doc: dict[str, typing.Any] = {"status": "alive"}
    if identity:
        doc["app_id"] = identity
        challenge = request.query_params.get("challenge")
        key_of = getattr(request.app.state, "app_key", None)
        key = key_of() if callable(key_of) and is_challenge(challenge) else None
        if isinstance(key, bytes):
            doc["proof"] = proof(key, identity, str(challenge))
    return JSONResponse(doc)


async def readyz(request: Request) -> Response:
    st: ConsoleState = request.app.state.console
    app = st.app
    reasons = []
    # Ready means serving: the services started, though plugins may still be loading.
    if not app.serving:
        reasons.append(f"app is {app.state.value}")
    if app.plugins.folder is None:
        reasons.append("plugins folder not read yet")
    if app.cluster is not None and app.cluster.unavailable is not None:
        reasons.append(f"storage unavailable: {app.cluster.unavailable}")
    # Plugins still compiling (a start on an empty module cache, a file dropped in): named,
    # so a probe's answer says what a start still waits for. They do not make the host
    # unready: it serves what is loaded, and a call to one of them waits for it (issue 63,
    # plugins.arrivals). ?plugins=loaded asks for every plugin loaded (a rolling upgrade
    # that wants the next host warm before it goes on).
    compiling = sorted(i.name for i in app.plugins if i.state == "compiling")
    if request.query_params.get("plugins") == "loaded" and (compiling or app.plugins.loading):
        reasons.append("plugins still loading" + (f": {', '.join(compiling)}"
                                                  if compiling else ""))
    body: dict[str, typing.Any] = {"ready": not reasons, "reasons": reasons}
    if compiling:
        body["compiling"] = compiling
    # A bridge whose broker is away degrades the host without making it unready: the host
    # serves on, the broker keeps (or the bridge holds) the messages until it is back.
    degraded = bridges.down(app)
    if degraded:
        body["degraded"] = degraded
    return JSONResponse(body, status_code=200 if not reasons else 503)


async def metrics(request: Request) -> Response:
    st: ConsoleState = request.app.state.console
    return PlainTextResponse(st.app.metrics.render(),
                             media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(_request: Request) -> Response:
    return JSONResponse(document())


def _plugin_routes(state: ConsoleState, console: list[BaseRoute]) -> RoutesServer:
    from omnicore.routes.metrics import attach

    # The prefix may not shadow a path of the console's: their first segments.
    reserved = {getattr(r, "path", "/").split("/")[1] for r in console}
    server = RoutesServer(state.app, state.auth.bearer_user, frozenset(reserved - {""}))
    attach(state.app, server)
    return server


async def routes_api(request: Request) -> Response:
    st: ConsoleState = request.app.state.console
    st.auth.identify(request)
    return JSONResponse({"routes": request.app.state.plugin_routes.describe()})


def create_app(state: ConsoleState) -> Starlette:
    """The ASGI app for ``state`` (serve it with Hypercorn, or test it with httpx)."""
    # The MCP SDK loads only when a console is served.
    from omnicore.console import oauth as oauth_pages
    from omnicore.mcp import McpEndpoint
    from omnicore.mcp.server import Caller
    from omnicore.oauth import AuthServer, MetadataDocuments
    from omnicore.oauth.server import PREFIX as OAUTH_PREFIX

    app_ = state.app
    oauth = AuthServer(app_.storage.oauth, app_.storage.audit, MetadataDocuments(
        allow_loopback=app_.config.mcp.oauth_loopback_client_ids))

    def verify(secret: str, resource: str) -> Caller | None:
        # /mcp: agents, with an OAuth access token for this resource or an API token.
        return oauth.caller(secret, resource) if secret.startswith(OAUTH_PREFIX) \
            else state.auth.bearer_user(secret)

    mcp = McpEndpoint(state.app, verify)
    plugin_api = plugins.routes()
    routes: list[BaseRoute] = [
        # First: agents call tools in a loop, and the router tries routes in order.
        # The plugins' invoke route before all: scripts call it in a loop, and the router
        # tries routes in order (nothing before it matches /api/v1/plugins/X/invoke).
        *plugin_api[:1],
        Route("/mcp", mcp),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/api/v1/openapi.json", openapi),
        Route("/api/v1/routes", routes_api),
        *plugin_api[1:],
        *overview.routes(),
        *feed.routes(),
        *users.routes(),
        *chart_api.routes(),
        *workflow_editor.routes(),
        *workflows.routes(),
        *secrets.routes(),
        *connectors.routes(),
        *bridges.routes(),
        *vectors.routes(),
        *instances.routes(),
        *catalog.routes(),
        *jobs.routes(),
        *kv.routes(),
        *memory.routes(),
        *audit.routes(),
        *events.routes(),
        *oauth_pages.routes(oauth),
        Mount("/static", StaticFiles(directory=str(WEB / "static")), name="static"),
    ]
    # Plugins' own HTTP routes (serve.routes, specs/http-routes.md), under their prefix.
    plugin_routes = _plugin_routes(state, routes)
    # Second: the prefix's first segment is none of the console's, so it shadows nothing.
    # (BodyLimits hands its requests over itself, past the router: see there.)
    plugin_mount = Mount(plugin_routes.prefix, plugin_routes)
    routes.insert(1, plugin_mount)
    trace = None
    if telemetry.ON:  # (begun first: a refused request is a span too)
        from omnicore.telemetry.asgi import request_spans

        trace = request_spans()
    middleware = [
        # One middleware, one pass (issue 63): the request's span while tracing is on, the
        # security headers on every answer, the body limits, and the request guard (its
        # refusals leave a body unread too, and close the connection and discard what is
        # left of it like any other).
        Middleware(BodyLimits, max_bytes=max(state.max_upload_bytes + UPLOAD_SLACK,
                                             MAX_JSON_BYTES),
                   timeout_s=state.body_timeout_s, headers=SECURITY_HEADERS,
                   check=partial(refusal, state.hosts), mounts=(plugin_mount,), trace=trace),
    ]
    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={ApiError: on_api_error, HTTPException: on_http_error,
                                        OmniError: on_omni_error, OSError: on_io_error,
                                        Exception: on_crash},
                    lifespan=lambda _app: mcp.lifespan())
    app.state.console = state
    app.state.oauth = oauth
    app.state.mcp = mcp
    app.state.plugin_routes = plugin_routes
    return app
