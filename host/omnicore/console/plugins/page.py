"""The plugin pages: the list (``/plugins``, filtered and paged, with the upload form) and
one plugin's page (``/plugins/{name}``), where every form posts back with an ``action``."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.console import chart_api, charts, events, jobs
from omnicore.console.base import actor, state
from omnicore.console.bodies import MAX_FORM_BYTES, limit_body, parse_json
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.plugins import invoke_form, operations, rest
from omnicore.console.render import PLACES, done, page, read_form
from omnicore.console.state import ConsoleState
from omnicore.errors import OmniError
from omnicore.sandbox.capability import DeferredCapability
from omnicore.sandbox.limits import ISOLATION_MODES, Limits

__all__ = ["UPLOAD_SLACK", "routes"]

#: Room for the multipart framing and the other fields around an uploaded file.
UPLOAD_SLACK = 64 * 1024


#: Plugins a page of the list shows: 1,000 plugins on one page took 100 ms to render.
PLUGINS_PAGE = 100


def _plugin_list(request: Request, st: ConsoleState) -> dict[str, Any]:
    """One page of the plugin list, filtered by name (``q``) and ``state``."""
    q = request.query_params
    text, wanted = q.get("q", "")[:100], q.get("state", "")
    found = [i for i in st.app.plugins
             if text.lower() in i.name.lower() and wanted in ("", i.state)]
    raw = q.get("page", "1")
    number = int(raw) if raw.isdecimal() and 0 < int(raw) <= 10_000 else 1
    start = (number - 1) * PLUGINS_PAGE
    shown = {k: v for k, v in (("q", text), ("state", wanted)) if v}

    def link(n: int) -> str:
        return f"/plugins?{urlencode({**shown, 'page': n})}"

    return {"plugins": [rest.plugin_doc(i) for i in found[start:start + PLUGINS_PAGE]],
            "total": len(found), "q": text, "state": wanted,
            "next_url": link(number + 1) if len(found) > start + PLUGINS_PAGE else None,
            "prev_url": link(number - 1) if number > 1 else None,
            "states": ("loaded", "needs-grant", "failed", "disabled", "circuit-open",
                       "half-open"),
            # Where the upload form's file goes (catalog.uploads), as its hint says.
            "uploads_to_catalog": operations.uploads_to_catalog(st.app)}


async def plugins(request: Request) -> Response:
    st = state(request)
    st.auth.require(request)
    return page(request, "plugins.html", **_plugin_list(request, st), upload_error=None,
                max_upload=st.max_upload_bytes)


async def upload(request: Request) -> Response:
    st = state(request)
    who = st.auth.identify(request, "admin")  # before a byte of the body is read
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > st.max_upload_bytes + UPLOAD_SLACK:
        raise ApiError(413, f"uploads are limited to {st.max_upload_bytes} bytes "
                            "(console.max_upload_bytes)")
    # The cap holds the multipart parser too, which spools a file part to disk unbounded.
    limit_body(request, st.max_upload_bytes + UPLOAD_SLACK)
    async with request.form(max_files=1, max_fields=10,
                            max_part_size=MAX_FORM_BYTES) as form:
        csrf = form.get("csrf")
        st.auth.check_csrf(request, who, csrf if isinstance(csrf, str) else "")
        file = form.get("file")
        if not isinstance(file, UploadFile) or not file.filename:
            raise ApiError(422, "choose a .wasm file to upload", type="BadRequest")
        data = await file.read(st.max_upload_bytes + 1)
        filename, replace = file.filename, form.get("replace") == "on"
    try:
        info = await st.off_loop(operations.upload_plugin, st.app, filename, data,
                                 max_bytes=st.max_upload_bytes, replace=replace,
                                 by=actor(request, who))
    except ApiError as exc:
        return page(request, "plugins.html", exc.status, **_plugin_list(request, st),
                    upload_error=exc, max_upload=st.max_upload_bytes)
    return done(f"/plugins/{quote(info.name, safe='')}", "uploaded")


def _plugin_context(st: ConsoleState, name: str, span: str = "1h") -> dict[str, Any]:
    info = st.app.plugins.get(name)
    doc = rest.plugin_doc(info)
    lines = st.app.plugins.logs(name).lines(50)
    lines.reverse()
    limits = (info.limits or st.app.plugins.default_limits).as_dict()
    from omnicore.mcp.expose import handler_tools

    recent = [jobs.job_doc(t) for t in st.app.jobs.list(plugin=name, limit=10)]
    return {"schedules": jobs.schedule_docs(st.app, name), "recent_jobs": recent,
            "subscriptions": [s for s in events.subscribers(st.app) if s["plugin"] == name],
            "plugin": doc, "lines": lines, "limits": limits,
            "isolation_modes": ISOLATION_MODES,
            "capabilities": rest.capability_names(st.app),
            "cap_docs": _capability_docs(st, info.missing),
            "config_text":
            json.dumps(info.config, indent=2, sort_keys=True),
            "mcp_tools": handler_tools(st.app, name), "span": span,
            "charts": charts.plugin_charts(st.history, name, span,
                                           metered=chart_api.metered(info)),
            "memory": charts.size_text(st.history.memory.get(name)),
            "abi": {"1": "omnicore ABI v1", "extism": "Extism", "component": "component"}.get(
                info.abi or "", info.abi or "-"), "world": info.world,
            "arg_fields": invoke_form.fields_of(info.manifest),
            "field_name": invoke_form.field_name}


def _capability_docs(st: ConsoleState, names: tuple[str, ...]) -> dict[str, str]:
    """What each of ``names`` grants, for the review before granting them (a capability
    still deferred is loaded: granting it will load it anyway)."""
    out = {}
    for cap in st.app.extensions.capabilities():
        if cap.name in names:
            out[cap.name] = (cap.load() if isinstance(cap, DeferredCapability)
                             else cap).description
    return out


async def plugin_page(request: Request) -> Response:
    st = state(request)
    st.auth.require(request)
    try:
        ctx = _plugin_context(st, request.path_params["name"],
                              charts.span_of(request.query_params.get("range"),
                                             st.app.uptime))
    except OmniError as exc:
        raise from_omni(exc) from exc
    return page(request, "plugin.html", **ctx, **_routes_of(request, st, ctx), invoke=None,
                form_error=None)


def _routes_of(request: Request, st: ConsoleState, ctx: dict[str, Any]) -> dict[str, Any]:
    """The plugin's HTTP routes served here, and its manifest's proposals (serve.routes)."""
    server = getattr(request.app.state, "plugin_routes", None)
    name = str(ctx["plugin"]["name"])
    if server is None or name not in st.app.plugins:
        return {"routes": [], "route_proposals": []}
    manifest = st.app.plugins.get(name).manifest
    proposals = manifest.get("routes") if isinstance(manifest, dict) else None
    return {"routes": [r for r in server.describe() if r["plugin"] == name],
            "route_proposals": [p for p in proposals or () if isinstance(p, dict)]}


async def plugin_post(request: Request) -> Response:
    """Every form on a plugin's page posts here with ``action``."""
    st = state(request)
    name = request.path_params["name"]
    who, f = await read_form(request)
    by = actor(request, who)
    action = f.get("action", "")
    url = f"/plugins/{quote(name, safe='')}"
    invoke_result = None
    try:
        if action == "grant":
            options = _json_field(f.get("options", "") or "{}", "options")
            await st.off_loop(rest.grant, st.app, name, f.get("capability", ""), options, by)
            return done(url, "granted")
        if action == "revoke":
            await st.off_loop(rest.grant, st.app, name, f.get("capability", ""), None, by)
            return done(url, "revoked")
        if action == "grant-all":
            wanted = {cap: _json_field(f.get(f"options_{cap}", "") or "{}", f"options of {cap}")
                      for cap in st.app.plugins.get(name).missing}
            for cap, options in wanted.items():
                await st.off_loop(rest.grant, st.app, name, cap, options, by)
            return done(url, "granted-all")
        if action == "config":
            config = _json_field(f.get("config", "") or "{}", "config")
            await st.off_loop(operations.set_settings, st.app, name, by, config=config)
            return done(url, "config")
        if action == "limits":
            limits = _limits_from(f, st.app.plugins.default_limits)
            await st.off_loop(operations.set_settings, st.app, name, by, limits=limits)
            return done(url, "limits")
        if action in ("enable", "disable"):
            await st.off_loop(operations.set_settings, st.app, name, by,
                              enabled=action == "enable")
            return done(url, f"{action}d")
        if action in ("mcp_expose", "mcp_hide"):
            from omnicore.mcp.expose import set_exposed

            await st.off_loop(set_exposed, st.app, name, f.get("handler", ""),
                              action == "mcp_expose", by=by.name, origin=by.origin)
            return done(url, action)
        if action == "reload":
            await st.off_loop(operations.reload_plugin, st.app, name, by)
            return done(url, "reloaded")
        if action == "delete":
            await st.off_loop(operations.delete_plugin, st.app, name, by)
            return done("/plugins", "deleted")
        if action == "invoke":
            text = f.get("input", "")
            handler = f.get("handler", "")
            fields = invoke_form.fields_of(st.app.plugins.get(name).manifest).get(handler)
            if f.get("format") == "fields" and fields:
                text = json.dumps(invoke_form.arguments_from(f, handler, fields))
            elif f.get("format") == "json" and text.strip():
                text = json.dumps(_json_field(text, "input", objects_only=False))
            try:
                invoke_result = await rest.call_plugin(
                    st, name, {"handler": f.get("handler", ""), "input": text})
            except ApiError as exc:
                invoke_result = {"error": exc}
            ctx = _plugin_context(st, name)
            return page(request, "plugin.html", **ctx, **_routes_of(request, st, ctx),
                        invoke=invoke_result, form_error=None, invoke_form=f)
        raise ApiError(400, f"unknown action {action[:40]!r}")
    except OmniError as exc:
        error = from_omni(exc)
    except ApiError as exc:
        error = exc
    if error.status == 404 and name not in st.app.plugins:
        raise error
    ctx = _plugin_context(st, name)
    return page(request, "plugin.html", error.status, **ctx, **_routes_of(request, st, ctx),
                invoke=None, form_error=error, invoke_form=f, error_at=PLACES.get(action))


