"""OAuth's rows' contract (storage/oauth_rows.py), on every backend."""

from __future__ import annotations

import time

from omnicore.storage import Storage
from omnicore.storage.oauth_rows import CodeRow, ConsentRow, TokenRow


def test_clients_grants_codes_and_tokens(storage: Storage) -> None:
    rows = storage.oauth
    now = time.time()
    assert rows.client("c1") is None
    rows.put_client("c1", {"client_id": "c1", "client_name": "one"}, now)
    rows.put_client("c1", {"client_id": "c1", "client_name": "uno"}, now)
    assert rows.client("c1") == {"client_id": "c1", "client_name": "uno"}

    g1 = rows.add_grant("c1", "uno", "ada", "http://h/mcp", ("a.x", "b.y"), now)
    g2 = rows.add_grant("c1", "uno", "bob", "http://h/mcp", (), now + 1)
    grant = rows.grant(g1)
    assert grant is not None and grant.tools == ("a.x", "b.y") and grant.user == "ada"
    assert [g.id for g in rows.grants()] == [g2, g1]

    rows.add_code("h-code", CodeRow(g1, "http://cb", True, "chal", now + 60, None))
    code = rows.code("h-code")
    assert code is not None and code.challenge == "chal" and code.redirect_uri_explicit
    assert rows.use_code("h-code", now) is True
    assert rows.use_code("h-code", now) is False  # a code is used once
    assert rows.code("h-code").used_at == now  # type: ignore[union-attr]

    rows.add_token("h-access", TokenRow(g1, "access", now + 3600, None))
    rows.add_token("h-refresh", TokenRow(g1, "refresh", now + 86400, None))
    assert rows.revoke_token("h-refresh", now) is True
    assert rows.revoke_token("h-refresh", now) is False
    assert rows.token("h-access") == TokenRow(g1, "access", now + 3600, None)

    assert rows.revoke_grant(g1, now + 2) is True
    assert rows.revoke_grant(g1, now + 3) is False
    assert rows.token("h-access").revoked_at == now + 2  # type: ignore[union-attr]
    assert [g.id for g in rows.grants()] == [g2]
    assert [g.id for g in rows.grants(live=False)] == [g2, g1]


def test_a_waiting_consent_is_answered_once_on_any_host(storage: Storage) -> None:
    rows = storage.oauth
    now = time.time()
    row = ConsentRow({"client_id": "c1"}, {"state": "s", "scopes": ["mcp:tools"]}, now + 600)
    rows.add_consent("h-req", row, now)
    rows.add_consent("h-old", ConsentRow({}, {}, now - 1), now - 5)
    assert rows.consent("h-req", now) == row
    assert rows.consent("h-old", now) is None  # expired
    assert rows.consent("h-req", now + 601) is None
    assert rows.take_consent("h-req", now) == row
    assert rows.take_consent("h-req", now) is None  # one answer only
    rows.add_consent("h-new", row, now)  # adding deletes what expired
    assert rows.take_consent("h-old", now - 10) is None
