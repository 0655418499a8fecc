"""Rendering the console's pages: the templates, their filters, the one-time notices and
where each shows, and the page's answer to a form.

Forms post back with the session's CSRF token and, on success, redirect (303) to the page
with a one-time notice (:func:`done`). Jinja autoescaping renders everything a plugin controls
(names, log lines, output) as text.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from omnicore.console.assets import web_dir
from omnicore.console.base import state
from omnicore.console.bodies import form_body
from omnicore.console.errors import ApiError

if TYPE_CHECKING:
    from omnicore.console.auth import Principal

__all__ = ["NOTICES", "PLACES", "TEMPLATES", "done", "page", "read_form", "render_error"]

WEB = web_dir()
TEMPLATES = Jinja2Templates(directory=str(WEB / "templates"))
NOTICES = {
    "granted": "Granted.", "revoked": "Revoked.", "config": "Config saved and live.",
    "limits": "Limits saved and live.", "enabled": "Enabled.", "disabled": "Disabled.",
    "mcp_expose": "Served to agents as an MCP tool.", "mcp_hide": "No longer an MCP tool.",
    "reloaded": "Reloaded.", "deleted": "Plugin deleted.", "uploaded": "Uploaded.",
    "instance-draining": "Asked to drain: it stops claiming work, finishes and exits.",
    "user": "User added.", "user-deleted": "User deleted.", "token-deleted": "Token revoked.",
    "retried": "Job queued again.", "cancelled": "Job cancelled.", "signed-out": "Signed out.",
    "key-deleted": "Key deleted.", "secret-set": "Secret saved (its value is not shown).",
    "secret-set-pooled": "Secret saved (its value is not shown). A database connector uses it: "
                         "the connections it has open keep the value they were opened with, "
                         "so a wrong password shows only when it opens a new one (watch its "
                         "Last error below).",
    "secret-deleted": "Secret deleted.", "collection-dropped": "Collection dropped.",
    "memory-forgotten": "Memory forgotten.", "published": "Event published.",
    "schedule-run": "Queued a run now.", "schedule-paused": "Schedule paused.",
    "schedule-resumed": "Schedule resumed.", "granted-all": "Granted everything it requested.",
    "oauth_revoked": "Access revoked: the agent's tokens no longer work.",
    "admin-exists": "An admin exists already: sign in (an admin adds further users).",
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


def _fmt_slashes(text: Any) -> Markup:
    """Text (a path, a message holding one) that may wrap after each ``/``, ``_``, ``.`` or
    ``-``, rather than inside a name (a phone's narrow card: a temporary folder's long
    ``test_every_page_fits_the_scree0`` broke as ``fit|s`` with a break after slashes only)."""
    return Markup("<wbr>").join(_SEPARATED.split(str(text)))


#: The places after a separator, where a path or a key may wrap.
_SEPARATED = re.compile(r"(?<=[/_.\-])")


def _fmt_us(us: Any) -> str:
    v = float(us or 0)
    return f"{v / 1000:.2f} ms" if v >= 1000 else f"{v:.1f} µs"


TEMPLATES.env.filters["time"] = _fmt_time
TEMPLATES.env.filters["us"] = _fmt_us
TEMPLATES.env.filters["slashes"] = _fmt_slashes
TEMPLATES.env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True)
TEMPLATES.env.filters["compact"] = lambda v: json.dumps(v, separators=(", ", ": "),
                                                        ensure_ascii=False)


def _who(request: Request) -> Principal | None:
    try:
        return state(request).auth.principal(request)
    except ApiError:
        return None


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    who = context.pop("who", None) or _who(request)
    done_what = request.query_params.get("done", "")
    # A form posts back to its page's URL, ?done= included: the answer to that post is not
    # the earlier action's success.
    notice = NOTICES.get(done_what) if request.method == "GET" else None
    ctx = {"who": who, "notice": notice, "notice_at": PLACES.get(done_what),
           "error_at": None, "app_name": state(request).app.name,
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
    auth = state(request).auth
    who = auth.identify(request, "admin" if admin else "viewer")
    fields = await form_body(request)
    auth.check_csrf(request, who, fields.get("csrf", ""))
    return who, fields