def _json_field(text: str, what: str, objects_only: bool = True) -> Any:
    try:
        value = parse_json(text, what)
    except ApiError as exc:
        raise ApiError(422, exc.message, type=exc.type) from None
    if objects_only and not isinstance(value, dict):
        raise ApiError(422, f"{what} must be a JSON object", type="InvalidJson")
    return value


def _limits_from(fields: dict[str, str], app_defaults: Limits) -> dict[str, int | str | None]:
    """The limits the form sets away from the app's defaults (``sandbox.limits`` over the
    product's): a value left at its default is not written, so a later change of the
    default in omnicore.yaml reaches this plugin too."""
    out: dict[str, int | str | None] = {}
    defaults = app_defaults.as_dict()
    for key in defaults:
        raw = fields.get(f"limit_{key}", "").strip()
        if raw == "":
            continue
        if isinstance(defaults[key], str):  # isolation: a word, checked by Limits
            if raw != defaults[key]:
                out[key] = raw
            continue
        if raw.lower() in ("none", "off"):
            if defaults[key] is not None:
                out[key] = None
            continue
        if not raw.isdecimal():
            raise ApiError(422, f"limit {key} must be a whole number, got {raw[:30]!r}",
                           type="ConfigError")
        if int(raw) != defaults[key]:
            out[key] = int(raw)
    return out


def routes() -> list[BaseRoute]:
    return [
        Route("/plugins", plugins),
        Route("/plugins/upload", upload, methods=["POST"]),
        Route("/plugins/{name}", plugin_page, methods=["GET"]),
        Route("/plugins/{name}", plugin_post, methods=["POST"]),
    ]
