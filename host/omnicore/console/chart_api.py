"""``GET /api/v1/plugins/{name}/charts``: a plugin's charts as data, the ones its page draws
(calls, latency, instance memory, fuel) for the range asked for (``range=15m|1h|24h``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from omnicore.console import base, charts
from omnicore.console.errors import from_omni
from omnicore.console.series import RANGES
from omnicore.errors import OmniError
from omnicore.plugins.info import PluginInfo

__all__ = ["metered", "routes"]


def metered(info: PluginInfo) -> bool:
    """Whether the plugin's calls are metered (its limits set ``fuel``)."""
    return info.limits is not None and info.limits.fuel is not None


@base.guarded
async def plugin_charts(request: Request) -> Response:
    base.need(request)
    st = base.state(request)
    name = request.path_params["name"]
    try:
        info = st.app.plugins.get(name)
    except OmniError as exc:
        raise from_omni(exc) from exc
    span = charts.span_of(request.query_params.get("range"))
    drawn = charts.plugin_charts(st.history, name, span, metered=metered(info))
    return JSONResponse({"plugin": name, "range": span, "step_s": RANGES[span][0],
                         "charts": [c.as_dict() for c in drawn]})


def routes() -> list[BaseRoute]:
    return base.api("/plugins/{name}/charts", GET=plugin_charts)
