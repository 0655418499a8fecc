"""Sealed secrets: one row per name. They arrive sealed (the key is the operator's, the same
on every host sharing the database)."""

from __future__ import annotations

from collections.abc import Callable

from omnicore.storage.backend import Backend, Tx
from omnicore.storage.secret_rows import Sealed, SecretRows

__all__ = ["Secrets"]


class Secrets(SecretRows):
    """:class:`SecretRows` on a backend (the ``secrets`` component)."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        db.prepare("secrets")

    def names(self) -> list[str]:
        return [r[0] for r in self._db.read("SELECT name FROM secrets ORDER BY name")]

    def get(self, name: str) -> Sealed | None:
        rows = self._db.read("SELECT key_id, nonce, ciphertext FROM secrets WHERE name=?",
                             (name,))
        return Sealed(rows[0][0], bytes(rows[0][1]), bytes(rows[0][2])) if rows else None

    def put(self, name: str, sealed: Sealed, now: float) -> None:
        self._db.write_one(
            "INSERT INTO secrets VALUES (?,?,?,?,?) ON CONFLICT (name) DO UPDATE SET "
            "key_id=excluded.key_id, nonce=excluded.nonce, ciphertext=excluded.ciphertext, "
            "updated_at=excluded.updated_at",
            (name, sealed.key_id, sealed.nonce, sealed.ciphertext, now))

    def delete(self, name: str) -> bool:
        return bool(self._db.write_one("DELETE FROM secrets WHERE name=?", (name,))[0])

    def uses_key(self, key_id: str) -> bool:
        return bool(self._db.read("SELECT 1 FROM secrets WHERE key_id=? LIMIT 1", (key_id,)))

    def reseal(self, fn: Callable[[str, Sealed], Sealed]) -> int:
        def run(tx: Tx) -> int:
            rows = tx.execute("SELECT name, key_id, nonce, ciphertext FROM secrets"
                              f"{self._db.dialect.for_update}").fetchall()
            for name, key_id, nonce, ciphertext in rows:
                new = fn(name, Sealed(key_id, bytes(nonce), bytes(ciphertext)))
                tx.execute("UPDATE secrets SET key_id=?, nonce=?, ciphertext=? WHERE name=?",
                           (new.key_id, new.nonce, new.ciphertext, name))
            return len(rows)
        return self._db.write(run)
