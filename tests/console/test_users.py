"""Users and API tokens in the REST API (console/users.py)."""

from __future__ import annotations

import httpx

from tests.console.conftest import Host


def test_users_and_tokens(host: Host, admin: httpx.Client) -> None:
    r = admin.post("/api/v1/users", json={"name": "bo", "password": "short"})
    assert r.status_code == 422
    r = admin.post("/api/v1/users", json={"name": "bo", "password": "long enough pw",
                                          "role": "viewer"})
    assert r.status_code == 201
    names = [u["name"] for u in admin.get("/api/v1/users").json()["items"]]
    assert names == ["admin", "bo", "viewer"]
    made = admin.post("/api/v1/tokens", json={"label": "ci"})
    assert made.status_code == 201
    secret, token_id = made.json()["token"], made.json()["id"]
    with host.client(secret) as c:
        assert c.get("/api/v1/me").json()["name"] == "admin"
        assert admin.delete(f"/api/v1/tokens/{token_id}").status_code == 204
        assert c.get("/api/v1/me").status_code == 401
    assert admin.delete("/api/v1/users/admin").status_code == 409
    assert admin.delete("/api/v1/users/bo").status_code == 204
