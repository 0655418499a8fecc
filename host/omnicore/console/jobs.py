"""The durable jobs in the console's REST API (the ``omnicore:tasks`` queue; REST keeps the
word "tasks", which users have written down: specs/host.md's glossary).

    GET  /api/v1/tasks                   jobs, newest first (?state=, ?plugin=, paged)
    POST /api/v1/tasks/{id}/retry        a dead or cancelled job, again (admin)
    POST /api/v1/tasks/{id}/cancel       a queued job (admin)
    GET  /api/v1/schedules               every schedule, described
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from omnicore.console.api import choice, guarded, need, omni, page_params, paginate, state
from omnicore.console.audit import Actor, record
from omnicore.console.errors import ApiError

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["TASK_STATES", "cancel", "retry", "routes", "task_id"]

TASK_STATES = ("queued", "running", "succeeded", "dead", "cancelled")


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


def task_id(request: Request) -> int:
    raw = request.path_params["task_id"]
    if not str(raw).isdigit() or int(raw) > 1 << 62:
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


@guarded
async def list_schedules(request: Request) -> Response:
    need(request)
    items = [{"plugin": s.plugin, "name": s.name, "handler": s.handler,
              "describe": s.describe()} for s in omni(request).jobs.schedules()]
    return JSONResponse(paginate(items, *page_params(request)))


def routes() -> list[BaseRoute]:
    p = "/api/v1"
    return [
        Route(f"{p}/tasks", list_tasks),
        Route(f"{p}/tasks/{{task_id}}/retry", retry_task, methods=["POST"]),
        Route(f"{p}/tasks/{{task_id}}/cancel", cancel_task, methods=["POST"]),
        Route(f"{p}/schedules", list_schedules),
    ]
