"""The host as an OAuth 2.1 authorization server for its own ``/mcp`` (the protected
resource): the official MCP SDK's endpoints (``/authorize``, ``/token``, ``/register``,
``/revoke``) over this provider, which keeps everything in :class:`OAuthRows`.

* A client is a dynamically registered one (RFC 7591, kept in the database) or a client ID
  metadata document (its ``client_id`` is the URL of its metadata: omnicore.oauth.clients).
* ``/authorize`` (PKCE S256 only, checked by the SDK) leads to the console's consent page: a
  signed-in admin approves or denies, for the tools exposed then. The waiting request is a
  row of the database (its id kept as a hash), so the page may be answered on any host of
  it. Approving records a grant (client, user, resource, tools) and answers the client's
  redirect URI with a one-time code bound to the PKCE challenge; it expires after
  :attr:`AuthServer.code_ttl_s`. A code used
  twice revokes everything issued from it.
* Access tokens (an hour) and refresh tokens (30 days, rotated at every use: the old one is
  revoked, and presenting a revoked one revokes the grant) carry no meaning of their own; the
  database keeps their SHA-256 and the grant they belong to. ``/mcp`` takes an access token
  only for the resource it was issued for (RFC 8707: the ``resource`` of the authorization
  and token requests must be this host's ``/mcp``), and a call only of a granted tool.
* Every grant, denial, token issued, refresh, revocation and each access token's first use
  on this host is an entry of the audit log (actor: the user, target ``oauth:CLIENT``).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    IdentityAssertionParams,
    RefreshToken,
    TokenError,
    construct_redirect_uri,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken

from omnicore.oauth.clients import SCOPES, MetadataDocuments
from omnicore.storage.audit_rows import AuditLog
from omnicore.storage.oauth_rows import CodeRow, ConsentRow, GrantRow, OAuthRows, TokenRow

__all__ = ["CONSENT_PATH", "AuthServer", "Consent", "OAuthCaller", "digest"]

#: The console's consent page; ``/authorize`` sends the browser there.
CONSENT_PATH = "/oauth/consent"
#: The prefix of every token this server issues (tells them from API tokens at a glance).
PREFIX = "oc_oauth_"


def digest(secret: str) -> str:
    """What the database keeps of a code or token."""
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class OAuthCaller:
    """Who calls ``/mcp`` with an access token: the user who approved, limited to the
    granted tools (omnicore.mcp.server checks ``tools``)."""

    name: str
    client_id: str
    client_name: str
    tools: frozenset[str]
    is_admin: bool = True


@dataclass
class Consent:
    """An authorization request waiting for the user's answer on the consent page."""

    id: str
    client: OAuthClientInformationFull
    params: AuthorizationParams

    @classmethod
    def of(cls, request_id: str, row: ConsentRow) -> Consent:
        return cls(request_id, OAuthClientInformationFull.model_validate(row.client),
                   AuthorizationParams.model_validate(row.params))

    @property
    def client_name(self) -> str:
        return self.client.client_name or self.client.client_id or "?"


