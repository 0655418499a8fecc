"""The console's accounts on SQLite, in a file of their own beside the app's database.

``<data_dir>/console.db`` (:data:`USERS_FILE`), where accounts have always been kept, so an
existing install keeps its users, tokens and sessions.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omnicore.storage.datadir import private_file
from omnicore.storage.errors import StorageError
from omnicore.storage.user_rows import Role, Session, Token, User, UserRows

__all__ = ["USERS_FILE", "SQLiteUsers"]

USERS_FILE = "console.db"

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
CREATE TABLE IF NOT EXISTS facts (name TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TRIGGER IF NOT EXISTS first_user AFTER INSERT ON users BEGIN
    INSERT OR IGNORE INTO facts (name, value) VALUES ('had_users', NEW.created);
END;
"""
# Files written before the trigger existed: users there mean a first user was created.
_HAD_USERS = ("INSERT OR IGNORE INTO facts (name, value) SELECT 'had_users', min(created) "
              "FROM users HAVING count(*) > 0")


def _user(name: Any, role: Any, created: Any) -> User:
    role_: Role = role
    return User(str(name), role_, float(created))


class SQLiteUsers(UserRows):
    """:class:`UserRows` in the SQLite file ``path`` (created on first use)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            private_file(path)  # password hashes: for the host's user only
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            if not self._db.execute("SELECT 1 FROM facts WHERE name = 'had_users'").fetchone():
                self._db.execute(_HAD_USERS)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"storage {path}: cannot open: {exc} (the console's accounts: "
                               "restore the file from a backup, or move it away and create "
                               "the first admin again)", path=path) from None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _failing(self) -> Iterator[None]:
        # A full disk, an I/O error, a lock: a StorageError like every store's (it keeps
        # sqlite's error as its cause); a taken name (IntegrityError) is the caller's answer.
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise StorageError(f"console accounts {self.path}: {exc}", path=self.path) from exc

    def _rows(self, sql: str, *args: object) -> list[Any]:
        with self._lock, self._failing():
            return list(self._db.execute(sql, args).fetchall())

    def _exec(self, sql: str, *args: object) -> int:
        with self._lock, self._failing():
            return self._db.execute(sql, args).rowcount

    def count(self) -> int:
        return int(self._rows("SELECT count(*) FROM users")[0][0])

    def users(self) -> list[User]:
        return [_user(*r) for r in self._rows("SELECT name, role, created FROM users "
                                               "ORDER BY name")]

    def get(self, name: str) -> User | None:
        rows = self._rows("SELECT name, role, created FROM users WHERE name = ?", name)
        return _user(*rows[0]) if rows else None

    def password_hash(self, name: str) -> str | None:
        rows = self._rows("SELECT hash FROM users WHERE name = ?", name)
        return str(rows[0][0]) if rows else None

    def add(self, name: str, password_hash: str, role: Role, now: float) -> bool:
        try:
            self._exec("INSERT INTO users (name, hash, role, created) VALUES (?, ?, ?, ?)",
                       name, password_hash, role, now)
        except sqlite3.IntegrityError:
            return False
        return True

    def set_password_hash(self, name: str, password_hash: str) -> bool:
        return bool(self._exec("UPDATE users SET hash = ? WHERE name = ?", password_hash, name))

    def delete(self, name: str) -> bool:
        return bool(self._exec("DELETE FROM users WHERE name = ?", name))

    def add_session(self, digest: str, user: str, csrf: str, now: float,
                    expires: float) -> None:
        self._exec("DELETE FROM sessions WHERE expires < ?", now)
        self._exec("INSERT INTO sessions (digest, user, csrf, created, expires) "
                   "VALUES (?, ?, ?, ?, ?)", digest, user, csrf, now, expires)

    def session(self, digest: str) -> Session | None:
        rows = self._rows("SELECT u.name, u.role, u.created, s.csrf, s.expires FROM sessions s "
                          "JOIN users u ON u.name = s.user WHERE s.digest = ?", digest)
        if not rows:
            return None
        name, role, created, csrf, expires = rows[0]
        return Session(_user(name, role, created), str(csrf), float(expires))

    def end_session(self, digest: str) -> None:
        self._exec("DELETE FROM sessions WHERE digest = ?", digest)

    def end_sessions(self, user: str) -> None:
        self._exec("DELETE FROM sessions WHERE user = ?", user)

    def add_token(self, digest: str, label: str, user: str, now: float) -> int:
        with self._lock, self._failing():
            cur = self._db.execute("INSERT INTO tokens (digest, label, user, created) "
                                   "VALUES (?, ?, ?, ?)", (digest, label, user, now))
            return int(cur.lastrowid or 0)

    def token_user(self, digest: str, now: float | None) -> User | None:
        rows = self._rows("SELECT t.id, u.name, u.role, u.created FROM tokens t "
                          "JOIN users u ON u.name = t.user WHERE t.digest = ?", digest)
        if not rows:
            return None
        token_id, name, role, created = rows[0]
        if now is not None:
            self._exec("UPDATE tokens SET last_used = ? WHERE id = ?", now, token_id)
        return _user(name, role, created)

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

    def had_users(self) -> bool:
        return bool(self._rows("SELECT 1 FROM facts WHERE name = 'had_users'"))

    def set_setup_link(self, digest: str, expires: float) -> None:
        with self._lock, self._failing():
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM setup_links")
                self._db.execute("INSERT INTO setup_links (digest, expires) VALUES (?, ?)",
                                 (digest, expires))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def setup_link(self, digest: str) -> float | None:
        rows = self._rows("SELECT expires FROM setup_links WHERE digest = ?", digest)
        return float(rows[0][0]) if rows else None

    def delete_setup_link(self, digest: str) -> None:
        self._exec("DELETE FROM setup_links WHERE digest = ?", digest)
