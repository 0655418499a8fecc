"""The console's accounts: users, API tokens, sessions, the setup link.

Accounts arrive as digests and argon2 hashes, as for every backend (storage/user_rows.py).
Two names differ between the schemas, which predate this module and are kept so existing
databases open: SQLite's ``console.db`` calls a token's or session's user ``user`` (a word
PostgreSQL reserves) and its facts table ``facts``; :class:`AccountTables` carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omnicore.storage.backend import Backend, Tx
from omnicore.storage.user_rows import Role, Session, Token, User, UserRows

__all__ = ["SETUP_LINKS_KEPT", "AccountTables", "Users"]

#: Setup links valid at once: one per host of a cluster (each prints its own at start).
SETUP_LINKS_KEPT = 16


@dataclass(frozen=True, slots=True)
class AccountTables:
    """The names of the accounts schema that differ between databases."""

    #: The column of ``tokens`` and ``sessions`` naming their user.
    owner: str = "username"
    #: The table of facts (``had_users``: a first user was ever created).
    facts: str = "console_facts"


def _user(name: Any, role: Any, created: Any) -> User:
    role_: Role = role
    return User(str(name), role_, float(created))


class Users(UserRows):
    """:class:`UserRows` on a backend (the ``users`` component)."""

    def __init__(self, db: Backend, tables: AccountTables = AccountTables()) -> None:
        self._db = db
        self._owner = tables.owner
        self._facts = tables.facts
        db.prepare("users")

    def _rows(self, sql: str, *args: object) -> list[Any]:
        return self._db.read(sql, args)

    def _exec(self, sql: str, *args: object) -> int:
        return self._db.write_one(sql, args)[0]

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
        def run(tx: Tx) -> bool:
            added = tx.execute("INSERT INTO users (name, hash, role, created) VALUES "
                               "(?,?,?,?) ON CONFLICT DO NOTHING",
                               (name, password_hash, role, now)).rowcount
            if added:  # with the user, in one transaction: the setup link is over for good
                tx.execute(f"INSERT INTO {self._facts} (name, value) VALUES ('had_users', ?) "
                           "ON CONFLICT DO NOTHING", (now,))
            return bool(added)
        return self._db.write(run)

    def set_password_hash(self, name: str, password_hash: str) -> bool:
        return bool(self._exec("UPDATE users SET hash=? WHERE name=?", password_hash, name))

    def delete(self, name: str) -> bool:
        return bool(self._exec("DELETE FROM users WHERE name=?", name))

    def add_session(self, digest: str, user: str, csrf: str, now: float,
                    expires: float) -> None:
        def run(tx: Tx) -> None:
            tx.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            tx.execute(f"INSERT INTO sessions (digest, {self._owner}, csrf, created, expires) "
                       "VALUES (?,?,?,?,?)", (digest, user, csrf, now, expires))
        self._db.write(run)

    def session(self, digest: str) -> Session | None:
        rows = self._rows("SELECT u.name, u.role, u.created, s.csrf, s.expires FROM sessions s "
                          f"JOIN users u ON u.name = s.{self._owner} WHERE s.digest=?", digest)
        if not rows:
            return None
        name, role, created, csrf, expires = rows[0]
        return Session(_user(name, role, created), str(csrf), float(expires))

    def end_session(self, digest: str) -> None:
        self._exec("DELETE FROM sessions WHERE digest=?", digest)

    def end_sessions(self, user: str) -> None:
        self._exec(f"DELETE FROM sessions WHERE {self._owner}=?", user)

    def add_token(self, digest: str, label: str, user: str, now: float) -> int:
        rows = self._db.write_one(
            f"INSERT INTO tokens (digest, label, {self._owner}, created) VALUES (?,?,?,?) "
            "RETURNING id", (digest, label, user, now), returning=True)[1]
        return int(rows[0][0])

    def token_user(self, digest: str, now: float | None) -> User | None:
        if now is None:
            rows = self._rows("SELECT u.name, u.role, u.created FROM tokens t JOIN users u "
                              f"ON u.name = t.{self._owner} WHERE t.digest=?", digest)
            return _user(*rows[0]) if rows else None
        # One statement: the stamp of last use and the lookup (a read-mostly path that every
        # API request takes). The user is read by sub-selects: SQLite's RETURNING sees only
        # the table it changes.
        user = f"FROM users u WHERE u.name = tokens.{self._owner}"
        rows = self._db.write_one(
            f"UPDATE tokens SET last_used=? WHERE digest=? RETURNING (SELECT u.name {user}), "
            f"(SELECT u.role {user}), (SELECT u.created {user})", (now, digest),
            returning=True)[1]
        return _user(*rows[0]) if rows and rows[0][0] is not None else None

    def tokens(self, user: str | None = None) -> list[Token]:
        sql = f"SELECT id, label, {self._owner}, created, last_used FROM tokens"
        rows = self._rows(sql + f" WHERE {self._owner}=? ORDER BY id", user) if user else \
            self._rows(sql + " ORDER BY id")
        return [Token(int(i), str(lb), str(u), float(c), None if lu is None else float(lu))
                for i, lb, u, c, lu in rows]

    def delete_token(self, token_id: int, user: str | None = None) -> bool:
        if user is None:
            return bool(self._exec("DELETE FROM tokens WHERE id=?", token_id))
        return bool(self._exec(f"DELETE FROM tokens WHERE id=? AND {self._owner}=?",
                               token_id, user))

    def had_users(self) -> bool:
        return bool(self._rows(f"SELECT 1 FROM {self._facts} WHERE name='had_users'"))

    def add_setup_link(self, digest: str, expires: float, now: float) -> None:
        def run(tx: Tx) -> None:
            tx.execute("DELETE FROM setup_links WHERE expires <= ?", (now,))
            tx.execute("INSERT INTO setup_links (digest, expires) VALUES (?,?) "
                       "ON CONFLICT DO NOTHING", (digest, expires))
            # Newest first: a host restarting in a loop must not fill the table.
            tx.execute("DELETE FROM setup_links WHERE digest NOT IN (SELECT digest FROM "
                       f"setup_links ORDER BY expires DESC LIMIT {SETUP_LINKS_KEPT})")
        self._db.write(run)

    def setup_link(self, digest: str) -> float | None:
        rows = self._rows("SELECT expires FROM setup_links WHERE digest=?", digest)
        return float(rows[0][0]) if rows else None

    def delete_setup_link(self, digest: str) -> bool:
        return bool(self._exec("DELETE FROM setup_links WHERE digest=?", digest))
