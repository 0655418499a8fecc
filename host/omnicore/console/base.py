"""What every route of the console uses around a request: who asks (:func:`need`), the app
(:func:`state`), paging and filters of the query string, the API's error shape on the way out
(:func:`guarded`) and who made a change (:func:`actor`).

The REST API lives under ``/api/v1``: reads need any signed-in user, every change needs an
admin. Lists are paginated with ``limit`` / ``offset`` and answer
``{"items": [...], "total": n, "limit": l, "offset": o}``; failures use the one error shape of
:mod:`omnicore.console.errors`. Pages render through :mod:`omnicore.console.render`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import Actor
from omnicore.console.bodies import MAX_JSON_BYTES
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.console.auth import Principal
    from omnicore.console.state import ConsoleState

__all__ = ["API_ROOT", "MAX_PAGE", "Handler", "actor", "api", "app_listing", "choice", "guarded",
           "lister", "need", "omni", "page_params", "paginate", "path_id", "state"]

MAX_PAGE = 500
Handler = Callable[[Request], Awaitable[Response]]
#: Where the REST API stands; every module's API routes are paths below it.
API_ROOT = "/api/v1"


def api(path: str, **handlers: Handler) -> list[BaseRoute]:
    """The REST API's routes of ``path`` (below :data:`API_ROOT`), one a handler, in the order
    given: ``*api("/catalog/{name}", GET=get_entry, DELETE=delete_entry)``. A handler named
    for two methods is one route (a 405 there names both in its Allow)."""
    methods: dict[Handler, list[str]] = {}
    for method, handler in handlers.items():
        methods.setdefault(handler, []).append(method)
    return [Route(API_ROOT + path, handler, methods=names) for handler, names in methods.items()]


def state(request: Request) -> ConsoleState:
    st: ConsoleState = request.app.state.console
    return st


def omni(request: Request) -> OmniApp:
    return state(request).app


def need(request: Request, role: str = "viewer") -> Principal:
    """Who asks, checked for ``role`` and (changes) the CSRF token in the header: every API
    route calls it before reading the body."""
    return state(request).auth.require(request, "admin" if role == "admin" else "viewer")


def actor(request: Request, who: Principal) -> Actor:
    """The signed-in user (or the API token's user) of ``request``, for the audit trail."""
    return Actor.web(who.user.name, request.client.host if request.client else None,
                     token=who.via == "token")


def page_params(request: Request, default: int = 50) -> tuple[int, int]:
    def number(key: str, fallback: int, low: int, high: int) -> int:
        raw = request.query_params.get(key)
        if raw is None or raw == "":
            return fallback
        try:
            value = int(raw)
        except ValueError:
            raise ApiError(400, f"query parameter {key} must be an integer, got {raw[:40]!r}",
                           type="BadParameter") from None
        if not low <= value <= high:
            raise ApiError(400, f"query parameter {key} must be within {low}..{high}",
                           type="BadParameter")
        return value

    return number("limit", default, 1, MAX_PAGE), number("offset", 0, 0, 1 << 31)


def paginate(items: Sequence[Any], limit: int, offset: int) -> dict[str, Any]:
    return {"items": list(items[offset:offset + limit]), "total": len(items), "limit": limit,
            "offset": offset}


async def app_listing(request: Request, listing: Callable[[OmniApp], Sequence[Any]],
                      default: int = MAX_PAGE) -> Response:
    """For a viewer: a page of what ``listing(app)`` lists, read off the event loop
    (``limit`` ``default`` unless the query string says)."""
    need(request)
    st = state(request)
    items = await st.off_loop(listing, st.app)
    return JSONResponse(paginate(items, *page_params(request, default)))


def lister(listing: Callable[[OmniApp], Sequence[Any]], default: int = MAX_PAGE) -> Handler:
    """The ``GET`` endpoint of a list: :func:`app_listing` of ``listing``."""
    async def endpoint(request: Request) -> Response:
        return await app_listing(request, listing, default)
    return guarded(endpoint)


def choice(request: Request, key: str, allowed: Sequence[str]) -> str | None:
    value = request.query_params.get(key) or None
    if value is not None and value not in allowed:
        raise ApiError(400, f"query parameter {key} must be one of {', '.join(allowed)}",
                       type="BadParameter")
    return value


def path_id(request: Request, key: str, what: str) -> int:
    """The numeric id in path parameter ``key``; anything else is a 404 naming ``what``."""
    raw = str(request.path_params[key])
    if not raw.isdecimal() or int(raw) > 1 << 62:
        raise ApiError(404, f"no {what} {raw[:40]!r}")
    return int(raw)


def guarded(fn: Handler) -> Handler:
    """Turn omnicore errors into the API's error shape."""
    async def wrapper(request: Request) -> Response:
        try:
            return await fn(request)
        except OmniError as exc:
            await _drain(request)
            raise from_omni(exc) from exc
        except ApiError as exc:
            if exc.status not in (408, 413):
                await _drain(request)
            raise
    wrapper.__name__ = fn.__name__
    return wrapper


async def _drain(request: Request) -> None:
    """Read what is left of a small body before answering early (a refused request): a
    client that is still sending would otherwise see the connection dropped."""
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) <= MAX_JSON_BYTES:
        with contextlib.suppress(Exception):
            await request.body()
