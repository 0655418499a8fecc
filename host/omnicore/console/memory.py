"""Plugins' tiered memories in the console (``omnicore:memory``).

API (reads: any signed-in user; changes: admin)::

    GET    /api/v1/memory                          per plugin: memories per tier, and caps
    GET    /api/v1/memory/{plugin}/recall          ?query=&tier=0&tier=2&limit=10, ranked as the
                                                   plugin's own recall ranks them
    DELETE /api/v1/memory/{plugin}/{memory_id}     forget one memory

Page: ``/data/memory`` (the counts and a recall box). A console recall reads only: it does not
count as a recall of the memories it returns, so looking never promotes one to long-term.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import Actor, record
from omnicore.capabilities.memory import LIMITS
from omnicore.console import base
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.render import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError
from omnicore.storage.memory import TIERS, MemoryPolicy

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["routes"]

log = logging.getLogger("omnicore.console")

TIER_NAMES = ("working", "short_term", "long_term")
MAX_QUERY = 1000


def policy(app: OmniApp, plugin: str) -> MemoryPolicy:
    """The limits ``plugin``'s memory runs under: its grant's options over
    ``capabilities.memory`` (the defaults the capability itself uses)."""
    try:
        base = LIMITS.app_defaults(app.config.capabilities)
        info = app.plugins.get(plugin) if plugin in app.plugins else None
        grant = info.granted.get("memory") if info is not None else None
        return LIMITS.read(grant or {}, base)
    except OmniError:
        return MemoryPolicy()  # a bad grant keeps the plugin from loading; show the defaults


def summary(app: OmniApp) -> list[dict[str, Any]]:
    """Every known plugin with memories, or granted memory: counts and caps per tier."""
    out = []
    for info in app.plugins:
        counts = app.memory.for_plugin(info.name).count()
        if not any(counts.values()) and "memory" not in info.granted:
            continue
        caps = policy(app, info.name)
        out.append({"plugin": info.name, "total": sum(counts.values()),
                    "tiers": {TIER_NAMES[t]: {"count": counts[t], "cap": caps.cap(t)}
                              for t in TIERS}})
    return out


def _tiers(raw: list[str]) -> tuple[int, ...]:
    chosen = []
    for value in raw:
        if value not in ("0", "1", "2"):
            raise ApiError(400, "query parameter tier must be 0 (working), 1 (short-term) or 2 "
                                "(long-term)", type="BadParameter")
        chosen.append(int(value))
    return tuple(dict.fromkeys(chosen)) or TIERS


def recall(app: OmniApp, plugin: str, query: str, tiers: tuple[int, ...],
           limit: int) -> list[dict[str, Any]]:
    memory = app.memory.for_plugin(plugin, policy(app, plugin))
    if not 0 < limit <= memory.policy.max_limit:
        raise ApiError(400, f"query parameter limit must be within 1..{memory.policy.max_limit}",
                       type="BadParameter")
    return [m.as_dict() for m in memory.recall(query, tiers, limit)]


def forget(app: OmniApp, plugin: str, memory_id: int, by: Actor) -> None:
    """Forget a memory of ``plugin`` (logged, audited); the API's and the form's one 404 when
    there is none (no plugin named: the form's)."""
    if not (plugin and app.memory.for_plugin(plugin).forget(memory_id)):
        raise ApiError(404, f"plugin {plugin[:128]!r} has no memory {memory_id}",
                       type="MemoryNotFound")
    log.info("console: %s forgot memory %d of %s", by, memory_id, plugin)
    record(app.storage, by, "memory.forget", f"{plugin}/memory:{memory_id}")


def _memory_id(raw: object) -> int:
    text = str(raw)
    if not text.isdecimal() or int(text) > 1 << 62:
        raise ApiError(404, f"no memory {text[:40]!r}", type="MemoryNotFound")
    return int(text)


# -- API ---------------------------------------------------------------------------------------

@base.guarded
async def recall_memory(request: Request) -> Response:
    base.need(request)
    st = base.state(request)
    query = request.query_params.get("query", "")[:MAX_QUERY]
    tiers = _tiers(request.query_params.getlist("tier"))
    limit = base.page_params(request, 10)[0]
    items = await st.off_loop(recall, st.app, request.path_params["plugin"], query, tiers,
                              limit)
    return JSONResponse({"items": items, "query": query, "tiers": list(tiers)})


@base.guarded
async def forget_memory(request: Request) -> Response:
    who = base.need(request, "admin")
    st = base.state(request)
    plugin, mid = request.path_params["plugin"], _memory_id(request.path_params["memory_id"])
    await st.off_loop(forget, st.app, plugin, mid, base.actor(request, who))
    return Response(status_code=204)


# -- page --------------------------------------------------------------------------------------

async def memory_page(request: Request) -> Response:
    base.need(request)
    st = base.state(request)
    q = request.query_params
    plugin, query = q.get("plugin", ""), q.get("query", "")[:MAX_QUERY]
    rows = await st.off_loop(summary, st.app)
    recalled: list[dict[str, Any]] | None = None
    error = None
    tiers: tuple[int, ...] = TIERS
    if plugin:
        try:
            tiers = _tiers(q.getlist("tier"))
            raw_limit = q.get("limit") or "20"
            limit = int(raw_limit) if raw_limit.isdecimal() else 0
            recalled = await st.off_loop(recall, st.app, plugin, query, tiers, limit)
        except OmniError as exc:
            error = from_omni(exc)
        except ApiError as exc:
            error = exc
    back = "/data/memory?" + urlencode([("plugin", plugin), ("query", query),
                                        *(("tier", str(t)) for t in tiers),
                                        ("limit", q.get("limit") or "20")])
    return page(request, "memory.html", 200 if error is None else error.status, rows=rows,
                back=back, plugin=plugin, query=query, tiers=tiers, limit=q.get("limit") or "20",
                recalled=recalled, recall_error=error, tier_names=TIER_NAMES,
                names=sorted({r["plugin"] for r in rows} | ({plugin} if plugin else set())))


async def memory_post(request: Request) -> Response:
    who, f = await read_form(request)
    st = base.state(request)
    plugin = f.get("plugin", "")
    mid = _memory_id(f.get("id", ""))
    await st.off_loop(forget, st.app, plugin, mid, base.actor(request, who))
    back = f.get("back", "")
    target = back if back.startswith("/data/memory") else "/data/memory"
    return done(target, "memory-forgotten")


def routes() -> list[BaseRoute]:
    return [
        *base.api("/memory", GET=base.lister(summary, 50)),
        *base.api("/memory/{plugin}/recall", GET=recall_memory),
        *base.api("/memory/{plugin}/{memory_id}", DELETE=forget_memory),
        Route("/data/memory", memory_page, methods=["GET"]),
        Route("/data/memory", memory_post, methods=["POST"]),
    ]
