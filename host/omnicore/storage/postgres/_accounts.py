"""Secrets, console accounts and the audit log on PostgreSQL: every instance shares them.

Secrets arrive sealed (the key is the operator's, the same on every instance); accounts
arrive as digests and argon2 hashes, as for every backend (storage/user_rows.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from omnicore.storage.audit_rows import AuditEntry, AuditLog
from omnicore.storage.postgres.database import Database
from omnicore.storage.secret_rows import Sealed, SecretRows
from omnicore.storage.user_rows import Role, Session, Token, User, UserRows

__all__ = ["PgAudit", "PgSecrets", "PgUsers"]


class PgSecrets(SecretRows):
    def __init__(self, storage: Database) -> None:
        self._s = storage

    def names(self) -> list[str]:
        return [r[0] for r in self._s.read("SELECT name FROM secrets ORDER BY name")]

    def get(self, name: str) -> Sealed | None:
        rows = self._s.read("SELECT key_id, nonce, ciphertext FROM secrets WHERE name=?",
                             (name,))
        return Sealed(rows[0][0], bytes(rows[0][1]), bytes(rows[0][2])) if rows else None

    def put(self, name: str, sealed: Sealed, now: float) -> None:
        self._s.write(lambda conn: conn.execute(
            "INSERT INTO secrets VALUES (?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET "
            "key_id=excluded.key_id, nonce=excluded.nonce, ciphertext=excluded.ciphertext, "
            "updated_at=excluded.updated_at",
            (name, sealed.key_id, sealed.nonce, sealed.ciphertext, now)))

    def delete(self, name: str) -> bool:
        return self._s.write(lambda conn: bool(conn.execute(
            "DELETE FROM secrets WHERE name=?", (name,)).rowcount))

    def uses_key(self, key_id: str) -> bool:
        return bool(self._s.read("SELECT 1 FROM secrets WHERE key_id=? LIMIT 1", (key_id,)))

    def reseal(self, fn: Callable[[str, Sealed], Sealed]) -> int:
        def run(conn: Any) -> int:
            rows = conn.execute("SELECT name, key_id, nonce, ciphertext FROM secrets "
                                "FOR UPDATE").fetchall()
            for name, key_id, nonce, ciphertext in rows:
                new = fn(name, Sealed(key_id, bytes(nonce), bytes(ciphertext)))
                conn.execute("UPDATE secrets SET key_id=?, nonce=?, ciphertext=? "
                             "WHERE name=?", (new.key_id, new.nonce, new.ciphertext, name))
            return len(rows)
        return self._s.write(run)


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


class PgAudit(AuditLog):
    def __init__(self, storage: Database) -> None:
        self._s = storage

    def append(self, actor: str, action: str, target: str | None, before: Any, after: Any,
               origin: str | None, at: float) -> int:
        def dump(value: Any) -> str | None:
            return None if value is None else json.dumps(value, separators=(",", ":"),
                                                          ensure_ascii=False)
        return self._s.write(lambda conn: int(conn.execute(
            "INSERT INTO audit (at, actor, action, target, before, after, origin) VALUES "
            "(?,?,?,?,?,?,?) RETURNING id",
            (at, actor, action, target, dump(before), dump(after), origin)).fetchone()[0]))

    def entries(self, *, actor: str | None = None, action_prefix: str = "",
                target: str | None = None, since: float | None = None,
                before_id: int | None = None, limit: int = 100,
                plugin: str | None = None) -> list[AuditEntry]:
        where = ["starts_with(action, ?)"]
        args: list[Any] = [action_prefix]
        if plugin is not None:
            where.append("(target = ? OR starts_with(target, ?))")
            args += [plugin, plugin + "/"]
        for column, value in (("actor=?", actor), ("target=?", target),
                              ("at >= ?", since), ("id < ?", before_id)):
            if value is not None:
                where.append(column)
                args.append(value)
        rows = self._s.read("SELECT id, at, actor, action, target, before, after, origin FROM "
                             f"audit WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                             (*args, limit))
        return [AuditEntry(int(r[0]), float(r[1]), r[2], r[3], r[4],
                           None if r[5] is None else json.loads(r[5]),
                           None if r[6] is None else json.loads(r[6]), r[7]) for r in rows]

    def purge(self, before: float) -> int:
        return self._s.write(lambda conn: int(conn.execute(
            "DELETE FROM audit WHERE at < ?", (before,)).rowcount))
