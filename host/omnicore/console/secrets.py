"""Secrets in the console: names, never values.

API (reads: any signed-in user; changes: admin)::

    GET    /api/v1/secrets          the names that are set, and the plugins each is exposed to
    PUT    /api/v1/secrets/{name}   set or replace: {"value": "...", "encoding": "text"|"base64"}
    DELETE /api/v1/secrets/{name}

Page: ``/secrets``. A value goes one way, into the store (``app.secrets``, encrypted at rest):
no answer, page, error message or log line carries it, and the form's value field is never
filled back in, not even after an error. The page flags the secrets connectors name that are
not set (each a link that fills the form's name), and saying a database connector's secret is
saved also says that its open connections keep the value they were opened with.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import HIDDEN, Actor, record
from omnicore.console import base
from omnicore.console.bodies import decode_text, json_body
from omnicore.console.connectors import listing as connector_listing
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.render import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError
from omnicore.storage.secrets import MAX_SECRET_BYTES, check_name

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["routes"]

log = logging.getLogger("omnicore.console")


def exposure(app: OmniApp) -> dict[str, list[str]]:
    """Secret name -> the plugins whose ``secrets`` grant exposes it."""
    out: dict[str, list[str]] = {}
    for info in app.plugins:
        expose = (info.granted.get("secrets") or {}).get("expose") or ()
        for name in expose if isinstance(expose, list | tuple) else ():
            out.setdefault(str(name), []).append(info.name)
    return out


def listing(app: OmniApp) -> list[dict[str, Any]]:
    exposed = exposure(app)
    return [{"name": n, "exposed_to": exposed.get(n, [])} for n in app.secrets.names()]


def _name(raw: str) -> str:
    try:
        return check_name(raw)
    except OmniError as exc:
        raise from_omni(exc) from None


def decode_value(value: object, encoding: object) -> bytes:
    """The bytes to store. Errors never quote the value."""
    data = decode_text(value, encoding, "value")
    if not data:
        raise ApiError(422, "'value' is empty; delete the secret instead", type="BadRequest")
    if len(data) > MAX_SECRET_BYTES:
        raise ApiError(413, f"the value is {len(data)} bytes; a secret is at most "
                            f"{MAX_SECRET_BYTES}", type="TooLarge")
    return data


def store(app: OmniApp, name: str, data: bytes, by: Actor) -> bool:
    """Set ``name``; whether it is new. Logged and audited by name, never value."""
    created = name not in app.secrets
    app.secrets.set(name, data)
    log.info("console: %s %s secret %s", by, "set" if created else "replaced", name)
    record(app.storage, by, "secret.set", f"secret:{name}", None if created else HIDDEN,
           HIDDEN)
    return created


def remove(app: OmniApp, name: str, by: Actor) -> bool:
    gone = app.secrets.delete(name)
    if gone:
        log.info("console: %s deleted secret %s", by, name)
        record(app.storage, by, "secret.delete", f"secret:{name}", HIDDEN, None)
    return gone


# -- API ---------------------------------------------------------------------------------------

@base.guarded
async def put_secret(request: Request) -> Response:
    who = base.need(request, "admin")
    name = _name(request.path_params["name"])
    doc = await json_body(request)
    data = decode_value(doc.get("value"), doc.get("encoding", "text"))
    st = base.state(request)
    created = await st.off_loop(store, st.app, name, data, base.actor(request, who))
    return JSONResponse({"name": name, "created": created,
                         "exposed_to": exposure(st.app).get(name, [])})


@base.guarded
async def delete_secret(request: Request) -> Response:
    who = base.need(request, "admin")
    name = _name(request.path_params["name"])
    st = base.state(request)
    if not await st.off_loop(remove, st.app, name, base.actor(request, who)):
        raise ApiError(404, f"no secret {name!r}", type="SecretNotFound")
    return Response(status_code=204)


# -- page --------------------------------------------------------------------------------------

async def _render(request: Request, status: int = 200, error: ApiError | None = None,
                  name: str = "") -> Response:
    st = base.state(request)
    items = await st.off_loop(listing, st.app)
    wanted = sorted(set(exposure(st.app)) - {i["name"] for i in items})
    conns = await st.off_loop(connector_listing, st.app)
    unset: dict[str, list[str]] = {}
    for c in conns:
        if c["secret_set"] is False:
            unset.setdefault(c["secret"], []).append(c["name"])
    return page(request, "secrets.html", status, secrets=items, wanted=wanted, connectors=conns,
                unset=sorted(unset.items()),
                exposed=exposure(st.app), key_source=st.app.secrets.key_source,
                form_error=error, form_name=name, max_bytes=MAX_SECRET_BYTES)


async def secrets_page(request: Request) -> Response:
    base.need(request)
    # ?name= fills the form's name: the links beside a connector's secret that is not set.
    return await _render(request, name=request.query_params.get("name", "")[:128])


async def secrets_post(request: Request) -> Response:
    who, f = await read_form(request)
    st = base.state(request)
    action, name = f.get("action", ""), f.get("name", "").strip()
    try:
        if action == "set":
            name = _name(name)
            data = decode_value(f.get("value", ""), "text")
            await st.off_loop(store, st.app, name, data, base.actor(request, who))
            try:
                pooled = any(name in (c.secret, c.url_secret)
                             for c in st.app.databases.connectors.values())
            except OmniError:  # a bad connector config: the page says so; the secret is set
                pooled = False
            return done("/secrets", "secret-set-pooled" if pooled else "secret-set")
        if action == "delete":
            if not await st.off_loop(remove, st.app, _name(name), base.actor(request, who)):
                raise ApiError(404, f"no secret {name[:128]!r}", type="SecretNotFound")
            return done("/secrets", "secret-deleted")
        raise ApiError(400, f"unknown action {action[:40]!r}")
    except OmniError as exc:
        error = from_omni(exc)
    except ApiError as exc:
        error = exc
    return await _render(request, error.status, error, name[:128])


def routes() -> list[BaseRoute]:
    return [
        *base.api("/secrets", GET=base.lister(listing)),
        *base.api("/secrets/{name}", PUT=put_secret, DELETE=delete_secret),
        Route("/secrets", secrets_page, methods=["GET"]),
        Route("/secrets", secrets_post, methods=["POST"]),
    ]
