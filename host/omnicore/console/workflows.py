"""Workflows in the console: REST API, pages, and the webhook endpoint.

API (reads: any signed-in user; changes: admin)::

    GET  /api/v1/workflows                    the definitions, loaded or failed
    GET  /api/v1/workflows/{name}             one, with its webhook URLs
    POST /api/v1/workflows/{name}/runs        start a run: {"inputs": {...}} -> 201, 422 + field
    GET  /api/v1/workflow-runs                runs (?workflow=&state=&limit=&offset=)
    GET  /api/v1/workflow-runs/{id}           a run with its steps and history
    POST /api/v1/workflow-runs/{id}/approve   {"step", "approve": true, "comment"}
    POST /api/v1/workflow-runs/{id}/cancel
    POST /api/v1/workflow-runs/{id}/restart   {"latest": false}
    POST /hooks/{path}                        webhook triggers: HMAC-signed, no session

Pages: ``/workflows`` (list and recent runs), ``/workflows/{name}`` (definition, a start form
generated from the input schema, webhook URLs and how to sign them), ``/workflows/runs/{id}``
(the steps with state, input, output, timing; approve, cancel and restart buttons).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import record
from omnicore.console import base
from omnicore.console.auth import Principal
from omnicore.console.bodies import json_body, parse_json, read_body
from omnicore.console.errors import ApiError
from omnicore.console.render import page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.workflows import (
    SIGNATURE_HEADER,
    InputInvalid,
    RunStateError,
    WorkflowError,
    WorkflowNotFound,
    Workflows,
)

__all__ = ["MAX_WEBHOOK_BYTES", "routes"]

MAX_WEBHOOK_BYTES = 1 << 20
RUN_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "skipped")
RUN_ACTIONS = ("approve", "cancel", "restart")
#: Run ids are SQLite integers; a bigger number is no run (and must not reach SQLite).
MAX_RUN_ID = 1 << 62


def _service(request: Request) -> Workflows:
    service: Workflows = base.omni(request).workflows
    return service


def _fail(exc: WorkflowError) -> ApiError:
    if isinstance(exc, InputInvalid):
        return ApiError(422, str(exc), type="InputInvalid", field=exc.field)
    if isinstance(exc, WorkflowNotFound):
        return ApiError(404, str(exc), type="WorkflowNotFound")
    if isinstance(exc, RunStateError):
        status = 404 if str(exc).startswith("no workflow run") else 409
        return ApiError(status, str(exc), type="RunStateError")
    return ApiError(400, str(exc), type=type(exc).__name__)


def _run_id(request: Request) -> int:
    raw = request.path_params["run_id"]
    if not str(raw).isdecimal() or int(raw) > MAX_RUN_ID:
        raise ApiError(404, f"no workflow run {str(raw)[:40]!r}", type="RunStateError")
    return int(raw)


def _hooks(request: Request, doc: dict[str, Any]) -> list[dict[str, str]]:
    base = str(request.base_url).rstrip("/")
    return [{"url": f"{base}/hooks/{t['webhook']}", "trigger": str(t["name"])}
            for t in doc.get("triggers", []) if t.get("webhook")]


def _workflow_doc(request: Request, name: str) -> dict[str, Any]:
    try:
        entry = _service(request).entries.entry(name)
    except WorkflowNotFound as exc:
        raise _fail(exc) from None
    doc = entry.as_dict()
    doc["webhooks"] = _hooks(request, doc)
    doc["definition"] = dict(entry.workflow.document) if entry.workflow else None
    doc["text"] = entry.text  # as written, comments and key order kept
    return doc


def _run_doc(service: Workflows, run_id: int) -> dict[str, Any]:
    try:
        run = service.get_run(run_id)
    except RunStateError as exc:
        raise _fail(exc) from None
    steps = service.steps(run_id)
    return {**run.as_dict(), "steps": [s.as_dict() for s in steps],
            "history": [h.as_dict() for h in service.store.history(run_id)]}


# -- API ---------------------------------------------------------------------------------------

@base.guarded
async def list_workflows(request: Request) -> Response:
    base.need(request)
    items = [e.as_dict() for e in _service(request).entries]
    limit, offset = base.page_params(request)
    return JSONResponse(base.paginate(items, limit, offset))


@base.guarded
async def get_workflow(request: Request) -> Response:
    base.need(request)
    return JSONResponse(_workflow_doc(request, request.path_params["name"]))


@base.guarded
async def start_run(request: Request) -> Response:
    who = base.need(request, "admin")
    body = await json_body(request)
    inputs = body.get("inputs", {})
    if not isinstance(inputs, dict):
        raise ApiError(422, "inputs must be a JSON object", type="InputInvalid", field="")
    try:
        run = _service(request).start(request.path_params["name"], inputs,
                                     started_by=f"console:{who.user.name}")
    except WorkflowError as exc:
        raise _fail(exc) from None
    _started(request, who, run.id, request.path_params["name"])
    return JSONResponse(run.as_dict(), status_code=201)


@base.guarded
async def list_runs(request: Request) -> Response:
    base.need(request)
    limit, offset = base.page_params(request)
    state = base.choice(request, "state", RUN_STATES)
    workflow = request.query_params.get("workflow") or None
    service = _service(request)
    items = [r.as_dict() for r in service.runs(workflow, state, limit=limit, offset=offset)]
    total = service.store.count_runs(workflow=workflow, states=(state,) if state else ())
    return JSONResponse({"items": items, "total": total, "limit": limit, "offset": offset})


@base.guarded
async def get_run(request: Request) -> Response:
    base.need(request)
    return JSONResponse(_run_doc(_service(request), _run_id(request)))


def run_action(action: str) -> Callable[[Request], Awaitable[Response]]:
    """``POST /api/v1/workflow-runs/{id}/<action>`` (one route each, as OpenAPI lists them)."""
    @base.guarded
    async def endpoint(request: Request) -> Response:
        who = base.need(request, "admin")
        body = await json_body(request)
        run_id = _run_id(request)
        _act(request, who, run_id, action, body)
        return JSONResponse(_run_doc(_service(request), run_id))

    endpoint.__name__ = f"{action}_run"
    return endpoint


def _started(request: Request, who: Principal, run_id: int, workflow: str) -> None:
    record(base.omni(request).storage, base.actor(request, who), "workflow.start",
           f"run:{run_id}", None, {"workflow": workflow})


def _act(request: Request, who: Principal, run_id: int, action: str,
         body: dict[str, Any]) -> None:
    """Approve (or reject), cancel or restart run ``run_id``; recorded in the audit log."""
    service, by = _service(request), f"console:{who.user.name}"
    try:
        if action == "approve":
            step = body.get("step")
            if not isinstance(step, str):
                raise ApiError(422, "give the step to approve: {\"step\": \"ID\"}",
                               type="InputInvalid", field="step")
            service.approve(run_id, step, by, approve=bool(body.get("approve", True)),
                           comment=str(body.get("comment", ""))[:2000])
        elif action == "cancel":
            if not service.cancel(run_id, by):
                raise ApiError(409, f"run {run_id} had already ended", type="RunStateError")
        elif action == "restart":
            service.restart(run_id, by, latest=bool(body.get("latest", False)))
        else:
            raise ApiError(404, f"no action {action!r}")
    except WorkflowError as exc:
        raise _fail(exc) from None
    verb = action
    if action == "approve":
        verb = "approve" if body.get("approve", True) else "reject"
    after = {"step": body.get("step")} if action == "approve" else None
    record(base.omni(request).storage, base.actor(request, who), f"workflow.{verb}",
           f"run:{run_id}", None, after)


async def webhook(request: Request) -> Response:
    body = await read_body(request, MAX_WEBHOOK_BYTES)
    answer = _service(request).webhook(request.path_params["path"], body,
                                      request.headers.get(SIGNATURE_HEADER))
    return JSONResponse(answer.body, status_code=answer.status)


# -- pages -------------------------------------------------------------------------------------

async def workflows_page(request: Request) -> Response:
    base.need(request)
    service = _service(request)
    return page(request, "workflows.html", workflows=[e.as_dict() for e in service.entries],
                runs=service.runs(limit=50), folder=str(service.settings.dir))


async def workflow_page(request: Request) -> Response:
    base.need(request)
    name = request.path_params["name"]
    doc = _workflow_doc(request, name)
    props = (doc.get("inputs") or {}).get("properties") or {}
    fields = [{"name": k, "type": (v or {}).get("type", "string"),
               "description": (v or {}).get("description", ""),
               "required": k in ((doc.get("inputs") or {}).get("required") or [])}
              for k, v in props.items()]
    return page(request, "workflow.html", wf=doc, fields=fields,
                runs=_service(request).runs(name, limit=50), header=SIGNATURE_HEADER,
                error=request.query_params.get("error"))


async def workflow_start(request: Request) -> Response:
    who, fields = await read_form(request)
    fields.pop("csrf", None)
    name = request.path_params["name"]
    service = _service(request)
    try:
        schema = service.entries.get(name).inputs
        inputs = _inputs_from_form(schema, fields)
        run = service.start(name, inputs, started_by=f"console:{who.user.name}")
    except (WorkflowError, ValueError) as exc:
        if isinstance(exc, WorkflowNotFound):
            raise _fail(exc) from None
        return RedirectResponse(f"/workflows/{name}?error={quote(str(exc)[:500])}",
                                status_code=303)
    _started(request, who, run.id, name)
    return RedirectResponse(f"/workflows/runs/{run.id}", status_code=303)


def _inputs_from_form(schema: Any, fields: dict[str, str]) -> dict[str, Any]:
    props = (schema or {}).get("properties") or {}
    out: dict[str, Any] = {}
    for key, raw in fields.items():
        if key not in props or raw == "":
            continue
        kind = (props[key] or {}).get("type", "string")
        if kind == "string":
            out[key] = raw
        elif kind == "boolean":
            out[key] = raw in ("on", "true", "1")
        else:
            try:
                out[key] = parse_json(raw, f"input {key}")
            except ApiError:
                raise ValueError(f"input {key}: {raw[:60]!r} is not a valid {kind} "
                                 "(JSON, at most 64 levels deep)") from None
    return out


async def run_page(request: Request) -> Response:
    base.need(request)
    service = _service(request)
    doc = _run_doc(service, _run_id(request))
    try:
        wf = service.version(doc["version"])
        order = {s.id: i for i, s in enumerate((*wf.steps, *wf.on_failure))}
        graph = [{"id": s.id, "needs": list(s.needs), "uses": s.uses if s.wait is None
                  else f"wait {s.wait.kind}", "on_failure": s.on_failure}
                 for s in (*wf.steps, *wf.on_failure)]
    except WorkflowError:
        order, graph = {}, []
    rows = {(s["step"], s["index"]): s for s in doc["steps"]}
    steps: list[dict[str, Any]] = []
    for node in graph:
        row = rows.get((node["id"], -1))
        items = sorted((s for s in doc["steps"] if s["step"] == node["id"] and s["index"] >= 0),
                       key=lambda s: s["index"])
        steps.append({**node, "row": row, "item_rows": items,
                      "state": row["state"] if row else "not started"})
    steps.sort(key=lambda s: order.get(s["id"], 0))
    trace_id = doc["trace"].split("-")[1] if doc.get("trace") else None
    viewer = base.omni(request).config.telemetry.trace_url
    return page(request, "workflow_run.html", run=doc, steps=steps, graph=step_graph(steps),
                trace_id=trace_id,
                trace_link=viewer.replace("{trace_id}", trace_id) if viewer and trace_id
                else None,
                pretty=lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str))


NODE_W, NODE_H, GAP_X, GAP_Y = 168, 44, 56, 14


def step_graph(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The steps laid out left to right by dependency depth (on_failure steps last), for the
    run view's SVG: boxes with the step's state, and an edge for every ``needs``."""
    by_id = {s["id"]: s for s in steps}
    depth: dict[str, int] = {}

    def level(step_id: str, seen: frozenset[str] = frozenset()) -> int:
        if step_id not in depth:
            needs = [n for n in by_id[step_id]["needs"] if n in by_id and n not in seen]
            depth[step_id] = 1 + max((level(n, seen | {step_id}) for n in needs), default=-1)
        return depth[step_id]

    main = [s for s in steps if not s["on_failure"]]
    for s in main:
        level(s["id"])
    last = max(depth.values(), default=-1)
    for s in steps:
        if s["on_failure"]:
            depth[s["id"]] = last + 1
    columns: dict[int, list[str]] = {}
    for s in steps:
        columns.setdefault(depth[s["id"]], []).append(s["id"])
    at: dict[str, tuple[int, int]] = {}
    for col, ids in columns.items():
        for row, step_id in enumerate(ids):
            at[step_id] = (col * (NODE_W + GAP_X), row * (NODE_H + GAP_Y))
    nodes = [{"id": s["id"], "state": s["state"], "x": at[s["id"]][0], "y": at[s["id"]][1],
              "label": s["id"] if len(s["id"]) <= 20 else s["id"][:19] + "…"} for s in steps]
    edges = []
    for s in steps:
        x2, y2 = at[s["id"]][0], at[s["id"]][1] + NODE_H // 2
        for need in s["needs"]:
            if need in at:
                x1, y1 = at[need][0] + NODE_W, at[need][1] + NODE_H // 2
                mid = (x1 + x2) // 2
                edges.append(f"M{x1} {y1} C{mid} {y1} {mid} {y2} {x2} {y2}")
    width = max((x for x, _ in at.values()), default=0) + NODE_W + 2
    height = max((y for _, y in at.values()), default=0) + NODE_H + 2
    return {"nodes": nodes, "edges": edges, "width": width, "height": height, "w": NODE_W,
            "h": NODE_H, "down": _down(steps, depth, nodes)}


