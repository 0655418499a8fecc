"""Console accounts on PostgreSQL: every instance shares them.

Accounts arrive as digests and argon2 hashes, as for every backend (storage/user_rows.py).
"""

from __future__ import annotations

from typing import Any

from omnicore.storage.postgres.database import Database
from omnicore.storage.user_rows import Role, Session, Token, User, UserRows

__all__ = ["PgUsers"]


def _user(name: Any, role: Any, created: Any) -> User:
    role_: Role = role
    return User(str(name), role_, float(created))


class PgUsers(UserRows):
    def __init__(self, storage: Database) -> None:
        self._s = storage

    def _rows(self, sql: str, *args: object) -> list[Any]:
        return self._s.read(sql, args)

    def _exec(self, sql: str, *args: object) -> int:
        return self._s.write(lambda conn: int(conn.execute(sql, args).rowcount))

    def count(self) -> int:
        return int(self._rows("SELECT count(*) FROM users")[0][0])

    def users(self) -> list[User]:
        return [_user(*r) for r in self._rows("SELECT name, role, created FROM users "
                                               "ORDER BY name")]

    def get(self, name: str) -> User | None:
        rows = self._rows("SELECT name, role, created FROM users WHERE name=?", name)
        return _user(*rows[0]) if rows else None

    def password_hash(self, name: str) -> str | None:
        rows = self._rows("SELECT hash FROM users WHERE name=?", name)
        return str(rows[0][0]) if rows else None

    def add(self, name: str, password_hash: str, role: Role, now: float) -> bool:
        def run(conn: Any) -> bool:
            added = conn.execute("INSERT INTO users (name, hash, role, created) VALUES "
                                 "(?,?,?,?) ON CONFLICT DO NOTHING",
                                 (name, password_hash, role, now)).rowcount
            if added:  # with the user, in one transaction: the setup link is over for good
                conn.execute("INSERT INTO console_facts VALUES ('had_users', ?) "
                             "ON CONFLICT DO NOTHING", (now,))
            return bool(added)
        return self._s.write(run)

    def set_password_hash(self, name: str, password_hash: str) -> bool:
        return bool(self._exec("UPDATE users SET hash=? WHERE name=?", password_hash, name))

    def delete(self, name: str) -> bool:
        return bool(self._exec("DELETE FROM users WHERE name=?", name))

    def add_session(self, digest: str, user: str, csrf: str, now: float,
                    expires: float) -> None:
        def run(conn: Any) -> None:
            conn.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            conn.execute("INSERT INTO sessions (digest, username, csrf, created, expires) "
                         "VALUES (?,?,?,?,?)", (digest, user, csrf, now, expires))
        self._s.write(run)

    def session(self, digest: str) -> Session | None:
        rows = self._rows("SELECT u.name, u.role, u.created, s.csrf, s.expires FROM sessions s "
                          "JOIN users u ON u.name = s.username WHERE s.digest=?", digest)
        if not rows:
            return None
        name, role, created, csrf, expires = rows[0]
        return Session(_user(name, role, created), str(csrf), float(expires))

    def end_session(self, digest: str) -> None:
        self._exec("DELETE FROM sessions WHERE digest=?", digest)

    def end_sessions(self, user: str) -> None:
        self._exec("DELETE FROM sessions WHERE username=?", user)

    def add_token(self, digest: str, label: str, user: str, now: float) -> int:
        return self._s.write(lambda conn: int(conn.execute(
            "INSERT INTO tokens (digest, label, username, created) VALUES (?,?,?,?) "
            "RETURNING id", (digest, label, user, now)).fetchone()[0]))

    def token_user(self, digest: str, now: float | None) -> User | None:
        if now is None:
            rows = self._rows("SELECT u.name, u.role, u.created FROM tokens t JOIN users u "
                              "ON u.name = t.username WHERE t.digest=?", digest)
            return _user(*rows[0]) if rows else None
        # One statement: the stamp of last use and the lookup (a read-mostly path that every
        # API request takes).
        rows = self._s.write(lambda conn: conn.execute(
            "UPDATE tokens t SET last_used=? FROM users u WHERE u.name = t.username AND "
            "t.digest=? RETURNING u.name, u.role, u.created", (now, digest)).fetchall())
        return _user(*rows[0]) if rows else None

    def tokens(self, user: str | None = None) -> list[Token]:
        sql = "SELECT id, label, username, created, last_used FROM tokens"
        rows = self._rows(sql + " WHERE username=? ORDER BY id", user) if user else \
            self._rows(sql + " ORDER BY id")
        return [Token(int(i), str(lb), str(u), float(c), None if lu is None else float(lu))
                for i, lb, u, c, lu in rows]

    def delete_token(self, token_id: int, user: str | None = None) -> bool:
        if user is None:
            return bool(self._exec("DELETE FROM tokens WHERE id=?", token_id))
        return bool(self._exec("DELETE FROM tokens WHERE id=? AND username=?", token_id,
                               user))

    def had_users(self) -> bool:
        return bool(self._rows("SELECT 1 FROM console_facts WHERE name='had_users'"))

    def set_setup_link(self, digest: str, expires: float) -> None:
        def run(conn: Any) -> None:
            conn.execute("DELETE FROM setup_links")
            conn.execute("INSERT INTO setup_links (digest, expires) VALUES (?,?)",
                         (digest, expires))
        self._s.write(run)

    def setup_link(self, digest: str) -> float | None:
        rows = self._rows("SELECT expires FROM setup_links WHERE digest=?", digest)
        return float(rows[0][0]) if rows else None

    def delete_setup_link(self, digest: str) -> None:
        self._exec("DELETE FROM setup_links WHERE digest=?", digest)
