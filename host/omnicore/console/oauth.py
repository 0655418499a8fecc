"""``/mcp`` as an OAuth 2.1 protected resource, with the console as its authorization server.

* ``/.well-known/oauth-protected-resource`` (and ``…/mcp``, RFC 9728): the resource and its
  authorization server; ``/mcp`` answers a request without a valid token 401 with
  ``WWW-Authenticate: Bearer resource_metadata="…"`` pointing here (omnicore.mcp.http).
* ``/.well-known/oauth-authorization-server`` (RFC 8414), and the MCP SDK's endpoints over
  :class:`omnicore.oauth.AuthServer`: ``/authorize``, ``/token``, ``/register`` (RFC 7591),
  ``/revoke``. ``/token`` refuses a ``resource`` other than this host's ``/mcp`` (RFC 8707).
* ``/oauth/consent``: a signed-in admin approves or denies a client, shown by name with the
  tools it may call; ``/oauth/clients``: the authorized clients, each with a Revoke button.

The metadata and the token, registration and revocation endpoints answer browsers of any origin
(CORS, no credentials): a browser MCP client signs in from its own page. Nothing there reads
a cookie; the console's request guard lets their cross-origin posts through.

URLs are this console's as the request names it (scheme and ``Host``, which the request
guard keeps to the console's names), so the metadata, the issuer and the tokens' resource
agree whichever name a client used.
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.handlers.metadata import MetadataHandler
from mcp.server.auth.handlers.token import TokenHandler
from mcp.server.auth.middleware.client_auth import ClientAuthenticator
from mcp.server.auth.routes import build_metadata, cors_middleware, create_auth_routes
from mcp.server.auth.settings import ClientRegistrationOptions, RevocationOptions
from mcp.shared.auth import ProtectedResourceMetadata
from pydantic import AnyHttpUrl
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.console.base import state
from omnicore.console.bodies import MAX_FORM_BYTES
from omnicore.console.errors import ApiError
from omnicore.console.render import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.oauth import SCOPES, AuthServer

__all__ = ["base_url", "resource_url", "routes"]


def base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.url.netloc}"


def resource_url(request: Request) -> str:
    """This host's ``/mcp`` as the request names it: the resource tokens are bound to."""
    return base_url(request) + "/mcp"


def _server(request: Request) -> AuthServer:
    server: AuthServer = request.app.state.oauth
    return server


async def protected_resource(request: Request) -> Response:
    doc = ProtectedResourceMetadata(
        resource=AnyHttpUrl(resource_url(request)),
        authorization_servers=[AnyHttpUrl(base_url(request))],
        scopes_supported=list(SCOPES), resource_name=f"omnicore {state(request).app.name}")
    return JSONResponse(doc.model_dump(mode="json", exclude_none=True),
                        headers={"Cache-Control": "no-store"})


async def authorization_server(request: Request) -> Response:
    metadata = build_metadata(AnyHttpUrl(base_url(request)), None, _registration(),
                              RevocationOptions(enabled=True))
    metadata.client_id_metadata_document_supported = True
    metadata.token_endpoint_auth_methods_supported = ["none", "client_secret_post",
                                                      "client_secret_basic"]
    return await MetadataHandler(metadata).handle(request)


def _registration() -> ClientRegistrationOptions:
    return ClientRegistrationOptions(enabled=True, valid_scopes=list(SCOPES),
                                     default_scopes=list(SCOPES))


def _token(server: AuthServer) -> Any:
    handler = TokenHandler(server, ClientAuthenticator(server)).handle

    async def token(request: Request) -> Response:
        # RFC 8707: a token is asked for this resource or none named.
        form = await request.form(max_part_size=MAX_FORM_BYTES)
        wanted = form.get("resource")
        if isinstance(wanted, str) and wanted.rstrip("/") != resource_url(request):
            return JSONResponse({"error": "invalid_target",
                                 "error_description": f"this server issues tokens for "
                                                      f"{resource_url(request)} only"},
                                status_code=400, headers={"Cache-Control": "no-store"})
        answer: Response = await handler(request)
        return answer
    return token


async def consent(request: Request) -> Response:
    st = state(request)
    server = _server(request)
    if request.method == "POST":
        who, fields = await read_form(request)
        tools = tuple(sorted(request.app.state.mcp.tools.tools()))
        target = server.answer(fields.get("request", ""), who.user.name, resource_url(request),
                               tools, fields.get("action") == "approve")
        if target is None:
            raise ApiError(404, "this sign-in request has expired or was answered already; "
                                "start again from the agent", type="ConsentGone")
        # A page that sends the browser on, not a redirect: the console's CSP allows forms
        # to post to itself only, and a browser applies that to where the post redirects.
        return page(request, "consent.html", who=who, leaving=target)
    who = st.auth.identify(request, "admin")
    pending = server.consent(request.query_params.get("request", ""))
    if pending is None:
        raise ApiError(404, "this sign-in request has expired or was answered already; "
                            "start again from the agent", type="ConsentGone")
    return page(request, "consent.html", who=who, consent=pending,
                tools=sorted(request.app.state.mcp.tools.tools()),
                resource=resource_url(request))


async def clients(request: Request) -> Response:
    server = _server(request)
    if request.method == "POST":
        who, fields = await read_form(request)
        if fields.get("action") == "revoke" and fields.get("grant", "").isdecimal():
            server.revoke(int(fields["grant"]), who.user.name)
        return done("/oauth/clients", "oauth_revoked")
    who = state(request).auth.identify(request, "admin")
    return page(request, "oauth_clients.html", who=who, grants=server.grants())


def routes(server: AuthServer) -> list[BaseRoute]:
    sdk = {r.path: r for r in create_auth_routes(
        server, AnyHttpUrl("http://localhost"), client_registration_options=_registration(),
        revocation_options=RevocationOptions(enabled=True)) if isinstance(r, Route)}
    sdk.pop("/token")
    sdk.pop("/.well-known/oauth-authorization-server")
    get, post = ["GET", "OPTIONS"], ["POST", "OPTIONS"]
    return [
        Route("/.well-known/oauth-protected-resource",
              cors_middleware(protected_resource, get), methods=get),
        Route("/.well-known/oauth-protected-resource/mcp",
              cors_middleware(protected_resource, get), methods=get),
        Route("/.well-known/oauth-authorization-server",
              cors_middleware(authorization_server, get), methods=get),
        Route("/token", cors_middleware(_token(server), post), methods=post),
        *sdk.values(),
        Route("/oauth/consent", consent, methods=["GET", "POST"]),
        Route("/oauth/clients", clients, methods=["GET", "POST"]),
    ]


