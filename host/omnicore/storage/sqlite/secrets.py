"""Sealed secrets on SQLite: one row per name."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from omnicore.storage.backend import Tx
from omnicore.storage.secret_rows import Sealed, SecretRows
from omnicore.storage.sqlite.database import Database

__all__ = ["SQLiteSecrets"]


def _v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE secrets (name TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
                 "nonce BLOB NOT NULL, ciphertext BLOB NOT NULL, updated_at REAL NOT NULL)")


class SQLiteSecrets(SecretRows):
    """:class:`SecretRows` in the app's database (the ``secrets`` component)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        db.ensure_schema("secrets", (_v1,))

    def names(self) -> list[str]:
        return [r[0] for r in self._db.read("SELECT name FROM secrets ORDER BY name")]

    def get(self, name: str) -> Sealed | None:
        rows = self._db.read("SELECT key_id, nonce, ciphertext FROM secrets WHERE name = ?",
                              (name,))
        return Sealed(rows[0][0], bytes(rows[0][1]), bytes(rows[0][2])) if rows else None

    def put(self, name: str, sealed: Sealed, now: float) -> None:
        self._db.write(lambda conn: conn.execute(
            "INSERT INTO secrets VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "key_id = excluded.key_id, nonce = excluded.nonce, "
            "ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            (name, sealed.key_id, sealed.nonce, sealed.ciphertext, now)))

    def delete(self, name: str) -> bool:
        return bool(self._db.write(lambda conn: conn.execute(
            "DELETE FROM secrets WHERE name = ?", (name,)).rowcount))

    def uses_key(self, key_id: str) -> bool:
        return bool(self._db.read("SELECT 1 FROM secrets WHERE key_id = ? LIMIT 1", (key_id,)))

    def reseal(self, fn: Callable[[str, Sealed], Sealed]) -> int:
        def run(conn: Tx) -> int:
            rows = conn.execute("SELECT name, key_id, nonce, ciphertext FROM secrets").fetchall()
            for name, key_id, nonce, ciphertext in rows:
                new = fn(name, Sealed(key_id, bytes(nonce), bytes(ciphertext)))
                conn.execute("UPDATE secrets SET key_id = ?, nonce = ?, ciphertext = ? "
                             "WHERE name = ?", (new.key_id, new.nonce, new.ciphertext, name))
            return len(rows)

        return self._db.write(run)
