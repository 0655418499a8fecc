"""The server-rendered pages: sign-in, overview, plugins, logs, data, settings, users.

Pages read through the same helpers as the API and change things through the same
functions; forms post back with the session's CSRF token and, on success, redirect (303) to
the page with a one-time notice. Jinja autoescaping renders everything a plugin controls
(names, log lines, output) as text.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote, urlencode

from markupsafe import Markup
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from omnicore.config import render_config
from omnicore.console import api, chart_api, charts, invoke_form, jobs, kv, operations
from omnicore.console.assets import web_dir
from omnicore.console.audit import Actor, record
from omnicore.console.auth import Principal
from omnicore.console.bodies import MAX_FORM_BYTES, form_body, limit_body, parse_json
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.live import LEVELS
from omnicore.console.state import ConsoleState
from omnicore.console.users import check_password, check_username
from omnicore.errors import OmniError
from omnicore.sandbox.capability import DeferredCapability
from omnicore.sandbox.limits import ISOLATION_MODES, Limits

__all__ = ["NOTICES", "TEMPLATES", "done", "page", "read_form", "render_error", "routes"]

WEB = web_dir()
#: Room for the multipart framing and the other fields around an uploaded file.
UPLOAD_SLACK = 64 * 1024
TEMPLATES = Jinja2Templates(directory=str(WEB / "templates"))
NOTICES = {
    "granted": "Granted.", "revoked": "Revoked.", "config": "Config saved and live.",
    "limits": "Limits saved and live.", "enabled": "Enabled.", "disabled": "Disabled.",
    "mcp_expose": "Served to agents as an MCP tool.", "mcp_hide": "No longer an MCP tool.",
    "reloaded": "Reloaded.", "deleted": "Plugin deleted.", "uploaded": "Uploaded.",
    "instance-draining": "Asked to drain: it stops claiming work, finishes and exits.",
    "user": "User added.", "user-deleted": "User deleted.", "token-deleted": "Token revoked.",
    "retried": "Task queued again.", "cancelled": "Task cancelled.", "signed-out": "Signed out.",
    "key-deleted": "Key deleted.", "secret-set": "Secret saved (its value is not shown).",
    "secret-deleted": "Secret deleted.", "collection-dropped": "Collection dropped.",
    "memory-forgotten": "Memory forgotten.", "published": "Event published.",
    "schedule-run": "Queued a run now.", "schedule-paused": "Schedule paused.",
    "schedule-resumed": "Schedule resumed.", "granted-all": "Granted everything it requested.",
}
#: Where a notice or a form's error is shown: beside the form that caused it (the card of
#: that id), not at the top of the page.
PLACES = {
    "granted": "capabilities", "revoked": "capabilities", "granted-all": "capabilities",
    "grant": "capabilities", "revoke": "capabilities", "grant-all": "capabilities",
    "config": "config", "limits": "limits", "enabled": "about", "disabled": "about",
    "enable": "about", "disable": "about", "reloaded": "about", "reload": "about",
    "mcp_expose": "mcp", "mcp_hide": "mcp",
}


def _fmt_time(t: float | None) -> Markup:
    """A date and time that wraps between the two, never inside either (a phone's table)."""
    if not t:
        return Markup("-")
    day, clock = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)).split()
    return Markup('<span class="nowrap">{}</span> <span class="nowrap">{}</span>').format(
        day, clock)


def _fmt_us(us: Any) -> str:
    v = float(us or 0)
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"


TEMPLATES.env.filters["time"] = _fmt_time
TEMPLATES.env.filters["us"] = _fmt_us
TEMPLATES.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
TEMPLATES.env.filters["compact"] = lambda v: json.dumps(v, separators=(", ", ": "),
                                                        ensure_ascii=False)


def _state(request: Request) -> ConsoleState:
    st: ConsoleState = request.app.state.console
    return st


def _who(request: Request) -> Principal | None:
    try:
        return _state(request).auth.principal(request)
    except ApiError:
        return None


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    who = context.pop("who", None) or _who(request)
    done_what = request.query_params.get("done", "")
    # A form posts back to its page's URL, ?done= included: the answer to that post is not
    # the earlier action's success.
    notice = NOTICES.get(done_what) if request.method == "GET" else None
    ctx = {"who": who, "notice": notice, "notice_at": PLACES.get(done_what),
           "error_at": None, "app_name": _state(request).app.name,
           "csrf": who.csrf if who else "", "path": request.url.path, **context}
    return TEMPLATES.TemplateResponse(request, template, ctx, status_code=status)


def render_error(request: Request, exc: ApiError) -> Response:
    if exc.status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
    return page(request, "error.html", exc.status, error=exc)


def done(url: str, what: str) -> RedirectResponse:
    """Back to ``url`` with the one-time notice ``NOTICES[what]``."""
    sep = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{sep}done={what}", status_code=303)


