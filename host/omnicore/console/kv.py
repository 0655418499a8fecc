"""Plugins' keys in the console's REST API (``omnicore:kv``).

    GET    /api/v1/kv                        plugins with keys
    GET    /api/v1/kv/{plugin}               its keys (?prefix=, paged) and its usage
    GET    /api/v1/kv/{plugin}/{key}         one value: text, or base64 when not UTF-8
    DELETE /api/v1/kv/{plugin}/{key}         (admin)
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.console.api import guarded, need, page_params, paginate, state
from omnicore.console.audit import Actor, record
from omnicore.console.errors import ApiError
from omnicore.console.responses import JSONResponse

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["delete_key", "routes"]


def delete_key(app: OmniApp, plugin: str, key: str, by: Actor) -> bool:
    """Delete one of ``plugin``'s keys (recorded with the size it had); whether it was set."""
    store = app.kv.for_plugin(plugin)
    value = store.get(key)
    gone = store.delete(key)
    if gone:
        record(app.storage, by, "kv.delete", f"{plugin}/{key}",
               {"bytes": len(value)} if value is not None else None, None)
    return gone


@guarded
async def kv_plugins(request: Request) -> Response:
    need(request)
    st = state(request)
    names = await st.off_loop(st.app.kv.plugins)
    return JSONResponse(paginate([{"plugin": n} for n in names], *page_params(request)))


@guarded
async def kv_keys(request: Request) -> Response:
    need(request)
    st = state(request)
    store = st.app.kv.for_plugin(request.path_params["plugin"])
    prefix = request.query_params.get("prefix", "")[:1024]
    keys = await st.off_loop(store.list, prefix)
    usage = await st.off_loop(store.usage)
    doc = paginate([{"key": k} for k in keys], *page_params(request))
    doc["usage"] = {"keys": usage.keys, "bytes": usage.bytes}
    return JSONResponse(doc)


@guarded
async def kv_value(request: Request) -> Response:
    need(request)
    st = state(request)
    store = st.app.kv.for_plugin(request.path_params["plugin"])
    key = request.path_params["key"]
    if request.method == "DELETE":
        who = need(request, "admin")
        if not await st.off_loop(delete_key, st.app, request.path_params["plugin"], key,
                                 Actor.of(request, who)):
            raise ApiError(404, f"no key {key[:100]!r}")
        return Response(status_code=204)
    value = await st.off_loop(store.get, key)
    if value is None:
        raise ApiError(404, f"no key {key[:100]!r}")
    try:
        return JSONResponse({"key": key, "value": value.decode(), "encoding": "text",
                             "size": len(value)})
    except UnicodeDecodeError:
        return JSONResponse({"key": key, "value": base64.b64encode(value).decode(),
                             "encoding": "base64", "size": len(value)})


def routes() -> list[BaseRoute]:
    p = "/api/v1"
    return [
        Route(f"{p}/kv", kv_plugins),
        Route(f"{p}/kv/{{plugin}}", kv_keys),
        Route(f"{p}/kv/{{plugin}}/{{key:path}}", kv_value, methods=["GET", "DELETE"]),
    ]
