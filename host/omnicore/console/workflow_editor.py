"""The workflow editor: a definition file read, checked, saved and restored from the console.

API (reads and checks: any signed-in user; saves and restores: admin)::

    GET  /api/v1/workflows/{name}/file              text, data and digest of its file
    POST /api/v1/workflows/{name}/file/validate     {"document"} -> the validator's problems
    PUT  /api/v1/workflows/{name}/file              {"document", "digest"} -> saved; 409 when
                                                    the file changed since; 422 on an error
    GET  /api/v1/workflows/{name}/file/history      the kept versions, newest first
    POST /api/v1/workflows/{name}/file/restore      {"id", "digest"} -> a kept version back
    GET  /api/v1/workflow-palette                   plugins, handlers and their input schemas,
                                                    connectors with their kinds, workflows

The file stays the source of truth: a save writes the draft's data into the file's text
(:mod:`omnicore.workflows.roundtrip`: comments and key order kept), checks it with the same
function as ``omnicore workflows validate`` (:mod:`omnicore.workflows.validation`), writes it
only over the version the editor opened (:mod:`omnicore.workflows.files`: the previous one
kept), records a diff in the audit log and loads it at once. Page: ``/workflows/{name}/edit``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import record
from omnicore.console import base
from omnicore.console.bodies import json_body
from omnicore.console.errors import ApiError
from omnicore.console.render import page
from omnicore.console.responses import JSONResponse
from omnicore.workflows import FORMAT, Workflows
from omnicore.workflows.errors import FileChanged, WorkflowError
from omnicore.workflows.files import WorkflowFiles
from omnicore.workflows.roundtrip import rewrite
from omnicore.workflows.validation import Verdict, document_of, manifest_schemas, validate

__all__ = ["routes"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
#: The audit entry keeps this much of a save's diff.
MAX_DIFF = 20_000


def _service(request: Request) -> Workflows:
    service: Workflows = base.omni(request).workflows
    return service


def _name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not _NAME.fullmatch(name):
        raise ApiError(404, f"{name[:80]!r} is not a workflow name (1-64 lowercase letters, "
                            "digits, '-' and '_')", type="WorkflowNotFound")
    return name


def _files(request: Request) -> WorkflowFiles:
    return _service(request).files


def _path(request: Request, name: str) -> Path:
    """The file of workflow ``name``: the one it was loaded from, else ``NAME.yaml``."""
    folder = Path(_service(request).settings.dir)
    if name in _service(request).entries:
        source = Path(_service(request).entries.entry(name).source)
        if source.parent.resolve() == folder.resolve():
            return source
    return folder / f"{name}.yaml"


def _refs(request: Request) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """The running host's plugins (name → handlers) and their handlers' input schemas."""
    plugins: dict[str, list[str]] = {}
    schemas: dict[str, dict[str, Any]] = {}
    for info in base.omni(request).plugins:
        if info.handlers or info.state == "loaded":
            plugins[info.name] = list(info.handlers)
            schemas[info.name] = manifest_schemas(info.manifest)
    return plugins, schemas


def _check(request: Request, text: str, source: str) -> Verdict:
    plugins, schemas = _refs(request)
    return validate(text, source, _service(request).entries, plugins=plugins, schemas=schemas)


def _draft(request: Request, name: str, body: dict[str, Any]) -> tuple[Path, str, str, Any]:
    """The file, its text now, the draft's text and the draft's data."""
    document = body.get("document")
    if not isinstance(document, dict):
        raise ApiError(422, "give the draft as {\"document\": {...}}", type="InputInvalid",
                       field="document")
    if document.get("name") != name:
        raise ApiError(422, f"the draft's name must stay {name!r} (it names the file)",
                       type="InputInvalid", field="document.name")
    path = _path(request, name)
    old, _ = _files(request).read(path)
    return path, old, rewrite(old, document, path.name), document


@base.guarded
async def get_file(request: Request) -> Response:
    base.need(request)
    name = _name(request)
    path = _path(request, name)
    text, digest = await base.state(request).off_loop(_files(request).read, path)
    if not text:
        text = f"format: {FORMAT}\nname: {name}\nsteps: []\n"
    document = document_of(text, path.name)
    verdict = await base.state(request).off_loop(_check, request, text, path.name)
    return JSONResponse({"name": name, "file": path.name, "exists": bool(digest),
                         "digest": digest or None, "text": text, "document": document,
                         **verdict.as_dict(document)})


@base.guarded
async def validate_draft(request: Request) -> Response:
    base.need(request)
    name = _name(request)
    body = await json_body(request)
    path, _, text, document = await base.state(request).off_loop(_draft, request, name, body)
    verdict = await base.state(request).off_loop(_check, request, text, path.name)
    return JSONResponse({"text": text, **verdict.as_dict(document)})


@base.guarded
async def save_file(request: Request) -> Response:
    who = base.need(request, "admin")
    name = _name(request)
    body = await json_body(request)
    expected = body.get("digest")
    if expected is not None and not isinstance(expected, str):
        raise ApiError(422, "digest must be the file's digest as read, or null for a new file",
                       type="InputInvalid", field="digest")
    st = base.state(request)
    path, old, text, document = await st.off_loop(_draft, request, name, body)
    verdict = await st.off_loop(_check, request, text, path.name)
    if not verdict.ok:
        raise ApiError(422, f"{name}: the draft has errors; not saved",
                       type="DefinitionError", **verdict.as_dict(document))
    digest = await st.off_loop(_write, request, path, text, expected)
    _audit(request, who, name, "workflow.save", old, text, expected, digest)
    return JSONResponse({"name": name, "file": path.name, "digest": digest, "text": text,
                         "document": document, **verdict.as_dict(document)})


def _write(request: Request, path: Path, text: str, expected: str | None) -> str:
    try:
        digest = _files(request).write(path, text, expected)
    except FileChanged as exc:
        raise ApiError(409, str(exc), type="FileChanged", current=exc.current) from None
    _service(request).entries.scan()  # load it now, not at the next poll
    return digest


def _audit(request: Request, who: Any, name: str, verb: str, old: str, new: str,
           before: str | None, after: str) -> None:
    diff = "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True),
                                        f"{name} (before)", f"{name} (after)"))
    record(base.omni(request).storage, base.actor(request, who), verb, f"workflow:{name}",
           {"digest": before}, {"digest": after, "diff": diff[:MAX_DIFF]})


@base.guarded
async def file_history(request: Request) -> Response:
    base.need(request)
    name = _name(request)
    items = await base.state(request).off_loop(_files(request).history, _path(request, name))
    return JSONResponse({"items": items, "total": len(items)})


@base.guarded
async def restore_file(request: Request) -> Response:
    who = base.need(request, "admin")
    name = _name(request)
    body = await json_body(request)
    version_id, expected = body.get("id"), body.get("digest")
    if not isinstance(version_id, str) or not (expected is None or isinstance(expected, str)):
        raise ApiError(422, "give {\"id\": kept version, \"digest\": the file's digest now}",
                       type="InputInvalid", field="id")
    path = _path(request, name)
    files = _files(request)

    def restore() -> tuple[str, str, str]:
        old, _ = files.read(path)
        try:
            text = files.version(path, version_id)
        except WorkflowError as exc:
            raise ApiError(404, str(exc), type="WorkflowNotFound") from None
        return old, text, _write(request, path, text, expected)

    old, text, digest = await base.state(request).off_loop(restore)
    _audit(request, who, name, "workflow.restore", old, text, expected, digest)
    return JSONResponse({"name": name, "digest": digest, "text": text})


@base.guarded
async def palette(request: Request) -> Response:
    base.need(request)
    app = base.omni(request)
    plugins = []
    for info in app.plugins:
        described = {h.get("name"): h for h in info.manifest.get("handlers") or []
                     if isinstance(h, dict)}
        handlers = [{"name": h, "title": (described.get(h) or {}).get("title"),
                     "description": (described.get(h) or {}).get("description"),
                     "input_schema": (described.get(h) or {}).get("input_schema"),
                     "output_schema": (described.get(h) or {}).get("output_schema")}
                    for h in info.handlers]
        plugins.append({"name": info.name, "state": info.state,
                        "description": info.description, "handlers": handlers})
    try:
        kinds = _service(request).connector_kinds()
    except Exception:  # a bad connector config shows on the Connectors page, not here
        kinds = {}
    # Each with its kind: an HTTP connector takes requests, a postgres/mysql one statements.
    connectors = [{"name": name, "kind": kind} for name, kind in sorted(kinds.items())]
    flows = [e.name for e in _service(request).entries if e.workflow is not None]
    return JSONResponse({"plugins": plugins, "connectors": connectors, "workflows": flows})


async def editor_page(request: Request) -> Response:
    who = base.need(request)
    name = _name(request)
    return page(request, "workflow_edit.html", name=name, editable=who.user.is_admin)


async def new_workflow(request: Request) -> Response:
    """The "new workflow" form's target: the editor of the name it asks for (GET: nothing
    is written until the editor saves)."""
    base.need(request)
    name = (request.query_params.get("name") or "").strip()
    if not _NAME.fullmatch(name):
        return RedirectResponse("/workflows", status_code=303)
    return RedirectResponse(f"/workflows/{name}/edit", status_code=303)


def routes() -> list[BaseRoute]:
    p = "/workflows/{name}/file"
    return [
        *base.api(p, GET=get_file, PUT=save_file),
        *base.api(f"{p}/validate", POST=validate_draft),
        *base.api(f"{p}/history", GET=file_history),
        *base.api(f"{p}/restore", POST=restore_file),
        *base.api("/workflow-palette", GET=palette),
        Route("/workflow-editor", new_workflow, methods=["GET"]),
        Route("/workflows/{name}/edit", editor_page, methods=["GET"]),
    ]
