"""OAuth's rows on a backend (the ``oauth`` component): clients, grants, codes, tokens, and
the requests waiting on the consent page."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from omnicore.storage.backend import Backend, Tx
from omnicore.storage.oauth_rows import CodeRow, ConsentRow, GrantRow, OAuthRows, TokenRow

__all__ = ["OAuth"]

_GRANT = "id, client_id, client_name, user_name, resource, tools, created_at, revoked_at"


def _at(value: Any) -> float | None:
    """A time that may not have come (``revoked_at``, ``used_at``)."""
    return None if value is None else float(value)


def _grant(r: Sequence[Any]) -> GrantRow:
    return GrantRow(int(r[0]), r[1], r[2], r[3], r[4], tuple(json.loads(r[5])), float(r[6]),
                    _at(r[7]))


def _code(r: Sequence[Any]) -> CodeRow:
    return CodeRow(int(r[0]), r[1], bool(r[2]), r[3], float(r[4]), _at(r[5]))


def _token(r: Sequence[Any]) -> TokenRow:
    return TokenRow(int(r[0]), r[1], float(r[2]), _at(r[3]))


class OAuth(OAuthRows):
    """:class:`OAuthRows` on a backend."""

    def __init__(self, db: Backend) -> None:
        self._db = db
        db.prepare("oauth")

    def put_client(self, client_id: str, doc: dict[str, Any], at: float) -> None:
        self._db.write_one("INSERT INTO oauth_clients VALUES (?,?,?) ON CONFLICT (client_id) "
                           "DO UPDATE SET doc=excluded.doc",
                           (client_id, json.dumps(doc, separators=(",", ":")), at))

    def client(self, client_id: str) -> dict[str, Any] | None:
        rows = self._db.read("SELECT doc FROM oauth_clients WHERE client_id=?", (client_id,))
        return json.loads(rows[0][0]) if rows else None

    def add_grant(self, client_id: str, client_name: str, user: str, resource: str,
                  tools: tuple[str, ...], at: float) -> int:
        rows = self._db.write_one(
            "INSERT INTO oauth_grants (client_id, client_name, user_name, resource, tools, "
            "created_at) VALUES (?,?,?,?,?,?) RETURNING id",
            (client_id, client_name, user, resource, json.dumps(list(tools)), at),
            returning=True)[1]
        return int(rows[0][0])

    def grant(self, grant_id: int) -> GrantRow | None:
        return self._db.read_row(_grant, f"SELECT {_GRANT} FROM oauth_grants WHERE id=?",
                                 (grant_id,))

    def grants(self, *, live: bool = True) -> list[GrantRow]:
        where = " WHERE revoked_at IS NULL" if live else ""
        return [_grant(r) for r in self._db.read(
            f"SELECT {_GRANT} FROM oauth_grants{where} ORDER BY id DESC")]

    def revoke_grant(self, grant_id: int, at: float) -> bool:
        def run(tx: Tx) -> bool:
            done = tx.execute("UPDATE oauth_grants SET revoked_at=? WHERE id=? AND revoked_at "
                              "IS NULL", (at, grant_id)).rowcount
            tx.execute("UPDATE oauth_tokens SET revoked_at=? WHERE grant_id=? AND revoked_at "
                       "IS NULL", (at, grant_id))
            return bool(done)
        return self._db.write(run)

    def add_code(self, hash: str, row: CodeRow) -> None:
        self._db.write_one("INSERT INTO oauth_codes VALUES (?,?,?,?,?,?,?)",
                           (hash, row.grant_id, row.redirect_uri, int(row.redirect_uri_explicit),
                            row.challenge, row.expires_at, row.used_at))

    def code(self, hash: str) -> CodeRow | None:
        return self._db.read_row(_code, "SELECT grant_id, redirect_uri, explicit, challenge, "
                                 "expires_at, used_at FROM oauth_codes WHERE hash=?", (hash,))

    def use_code(self, hash: str, at: float) -> bool:
        return self._stamp("oauth_codes", "used_at", hash, at)

    def add_token(self, hash: str, row: TokenRow) -> None:
        self._db.write_one("INSERT INTO oauth_tokens VALUES (?,?,?,?,?)",
                           (hash, row.grant_id, row.kind, row.expires_at, row.revoked_at))

    def token(self, hash: str) -> TokenRow | None:
        return self._db.read_row(_token, "SELECT grant_id, kind, expires_at, revoked_at FROM "
                                 "oauth_tokens WHERE hash=?", (hash,))

    def revoke_token(self, hash: str, at: float) -> bool:
        return self._stamp("oauth_tokens", "revoked_at", hash, at)

    def _stamp(self, table: str, column: str, hash: str, at: float) -> bool:
        """Set the row's ``column`` (a code's use, a token's revocation) to ``at`` if it is
        unset: whether this call set it (once only, however many hosts race for it)."""
        return bool(self._db.write_one(f"UPDATE {table} SET {column}=? WHERE hash=? AND "
                                       f"{column} IS NULL", (at, hash))[0])

    def add_consent(self, hash: str, row: ConsentRow, now: float) -> None:
        def run(tx: Tx) -> None:
            tx.execute("DELETE FROM oauth_consents WHERE expires_at < ?", (now,))
            tx.execute("INSERT INTO oauth_consents VALUES (?,?,?,?)",
                       (hash, json.dumps(row.client, separators=(",", ":")),
                        json.dumps(row.params, separators=(",", ":")), row.expires_at))
        self._db.write(run)

    def consent(self, hash: str, now: float) -> ConsentRow | None:
        return self._db.read_row(_consent, "SELECT client, params, expires_at FROM "
                                 "oauth_consents WHERE hash=? AND expires_at >= ?", (hash, now))

    def take_consent(self, hash: str, now: float) -> ConsentRow | None:
        row = self._db.write(lambda tx: tx.execute(
            "DELETE FROM oauth_consents WHERE hash=? RETURNING client, params, expires_at",
            (hash,)).fetchone())
        return None if row is None or float(row[2]) < now else _consent(row)


def _consent(r: Sequence[Any]) -> ConsentRow:
    return ConsentRow(json.loads(r[0]), json.loads(r[1]), float(r[2]))
