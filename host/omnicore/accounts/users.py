"""The accounts of the console and the API: users, API tokens, sessions and one-time setup
links, shared by the console (sign-in) and the CLI (``omnicore users``).

The rules live here; the rows behind the storage interface
(:class:`omnicore.storage.user_rows.UserRows`, ``app.storage.users``; with SQLite the file
``<data_dir>/console.db``). Passwords are argon2id hashes (argon2-cffi); tokens, session ids
and setup links are random secrets stored only as SHA-256 digests, so a copy of the rows
signs nobody in. The rows remember that a user was ever created: from then on no setup link
is valid again, even when every user is deleted.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from omnicore.errors import ConfigError
from omnicore.storage import Storage, StorageError
from omnicore.storage.user_rows import ROLES, Role, Session, Token, User, UserRows

__all__ = ["ROLES", "Role", "Session", "Token", "User", "UserStore", "check_password",
           "check_username", "hasher_for"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes any length; a megabyte "password" is a CPU attack
SETUP_TTL_S = 24 * 3600

log = logging.getLogger("omnicore.console")


def check_username(name: str) -> str:
    """``name`` if it is a valid user name, else :class:`ConfigError` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError("a user name is 1-64 letters, digits, '_', '.', '@' or '-', "
                          "starting with a letter or digit", key="name")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise ConfigError(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters",
                          key="password")
    return password


def hasher_for(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    """The argon2id hasher of ``console.password_hash``'s settings."""
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib,
                          parallelism=parallelism)


