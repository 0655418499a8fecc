"""The hosts sharing this app's storage, and draining one (omnicore.cluster).

API (reads: any signed-in user; drain: admin)::

    GET  /api/v1/instances                      {"items": [...]}: runtime id, host name, pid,
                                                console URL, version, started, heartbeat_at
                                                (Unix seconds), jobs held, draining, plugins
                                                (name -> the digest it serves, its state,
                                                origin, the catalog's digest and why that
                                                one does not serve there);
                                                {"catalog": [...]}: each catalog plugin's
                                                rollout (digest, serving, converged) and
                                                {"converged": bool} for them all;
                                                {"lost": [...]}: the hosts found dead in the
                                                last 24 h, when each stopped answering
                                                (heartbeat_at), lost_at, reaped_by, and the
                                                jobs and workflow steps handed on
    POST /api/v1/instances/{runtime_id}/drain   stop claiming, finish in-flight work, exit

Page: ``/instances``. Any instance answers for all of them: the instance table is in storage.
The page is live: its stream asks for ``version.instances`` (:func:`version`), and
``console.js`` fetches the page again when a host joins, goes silent, is reaped or drains.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import Actor, record
from omnicore.console import base
from omnicore.console.errors import ApiError
from omnicore.console.render import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.plugins.catalog import rollouts

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["routes"]

log = logging.getLogger("omnicore.console")


def listing(app: OmniApp) -> dict[str, Any]:
    """What ``GET /api/v1/instances`` answers: the hosts (each with the plugins it reported:
    the digest it serves of each), the lost ones, and the plugin catalog's rollouts across
    them (whether every host serves the version in force: ``converged``)."""
    rows = app.storage.instances.all()
    me = app.runtime_id
    found = rollouts(app.storage.catalog.entries(), rows)
    return {"items": [{**i.as_dict(), "this": i.runtime_id == me} for i in rows],
            "lost": lost(app), "catalog": found,
            "converged": all(r["converged"] for r in found)}


def lost(app: OmniApp) -> list[dict[str, Any]]:
    return [i.as_dict() for i in app.storage.instances.lost(time.time())]


def silent_after(app: OmniApp) -> float:
    """A heartbeat older than this shows the host as silent before the reaper declares it
    dead: two beats missed is no longer a late thread."""
    return 2 * app.config.cluster.heartbeat_s + 0.5


def version(app: OmniApp) -> str:
    """What changes when the page's rows do (``version.instances`` of the live stream): a
    host joins, leaves, drains, goes silent, holds other jobs; a host is reaped. The
    heartbeat times alone do not move it: the page is fetched again on a change of state,
    not every second."""
    now = time.time()
    quiet = silent_after(app)
    # A host's digests move it too: the page follows a rollout as it converges.
    rows = ",".join(f"{i.runtime_id}:{int(i.draining)}:{i.jobs_held}:"
                    f"{int(now - i.heartbeat_at > quiet)}:{_digests(i.plugins)}"
                    for i in app.storage.instances.all())
    gone = ",".join(i.runtime_id for i in app.storage.instances.lost(now))
    return f"{rows}|{gone}"


def _digests(plugins: dict[str, Any]) -> str:
    import hashlib
    import json

    text = json.dumps({k: v.get("digest") for k, v in plugins.items() if isinstance(v, dict)},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def drain(app: OmniApp, runtime_id: str, by: Actor) -> bool:
    asked = app.storage.instances.set_draining(runtime_id, True)
    if asked:
        log.warning("console: %s asked instance %s to drain", by, runtime_id)
        record(app.storage, by, "instance.drain", f"instance:{runtime_id}")
    return asked


@base.guarded
async def list_instances(request: Request) -> Response:
    base.need(request)
    st = base.state(request)
    return JSONResponse(await st.off_loop(listing, st.app))


@base.guarded
async def drain_instance(request: Request) -> Response:
    who = base.need(request, "admin")
    st = base.state(request)
    rid = request.path_params["runtime_id"]
    if not await st.off_loop(drain, st.app, rid, base.actor(request, who)):
        raise ApiError(404, f"no running instance {rid[:64]!r}", type="UnknownInstance")
    return JSONResponse({"runtime_id": rid, "draining": True}, status_code=202)


async def instances_page(request: Request) -> Response:
    base.need(request)
    st = base.state(request)
    doc = await st.off_loop(listing, st.app)
    return page(request, "instances.html", instances=doc["items"], lost=doc["lost"],
                catalog=doc["catalog"], dead_after=st.app.config.cluster.dead_after_s,
                now=time.time(), silent_after=silent_after(st.app))


async def instances_post(request: Request) -> Response:
    who, f = await read_form(request)
    st = base.state(request)
    rid = f.get("runtime_id", "")
    if not rid or not await st.off_loop(drain, st.app, rid, base.actor(request, who)):
        raise ApiError(404, f"no running instance {rid[:64]!r}", type="UnknownInstance")
    return done("/instances", "instance-draining")


def routes() -> list[BaseRoute]:
    return [
        *base.api("/instances", GET=list_instances),
        *base.api("/instances/{runtime_id}/drain", POST=drain_instance),
        Route("/instances", instances_page, methods=["GET"]),
        Route("/instances", instances_post, methods=["POST"]),
    ]
