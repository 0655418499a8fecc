"""Plugins' keys (``omnicore:kv``) in the console's REST API and on the Data page.

    GET    /api/v1/kv                        plugins with keys
    GET    /api/v1/kv/{plugin}               its keys (?prefix=, paged) and its usage
    GET    /api/v1/kv/{plugin}/{key}         one value: text, or base64 when not UTF-8
    DELETE /api/v1/kv/{plugin}/{key}         (admin)
    GET    /data, POST /data/delete          the page: a plugin's keys, delete one
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import Actor, record
from omnicore.console.base import actor, api, guarded, need, page_params, paginate, state
from omnicore.console.errors import ApiError
from omnicore.console.render import page, read_form
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
                                 actor(request, who)):
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


async def data_page(request: Request) -> Response:
    st = state(request)
    st.auth.require(request)
    plugin = request.query_params.get("plugin", "")
    prefix = request.query_params.get("prefix", "")[:1024]
    names = await st.off_loop(st.app.kv.plugins)
    keys: list[tuple[str, str]] = []
    usage = None
    if plugin:
        store = st.app.kv.for_plugin(plugin)
        listed = await st.off_loop(store.list, prefix, 200)
        for key in listed:
            raw = await st.off_loop(store.get, key)
            shown = "" if raw is None else raw[:200].decode("utf-8", "replace")
            keys.append((key, shown))
        usage = await st.off_loop(store.usage)
    return page(request, "data.html", names=names, plugin=plugin, prefix=prefix, keys=keys,
                usage=usage)


async def data_delete(request: Request) -> Response:
    st = state(request)
    who, f = await read_form(request)
    plugin, key = f.get("plugin", ""), f.get("key", "")
    if not plugin:
        raise ApiError(422, "which plugin's key?")
    await st.off_loop(delete_key, st.app, plugin, key, actor(request, who))
    return RedirectResponse(f"/data?{urlencode({'plugin': plugin, 'done': 'key-deleted'})}",
                            status_code=303)


def routes() -> list[BaseRoute]:
    return [
        *api("/kv", GET=kv_plugins),
        *api("/kv/{plugin}", GET=kv_keys),
        *api("/kv/{plugin}/{key:path}", GET=kv_value, DELETE=kv_value),
        Route("/data", data_page),
        Route("/data/delete", data_delete, methods=["POST"]),
    ]