#: A token's last use is written at most this often: a script calling the API in a loop
#: would otherwise make every request a write to the accounts database.
LAST_USE_EVERY_S = 30.0


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UserStore:
    """The console's accounts over ``rows``. Thread-safe.

    ``owner``: a storage opened only for these accounts (``omnicore users``), closed by
    :meth:`close`; an app's storage is closed by the app.
    """

    def __init__(self, rows: UserRows, *, hasher: PasswordHasher | None = None,
                 owner: Storage | None = None) -> None:
        self._rows = rows
        self._owner = owner
        self._hasher = hasher or PasswordHasher()
        # Verifying against a dummy hash when the user does not exist costs the same as a
        # real check, so response times do not tell which names exist. Made by the first
        # sign-in, whatever its name (a hash costs a tenth of a second: every host start and
        # every `omnicore users` command paid it, most never to sign anyone in).
        self._dummy: str | None = None
        self._dummy_lock = threading.Lock()
        self._last_use_failing = False
        self._stamped: dict[str, float] = {}  # token digest -> monotonic time of its stamp

    @property
    def owner(self) -> Storage | None:
        """The storage opened for these accounts alone (``omnicore users``), if any."""
        return self._owner

    def close(self) -> None:
        if self._owner is not None:
            self._owner.close()

    # -- users --------------------------------------------------------------------------

    def count(self) -> int:
        return self._rows.count()

    def users(self) -> list[User]:
        return self._rows.users()

    def get(self, name: str) -> User | None:
        return self._rows.get(name)

    def add(self, name: str, password: str, role: Role = "admin") -> User:
        """Create user ``name``; :class:`ConfigError` for a bad name, password, role or a
        name that is taken."""
        check_username(name)
        check_password(password)
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}", key="role")
        now = time.time()
        if not self._rows.add(name, self._hasher.hash(password), role, now):
            raise ConfigError(f"user {name!r} already exists", key="name")
        return User(name, role, now)

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        if not self._rows.set_password_hash(name, self._hasher.hash(password)):
            raise ConfigError(f"no user {name!r}", key="name")
        # A new password ends every session that knew the old one.
        self._rows.end_sessions(name)

    def delete(self, name: str) -> bool:
        return self._rows.delete(name)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (same cost either way)."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return None
        dummy = self._dummy_hash()  # before the lookup: the first sign-in pays it either way
        found = self._rows.password_hash(name)
        stored = found if found is not None else dummy
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if found is None:
            return None
        if self._hasher.check_needs_rehash(stored):
            self._rows.set_password_hash(name, self._hasher.hash(password))
        return self.get(name)

    def _dummy_hash(self) -> str:
        with self._dummy_lock:
            if self._dummy is None:
                self._dummy = self._hasher.hash(secrets.token_hex(16))
            return self._dummy

    # -- sessions -----------------------------------------------------------------------

    def new_session(self, user: User, ttl_s: float) -> tuple[str, Session]:
        """A fresh session id (the cookie value) and its session; old ones stay valid."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        self._rows.add_session(_digest(sid), user.name, csrf, now, now + ttl_s)
        return sid, Session(user, csrf, now + ttl_s)

    def session(self, sid: str) -> Session | None:
        found = self._rows.session(_digest(sid))
        if found is None or found.expires < time.time():
            return None
        return found

    def end_session(self, sid: str) -> None:
        self._rows.end_session(_digest(sid))

    # -- API tokens ---------------------------------------------------------------------

    def new_token(self, user: str, label: str) -> tuple[str, Token]:
        """A new API token for ``user``: the secret (shown once) and its record."""
        if self.get(user) is None:
            raise ConfigError(f"no user {user!r}", key="user")
        label = (label or "token").strip()[:64] or "token"
        secret = "oc_" + secrets.token_urlsafe(32)
        now = time.time()
        token_id = self._rows.add_token(_digest(secret), label, user, now)
        return secret, Token(token_id, label, user, now, None)

    def token_user(self, secret: str) -> User | None:
        """The user of API token ``secret`` (None: no such token), its last use stamped at
        most every :data:`LAST_USE_EVERY_S` (the lookup itself happens every time, so a
        revoked token fails at once). A stamp that cannot be written (a full disk) is logged
        once and the token still works: a read must never fail for want of room to note
        that it happened."""
        digest = _digest(secret)
        now = time.monotonic()
        if now - self._stamped.get(digest, -LAST_USE_EVERY_S) < LAST_USE_EVERY_S:
            return self._rows.token_user(digest, None)
        try:
            user = self._rows.token_user(digest, time.time())
        except StorageError as exc:
            if not self._last_use_failing:
                log.warning("console: cannot record API tokens' last use: %s (the tokens keep "
                            "working; logged once until a write succeeds)", exc)
            self._last_use_failing = True
            return self._rows.token_user(digest, None)
        self._last_use_failing = False
        if user is not None:
            if len(self._stamped) >= 4096:  # only live tokens get here; bounded all the same
                self._stamped.clear()
            self._stamped[digest] = now
        return user

    def tokens(self, user: str | None = None) -> list[Token]:
        return self._rows.tokens(user)

    def delete_token(self, token_id: int, user: str | None = None) -> bool:
        return self._rows.delete_token(token_id, user)

    # -- first start --------------------------------------------------------------------

    def had_users(self) -> bool:
        """Whether a user was ever created here (then no setup link is valid)."""
        return self._rows.had_users()

    def new_setup_link(self) -> str:
        """A one-time secret that lets its holder create the first admin (24 h).

        Every host of a cluster makes its own at start; all stay valid until one of them
        creates the first admin (the links live in the shared database)."""
        if self.had_users():
            raise ConfigError("this console had users already; a setup link is only for the "
                              "first admin: run `omnicore users add NAME --app DIR`",
                              key="setup")
        secret = secrets.token_urlsafe(32)
        now = time.time()
        self._rows.add_setup_link(_digest(secret), now + SETUP_TTL_S, now)
        return secret

    def setup_valid(self, secret: str) -> bool:
        expires = self._rows.setup_link(_digest(secret))
        return expires is not None and expires > time.time() and not self.had_users()

    def consume_setup(self, secret: str) -> bool:
        """Use the link up (True if it was valid and this caller used it)."""
        valid = self.setup_valid(secret)
        return self._rows.delete_setup_link(_digest(secret)) and valid