async def read_form(request: Request, admin: bool = True) -> tuple[Principal, dict[str, str]]:
    """Who posted (checked for the role before a byte of the body is read), the URL-encoded
    form (up to ``MAX_FORM_BYTES``), checked for the CSRF token it carries."""
    auth = _state(request).auth
    who = auth.identify(request, "admin" if admin else "viewer")
    fields = await form_body(request)
    auth.check_csrf(request, who, fields.get("csrf", ""))
    return who, fields


# -- sign-in -------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str:
    # Only a path on this site: "//evil.example" or "https://..." would be an open redirect.
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login(request: Request) -> Response:
    st = _state(request)
    error = None
    status = 200
    name = ""
    if request.method == "POST":
        fields = await form_body(request)
        name = fields.get("name", "")[:64]
        try:
            st.auth.check_login_csrf(request, fields.get("csrf", ""))
            sid, _user = await st.auth.sign_in(request, name, fields.get("password", ""))
        except ApiError as exc:
            if exc.status == 503:
                raise
            error, status = exc.message, exc.status
        else:
            back: Response = RedirectResponse(_safe_next(request.query_params.get("next")), 303)
            # Whatever session cookie came in is replaced, never reused: no fixation.
            st.auth.set_session_cookie(request, back, sid)
            return back
    token = st.auth.login_csrf(request)
    response = page(request, "login.html", status, who=None, error=error, name=name,
                    login_csrf=token, no_users=st.auth.store.count() == 0)
    st.auth.set_login_csrf(request, response, token)
    return response


async def logout(request: Request) -> Response:
    await read_form(request, admin=False)
    response = RedirectResponse("/login?done=signed-out", status_code=303)
    _state(request).auth.clear_session(request, response)
    return response


async def setup(request: Request) -> Response:
    st = _state(request)
    token = request.query_params.get("token", "")
    if not st.auth.store.setup_valid(token):
        raise ApiError(404, "this setup link was used already or has expired; create a user "
                            "with `omnicore users add NAME --app DIR`", type="SetupUsed")
    error = None
    if request.method == "POST":
        fields = await form_body(request)
        try:
            st.auth.check_login_csrf(request, fields.get("csrf", ""))
            # Checked before the link is used up: a typo must not burn it.
            check_username(fields.get("name", ""))
            check_password(fields.get("password", ""))
            if fields.get("password") != fields.get("password2"):
                raise ApiError(422, "the two passwords differ")
            if not st.auth.store.consume_setup(token):
                raise ApiError(404, "this setup link was used already")
            user = await st.auth.hashing(st.auth.store.add, fields["name"],
                                         fields["password"], "admin")
        except ApiError as exc:
            error = exc.message
        except OmniError as exc:
            error = str(exc)
        else:
            record(st.app.storage, Actor(user.name, request.client.host if request.client
                                         else None), "user.add", f"user:{user.name}", None,
                   {"role": user.role, "by": "setup link"})
            sid, _ = await st.off_loop(st.auth.store.new_session, user, st.auth.session_ttl_s)
            signed_in: Response = RedirectResponse("/", status_code=303)
            st.auth.set_session_cookie(request, signed_in, sid)
            return signed_in
    login_csrf = st.auth.login_csrf(request)
    response = page(request, "setup.html", 422 if error else 200, who=None, error=error,
                    login_csrf=login_csrf, token=token)
    st.auth.set_login_csrf(request, response, login_csrf)
    return response


# -- overview and plugins ------------------------------------------------------------------

async def overview(request: Request) -> Response:
    st = _state(request)
    st.auth.require(request)
    health = st.app.health.check().to_dict()
    figures = await st.pulse.figures()  # the live streams' copy, at most a tick old
    span = charts.span_of(request.query_params.get("range"))
    return page(request, "overview.html", info=api.overview(st.app), health=health,
                charts=charts.host_charts(st.history, span), span=span, figures=figures)


#: Plugins a page of the list shows: 1,000 plugins on one page took 100 ms to render.
PLUGINS_PAGE = 100


def _plugin_list(request: Request, st: ConsoleState) -> dict[str, Any]:
    """One page of the plugin list, filtered by name (``q``) and ``state``."""
    q = request.query_params
    text, state = q.get("q", "")[:100], q.get("state", "")
    found = [i for i in st.app.plugins
             if text.lower() in i.name.lower() and state in ("", i.state)]
    raw = q.get("page", "1")
    number = int(raw) if raw.isdecimal() and 0 < int(raw) <= 10_000 else 1
    start = (number - 1) * PLUGINS_PAGE
    shown = {k: v for k, v in (("q", text), ("state", state)) if v}

    def link(n: int) -> str:
        return f"/plugins?{urlencode({**shown, 'page': n})}"

    return {"plugins": [api.plugin_doc(i) for i in found[start:start + PLUGINS_PAGE]],
            "total": len(found), "q": text, "state": state,
            "next_url": link(number + 1) if len(found) > start + PLUGINS_PAGE else None,
            "prev_url": link(number - 1) if number > 1 else None,
            "states": ("loaded", "needs-grant", "failed", "disabled", "circuit-open",
                       "half-open")}


