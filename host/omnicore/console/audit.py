"""The audit log's API and page (the entries :mod:`omnicore.accounts.audit` records).

API (any signed-in user; values are redacted when recorded)::

    GET /api/v1/audit   newest first; ?user= ?verb= (a prefix) ?plugin= ?since= (unix time)
                        ?before_id= (the page after, as ``next`` says) ?limit=
                        ?format=csv|json: the same entries as a download (up to 10,000)

Page: ``/audit``, with the same filters and the two exports.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import VERBS, entry_doc
from omnicore.console.base import api, guarded, need, state
from omnicore.console.errors import ApiError
from omnicore.console.render import page
from omnicore.console.responses import JSONResponse

__all__ = ["routes"]

PAGE = 100
EXPORT_MAX = 10_000


def _filters(request: Request) -> dict[str, Any]:
    q = request.query_params
    since_raw = q.get("since") or ""
    try:
        since = float(since_raw) if since_raw else None
    except ValueError:
        raise ApiError(400, f"query parameter since must be a unix time, got "
                            f"{since_raw[:40]!r}", type="BadParameter") from None
    return {"actor": q.get("user") or None, "action_prefix": (q.get("verb") or "")[:64],
            "plugin": q.get("plugin") or None, "since": since}


def _int(request: Request, key: str, default: int | None, high: int) -> int | None:
    raw = request.query_params.get(key) or ""
    if not raw:
        return default
    if not raw.isdecimal() or not 1 <= int(raw) <= high:
        raise ApiError(400, f"query parameter {key} must be an integer from 1 to {high}",
                       type="BadParameter")
    return int(raw)


def query(request: Request) -> tuple[list[dict[str, Any]], str | None]:
    """The entries ``request`` asks for, newest first; the query string of the next page."""
    export = request.query_params.get("format") in ("csv", "json")
    limit = _int(request, "limit", EXPORT_MAX if export else PAGE, EXPORT_MAX) or PAGE
    before_id = _int(request, "before_id", None, 1 << 62)
    filters = _filters(request)
    rows = state(request).app.storage.audit.entries(**filters, before_id=before_id,
                                                     limit=limit + 1)
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        keep = {k: v for k, v in request.query_params.items() if k not in ("before_id",)}
        nxt = urlencode({**keep, "before_id": rows[-1].id})
    return [entry_doc(e) for e in rows], nxt


def _csv(items: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    columns = ("id", "time", "user", "verb", "plugin", "subject", "before", "after", "origin")
    writer = csv.writer(out)
    writer.writerow(columns)
    for item in items:
        writer.writerow([json.dumps(item[c], ensure_ascii=False)
                         if c in ("before", "after") and item[c] is not None else item[c]
                         for c in columns])
    return out.getvalue()


@guarded
async def list_audit(request: Request) -> Response:
    need(request)
    fmt = request.query_params.get("format")
    if fmt not in (None, "", "csv", "json"):
        raise ApiError(400, "query parameter format must be csv or json", type="BadParameter")
    items, nxt = await state(request).off_loop(query, request)
    if fmt == "csv":
        return Response(_csv(items), media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": 'attachment; filename="audit.csv"'})
    if fmt == "json":
        return JSONResponse(items, headers={
            "Content-Disposition": 'attachment; filename="audit.json"'})
    return JSONResponse({"items": items, "limit": len(items),
                         "next": f"/api/v1/audit?{nxt}" if nxt else None})


async def audit_page(request: Request) -> Response:
    need(request)
    st = state(request)
    items, nxt = await st.off_loop(query, request)
    q = request.query_params
    shown = {k: q.get(k, "") for k in ("user", "verb", "plugin")}
    exports = urlencode({k: v for k, v in shown.items() if v})
    return page(request, "audit.html", entries=items, next=nxt, filters=shown, verbs=VERBS,
                plugins=sorted(i.name for i in st.app.plugins), exports=exports)


def routes() -> list[BaseRoute]:
    return [*api("/audit", GET=list_audit), Route("/audit", audit_page, methods=["GET"])]
