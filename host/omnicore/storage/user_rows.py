"""The console's account store interface: users, sessions, API tokens, setup links.

The rules stay in :mod:`omnicore.accounts.users` (argon2 hashing, name and password
rules, random secrets); a backend keeps rows. Secrets never reach it: tokens, session ids
and setup links arrive as SHA-256 digests, passwords as argon2 hashes.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

__all__ = ["ROLES", "Role", "Session", "Token", "User", "UserRows"]

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    created: float = 0.0

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    expires: float


@dataclass(frozen=True)
class Token:
    id: int
    label: str
    user: str
    created: float
    last_used: float | None


class UserRows(abc.ABC):
    """The console's accounts. Thread-safe; deleting a user deletes its sessions and tokens."""

    @abc.abstractmethod
    def count(self) -> int:
        """How many users there are."""

    @abc.abstractmethod
    def users(self) -> list[User]:
        """Every user, by name."""

    @abc.abstractmethod
    def get(self, name: str) -> User | None: ...

    @abc.abstractmethod
    def password_hash(self, name: str) -> str | None: ...

    @abc.abstractmethod
    def add(self, name: str, password_hash: str, role: Role, now: float) -> bool:
        """Create ``name``; False when the name is taken (nothing written)."""

    @abc.abstractmethod
    def set_password_hash(self, name: str, password_hash: str) -> bool:
        """Whether ``name`` exists (and now has that hash)."""

    @abc.abstractmethod
    def delete(self, name: str) -> bool:
        """Delete ``name`` with its sessions and tokens; whether it existed."""

    @abc.abstractmethod
    def add_session(self, digest: str, user: str, csrf: str, now: float,
                    expires: float) -> None:
        """Store a session (dropping the sessions that expired before ``now``)."""

    @abc.abstractmethod
    def session(self, digest: str) -> Session | None:
        """The session with that digest, expired or not (the caller checks)."""

    @abc.abstractmethod
    def end_session(self, digest: str) -> None: ...

    @abc.abstractmethod
    def end_sessions(self, user: str) -> None:
        """End every session of ``user``."""

    @abc.abstractmethod
    def add_token(self, digest: str, label: str, user: str, now: float) -> int:
        """Store an API token; its id."""

    @abc.abstractmethod
    def token_user(self, digest: str, now: float | None) -> User | None:
        """The user of the token with that digest (stamping its last use with ``now``; None:
        a lookup that writes nothing), or None."""

    @abc.abstractmethod
    def tokens(self, user: str | None = None) -> list[Token]:
        """Tokens (of ``user``, or everyone's), oldest first."""

    @abc.abstractmethod
    def delete_token(self, token_id: int, user: str | None = None) -> bool:
        """Delete a token (only ``user``'s when given); whether it existed."""

    @abc.abstractmethod
    def had_users(self) -> bool:
        """Whether a user was ever created in these rows (still true once all are deleted:
        the setup link is for the first admin only)."""

    @abc.abstractmethod
    def add_setup_link(self, digest: str, expires: float, now: float) -> None:
        """One more valid setup link (each host of a cluster prints its own); links expired
        at ``now`` go, and only the newest few are kept."""

    @abc.abstractmethod
    def setup_link(self, digest: str) -> float | None:
        """When the setup link with that digest expires, or None if there is none."""

    @abc.abstractmethod
    def delete_setup_link(self, digest: str) -> bool:
        """Use the link up; whether it existed (of two hosts racing for it, one wins)."""
