"""Redis Streams bridges (omnicore.bridges.redis, the host's own RESP) against a private
redis-server: an entry reaches a subscribed plugin and is acknowledged (XACK) only after its
delivery is stored, a host killed in between leaves it to be claimed by the next and queued
once, outbound events are appended (XADD's id is the confirmation) with a stable id field,
and a server outage holds them until it returns."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

from omnicore.bridges._broker import Settings
from omnicore.bridges.redis import DEDUPE_WINDOW, RedisBroker
from omnicore.config.bridges import BridgeConfig
from omnicore.modules.health import HealthStatus
from omnicore.subscriptions import BridgeEvent
from tests.bridges.conftest import BridgeApp, bridge
from tests.dbservers import Redis
from tests.event_fixtures import GRANTS, Calls, events_wasm, pub, seen
from tests.waiting import eventually

SINK = [{"topic": "orders.created", "handler": "on_event", "durable": True}]


def url(server: Redis) -> str:
    return f"redis://127.0.0.1:{server.port}/0"


def inbound(server: Redis) -> dict[str, Any]:
    return {"kind": "redis", "url": url(server), "secret": "broker-secret",
            "redeliver_after_s": 1,
            "inbound": [{"stream": "orders", "event": "orders.created"}]}


def outbound(server: Redis) -> dict[str, Any]:
    return {"kind": "redis", "url": url(server), "secret": "broker-secret",
            "confirm_timeout_s": 1, "outbound": [{"events": ["plugin.src.*"], "stream": "out"}]}


def settled(server: Redis) -> bool:
    pending = server.client().xpending("orders", "omnicore-b")
    return int(pending["pending"]) == 0


@pytest.fixture
def orders(redis_server: Redis) -> Redis:
    # The group the bridge shares, made before the first entry (a group the bridge makes
    # starts at the stream's end).
    redis_server.client().xgroup_create("orders", "omnicore-b", "$", mkstream=True)
    return redis_server


def test_an_entry_reaches_a_durable_subscriber_and_is_acknowledged(
        orders: Redis, bridge_app: BridgeApp) -> None:
    app = bridge_app(inbound(orders), orders.password)
    app.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    entry = orders.client().xadd("orders", {"data": b'{"id": 7}'}).decode()
    eventually(lambda: seen(app, "sink") == 1, "the plugin got the entry as an event")
    body = json.loads(app.kv.for_plugin("sink").get("last") or b"")
    assert body == {"topic": "orders.created", "data": {"id": 7}}
    eventually(lambda: settled(orders), "the entry acknowledged")
    events = Calls(app, "orders.*")
    orders.client().xadd("orders", {"a": "1", "b": "2"})  # no data field: its fields as JSON
    events.wait(lambda evs: len(evs) == 1)
    assert json.loads(events.events[0].data) == {"a": "1", "b": "2"}
    assert events.events[0].message_id != f"orders:{entry}"
    app.stop(grace=1)


@pytest.mark.parametrize("stored", [False, True], ids=["before-store", "after-store"])
def test_a_host_killed_between_receive_and_ack_has_the_entry_claimed_and_queued_once(
        orders: Redis, bridge_app: BridgeApp, monkeypatch: pytest.MonkeyPatch,
        stored: bool) -> None:
    first = bridge_app(inbound(orders), orders.password, name="host1")
    first.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    reached, gate = threading.Event(), threading.Event()
    deliver = first.subscriptions.deliver

    def dies(event: BridgeEvent) -> int:
        n = deliver(event) if stored else 0
        reached.set()
        gate.wait(60)
        return n

    monkeypatch.setattr(first.subscriptions, "deliver", dies)
    orders.client().xadd("orders", {"data": b'{"id": 8}'})
    assert reached.wait(60)
    first.stop(grace=0)  # the host goes between the delivery and the XACK
    gate.set()
    assert not settled(orders)
    # Another host (another consumer of the group) claims it once it has idled long enough.
    second = bridge_app(inbound(orders), orders.password, name="host2")
    second.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    eventually(lambda: settled(orders), "the claimed entry acknowledged")
    eventually(lambda: seen(second, "sink") == 1, "the event handled")
    assert len(second.jobs.list(plugin="sink")) == 1  # the redelivery queued nothing twice
    second.stop(grace=1)


def test_an_event_is_appended_with_its_stable_message_id(
        redis_server: Redis, bridge_app: BridgeApp) -> None:
    app = bridge_app(outbound(redis_server), redis_server.password)
    app.plugins.load(events_wasm("src"), grants=GRANTS)
    bus = Calls(app, "plugin.src.*")
    assert pub(app, "src", "order", b'{"n": 1}') == 0
    bus.wait(lambda evs: len(evs) == 1)
    eventually(lambda: bridge(app).status()["published"] == 1, "XADD's reply")
    [(_, fields)] = redis_server.client().xrange("out")
    assert fields == {b"data": b'{"n": 1}', b"event": b"plugin.src.order",
                      b"id": f"{app.name}:origin:{bus.events[0].origin}".encode()}
    app.stop(grace=1)


def test_a_retried_publish_is_appended_once_within_the_window(redis_server: Redis) -> None:
    # A publish whose reply was lost (a host killed after the XADD, its job not finished) is
    # sent again under the same message id: the entry it made is the answer, nothing added.
    config = BridgeConfig.model_validate(outbound(redis_server))
    route = config.outbound[0]

    async def go() -> list[str]:
        broker = RedisBroker(Settings("b", config, "host", redis_server.password))
        await broker.connect("outbound")
        try:
            first = await broker.publish(route, "app:origin:a", "e", b"1")
            between = [await broker.publish(route, f"app:origin:n{i}", "e", b"2")
                       for i in range(DEDUPE_WINDOW - 1)]
            again = await broker.publish(route, "app:origin:a", "e", b"1")
            late = await broker.publish(route, "app:origin:n0", "e", b"2")  # still in it
            await broker.publish(route, "app:origin:z", "e", b"3")
            gone = await broker.publish(route, "app:origin:a", "e", b"1")  # out of it
        finally:
            await broker.close()
        return [first, again, between[0], late, gone]

    first, again, n0, late, gone = asyncio.run(go())
    assert again == first and late == n0 and gone != first
    ids = [f[b"id"] for _, f in redis_server.client().xrange("out")]
    assert len(ids) == DEDUPE_WINDOW + 2 and ids.count(b"app:origin:a") == 2


def test_a_server_outage_holds_outbound_events_and_appends_them_in_order_after(
        redis_server: Redis, bridge_app: BridgeApp) -> None:
    app = bridge_app(outbound(redis_server), redis_server.password)
    app.plugins.load(events_wasm("src"), grants=GRANTS)
    redis_server.halt()
    for n in range(3):
        assert pub(app, "src", "order", b'{"n": %d}' % n) == 0
    eventually(lambda: (s := bridge(app).status())["state"] == "down" and s["held"] == 3,
               "the events held while the server is down")
    # Seen, not silent: the health report and /metrics say so, with the reason.
    health = app.health.check().components["bridge:b"]
    assert health.status is HealthStatus.DEGRADED and "outbound" in health.detail
    sample = app.metrics.registry.get_sample_value
    labels = {"bridge": "b", "kind": "redis"}
    assert sample("omnicore_bridge_up", labels) == 0
    assert sample("omnicore_bridge_held_messages", labels) == 3
    redis_server.resume()
    eventually(lambda: bridge(app).status()["held"] == 0, "the held events appended")
    assert sample("omnicore_bridge_published_total", labels) == 3
    assert sample("omnicore_bridge_up", labels) == 1
    assert app.health.check().components["bridge:b"].status is HealthStatus.HEALTHY
    assert [f[b"data"] for _, f in redis_server.client().xrange("out")] == [
        b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    app.stop(grace=1)


def test_a_wrong_password_is_a_clear_reason_not_a_silent_stop(
        redis_server: Redis, bridge_app: BridgeApp) -> None:
    app = bridge_app(outbound(redis_server), "not-the-password")
    app.plugins.load(events_wasm("src"), grants=GRANTS)
    assert pub(app, "src", "order", b"1") == 0
    eventually(lambda: "WRONGPASS" in (bridge(app).status()["reason"] or ""), "the reason")
    app.stop(grace=1)


def test_an_entry_over_the_size_cap_is_refused_unread_and_the_next_one_delivered(
        orders: Redis, bridge_app: BridgeApp, caplog: pytest.LogCaptureFixture) -> None:
    config = {**inbound(orders), "max_message_bytes": 1024}
    app = bridge_app(config, orders.password, plugins=(events_wasm("sink", SINK),))
    big = orders.client().xadd("orders", {"data": b"x" * 65536}).decode()
    orders.client().xadd("orders", {"data": b'{"id": 9}'})
    eventually(lambda: seen(app, "sink") == 1, "the entry after the big one")
    eventually(lambda: settled(orders), "both acknowledged")
    assert bridge(app).status()["refused"] == 1
    assert any(f"orders:{big} of 65536 bytes is over max_message_bytes" in r.getMessage()
               for r in caplog.records)
    app.stop(grace=1)
