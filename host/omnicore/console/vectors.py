"""Plugins' vector collections in the console (``omnicore:vectors``).

API (reads: any signed-in user; changes: admin)::

    GET    /api/v1/vectors                           collections (?plugin=), with counts,
                                                     dimension, metric, bytes, index state
    DELETE /api/v1/vectors/{plugin}/{collection}     drop a whole collection

Page: ``/data/vectors``. The index state is ``not loaded`` until a search or upsert since
start opened the collection, then ``exact`` (below 2,000 vectors) or ``hnsw``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import Actor, record
from omnicore.console import base
from omnicore.console.errors import ApiError
from omnicore.console.render import done, page, read_form

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["routes"]

log = logging.getLogger("omnicore.console")


def collections(app: OmniApp, plugin: str | None = None) -> list[dict[str, Any]]:
    store = app.vectors
    names = [plugin] if plugin else store.plugins()
    return [c.as_dict() for n in names for c in store.for_plugin(n).collections()]


def drop(app: OmniApp, plugin: str, collection: str, by: Actor) -> None:
    """Drop a vector collection of ``plugin`` (logged, audited); the API's and the form's one
    404 when there is none (no plugin named: the form's)."""
    if not (plugin and app.vectors.for_plugin(plugin).drop(collection)):
        raise ApiError(404, f"plugin {plugin[:128]!r} has no vector collection "
                            f"{collection[:128]!r}", type="UnknownCollection")
    log.info("console: %s dropped vector collection %s of %s", by, collection, plugin)
    record(app.storage, by, "vectors.drop", f"{plugin}/{collection}")


@base.guarded
async def list_collections(request: Request) -> Response:
    plugin = request.query_params.get("plugin") or None
    return await base.app_listing(request, lambda app: collections(app, plugin), 50)


@base.guarded
async def drop_collection(request: Request) -> Response:
    who = base.need(request, "admin")
    st = base.state(request)
    plugin, name = request.path_params["plugin"], request.path_params["collection"]
    await st.off_loop(drop, st.app, plugin, name, base.actor(request, who))
    return Response(status_code=204)


async def vectors_page(request: Request) -> Response:
    base.need(request)
    st = base.state(request)
    plugin = request.query_params.get("plugin", "")
    names = await st.off_loop(st.app.vectors.plugins)
    items = await st.off_loop(collections, st.app, plugin or None)
    return page(request, "vectors.html", collections=items, names=names, plugin=plugin,
                total=sum(c["count"] for c in items), bytes=sum(c["bytes"] for c in items))


async def vectors_post(request: Request) -> Response:
    who, f = await read_form(request)
    st = base.state(request)
    plugin, name = f.get("plugin", ""), f.get("collection", "")
    await st.off_loop(drop, st.app, plugin, name, base.actor(request, who))
    return done("/data/vectors", "collection-dropped")


def routes() -> list[BaseRoute]:
    return [
        *base.api("/vectors", GET=list_collections),
        *base.api("/vectors/{plugin}/{collection}", DELETE=drop_collection),
        Route("/data/vectors", vectors_page, methods=["GET"]),
        Route("/data/vectors", vectors_post, methods=["POST"]),
    ]
