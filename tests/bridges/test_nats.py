"""NATS JetStream bridges (omnicore.bridges.nats) against a private nats-server: a message
reaches a subscribed plugin and is acknowledged only after its delivery is stored, a host
killed in between leaves it to be redelivered and queued once, outbound publishes are
confirmed and carry a stable Nats-Msg-Id, and a broker outage holds them until it returns."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from omnicore.subscriptions import BridgeEvent, PluginEvent
from tests.bridges.conftest import BridgeApp, bridge
from tests.brokers import Nats
from tests.dbservers import free_port
from tests.event_fixtures import GRANTS, Calls, events_wasm, pub, seen
from tests.waiting import eventually

T = TypeVar("T")


def js(server: Nats, step: Callable[[Any], Awaitable[T]]) -> T:
    """``step(jetstream)`` on a connection of the test's own."""
    import nats

    async def run() -> T:
        nc = await nats.connect(server.url, token=server.token)
        try:
            return await step(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(run())


def inbound(server: Nats) -> dict[str, Any]:
    return {"kind": "nats", "url": server.url, "secret": "broker-secret",
            "redeliver_after_s": 1,
            "inbound": [{"subject": "orders.>", "stream": "ORDERS", "event": "orders.created"}]}


def outbound(server: Nats) -> dict[str, Any]:
    return {"kind": "nats", "url": server.url, "secret": "broker-secret",
            "confirm_timeout_s": 1,
            "outbound": [{"events": ["plugin.src.*"], "subject": "out.events"}]}


def consumer_settled(server: Nats) -> bool:
    async def step(j: Any) -> bool:
        info = await j.consumer_info("ORDERS", "omnicore-b")
        return bool(info.num_ack_pending == 0 and info.num_pending == 0
                    and info.delivered.stream_seq >= 1)
    return js(server, step)


SINK = [{"topic": "orders.created", "handler": "on_event", "durable": True}]


def test_a_message_reaches_a_durable_subscriber_and_is_acknowledged(
        nats_server: Nats, bridge_app: BridgeApp) -> None:
    js(nats_server, lambda j: j.add_stream(name="ORDERS", subjects=["orders.>"]))
    app = bridge_app(inbound(nats_server), nats_server.token)
    app.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    js(nats_server, lambda j: j.publish("orders.new", b'{"id": 7}'))
    eventually(lambda: seen(app, "sink") == 1, "the plugin got the message as an event")
    body = json.loads(app.kv.for_plugin("sink").get("last") or b"")
    assert body == {"topic": "orders.created", "data": {"id": 7}}
    [job] = app.jobs.list(plugin="sink")
    assert job.source == "event:orders.created"
    eventually(lambda: consumer_settled(nats_server), "the message acknowledged")
    status = bridge(app).status()
    assert status["state"] == "up" and status["acked"] == 1 and status["delivered"] == 1
    labels = {"bridge": "b", "kind": "nats"}
    assert app.metrics.registry.get_sample_value("omnicore_bridge_acked_total", labels) == 1
    app.stop(grace=1)


@pytest.mark.parametrize("stored", [False, True], ids=["before-store", "after-store"])
def test_a_host_killed_between_receive_and_ack_has_the_message_redelivered_and_queued_once(
        nats_server: Nats, bridge_app: BridgeApp, monkeypatch: pytest.MonkeyPatch,
        stored: bool) -> None:
    js(nats_server, lambda j: j.add_stream(name="ORDERS", subjects=["orders.>"]))
    first = bridge_app(inbound(nats_server), nats_server.token, name="host1")
    first.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    reached, gate = threading.Event(), threading.Event()
    deliver = first.subscriptions.deliver

    def dies(event: BridgeEvent) -> int:
        n = deliver(event) if stored else 0
        reached.set()
        gate.wait(60)
        return n

    monkeypatch.setattr(first.subscriptions, "deliver", dies)
    js(nats_server, lambda j: j.publish("orders.new", b'{"id": 8}'))
    assert reached.wait(60)
    first.stop(grace=0)  # the host goes between the delivery and the ack
    gate.set()
    second = bridge_app(inbound(nats_server), nats_server.token, name="host2")
    second.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    eventually(lambda: consumer_settled(nats_server), "the redelivered message acknowledged")
    eventually(lambda: seen(second, "sink") == 1, "the event handled")
    assert len(second.jobs.list(plugin="sink")) == 1  # the redelivery queued nothing twice
    assert bridge(second).status()["delivered"] == 1
    second.stop(grace=1)


def stream_messages(server: Nats, stream: str) -> list[Any]:
    async def step(j: Any) -> list[Any]:
        info = await j.stream_info(stream)
        return [await j.get_msg(stream, seq) for seq in range(1, info.state.last_seq + 1)]
    return js(server, step)


def test_an_event_is_published_confirmed_with_a_stable_message_id(
        nats_server: Nats, bridge_app: BridgeApp) -> None:
    js(nats_server, lambda j: j.add_stream(name="OUT", subjects=["out.>"]))
    app = bridge_app(outbound(nats_server), nats_server.token)
    app.plugins.load(events_wasm("src"), grants=GRANTS)
    bus = Calls(app, "plugin.src.*")
    assert pub(app, "src", "order", b'{"n": 1}') == 0
    bus.wait(lambda evs: len(evs) == 1)
    event = bus.events[0]
    assert isinstance(event, PluginEvent)
    eventually(lambda: bridge(app).status()["published"] == 1, "the PubAck")
    [msg] = stream_messages(nats_server, "OUT")
    assert msg.data == b'{"n": 1}'
    assert msg.headers["Nats-Msg-Id"] == f"{app.name}:origin:{event.origin}"
    assert msg.headers["Omnicore-Event"] == "plugin.src.order"
    # A retry of the same message (its PubAck lost) is stored once.
    again = js(nats_server, lambda j: j.publish("out.events", b'{"n": 1}', headers={
        "Nats-Msg-Id": msg.headers["Nats-Msg-Id"]}))
    assert again.duplicate and len(stream_messages(nats_server, "OUT")) == 1
    app.stop(grace=1)


def test_a_publish_the_database_cannot_take_holds_its_outbound_message_in_the_spool(
        nats_server: Nats, bridge_app: BridgeApp, monkeypatch: pytest.MonkeyPatch) -> None:
    # The events spool holds the publish with its outbound delivery (no journal of the
    # bridge's own): published once the database answers, in order, under the origin's id.
    from omnicore.storage import StorageError

    js(nats_server, lambda j: j.add_stream(name="OUT", subjects=["out.>"]))
    app = bridge_app(outbound(nats_server), nats_server.token)
    app.plugins.load(events_wasm("src"), grants=GRANTS)
    bus = Calls(app, "plugin.src.*")
    events = app.storage.events
    append = events.append_with_jobs

    def away(*_args: Any, **_kwargs: Any) -> Any:
        raise StorageError("storage test.db: unreachable")

    monkeypatch.setattr(events, "append_with_jobs", away)
    for n in range(3):
        assert pub(app, "src", "order", b'{"n": %d}' % n) == 0
    assert app.subscriptions.held == 3
    assert bridge(app).status()["published"] == 0 and app.jobs.list(plugin="@bridge:b") == []
    monkeypatch.setattr(events, "append_with_jobs", append)
    eventually(lambda: bridge(app).status()["published"] == 3, "the held publishes confirmed")
    msgs = stream_messages(nats_server, "OUT")
    assert [m.data for m in msgs] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    bus.wait(lambda evs: len(evs) == 3)
    assert [m.headers["Nats-Msg-Id"] for m in msgs] == [
        f"{app.name}:origin:{e.origin}" for e in bus.events]
    assert [j.state for j in app.jobs.list(plugin="@bridge:b")] == ["succeeded"] * 3
    app.stop(grace=1)


def test_a_broker_outage_holds_outbound_events_and_delivers_them_in_order_after(
        nats_server: Nats, bridge_app: BridgeApp) -> None:
    js(nats_server, lambda j: j.add_stream(name="OUT", subjects=["out.>"]))
    app = bridge_app(outbound(nats_server), nats_server.token)
    app.plugins.load(events_wasm("src"), grants=GRANTS)
    nats_server.halt()
    for n in range(3):
        assert pub(app, "src", "order", b'{"n": %d}' % n) == 0
    eventually(lambda: (s := bridge(app).status())["state"] == "down" and s["held"] == 3,
               "the events held while the broker is down")
    nats_server.resume()
    eventually(lambda: bridge(app).status()["held"] == 0, "the held events published")
    assert [m.data for m in stream_messages(nats_server, "OUT")] == [
        b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert bridge(app).status()["state"] == "up"
    app.stop(grace=1)


def test_a_broker_down_when_the_host_starts_is_reported_down_at_once(
        bridge_app: BridgeApp) -> None:
    # nats-py retries a first connect 60 times (about two minutes) unless told otherwise: the
    # bridge showed "starting" and logged nothing for that long. Nothing listens on the port.
    app = bridge_app({"kind": "nats", "url": f"nats://127.0.0.1:{free_port()}",
                      "secret": "broker-secret", "confirm_timeout_s": 1,
                      "outbound": [{"events": ["orders.*"], "subject": "orders.out"}]}, "t")
    status = eventually(lambda: (s := bridge(app).status())["state"] == "down" and s,
                        "the bridge reported down", timeout=30)
    assert status["reason"], status
    app.stop(grace=1)
