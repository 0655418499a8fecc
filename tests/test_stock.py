"""The stock example (plugins/stock/rust, Rust SDK's ``omnicore::sql``) on a real PostgreSQL
(tests/pgcluster.py) through the host's ``omnicore:sql`` and a postgres connector whose
password only the host holds: the walk of docs/guides/databases.md, end to end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.errors import GuestError
from omnicore.toolchains import build
from tests.dbservers import free_port
from tests.pgcluster import Cluster

ROOT = Path(__file__).resolve().parents[1]
ROLE, PASSWORD = "stockshop", "stock-Secret-3381"
SCHEMA = (ROOT / "plugins" / "stock" / "schema.sql").read_text()
GRANT = {"sql": {"connectors": ["orders"]}}


@pytest.fixture(scope="module")
def stock_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(ROOT / "plugins" / "stock" / "rust", tmp_path_factory.mktemp("stock"))


@pytest.fixture(scope="module")
def shop(pg_cluster: Cluster) -> Iterator[dict[str, Any]]:
    """A database of its own role (a password login: the connector's secret), the example's
    table in it, owned by that role as plugins/stock/schema.sql makes it."""
    if not pg_cluster.psql(f"SELECT 1 FROM pg_roles WHERE rolname='{ROLE}'").strip():
        pg_cluster.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER")
    pg_cluster.psql(f"DROP DATABASE IF EXISTS {ROLE}")
    pg_cluster.psql(f"CREATE DATABASE {ROLE} OWNER {ROLE}")
    pg_cluster.psql(f"SET ROLE {ROLE}; {SCHEMA}", db=ROLE)
    yield {"url": f"postgresql://{ROLE}@127.0.0.1:{pg_cluster.port}/{ROLE}",
           "cluster": pg_cluster}


def qty(shop: dict[str, Any], sku: str) -> int:
    return int(shop["cluster"].psql(f"SELECT qty FROM stock WHERE sku = '{sku}'", db=ROLE))


@pytest.fixture
def load(make_app: Callable[..., OmniApp], shop: dict[str, Any],
         stock_wasm: Path) -> Callable[..., OmniApp]:
    """``load(url=, grants=)``: an app whose ``orders`` connector (and a second one,
    ``elsewhere``) points at ``url`` (the shop database by default), stock-rust granted
    ``grants``. The table is seeded afresh."""
    shop["cluster"].psql(f"SET ROLE {ROLE}; DELETE FROM stock; {SCHEMA}", db=ROLE)

    made: list[OmniApp] = []

    def make(url: str | None = None, grants: dict[str, Any] | None = None) -> OmniApp:
        app = make_app(f"app-{len(made)}", builtin_extensions=None, overrides={
            "sandbox": {"watch": False},
            "connectors": {name: {"kind": "postgres", "url": url or shop["url"],
                                  "secret": "orders-db-password"}
                           for name in ("orders", "elsewhere")}})
        made.append(app)
        app.start()
        app.secrets.set("orders-db-password", PASSWORD)
        app.plugins.load(stock_wasm, grants=GRANT if grants is None else grants,
                         limits={"timeout_ms": 10000})
        return app

    return make


def test_check_reads_the_row(load: Callable[..., OmniApp]) -> None:
    app = load()
    assert app.plugins.call_json("stock-rust", "check", {"sku": "A-1"}) == {
        "sku": "A-1", "name": "Widget", "qty": 12, "price": "2.50", "in_stock": True}
    assert app.plugins.call_json("stock-rust", "check", {"sku": "B-2"})["in_stock"] is False
    with pytest.raises(GuestError, match="no such sku: Z-9"):
        app.plugins.call_json("stock-rust", "check", {"sku": "Z-9"})


def test_reserve_takes_stock_in_one_transaction(load: Callable[..., OmniApp],
                                                shop: dict[str, Any]) -> None:
    app = load()
    out = app.plugins.call_json("stock-rust", "reserve", {"sku": "A-1", "qty": 5})
    assert out == {"reserved": True, "item": {"sku": "A-1", "name": "Widget", "qty": 7,
                                              "price": "2.50", "in_stock": True}}
    assert qty(shop, "A-1") == 7
    # More than there is: nothing taken, the row as it was.
    out = app.plugins.call_json("stock-rust", "reserve", {"sku": "C-3", "qty": 4})
    assert out["reserved"] is False and out["item"]["qty"] == 3
    assert qty(shop, "C-3") == 3
    # An unknown SKU fails after the update inside the transaction: rolled back, no change.
    with pytest.raises(GuestError, match="no such sku"):
        app.plugins.call_json("stock-rust", "reserve", {"sku": "Z-9", "qty": 1})


def test_injection_text_in_the_input_stays_data(load: Callable[..., OmniApp],
                                                shop: dict[str, Any]) -> None:
    app = load()
    for sku in ("A-1' OR '1'='1", "A-1'; DROP TABLE stock; --", "$1"):
        for handler, request in (("check", {"sku": sku}), ("reserve", {"sku": sku, "qty": 1})):
            with pytest.raises(GuestError, match="no such sku"):
                app.plugins.call_json("stock-rust", handler, request)
    assert qty(shop, "A-1") == 12
    assert shop["cluster"].psql("SELECT count(*) FROM stock", db=ROLE).strip() == "3"


def test_a_server_that_is_down_is_one_unavailable_line(load: Callable[..., OmniApp]) -> None:
    app = load(url=f"postgresql://{ROLE}@127.0.0.1:{free_port()}/{ROLE}")
    with pytest.raises(GuestError) as info:
        app.plugins.call_json("stock-rust", "check", {"sku": "A-1"})
    message = str(info.value)
    assert "UNAVAILABLE" in message and "orders" in message
    assert PASSWORD not in message


def test_a_connector_the_grant_does_not_name_is_denied(load: Callable[..., OmniApp]) -> None:
    app = load(grants={"sql": {"connectors": ["elsewhere"]}})
    with pytest.raises(GuestError, match="DENIED: connector orders is not granted"):
        app.plugins.call_json("stock-rust", "check", {"sku": "A-1"})
