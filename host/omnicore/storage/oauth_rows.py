"""The interface of OAuth's durable state: the clients agents sign in with, the grants users
gave them, the one-time authorization codes and the tokens (omnicore.oauth).

Codes and tokens are kept as the SHA-256 of their text, never the text: a copy of the
database lets no one act as an agent. A grant is what a user approved for a client (the
resource and the tools); every code and token belongs to one, and revoking the grant ends
them all. An authorization request waiting on the consent page is a row too (its id kept
as a hash), so the sign-in a browser began on one host can end on another.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["CodeRow", "ConsentRow", "GrantRow", "OAuthRows", "TokenRow"]

TokenKind = Literal["access", "refresh"]


@dataclass(frozen=True, slots=True)
class GrantRow:
    id: int
    client_id: str
    client_name: str
    user: str
    resource: str
    tools: tuple[str, ...]
    created_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class CodeRow:
    grant_id: int
    redirect_uri: str
    redirect_uri_explicit: bool
    challenge: str
    expires_at: float
    used_at: float | None


@dataclass(frozen=True, slots=True)
class TokenRow:
    grant_id: int
    kind: TokenKind
    expires_at: float
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class ConsentRow:
    """An authorization request waiting for a user's answer: the client's registration and
    the request's parameters, as JSON documents."""

    client: dict[str, Any]
    params: dict[str, Any]
    expires_at: float


class OAuthRows(abc.ABC):
    """OAuth's rows. Thread-safe. ``hash`` arguments are the SHA-256 hex of a code or token."""

    # -- clients (registered ones; metadata-document clients are fetched, not kept) -------

    @abc.abstractmethod
    def put_client(self, client_id: str, doc: dict[str, Any], at: float) -> None: ...

    @abc.abstractmethod
    def client(self, client_id: str) -> dict[str, Any] | None: ...

    # -- grants -----------------------------------------------------------------------------

    @abc.abstractmethod
    def add_grant(self, client_id: str, client_name: str, user: str, resource: str,
                  tools: tuple[str, ...], at: float) -> int: ...

    @abc.abstractmethod
    def grant(self, grant_id: int) -> GrantRow | None: ...

    @abc.abstractmethod
    def grants(self, *, live: bool = True) -> list[GrantRow]:
        """Grants newest first; only those not revoked when ``live``."""

    @abc.abstractmethod
    def revoke_grant(self, grant_id: int, at: float) -> bool:
        """Revoke the grant and every token of it; False if it was not live."""

    # -- codes ------------------------------------------------------------------------------

    @abc.abstractmethod
    def add_code(self, hash: str, row: CodeRow) -> None: ...

    @abc.abstractmethod
    def code(self, hash: str) -> CodeRow | None: ...

    @abc.abstractmethod
    def use_code(self, hash: str, at: float) -> bool:
        """Mark the code used; False if it was used already (then it must not be honoured)."""

    # -- tokens -----------------------------------------------------------------------------

    @abc.abstractmethod
    def add_token(self, hash: str, row: TokenRow) -> None: ...

    @abc.abstractmethod
    def token(self, hash: str) -> TokenRow | None: ...

    @abc.abstractmethod
    def revoke_token(self, hash: str, at: float) -> bool:
        """Revoke one token; False if it was revoked already or is unknown."""

    # -- consents waiting for an answer -----------------------------------------------------

    @abc.abstractmethod
    def add_consent(self, hash: str, row: ConsentRow, now: float) -> None:
        """Keep a waiting request (and delete those expired by ``now``)."""

    @abc.abstractmethod
    def consent(self, hash: str, now: float) -> ConsentRow | None:
        """The waiting request, unless unknown or expired by ``now``."""

    @abc.abstractmethod
    def take_consent(self, hash: str, now: float) -> ConsentRow | None:
        """Remove the waiting request and return it (None if unknown, expired, or taken
        already: of two answers at once, one gets it)."""