class AuthServer:
    """The SDK's ``OAuthAuthorizationServerProvider`` over :class:`OAuthRows`, and what the
    console's consent and clients pages and ``/mcp`` ask of it."""

    code_ttl_s = 300.0
    access_ttl_s = 3600.0
    refresh_ttl_s = 30 * 86400.0
    consent_ttl_s = 600.0

    def __init__(self, rows: OAuthRows, audit: AuditLog, documents: MetadataDocuments) -> None:
        self.rows = rows
        self.audit = audit
        self.documents = documents
        self._used: set[str] = set()  # access tokens whose first use here was audited

    def _record(self, actor: str, action: str, grant: GrantRow | str | None,
                after: Any = None) -> None:
        target = f"oauth:{grant.client_id}" if isinstance(grant, GrantRow) else grant
        self.audit.append(actor, action, target, None, after, "oauth", time.time())

    # -- clients ----------------------------------------------------------------------------

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        doc = self.rows.client(client_id)
        if doc is not None:
            return OAuthClientInformationFull.model_validate(doc)
        import anyio

        return await anyio.to_thread.run_sync(self.documents.get, client_id)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        assert client_info.client_id is not None
        self.rows.put_client(client_info.client_id, client_info.model_dump(mode="json"),
                             time.time())
        self._record("anonymous", "oauth.register", f"oauth:{client_info.client_id}",
                     {"client_name": client_info.client_name,
                      "redirect_uris": [str(u) for u in client_info.redirect_uris or ()]})

    # -- authorization ----------------------------------------------------------------------

    async def authorize(self, client: OAuthClientInformationFull,
                        params: AuthorizationParams) -> str:
        request_id = secrets.token_urlsafe(24)
        now = time.time()
        self.rows.add_consent(digest(request_id), ConsentRow(
            client.model_dump(mode="json"), params.model_dump(mode="json"),
            now + self.consent_ttl_s), now)
        return f"{CONSENT_PATH}?request={request_id}"

    def consent(self, request_id: str) -> Consent | None:
        """The waiting request ``request_id`` (None when unknown or too old)."""
        row = self.rows.consent(digest(request_id), time.time()) if request_id else None
        return None if row is None else Consent.of(request_id, row)

    def answer(self, request_id: str, user: str, resource: str, tools: tuple[str, ...],
               approved: bool) -> str | None:
        """The user's answer to a waiting request: the URL to send the browser back to the
        client with (a code, or ``access_denied``; ``invalid_target`` when the request named
        a resource other than ``resource``, this host's /mcp). None if the request is gone."""
        row = self.rows.take_consent(digest(request_id), time.time()) if request_id else None
        if row is None:
            return None
        consent = Consent.of(request_id, row)
        p = consent.params
        target = f"oauth:{consent.client.client_id}"
        if p.resource is not None and p.resource.rstrip("/") != resource:
            return construct_redirect_uri(str(p.redirect_uri), error="invalid_target",
                                          error_description="this server is " + resource,
                                          state=p.state)
        if not approved:
            self._record(user, "oauth.deny", target, {"resource": resource})
            return construct_redirect_uri(str(p.redirect_uri), error="access_denied",
                                          error_description="the user denied access",
                                          state=p.state)
        assert consent.client.client_id is not None
        now = time.time()
        grant_id = self.rows.add_grant(consent.client.client_id, consent.client_name, user,
                                       resource, tools, now)
        code = PREFIX + "code_" + secrets.token_urlsafe(32)
        self.rows.add_code(digest(code), CodeRow(
            grant_id, str(p.redirect_uri), p.redirect_uri_provided_explicitly,
            p.code_challenge, now + self.code_ttl_s, None))
        self._record(user, "oauth.grant", target,
                     {"grant": grant_id, "client_name": consent.client_name,
                      "resource": resource, "tools": list(tools)})
        return construct_redirect_uri(str(p.redirect_uri), code=code, state=p.state)

    # -- codes and tokens -------------------------------------------------------------------

    def _live_grant(self, grant_id: int, client_id: str | None) -> GrantRow | None:
        grant = self.rows.grant(grant_id)
        if grant is None or grant.revoked_at is not None or grant.client_id != client_id:
            return None
        return grant

    async def load_authorization_code(self, client: OAuthClientInformationFull,
                                      authorization_code: str) -> AuthorizationCode | None:
        row = self.rows.code(digest(authorization_code))
        if row is None:
            return None
        # A code presented twice was stolen or replayed: end what it gave (OAuth 2.1).
        grant = self._presented(row.grant_id, client.client_id, replayed=row.used_at is not None,
                                action="oauth.code_reused")
        if grant is None:
            return None
        assert client.client_id is not None
        return AuthorizationCode(
            code=authorization_code, scopes=list(SCOPES), expires_at=row.expires_at,
            client_id=client.client_id, code_challenge=row.challenge,
            redirect_uri=row.redirect_uri,  # type: ignore[arg-type]
            redirect_uri_provided_explicitly=row.redirect_uri_explicit,
            resource=grant.resource, subject=grant.user)

    async def exchange_authorization_code(self, client: OAuthClientInformationFull,
                                          authorization_code: AuthorizationCode) -> OAuthToken:
        row = self.rows.code(digest(authorization_code.code))
        spent = row is not None and self.rows.use_code(digest(authorization_code.code),
                                                       time.time())
        return self._reissue(row.grant_id if row is not None and spent else None,
                             client.client_id, "authorization code", "oauth.token")

    def _presented(self, grant_id: int, client_id: str | None, *, replayed: bool,
                   action: str) -> GrantRow | None:
        """The live grant of a code or refresh token presented by ``client_id``; None when
        there is none, or when the credential was ``replayed`` (used or rotated out before:
        someone kept a copy), which ends the grant and records ``action``."""
        grant = self._live_grant(grant_id, client_id)
        if grant is None or not replayed:
            return grant
        self.rows.revoke_grant(grant.id, time.time())
        self._record(grant.user, action, grant, {"grant": grant.id})
        return None

    def _reissue(self, grant_id: int | None, client_id: str | None, credential: str,
                 action: str) -> OAuthToken:
        """New tokens for the grant of a ``credential`` just spent (``grant_id`` None: it was
        unknown or spent already); records ``action``."""
        if grant_id is None:
            raise TokenError("invalid_grant", f"{credential} was already used")
        grant = self._live_grant(grant_id, client_id)
        if grant is None:
            raise TokenError("invalid_grant", "the grant was revoked")
        self._record(grant.user, action, grant, {"grant": grant.id})
        return self._issue(grant)

    def _issue(self, grant: GrantRow) -> OAuthToken:
        now = time.time()
        access = PREFIX + secrets.token_urlsafe(32)
        refresh = PREFIX + "refresh_" + secrets.token_urlsafe(32)
        self.rows.add_token(digest(access), TokenRow(grant.id, "access",
                                                     now + self.access_ttl_s, None))
        self.rows.add_token(digest(refresh), TokenRow(grant.id, "refresh",
                                                      now + self.refresh_ttl_s, None))
        return OAuthToken(access_token=access, token_type="Bearer",
                          expires_in=int(self.access_ttl_s), refresh_token=refresh,
                          scope=" ".join(SCOPES))

    async def load_refresh_token(self, client: OAuthClientInformationFull,
                                 refresh_token: str) -> RefreshToken | None:
        row = self.rows.token(digest(refresh_token))
        if row is None or row.kind != "refresh":
            return None
        # A rotated-out refresh token came back: someone kept a copy. End the grant.
        grant = self._presented(row.grant_id, client.client_id,
                                replayed=row.revoked_at is not None,
                                action="oauth.refresh_reused")
        if grant is None:
            return None
        assert client.client_id is not None
        return RefreshToken(token=refresh_token, client_id=client.client_id,
                            scopes=list(SCOPES), expires_at=int(row.expires_at),
                            resource=grant.resource, subject=grant.user)

    async def exchange_refresh_token(self, client: OAuthClientInformationFull,
                                     refresh_token: RefreshToken,
                                     scopes: list[str]) -> OAuthToken:
        row = self.rows.token(digest(refresh_token.token))
        spent = row is not None and self.rows.revoke_token(digest(refresh_token.token),
                                                           time.time())
        return self._reissue(row.grant_id if row is not None and spent else None,
                             client.client_id, "refresh token", "oauth.refresh")

    async def load_access_token(self, token: str) -> AccessToken | None:
        found = self._access(token)
        if found is None:
            return None
        grant, row = found
        return AccessToken(token=token, client_id=grant.client_id, scopes=list(SCOPES),
                           expires_at=int(row.expires_at), resource=grant.resource,
                           subject=grant.user)

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        row = self.rows.token(digest(token.token))
        if row is not None and self.rows.revoke_token(digest(token.token), time.time()):
            grant = self.rows.grant(row.grant_id)
            if grant is not None:
                self._record(grant.user, "oauth.revoke_token", grant,
                             {"grant": grant.id, "kind": row.kind})

    async def exchange_identity_assertion(self, client: OAuthClientInformationFull,
                                          params: IdentityAssertionParams) -> OAuthToken:
        raise TokenError("unsupported_grant_type", "identity assertions are not accepted")

    # -- the protected resource -------------------------------------------------------------

    def _access(self, token: str) -> tuple[GrantRow, TokenRow] | None:
        if not token.startswith(PREFIX):
            return None
        row = self.rows.token(digest(token))
        if row is None or row.kind != "access" or row.revoked_at is not None \
                or row.expires_at < time.time():
            return None
        grant = self.rows.grant(row.grant_id)
        if grant is None or grant.revoked_at is not None:
            return None
        return grant, row

    def caller(self, token: str, resource: str) -> OAuthCaller | None:
        """Who ``token`` lets call ``resource`` (this host's /mcp, as the request names it);
        None unless it is a live access token issued for exactly that resource."""
        found = self._access(token)
        if found is None or found[0].resource != resource:
            return None
        grant = found[0]
        key = digest(token)
        if key not in self._used:
            if len(self._used) > 100_000:
                self._used.clear()
            self._used.add(key)
            self._record(grant.user, "oauth.use", grant, {"grant": grant.id,
                                                          "resource": resource})
        return OAuthCaller(grant.user, grant.client_id, grant.client_name,
                           frozenset(grant.tools))

    # -- the console's list of authorized clients -------------------------------------------

    def grants(self) -> list[GrantRow]:
        return self.rows.grants()

    def revoke(self, grant_id: int, by: str) -> bool:
        """Revoke grant ``grant_id`` and every token of it (the console's Revoke button)."""
        grant = self.rows.grant(grant_id)
        if grant is None or not self.rows.revoke_grant(grant_id, time.time()):
            return False
        self._record(by, "oauth.revoke", grant, {"grant": grant_id,
                                                 "client_name": grant.client_name})
        return True