#: The phone's graph: one column, each ``needs`` an arc in the gutter on its left.
GUTTER = 40


def _down(steps: list[dict[str, Any]], depth: dict[str, int],
          nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The same graph top to bottom, one step a row in dependency order: a phone's 390 px
    hold it at its own size (left to right, a third step was past the screen's edge)."""
    order = sorted(range(len(steps)), key=lambda i: (depth[steps[i]["id"]], i))
    row = {steps[i]["id"]: n for n, i in enumerate(order)}
    middle = {k: r * (NODE_H + GAP_Y) + NODE_H // 2 for k, r in row.items()}
    down = [{**nodes[i], "x": GUTTER, "y": row[steps[i]["id"]] * (NODE_H + GAP_Y)}
            for i in order]
    edges = []
    for s in steps:
        for need in s["needs"]:
            if need in row:
                y1, y2 = middle[need], middle[s["id"]]
                bulge = min(GUTTER - 4, 10 + 8 * abs(row[s["id"]] - row[need]))
                edges.append(f"M{GUTTER} {y1} C{GUTTER - bulge} {y1} {GUTTER - bulge} {y2} "
                             f"{GUTTER} {y2}")
    return {"nodes": down, "edges": edges, "width": GUTTER + NODE_W + 2,
            "height": len(order) * (NODE_H + GAP_Y) - GAP_Y + 2, "w": NODE_W, "h": NODE_H}


async def run_post(request: Request) -> Response:
    who, fields = await read_form(request)
    run_id = _run_id(request)
    action = request.path_params["action"]
    body = {"step": fields.get("step"), "approve": fields.get("decision", "approve") == "approve",
            "comment": fields.get("comment", ""), "latest": fields.get("latest") == "on"}
    _act(request, who, run_id, action, body)
    return RedirectResponse(f"/workflows/runs/{run_id}", status_code=303)


def routes() -> list[BaseRoute]:
    return [
        *base.api("/workflows", GET=list_workflows),
        *base.api("/workflows/{name}", GET=get_workflow),
        *base.api("/workflows/{name}/runs", POST=start_run),
        *base.api("/workflow-runs", GET=list_runs),
        *base.api("/workflow-runs/{run_id}", GET=get_run),
        *(route for action in RUN_ACTIONS
          for route in base.api(f"/workflow-runs/{{run_id}}/{action}", POST=run_action(action))),
        Route("/hooks/{path:path}", webhook, methods=["POST"]),
        Route("/workflows", workflows_page),
        Route("/workflows/runs/{run_id}", run_page, methods=["GET"]),
        Route("/workflows/runs/{run_id}/{action}", run_post, methods=["POST"]),
        Route("/workflows/{name}", workflow_page, methods=["GET"]),
        Route("/workflows/{name}", workflow_start, methods=["POST"]),
    ]
