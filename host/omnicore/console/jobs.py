"""Jobs in the console: the durable queue's rows (a job: specs/host.md's glossary; formerly
"task") and the schedules that queue them, in the REST API and on the Jobs page.

API (reads: any signed-in user; changes: admin)::

    GET  /api/v1/jobs                              jobs, newest first (?state=, ?plugin=, paged)
    POST /api/v1/jobs/{id}/retry                   a dead or cancelled job, again
    POST /api/v1/jobs/{id}/cancel                  a queued job
    GET  /api/v1/schedules                         schedules with next_run and paused
    POST /api/v1/schedules/{plugin}/{name}/run     queue a run now (the schedule keeps time)
    POST /api/v1/schedules/{plugin}/{name}/pause   stop firing it, on every host
    POST /api/v1/schedules/{plugin}/{name}/resume  fire again from now

``/api/v1/tasks...`` and the ``/tasks`` page are the same routes under the word users wrote
down before the rename; they keep answering.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import Actor, record
from omnicore.console.base import (
    actor,
    choice,
    guarded,
    need,
    page_params,
    paginate,
    path_id,
    state,
)
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.render import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError
from omnicore.jobs.schedules import PAUSED

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.jobs.schedules import Schedule

__all__ = ["JOB_STATES", "SCHEDULE_ACTIONS", "cancel", "job_doc", "retry", "routes",
           "schedule_action", "schedule_docs"]

JOB_STATES = ("queued", "running", "succeeded", "dead", "cancelled")
SCHEDULE_ACTIONS = ("run", "pause", "resume")


def schedule_docs(app: OmniApp, plugin: str | None = None) -> list[dict[str, Any]]:
    """Every schedule in force (of ``plugin``), with its next and last run and whether it is
    paused."""
    scheduler = app.jobs.scheduler
    found = [s for s in scheduler.all() if plugin in (None, s.plugin)]
    recent = app.jobs.list(plugin=plugin, limit=500) if found else []
    out = []
    for s in found:
        nxt = scheduler.next_run(s)
        last = next((j for j in recent if j.plugin == s.plugin
                     and j.source.startswith(f"schedule:{s.name}")), None)
        out.append({"plugin": s.plugin, "name": s.name, "handler": s.handler,
                    "describe": s.describe(), "paused": nxt is not None and nxt >= PAUSED,
                    "next_run": None if nxt is None or nxt >= PAUSED else nxt,
                    "last_run": last.created_at if last else None,
                    "last_state": last.state if last else None})
    return out


def schedule_action(app: OmniApp, plugin: str, name: str, action: str, by: Actor) -> bool:
    """Run now, pause or resume one schedule (recorded); False when nothing changed."""
    if action not in SCHEDULE_ACTIONS:
        raise ApiError(404, f"no schedule action {action[:20]!r}")
    sched: Schedule = app.jobs.scheduler.get(plugin, name)  # ConfigError -> 422
    if action == "run":
        job = app.jobs.enqueue(plugin, sched.handler, sched.payload,
                               source=f"schedule:{name}:now")
        record(app.storage, by, "schedule.run", f"{plugin}/{name}", None, {"task": job})
        return True
    changed = app.jobs.scheduler.set_paused(plugin, name, action == "pause", time.time())
    if changed:
        record(app.storage, by, f"schedule.{action}", f"{plugin}/{name}",
               action != "pause", action == "pause")
    return changed


#: A page of the Jobs page.
PAGE = 100
#: The newest jobs the page pages through (beyond them: the CLI or the API).
MAX_SCAN = 10_000


def job_doc(t: Any) -> dict[str, Any]:
    """A job as JSON, with how long its last attempt ran (``duration_s``)."""
    doc: dict[str, Any] = t.as_dict()
    started, finished = t.started_at, t.finished_at
    doc["duration_s"] = finished - started if started and finished and finished >= started \
        else None
    return doc


def retry(app: OmniApp, job_id: int, by: Actor) -> bool:
    """Queue a dead or cancelled job again (recorded); whether it was one."""
    ok = app.jobs.retry(job_id)
    if ok:
        record(app.storage, by, "task.retry", f"task:{job_id}")
    return ok


def cancel(app: OmniApp, job_id: int, by: Actor) -> bool | None:
    """Cancel a queued job (recorded); None when there is no such job."""
    done = app.jobs.cancel(job_id)
    if done:
        record(app.storage, by, "task.cancel", f"task:{job_id}")
    return done


def _job_id(request: Request, what: str) -> int:
    # {job_id} under /jobs, {task_id} under the old /tasks paths.
    key = "job_id" if "job_id" in request.path_params else "task_id"
    return path_id(request, key, what)


# -- API -----------------------------------------------------------------------------------

@guarded
async def list_jobs(request: Request) -> Response:
    need(request)
    st = state(request)
    wanted = choice(request, "state", JOB_STATES)
    plugin = request.query_params.get("plugin") or None
    limit, offset = page_params(request)
    found = await st.off_loop(st.app.jobs.list, plugin=plugin, state=wanted,
                              limit=min(offset + limit, 10_000))
    return JSONResponse(paginate([t.as_dict() for t in found], limit, offset))


# The API's messages keep saying "task": scripts match them, and /api/v1/tasks is theirs.
@guarded
async def retry_job(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    job_id = _job_id(request, "task")
    if not await st.off_loop(retry, st.app, job_id, actor(request, who)):
        raise ApiError(409, f"task {job_id} is not dead or cancelled (or does not exist)",
                       type="NotRetryable")
    return JSONResponse({"id": job_id, "retried": True})


@guarded
async def cancel_job(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    job_id = _job_id(request, "task")
    done = await st.off_loop(cancel, st.app, job_id, actor(request, who))
    if done is None:
        raise ApiError(404, f"no task {job_id}")
    if not done:
        raise ApiError(409, f"task {job_id} is running or finished; it cannot be cancelled",
                       type="NotCancellable")
    return JSONResponse({"id": job_id, "cancelled": True})


@guarded
async def schedules_api(request: Request) -> Response:
    need(request)
    st = state(request)
    items = await st.off_loop(schedule_docs, st.app)
    return JSONResponse(paginate(items, *page_params(request)))


def schedule_post(action: str) -> Callable[[Request], Awaitable[Response]]:
    """``POST /api/v1/schedules/{plugin}/{name}/<action>``."""
    @guarded
    async def endpoint(request: Request) -> Response:
        who = need(request, "admin")
        st = state(request)
        plugin, name = request.path_params["plugin"], request.path_params["name"]
        changed = await st.off_loop(schedule_action, st.app, plugin, name, action,
                                    actor(request, who))
        docs = await st.off_loop(schedule_docs, st.app, plugin)
        return JSONResponse({**next(d for d in docs if d["name"] == name), "changed": changed})

    endpoint.__name__ = f"schedule_{action}"
    return endpoint


# -- page ----------------------------------------------------------------------------------

def _listing(app: OmniApp, plugin: str, state: str, handler: str,
             offset: int) -> tuple[list[dict[str, Any]], bool]:
    scan = min(offset + PAGE + 1, MAX_SCAN) if not handler else MAX_SCAN
    found = app.jobs.list(plugin=plugin or None, state=state or None, limit=scan)
    if handler:
        found = [t for t in found if t.handler == handler]
    page_rows = found[offset:offset + PAGE]
    return [job_doc(t) for t in page_rows], len(found) > offset + PAGE


async def jobs_page(request: Request) -> Response:
    need(request)
    st = state(request)
    q = request.query_params
    wanted = q.get("state", "") if q.get("state", "") in JOB_STATES else ""
    plugin, handler = q.get("plugin", "")[:128], q.get("handler", "")[:128]
    raw = q.get("page", "1")
    number = int(raw) if raw.isdecimal() and 0 < int(raw) <= MAX_SCAN // PAGE else 1
    rows, more = await st.off_loop(_listing, st.app, plugin, wanted, handler,
                                   (number - 1) * PAGE)
    filters = {k: v for k, v in (("plugin", plugin), ("state", wanted), ("handler", handler))
               if v}
    link = {n: f"/jobs?{urlencode({**filters, 'page': n})}" for n in (number - 1, number + 1)}
    names = sorted({i.name for i in st.app.plugins} | ({plugin} if plugin else set()))
    return page(request, "jobs.html", jobs=rows, page_number=number, page_size=PAGE,
                next_url=link[number + 1] if more else None,
                prev_url=link[number - 1] if number > 1 else None,
                schedules=await st.off_loop(schedule_docs, st.app), state=wanted,
                states=JOB_STATES, plugin=plugin, handler=handler, plugins=names)


async def job_post(request: Request) -> Response:
    st = state(request)
    who, _f = await read_form(request)
    job_id = _job_id(request, "job")
    action = request.path_params["action"]
    if action not in ("retry", "cancel"):
        raise ApiError(404, f"no job action {action[:20]!r}")
    by = actor(request, who)
    if action == "retry":
        ok = await st.off_loop(retry, st.app, job_id, by)
    else:
        ok = bool(await st.off_loop(cancel, st.app, job_id, by))
    if not ok:
        raise ApiError(409, f"job {job_id} cannot be {action}ed now (see its state)")
    return done("/jobs", "retried" if action == "retry" else "cancelled")


async def schedule_form(request: Request) -> Response:
    who, f = await read_form(request)
    st = state(request)
    p = request.path_params
    back = f.get("back", "")
    back = back if back.startswith("/") and not back.startswith("//") else "/jobs"
    try:
        await st.off_loop(schedule_action, st.app, p["plugin"], p["name"], p["action"],
                          actor(request, who))
    except OmniError as exc:
        raise from_omni(exc) from exc
    what = {"run": "schedule-run", "pause": "schedule-paused", "resume": "schedule-resumed"}
    return done(back, what[p["action"]])


def routes() -> list[BaseRoute]:
    schedule = "/api/v1/schedules/{plugin}/{name}"
    out: list[BaseRoute] = []
    for word in ("jobs", "tasks"):  # tasks: the paths from before the rename
        key = f"{{{word[:-1]}_id}}"
        out += [
            Route(f"/api/v1/{word}", list_jobs),
            Route(f"/api/v1/{word}/{key}/retry", retry_job, methods=["POST"]),
            Route(f"/api/v1/{word}/{key}/cancel", cancel_job, methods=["POST"]),
            Route(f"/{word}", jobs_page),
            Route(f"/{word}/{key}/{{action:str}}", job_post, methods=["POST"]),
        ]
    return [
        *out,
        Route("/api/v1/schedules", schedules_api, methods=["GET"]),
        # One route each, as OpenAPI lists them.
        *[Route(f"{schedule}/{action}", schedule_post(action), methods=["POST"])
          for action in SCHEDULE_ACTIONS],
        Route("/schedules/{plugin}/{name}/{action}", schedule_form, methods=["POST"]),
    ]
