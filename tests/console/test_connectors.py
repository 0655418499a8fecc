"""Connectors in the console (specs/abi.md §4.12): kind, host, database, pool, last error,
never a credential; a change of the connectors is audited."""

from __future__ import annotations

import time

import httpx
import pytest

from omnicore.egress.refused import Refused
from tests.console.conftest import Host
from tests.dbservers import free_port

PASSWORD = "pg-Console-Secret-3141"


def test_connectors_are_listed_with_their_pools_and_errors_never_secrets(
        host: Host, admin: httpx.Client) -> None:
    app = host.app
    app.secrets.set("orders-pw", PASSWORD)
    port = free_port()
    changed = app.data.apply_connectors({
        "api": {"base_url": "https://api.example.com/v1", "auth": "bearer", "secret": "tok"},
        "orders": {"kind": "postgres", "url": f"postgresql://shop@127.0.0.1:{port}/shop",
                   "secret": "orders-pw", "pool_size": 3},
    })
    assert changed == ["api", "orders"]
    backend = app.databases.backend("orders", ("postgres",))
    with pytest.raises(Refused, match="connection refused"):
        backend.run("t", True, "SELECT 1", [], time.monotonic() + 3)

    listed = admin.get("/api/v1/connectors").json()["items"]
    assert [(c["name"], c["kind"], c["host"]) for c in listed] == [
        ("api", "http", "api.example.com"), ("orders", "postgres", "127.0.0.1")]
    orders = listed[1]
    assert (orders["database"], orders["port"], orders["secret"], orders["in_use"],
            orders["idle"], orders["pool_size"]) == ("shop", port, "orders-pw", 0, 0, 3)
    assert orders["last_error"] == "UNAVAILABLE: connector orders: connection refused"
    page = admin.get("/secrets").text
    assert 'data-connector="orders"' in page and "connection refused" in page
    for text in (str(listed), page):
        assert PASSWORD not in text

    entries = admin.get("/api/v1/audit").json()["items"]
    verbs = {(e["action"] if "action" in e else e.get("verb"), e["target"]) for e in entries}
    assert ("connector.add", "connector:orders") in verbs
    assert ("connector.add", "connector:api") in verbs
    assert app.data.apply_connectors({}) == ["api", "orders"]
    assert app.databases.describe() == []
