"""The host at a glance: ``/api/v1/info``, ``/health``, ``/settings``, ``/me``, and the Overview
(``/``) and Settings pages; the site's icon (``/favicon.ico``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from omnicore.config import render_config
from omnicore.console import charts
from omnicore.console.assets import web_dir
from omnicore.console.base import MAX_PAGE, api, guarded, need, omni, page_params, paginate, state
from omnicore.console.render import page
from omnicore.console.responses import JSONResponse

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["overview", "routes"]


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


async def overview_page(request: Request) -> Response:
    st = state(request)
    st.auth.require(request)
    health = st.app.health.check().to_dict()
    figures = await st.pulse.figures()  # the live streams' copy, at most a tick old
    span = charts.span_of(request.query_params.get("range"), st.app.uptime)
    return page(request, "overview.html", info=overview(st.app), health=health,
                charts=charts.host_charts(st.history, span), span=span, figures=figures)


async def settings_page(request: Request) -> Response:
    st = state(request)
    st.auth.require(request)
    sections: dict[str, list[tuple[str, str, str]]] = {"general": []}
    for key, value, source in render_config(st.app.config, mask=True):
        top = key.split(".")[0] if "." in key else "general"
        sections.setdefault(top, []).append((key, value, source))
    return page(request, "settings.html", sections=sections)


def api_routes() -> list[BaseRoute]:
    return [*api("/info", GET=get_info), *api("/health", GET=get_health),
            *api("/settings", GET=get_settings), *api("/me", GET=get_me)]


async def favicon(_request: Request) -> Response:
    """The console's icon for whatever asks ``/favicon.ico`` without reading the pages'
    ``<link rel="icon">`` (no signing in: a browser asks before anyone has)."""
    return FileResponse(web_dir() / "static" / "favicon.svg", media_type="image/svg+xml")


def page_routes() -> list[BaseRoute]:
    return [Route("/", overview_page), Route("/settings", settings_page),
            Route("/favicon.ico", favicon)]


def routes() -> list[BaseRoute]:
    return [*api_routes(), *page_routes()]
