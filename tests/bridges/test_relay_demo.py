"""The demo's round trip (issue 66, "Done when"): plugins/relay/js between a private
nats-server and a private redis-server, with the demo's own bridges and grants
(plugins/demo.yaml, only the brokers' ports and passwords the test's): NATS messages become
Redis stream entries, and a NATS restart in the middle of the stream loses none of them. Every
order published is counted arriving in the Redis stream `ledger`, once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from omnicore.app import OmniApp
from omnicore.toolchains import build
from tests.brokers import Nats
from tests.dbservers import Redis
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
DEMO = yaml.safe_load((ROOT / "plugins" / "demo.yaml").read_text())
ORDERS = 200


@pytest.fixture(scope="module")
def relay_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """plugins/relay/js built by the real toolchain."""
    return build(ROOT / "plugins" / "relay" / "js", tmp_path_factory.mktemp("relay"))


@pytest.fixture
def brokers() -> Iterator[tuple[Nats, Redis]]:
    nats_server, redis_server = Nats.start(), Redis.start()
    yield nats_server, redis_server
    nats_server.stop()
    redis_server.stop()


def publish(server: Nats, first: int, count: int) -> None:
    """Orders ``first`` .. ``first + count - 1`` on ``orders.new``, each confirmed by JetStream
    (the stream ORDERS made on the first call, as docs/guides/bridges/nats.md does)."""
    import nats

    async def run() -> None:
        nc = await nats.connect(server.url, token=server.token)
        try:
            js = nc.jetstream()
            await js.add_stream(name="ORDERS", subjects=["orders.>"])
            for n in range(first, first + count):
                await js.publish("orders.new", json.dumps({"id": n, "cents": n * 10}).encode())
        finally:
            await nc.close()

    asyncio.run(run())


def ledger(server: Redis) -> list[dict[str, Any]]:
    """The entries of the Redis stream ``ledger``: their data, with the bridge's id field."""
    return [{**json.loads(fields[b"data"]), "id": fields[b"id"].decode()}
            for _, fields in server.client().xrange("ledger")]


def state(app: OmniApp, name: str) -> str:
    return str({s["name"]: s["state"] for s in app.bridges.status()}[name])


def demo_app(tmp_path: Path, relay: Path, nats_server: Nats, redis_server: Redis) -> OmniApp:
    """The demo's relay and bridges, the brokers' addresses and passwords the test's."""
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "relay-js.wasm").write_bytes(relay.read_bytes())
    bridges = json.loads(json.dumps(DEMO["bridges"]))
    bridges["orders"].update(url=nats_server.url, secret="nats-token")
    bridges["ledger"].update(url=f"redis://127.0.0.1:{redis_server.port}/0",
                             secret="redis-password", confirm_timeout_s=1)
    app = OmniApp("relay-demo", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "sandbox": {"watch": False},
        "capabilities": {"jobs": {"poll_s": 0.2, "backoff_ms": 20}},
        "plugins": {"relay-js": DEMO["plugins"]["relay-js"]}, "bridges": bridges})
    app.secrets.set("nats-token", nats_server.token)
    app.secrets.set("redis-password", redis_server.password)
    return app


def test_nats_orders_become_redis_ledger_entries_and_a_nats_restart_loses_none(
        tmp_path: Path, relay_wasm: Path, brokers: tuple[Nats, Redis]) -> None:
    nats_server, redis_server = brokers
    app = demo_app(tmp_path, relay_wasm, nats_server, redis_server)
    app.start()
    try:
        assert {p.name: p.state for p in app.plugins} == {"relay-js": "loaded"}
        half = ORDERS // 2
        publish(nats_server, 0, half)
        # Restart NATS while the first half is on its way (some relayed, the rest waiting in
        # the stream or on the job queue; whichever: none may be lost).
        eventually(lambda: len(ledger(redis_server)) >= 10, "the first entries in Redis")
        nats_server.halt()
        eventually(lambda: state(app, "orders") == "down", "the orders bridge down")
        nats_server.resume()
        publish(nats_server, half, ORDERS - half)
        eventually(lambda: len(ledger(redis_server)) >= ORDERS, "every order in Redis",
                   timeout=120)
        entries = ledger(redis_server)
        assert sorted(e["order"] for e in entries) == list(range(ORDERS))  # none lost, none twice
        assert len({e["id"] for e in entries}) == ORDERS
        assert {e["relayed_by"] for e in entries} == {"relay-js"}
        assert sum(e["cents"] for e in entries) == sum(n * 10 for n in range(ORDERS))
        assert app.plugins.call_json("relay-js", "report", {}) == {
            "relayed": ORDERS, "cents": sum(n * 10 for n in range(ORDERS))}
        status = {s["name"]: s for s in app.bridges.status()}
        assert status["orders"]["acked"] >= ORDERS and status["orders"]["refused"] == 0
        assert status["ledger"]["published"] == ORDERS and status["ledger"]["dropped"] == 0
        assert state(app, "orders") == "up"
    finally:
        app.stop(grace=1)


def test_the_demo_starts_with_no_broker_and_its_bridges_say_they_are_down(
        tmp_path: Path, relay_wasm: Path) -> None:
    from tests.dbservers import free_port

    closed_nats = Nats(tmp_path / "nats")  # never started: nothing listens on its port
    closed_redis = Redis(tmp_path / "redis", free_port(), None)  # type: ignore[arg-type]
    app = demo_app(tmp_path, relay_wasm, closed_nats, closed_redis)
    app.start()
    try:
        assert {p.name: p.state for p in app.plugins} == {"relay-js": "loaded"}
        app.events.publish(_ledger_event())  # held for Redis, not lost while the host runs
        eventually(lambda: state(app, "ledger") == "down", "the ledger bridge down")
        ledger_status = {s["name"]: s for s in app.bridges.status()}["ledger"]
        assert str(ledger_status["reason"]).startswith("outbound: ConnectionRefusedError")
        # (nats-py retries a refused first connect for about two minutes before it fails:
        # the orders bridge says "starting" meanwhile, then "down".)
        assert state(app, "orders") in ("starting", "down")
        assert ledger_status["held"] == 1
        assert app.plugins.call_json("relay-js", "report", {}) == {"relayed": 0, "cents": 0}
    finally:
        app.stop(grace=1)


def _ledger_event() -> Any:
    from omnicore.subscriptions import PluginEvent

    return PluginEvent(topic="plugin.relay-js.ledger", plugin="relay-js",
                       data=b'{"order": -1}', hops=1)
