"""The Tasks page (durable jobs, paged and filtered) and the schedules: next run, run now,
pause and resume, in the API and on the page.

API (reads: any signed-in user; changes: admin)::

    POST /api/v1/schedules/{plugin}/{name}/run      queue a run now (the schedule keeps time)
    POST /api/v1/schedules/{plugin}/{name}/pause    stop firing it, on every host
    POST /api/v1/schedules/{plugin}/{name}/resume   fire again from now

(``GET /api/v1/schedules`` lists them with ``next_run`` and ``paused``.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.console import api, jobs
from omnicore.console.audit import Actor
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.pages import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["routes"]

PAGE = 100
#: The newest jobs the page pages through (beyond them: the CLI or the API).
MAX_SCAN = 10_000


# -- API -----------------------------------------------------------------------------------

@api.guarded
async def schedules_api(request: Request) -> Response:
    api.need(request)
    st = api.state(request)
    items = await st.off_loop(jobs.schedule_docs, st.app)
    return JSONResponse(api.paginate(items, *api.page_params(request)))


def schedule_post(action: str) -> Callable[[Request], Awaitable[Response]]:
    """``POST /api/v1/schedules/{plugin}/{name}/<action>``."""
    @api.guarded
    async def endpoint(request: Request) -> Response:
        who = api.need(request, "admin")
        st = api.state(request)
        plugin, name = request.path_params["plugin"], request.path_params["name"]
        changed = await st.off_loop(jobs.schedule_action, st.app, plugin, name, action,
                                    Actor.of(request, who))
        docs = await st.off_loop(jobs.schedule_docs, st.app, plugin)
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
    return [jobs.task_doc(t) for t in page_rows], len(found) > offset + PAGE


async def tasks(request: Request) -> Response:
    api.need(request)
    st = api.state(request)
    q = request.query_params
    state = q.get("state", "") if q.get("state", "") in jobs.TASK_STATES else ""
    plugin, handler = q.get("plugin", "")[:128], q.get("handler", "")[:128]
    raw = q.get("page", "1")
    number = int(raw) if raw.isdecimal() and 0 < int(raw) <= MAX_SCAN // PAGE else 1
    rows, more = await st.off_loop(_listing, st.app, plugin, state, handler,
                                   (number - 1) * PAGE)
    filters = {k: v for k, v in (("plugin", plugin), ("state", state), ("handler", handler))
               if v}
    link = {n: f"/tasks?{urlencode({**filters, 'page': n})}" for n in (number - 1, number + 1)}
    names = sorted({i.name for i in st.app.plugins} | ({plugin} if plugin else set()))
    return page(request, "tasks.html", tasks=rows, page_number=number, page_size=PAGE,
                next_url=link[number + 1] if more else None,
                prev_url=link[number - 1] if number > 1 else None,
                schedules=await st.off_loop(jobs.schedule_docs, st.app), state=state,
                states=jobs.TASK_STATES, plugin=plugin, handler=handler, plugins=names)


async def task_post(request: Request) -> Response:
    st = api.state(request)
    who, _f = await read_form(request)
    task_id = jobs.task_id(request)
    action = request.path_params["action"]
    if action not in ("retry", "cancel"):
        raise ApiError(404, f"no task action {action[:20]!r}")
    by = Actor.of(request, who)
    if action == "retry":
        ok = await st.off_loop(jobs.retry, st.app, task_id, by)
    else:
        ok = bool(await st.off_loop(jobs.cancel, st.app, task_id, by))
    if not ok:
        raise ApiError(409, f"task {task_id} cannot be {action}ed now (see its state)")
    return done("/tasks", "retried" if action == "retry" else "cancelled")


async def schedule_form(request: Request) -> Response:
    who, f = await read_form(request)
    st = api.state(request)
    p = request.path_params
    back = f.get("back", "")
    back = back if back.startswith("/") and not back.startswith("//") else "/tasks"
    try:
        await st.off_loop(jobs.schedule_action, st.app, p["plugin"], p["name"], p["action"],
                          Actor.of(request, who))
    except OmniError as exc:
        raise from_omni(exc) from exc
    what = {"run": "schedule-run", "pause": "schedule-paused", "resume": "schedule-resumed"}
    return done(back, what[p["action"]])


def routes() -> list[BaseRoute]:
    p = "/api/v1/schedules/{plugin}/{name}"
    return [
        Route("/api/v1/schedules", schedules_api, methods=["GET"]),
        # One route each, as OpenAPI lists them.
        *[Route(f"{p}/{action}", schedule_post(action), methods=["POST"])
          for action in jobs.SCHEDULE_ACTIONS],
        Route("/tasks", tasks),
        Route("/tasks/{task_id}/{action:str}", task_post, methods=["POST"]),
        Route("/schedules/{plugin}/{name}/{action}", schedule_form, methods=["POST"]),
    ]
