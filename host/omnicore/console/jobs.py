"""The durable jobs in the console's REST API (the ``omnicore:tasks`` queue; REST keeps the
word "tasks", which users have written down: specs/host.md's glossary).

    GET  /api/v1/tasks                   jobs, newest first (?state=, ?plugin=, paged)
    POST /api/v1/tasks/{id}/retry        a dead or cancelled job, again (admin)
    POST /api/v1/tasks/{id}/cancel       a queued job (admin)

Schedules (``/api/v1/schedules``) are :mod:`omnicore.console.tasks_page`'s.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.console.api import choice, guarded, need, page_params, paginate, state
from omnicore.console.audit import Actor, record
from omnicore.console.errors import ApiError
from omnicore.console.responses import JSONResponse
from omnicore.jobs.schedules import PAUSED

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.jobs.schedules import Schedule

__all__ = ["SCHEDULE_ACTIONS", "TASK_STATES", "cancel", "retry", "routes", "schedule_action",
           "schedule_docs", "task_doc", "task_id"]

TASK_STATES = ("queued", "running", "succeeded", "dead", "cancelled")
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


@guarded
async def list_tasks(request: Request) -> Response:
    need(request)
    st = state(request)
    wanted = choice(request, "state", TASK_STATES)
    plugin = request.query_params.get("plugin") or None
    limit, offset = page_params(request)
    tasks = await st.off_loop(st.app.jobs.list, plugin=plugin, state=wanted,
                              limit=min(offset + limit, 10_000))
    return JSONResponse(paginate([t.as_dict() for t in tasks], limit, offset))


def task_doc(t: Any) -> dict[str, Any]:
    """A job as JSON, with how long its last attempt ran (``duration_s``)."""
    doc: dict[str, Any] = t.as_dict()
    started, finished = t.started_at, t.finished_at
    doc["duration_s"] = finished - started if started and finished and finished >= started \
        else None
    return doc


def task_id(request: Request) -> int:
    raw = request.path_params["task_id"]
    if not str(raw).isdecimal() or int(raw) > 1 << 62:
        raise ApiError(404, f"no task {str(raw)[:40]!r}")
    return int(raw)


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


@guarded
async def retry_task(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    job_id = task_id(request)
    if not await st.off_loop(retry, st.app, job_id, Actor.of(request, who)):
        raise ApiError(409, f"task {job_id} is not dead or cancelled (or does not exist)",
                       type="NotRetryable")
    return JSONResponse({"id": job_id, "retried": True})


@guarded
async def cancel_task(request: Request) -> Response:
    who = need(request, "admin")
    st = state(request)
    job_id = task_id(request)
    done = await st.off_loop(cancel, st.app, job_id, Actor.of(request, who))
    if done is None:
        raise ApiError(404, f"no task {job_id}")
    if not done:
        raise ApiError(409, f"task {job_id} is running or finished; it cannot be cancelled",
                       type="NotCancellable")
    return JSONResponse({"id": job_id, "cancelled": True})


def routes() -> list[BaseRoute]:
    p = "/api/v1"
    return [
        Route(f"{p}/tasks", list_tasks),
        Route(f"{p}/tasks/{{task_id}}/retry", retry_task, methods=["POST"]),
        Route(f"{p}/tasks/{{task_id}}/cancel", cancel_task, methods=["POST"]),
    ]
