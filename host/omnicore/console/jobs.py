"""Jobs in the console: the durable queue's rows (a job: specs/host.md's glossary; formerly
"task") and the schedules that queue them, in the REST API and on the Jobs page.

API (reads: any signed-in user; changes: admin)::

    GET  /api/v1/jobs                              jobs, newest first (?state=, ?plugin=, paged)
    POST /api/v1/jobs                              enqueue {plugin, handler, payload, delay_s,
                                                   digest}: digest (optional) asks for that
                                                   version: only a host serving it claims it
                                                   (Idempotency-Key: the same job per key),
                                                   or a batch {jobs: [...]} in one transaction
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

import base64
import binascii
import json
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
    api,
    choice,
    guarded,
    need,
    page_params,
    paginate,
    path_id,
    state,
)
from omnicore.console.bodies import json_body
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.render import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError
from omnicore.jobs.schedules import PAUSED
from omnicore.subscriptions import DELIVERY_KEYS

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.jobs.schedules import Schedule

__all__ = ["JOB_STATES", "SCHEDULE_ACTIONS", "cancel", "enqueue", "enqueue_batch", "enqueue_doc",
           "job_doc",
           "retry", "routes",
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
        # Its fires and its runs now (``schedule:NAME:now``); not schedule ``NAME2``'s.
        mine = (f"schedule:{s.name}", f"schedule:{s.name}:now")
        last = next((j for j in recent if j.plugin == s.plugin and j.source in mine), None)
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


#: The longest ``Idempotency-Key`` taken, and the longest delay (a year).
MAX_KEY = 255
MAX_DELAY_S = 366 * 86400.0
#: The most jobs one request queues (a batch is one transaction).
MAX_BATCH = 1000


def _payload(doc: dict[str, Any]) -> bytes:
    raw = doc.get("payload", "")
    encoding = doc.get("encoding", "text")
    if encoding not in ("text", "base64"):
        raise ApiError(422, "'encoding' is text or base64", type="ConfigError")
    if not isinstance(raw, str):  # any other JSON value is the job's JSON input
        return json.dumps(raw, separators=(",", ":"), ensure_ascii=False).encode()
    if encoding == "text":
        return raw.encode()
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):  # ValueError: a character that is not ASCII
        raise ApiError(422, "'payload' is not valid base64", type="ConfigError") from None


def enqueue_doc(doc: dict[str, Any], key: str | None) -> tuple[str, str, bytes, float]:
    """The plugin, handler, payload and delay of a ``POST /api/v1/jobs`` body, checked."""
    plugin, handler, delay = doc.get("plugin"), doc.get("handler"), doc.get("delay_s", 0)
    if not isinstance(plugin, str) or not plugin or not isinstance(handler, str) or not handler:
        raise ApiError(422, "'plugin' and 'handler' must be non-empty strings",
                       type="ConfigError")
    if isinstance(delay, bool) or not isinstance(delay, int | float) \
            or not 0 <= delay <= MAX_DELAY_S:
        raise ApiError(422, f"'delay_s' must be a number of seconds from 0 to {MAX_DELAY_S:g}",
                       type="ConfigError")
    if key is not None and not 0 < len(key) <= MAX_KEY:
        raise ApiError(422, f"Idempotency-Key must be 1 to {MAX_KEY} characters",
                       type="ConfigError")
    if key is not None and key.startswith(DELIVERY_KEYS):
        raise ApiError(422, f"Idempotency-Key may not begin with {DELIVERY_KEYS!r}: the hosts "
                            "key their event deliveries so", type="ConfigError")
    return plugin, handler, _payload(doc), float(delay)


def digest_of(doc: dict[str, Any]) -> str | None:
    """The version a ``POST /api/v1/jobs`` body asks for (``digest``), if any."""
    digest = doc.get("digest")
    if digest is not None and (not isinstance(digest, str) or not digest):
        raise ApiError(422, "'digest' must be a plugin version's sha256:<hex> (omnicore "
                            "plugins versions lists them)", type="ConfigError")
    return digest


def enqueue(app: OmniApp, plugin: str, handler: str, payload: bytes, delay_s: float,
            key: str | None, by: Actor, digest: str | None = None) -> tuple[int, bool]:
    """Queue a job for an operator (recorded); the id and whether it was made now (False:
    the idempotency key's job from before). ``digest``: the plugin version it must run on."""
    try:
        if key is None:
            job_id, made = app.jobs.enqueue(plugin, handler, payload, delay_s=delay_s,
                                            digest=digest), True
        else:
            job_id, made = app.jobs.enqueue_once(plugin, handler, payload, key,
                                                 delay_s=delay_s, version=digest)
    except ValueError as exc:  # a malformed digest
        raise ApiError(422, str(exc), type="ConfigError") from None
    if made:
        record(app.storage, by, "task.enqueue", f"task:{job_id}", None,
               {"plugin": plugin, "handler": handler, "bytes": len(payload),
                **({"key": key} if key is not None else {}),
                **({"digest": digest} if digest is not None else {})})
    return job_id, made


def enqueue_batch(app: OmniApp, docs: list[Any], by: Actor) -> list[int]:
    """Queue a batch of jobs (``{"jobs": [...]}``) in one transaction, recorded as one entry
    listing their ids; the ids."""
    if not docs or len(docs) > MAX_BATCH or not all(isinstance(d, dict) for d in docs):
        raise ApiError(422, f"'jobs' must be a list of 1 to {MAX_BATCH} job objects",
                       type="ConfigError")
    if any("digest" in d for d in docs):
        raise ApiError(422, "'digest' asks for a version for one job: queue a job that needs "
                            "one on its own ({plugin, handler, payload, digest})",
                       type="ConfigError")
    jobs = [enqueue_doc(d, None) for d in docs]
    ids = app.jobs.enqueue_many(jobs)
    record(app.storage, by, "task.enqueue", f"task:{ids[0]}", None,
           {"jobs": len(ids), "ids": ids, "plugins": sorted({j[0] for j in jobs}),
            "bytes": sum(len(j[2]) for j in jobs)})
    return ids


@guarded
async def enqueue_job(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    st = state(request)
    key = request.headers.get("idempotency-key")
    if "jobs" in doc:
        if key is not None:
            raise ApiError(422, "an Idempotency-Key names one job; send a batch without it",
                           type="ConfigError")
        ids = await st.off_loop(enqueue_batch, st.app, doc["jobs"], actor(request, who))
        return JSONResponse({"ids": ids, "created": True}, status_code=201)
    plugin, handler, payload, delay = enqueue_doc(doc, key)
    digest = digest_of(doc)
    job_id, made = await st.off_loop(enqueue, st.app, plugin, handler, payload, delay, key,
                                     actor(request, who), digest)
    return JSONResponse({"id": job_id, "plugin": plugin, "handler": handler,
                         "created": made, **({"digest": digest} if digest else {})},
                        status_code=201 if made else 200)


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
    schedule = "/schedules/{plugin}/{name}"
    out: list[BaseRoute] = []
    for word in ("jobs", "tasks"):  # tasks: the paths from before the rename
        key = f"{{{word[:-1]}_id}}"
        out += [
            *api(f"/{word}", GET=list_jobs, POST=enqueue_job),
            *api(f"/{word}/{key}/retry", POST=retry_job),
            *api(f"/{word}/{key}/cancel", POST=cancel_job),
            Route(f"/{word}", jobs_page),
            Route(f"/{word}/{key}/{{action:str}}", job_post, methods=["POST"]),
        ]
    return [
        *out,
        *api("/schedules", GET=schedules_api),
        # One route each, as OpenAPI lists them.
        *[route for action in SCHEDULE_ACTIONS
          for route in api(f"{schedule}/{action}", POST=schedule_post(action))],
        Route("/schedules/{plugin}/{name}/{action}", schedule_form, methods=["POST"]),
    ]