async def plugins(request: Request) -> Response:
    st = _state(request)
    st.auth.require(request)
    return page(request, "plugins.html", **_plugin_list(request, st), upload_error=None,
                max_upload=st.max_upload_bytes)


async def upload(request: Request) -> Response:
    st = _state(request)
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
                                 by=Actor.of(request, who))
    except ApiError as exc:
        return page(request, "plugins.html", exc.status, **_plugin_list(request, st),
                    upload_error=exc, max_upload=st.max_upload_bytes)
    return done(f"/plugins/{quote(info.name, safe='')}", "uploaded")


def _plugin_context(st: ConsoleState, name: str, span: str = "1h") -> dict[str, Any]:
    info = st.app.plugins.get(name)
    doc = api.plugin_doc(info)
    lines = st.app.plugins.logs(name).lines(50)
    lines.reverse()
    limits = info.limits.as_dict() if info.limits else Limits().as_dict()
    from omnicore.console import events  # it renders with this module's pages
    from omnicore.mcp.expose import handler_tools

    recent = [jobs.task_doc(t) for t in st.app.jobs.list(plugin=name, limit=10)]
    return {"schedules": jobs.schedule_docs(st.app, name), "recent_jobs": recent,
            "subscriptions": [s for s in events.subscribers(st.app) if s["plugin"] == name],
            "plugin": doc, "lines": lines, "limits": limits,
            "isolation_modes": ISOLATION_MODES,
            "capabilities": api.capability_names(st.app),
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
    st = _state(request)
    st.auth.require(request)
    try:
        ctx = _plugin_context(st, request.path_params["name"],
                              charts.span_of(request.query_params.get("range")))
    except OmniError as exc:
        raise from_omni(exc) from exc
    return page(request, "plugin.html", **ctx, invoke=None, form_error=None)


async def plugin_post(request: Request) -> Response:
    """Every form on a plugin's page posts here with ``action``."""
    st = _state(request)
    name = request.path_params["name"]
    who, f = await read_form(request)
    by = Actor.of(request, who)
    action = f.get("action", "")
    url = f"/plugins/{quote(name, safe='')}"
    invoke_result = None
    try:
        if action == "grant":
            options = _json_field(f.get("options", "") or "{}", "options")
            await st.off_loop(api.grant, st.app, name, f.get("capability", ""), options, by)
            return done(url, "granted")
        if action == "revoke":
            await st.off_loop(api.grant, st.app, name, f.get("capability", ""), None, by)
            return done(url, "revoked")
        if action == "grant-all":
            wanted = {cap: _json_field(f.get(f"options_{cap}", "") or "{}", f"options of {cap}")
                      for cap in st.app.plugins.get(name).missing}
            for cap, options in wanted.items():
                await st.off_loop(api.grant, st.app, name, cap, options, by)
            return done(url, "granted-all")
        if action == "config":
            config = _json_field(f.get("config", "") or "{}", "config")
            await st.off_loop(operations.set_settings, st.app, name, by, config=config)
            return done(url, "config")
        if action == "limits":
            limits = _limits_from(f)
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
                invoke_result = await api.call_plugin(
                    st, name, {"handler": f.get("handler", ""), "input": text})
            except ApiError as exc:
                invoke_result = {"error": exc}
            ctx = _plugin_context(st, name)
            return page(request, "plugin.html", **ctx, invoke=invoke_result, form_error=None,
                        invoke_form=f)
        raise ApiError(400, f"unknown action {action[:40]!r}")
    except OmniError as exc:
        error = from_omni(exc)
    except ApiError as exc:
        error = exc
    if error.status == 404 and name not in st.app.plugins:
        raise error
    ctx = _plugin_context(st, name)
    return page(request, "plugin.html", error.status, **ctx, invoke=None, form_error=error,
                invoke_form=f, error_at=PLACES.get(action))


def _json_field(text: str, what: str, objects_only: bool = True) -> Any:
    try:
        value = parse_json(text, what)
    except ApiError as exc:
        raise ApiError(422, exc.message, type=exc.type) from None
    if objects_only and not isinstance(value, dict):
        raise ApiError(422, f"{what} must be a JSON object", type="InvalidJson")
    return value


def _limits_from(fields: dict[str, str]) -> dict[str, int | str | None]:
    """The limits the form sets away from their defaults: a value left at its default is
    not written, so a later change of the default reaches this plugin too."""
    out: dict[str, int | str | None] = {}
    defaults = Limits().as_dict()
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


# -- logs, data, settings, users ----------------------------------------------------

async def logs(request: Request) -> Response:
    st = _state(request)
    st.auth.require(request)
    plugin = request.query_params.get("plugin", "")
    level = request.query_params.get("level", "")
    if level not in LEVELS:
        level = ""
    entries = st.feed.recent(plugin=plugin or None, level=level or None, limit=200)
    entries.reverse()
    return page(request, "logs.html", entries=entries, plugin=plugin, level=level,
                levels=LEVELS, names=[i.name for i in st.app.plugins])


async def data(request: Request) -> Response:
    st = _state(request)
    st.auth.require(request)
    plugin = request.query_params.get("plugin", "")
    prefix = request.query_params.get("prefix", "")[:1024]
    names = await st.off_loop(st.app.kv.plugins)
    keys: list[tuple[str, str]] = []
    usage = None
    if plugin:
        store = st.app.kv.for_plugin(plugin)
        listed = await st.off_loop(store.list, prefix, 200)
        for key in listed:
            raw = await st.off_loop(store.get, key)
            shown = "" if raw is None else raw[:200].decode("utf-8", "replace")
            keys.append((key, shown))
        usage = await st.off_loop(store.usage)
    return page(request, "data.html", names=names, plugin=plugin, prefix=prefix, keys=keys,
                usage=usage)


async def data_delete(request: Request) -> Response:
    st = _state(request)
    who, f = await read_form(request)
    plugin, key = f.get("plugin", ""), f.get("key", "")
    if not plugin:
        raise ApiError(422, "which plugin's key?")
    await st.off_loop(kv.delete_key, st.app, plugin, key, Actor.of(request, who))
    return RedirectResponse(f"/data?{urlencode({'plugin': plugin, 'done': 'key-deleted'})}",
                            status_code=303)


async def settings(request: Request) -> Response:
    st = _state(request)
    st.auth.require(request)
    sections: dict[str, list[tuple[str, str, str]]] = {"general": []}
    for key, value, source in render_config(st.app.config, mask=True):
        top = key.split(".")[0] if "." in key else "general"
        sections.setdefault(top, []).append((key, value, source))
    return page(request, "settings.html", sections=sections)


async def users(request: Request) -> Response:
    st = _state(request)
    who = st.auth.require(request)
    store = st.auth.store
    return page(request, "users.html", users=store.users() if who.user.is_admin else [],
                tokens=store.tokens(None if who.user.is_admin else who.user.name),
                new_token=None, form_error=None)


async def users_post(request: Request) -> Response:
    st = _state(request)
    who, f = await read_form(request)
    store = st.auth.store
    by = Actor.of(request, who)
    action = f.get("action", "")
    new_token = None
    try:
        if action == "add-user":
            user = await st.auth.hashing(store.add, f.get("name", ""), f.get("password", ""),
                                         f.get("role", "viewer"))
            record(st.app.storage, by, "user.add", f"user:{user.name}", None,
                   {"role": user.role})
            return done("/users", "user")
        if action == "delete-user":
            if f.get("name") == who.user.name:
                raise ApiError(409, "you cannot delete yourself")
            if store.delete(f.get("name", "")):
                record(st.app.storage, by, "user.delete", f"user:{f.get('name')}")
            return done("/users", "user-deleted")
        if action == "new-token":
            if who.via != "session":
                raise ApiError(409, "sign in as a user to create tokens")
            new_token, token = store.new_token(who.user.name, f.get("label", ""))
            record(st.app.storage, by, "token.add", f"token:{token.id}", None,
                   {"label": token.label, "user": token.user})
        elif action == "delete-token":
            raw = f.get("id", "")
            if raw.isdecimal() and store.delete_token(int(raw)):
                record(st.app.storage, by, "token.revoke", f"token:{raw}")
            return done("/users", "token-deleted")
        else:
            raise ApiError(400, f"unknown action {action[:40]!r}")
        error = None
    except OmniError as exc:
        error = from_omni(exc)
    except ApiError as exc:
        error = exc
    return page(request, "users.html", error.status if error else 200, users=store.users(),
                tokens=store.tokens(), new_token=new_token, form_error=error)


def routes() -> list[BaseRoute]:
    return [
        Route("/", overview),
        Route("/login", login, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/setup", setup, methods=["GET", "POST"]),
        Route("/plugins", plugins),
        Route("/plugins/upload", upload, methods=["POST"]),
        Route("/plugins/{name}", plugin_page, methods=["GET"]),
        Route("/plugins/{name}", plugin_post, methods=["POST"]),
        Route("/logs", logs),
        Route("/data", data),
        Route("/data/delete", data_delete, methods=["POST"]),
        Route("/settings", settings),
        Route("/users", users, methods=["GET"]),
        Route("/users", users_post, methods=["POST"]),
    ]

