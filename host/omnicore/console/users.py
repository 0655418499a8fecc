"""The console's accounts: users, API tokens, sessions and one-time setup links.

They live in their own SQLite file, ``<data_dir>/console.db``: the app's storage interface
(``omnicore.storage``) is shaped for plugins' kv, tasks and events, and accounts are the
console's business alone. Passwords are argon2id hashes (argon2-cffi); tokens, session ids and
setup links are random secrets stored only as SHA-256 digests, so a copy of the file signs
nobody in.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from omnicore.errors import ConfigError

__all__ = ["ROLES", "Role", "Session", "Token", "User", "UserStore", "check_password",
           "check_username"]

Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # argon2 hashes any length; a megabyte "password" is a CPU attack
SETUP_TTL_S = 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, hash TEXT NOT NULL, role TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, digest TEXT UNIQUE NOT NULL, label TEXT NOT NULL,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE, created REAL NOT NULL,
    last_used REAL);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS setup_links (digest TEXT PRIMARY KEY, expires REAL NOT NULL);
"""


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


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class UserStore:
    """Accounts in ``path`` (created on first use). Thread-safe."""

    def __init__(self, path: Path, *, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self._hasher = hasher or PasswordHasher()
        # Verifying against this when the user does not exist costs the same as a real check,
        # so response times do not tell which names exist.
        self._dummy = self._hasher.hash(secrets.token_hex(16))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, *args: object) -> list[Any]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    def _exec(self, sql: str, *args: object) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    # -- users --------------------------------------------------------------------------

    def count(self) -> int:
        return int(self._rows("SELECT count(*) FROM users")[0][0])

    def users(self) -> list[User]:
        return [User(str(n), r, float(c))
                for n, r, c in self._rows("SELECT name, role, created FROM users ORDER BY name")]

    def get(self, name: str) -> User | None:
        rows = self._rows("SELECT name, role, created FROM users WHERE name = ?", name)
        return User(str(rows[0][0]), rows[0][1], float(rows[0][2])) if rows else None

    def add(self, name: str, password: str, role: Role = "admin") -> User:
        """Create user ``name``; :class:`ConfigError` for a bad name, password, role or a
        name that is taken."""
        check_username(name)
        check_password(password)
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}", key="role")
        try:
            self._exec("INSERT INTO users (name, hash, role, created) VALUES (?, ?, ?, ?)",
                       name, self._hasher.hash(password), role, time.time())
        except sqlite3.IntegrityError:
            raise ConfigError(f"user {name!r} already exists", key="name") from None
        return User(name, role, time.time())

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        if not self._exec("UPDATE users SET hash = ? WHERE name = ?",
                          self._hasher.hash(password), name):
            raise ConfigError(f"no user {name!r}", key="name")
        # A new password ends every session that knew the old one.
        self._exec("DELETE FROM sessions WHERE user = ?", name)

    def delete(self, name: str) -> bool:
        return bool(self._exec("DELETE FROM users WHERE name = ?", name))

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else None (same cost either way)."""
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            return None
        rows = self._rows("SELECT hash FROM users WHERE name = ?", name)
        stored = str(rows[0][0]) if rows else self._dummy
        try:
            self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return None
        if not rows:
            return None
        if self._hasher.check_needs_rehash(stored):
            self._exec("UPDATE users SET hash = ? WHERE name = ?",
                       self._hasher.hash(password), name)
        return self.get(name)

    # -- sessions -----------------------------------------------------------------------

    def new_session(self, user: User, ttl_s: float) -> tuple[str, Session]:
        """A fresh session id (the cookie value) and its session; old ones stay valid."""
        sid = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        self._exec("DELETE FROM sessions WHERE expires < ?", now)
        self._exec("INSERT INTO sessions (digest, user, csrf, created, expires) "
                   "VALUES (?, ?, ?, ?, ?)", _digest(sid), user.name, csrf, now, now + ttl_s)
        return sid, Session(user, csrf, now + ttl_s)

    def session(self, sid: str) -> Session | None:
        rows = self._rows("SELECT u.name, u.role, u.created, s.csrf, s.expires FROM sessions s "
                          "JOIN users u ON u.name = s.user WHERE s.digest = ?", _digest(sid))
        if not rows or float(rows[0][4]) < time.time():
            return None
        name, role, created, csrf, expires = rows[0]
        return Session(User(str(name), role, float(created)), str(csrf), float(expires))

    def end_session(self, sid: str) -> None:
        self._exec("DELETE FROM sessions WHERE digest = ?", _digest(sid))

    # -- API tokens ---------------------------------------------------------------------

    def new_token(self, user: str, label: str) -> tuple[str, Token]:
        """A new API token for ``user``: the secret (shown once) and its record."""
        if self.get(user) is None:
            raise ConfigError(f"no user {user!r}", key="user")
        label = (label or "token").strip()[:64] or "token"
        secret = "oc_" + secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            cur = self._db.execute("INSERT INTO tokens (digest, label, user, created) "
                                   "VALUES (?, ?, ?, ?)", (_digest(secret), label, user, now))
            token_id = int(cur.lastrowid or 0)
        return secret, Token(token_id, label, user, now, None)

    def token_user(self, secret: str) -> User | None:
        rows = self._rows("SELECT t.id, u.name, u.role, u.created FROM tokens t "
                          "JOIN users u ON u.name = t.user WHERE t.digest = ?", _digest(secret))
        if not rows:
            return None
        token_id, name, role, created = rows[0]
        self._exec("UPDATE tokens SET last_used = ? WHERE id = ?", time.time(), token_id)
        return User(str(name), role, float(created))

    def tokens(self, user: str | None = None) -> list[Token]:
        sql = "SELECT id, label, user, created, last_used FROM tokens"
        rows = self._rows(sql + " WHERE user = ? ORDER BY id", user) if user else \
            self._rows(sql + " ORDER BY id")
        return [Token(int(i), str(lb), str(u), float(c), None if lu is None else float(lu))
                for i, lb, u, c, lu in rows]

    def delete_token(self, token_id: int, user: str | None = None) -> bool:
        if user is None:
            return bool(self._exec("DELETE FROM tokens WHERE id = ?", token_id))
        return bool(self._exec("DELETE FROM tokens WHERE id = ? AND user = ?", token_id, user))

    # -- first start --------------------------------------------------------------------

    def new_setup_link(self) -> str:
        """A one-time secret that lets its holder create the first admin (24 h)."""
        secret = secrets.token_urlsafe(32)
        self._exec("DELETE FROM setup_links")
        self._exec("INSERT INTO setup_links (digest, expires) VALUES (?, ?)",
                   _digest(secret), time.time() + SETUP_TTL_S)
        return secret

    def setup_valid(self, secret: str) -> bool:
        rows = self._rows("SELECT expires FROM setup_links WHERE digest = ?", _digest(secret))
        return bool(rows) and float(rows[0][0]) > time.time() and self.count() == 0

    def consume_setup(self, secret: str) -> bool:
        """Use the link up (True if it was valid)."""
        valid = self.setup_valid(secret)
        self._exec("DELETE FROM setup_links WHERE digest = ?", _digest(secret))
        return valid
