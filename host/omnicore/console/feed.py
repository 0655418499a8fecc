"""The live side of the console: recent log lines and events (``/api/v1/events``), their
stream (``/api/v1/stream``), each page's live figures (``/api/v1/live``, from
:mod:`omnicore.console.pulse`) and the Logs page. The feed itself is
:mod:`omnicore.console.live`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from omnicore.console import instances
from omnicore.console.base import api, choice, guarded, need, page_params, paginate, state
from omnicore.console.errors import ApiError
from omnicore.console.live import LEVELS, TooManySubscribers
from omnicore.console.render import page
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["routes"]


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
    # A page's own version, read each tick by its stream only: the instance table is not
    # read for every open page of every host.
    extra: Callable[[], dict[str, str]] | None = None
    if scope.startswith("run:"):
        extra = lambda: {"version.run": run_version(st.app, int(run))}  # noqa: E731
    elif "instances" in versions:
        extra = lambda: {"version.instances": instances.version(st.app)}  # noqa: E731
    try:
        frames = st.pulse.stream(scope, versions, (lambda: st.feed.stream(
            **filters, backlog=100)) if q.get("feed") == "1" else None, extra)
    except TooManySubscribers as exc:
        raise ApiError(429, f"{exc}; close a live page and retry") from None
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def logs_page(request: Request) -> Response:
    st = state(request)
    st.auth.require(request)
    plugin = request.query_params.get("plugin", "")
    level = request.query_params.get("level", "")
    if level not in LEVELS:
        level = ""
    entries = st.feed.recent(plugin=plugin or None, level=level or None, limit=200)
    entries.reverse()
    return page(request, "logs.html", entries=entries, plugin=plugin, level=level,
                levels=LEVELS, names=[i.name for i in st.app.plugins])


def routes() -> list[BaseRoute]:
    return [
        *api("/events", GET=recent_events),
        *api("/stream", GET=stream),
        *api("/live", GET=live),
        Route("/logs", logs_page),
    ]
