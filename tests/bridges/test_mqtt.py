"""MQTT 5 bridges (omnicore.bridges.mqtt) against a private mosquitto: a QoS 1 message
reaches a subscribed plugin and its PUBACK waits until its delivery is stored, a host killed
in between has it resent on its session and queued once (by its omnicore-msg-id), outbound
publishes are confirmed by their PUBACK and carry a stable omnicore-msg-id, and a broker
outage holds them until it returns."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from omnicore.bridges.mqtt import MSG_ID
from omnicore.subscriptions import BridgeEvent
from tests.bridges.conftest import BridgeApp, bridge
from tests.brokers import Mosquitto
from tests.event_fixtures import GRANTS, Calls, events_wasm, pub, seen
from tests.waiting import eventually

SINK = [{"topic": "orders.created", "handler": "on_event", "durable": True}]


class Peer:
    """The test's own MQTT 5 client (paho), with a persistent session of its own."""

    def __init__(self, server: Mosquitto, client_id: str = "peer") -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self.got: list[Any] = []
        self._cond = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv5)
        self.client.username_pw_set(server.user, server.password)
        self.client.on_message = self._on
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", server.port, clean_start=False, properties=props)
        self.client.loop_start()

    def _on(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._cond:
            self.got.append(msg)
            self._cond.notify_all()

    def subscribe(self, topic: str) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.client.subscribe(topic, options=SubscribeOptions(qos=1))

    def publish(self, topic: str, payload: bytes, msg_id: str | None = None) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        if msg_id is not None:
            props.UserProperty = [(MSG_ID, msg_id)]
        self.client.publish(topic, payload, qos=1, properties=props).wait_for_publish(60)

    def wait(self, n: int) -> list[Any]:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.got) >= n, 60), self.got
            return list(self.got)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def inbound(server: Mosquitto) -> dict[str, Any]:
    return {"kind": "mqtt", "url": server.url, "secret": "broker-secret",
            "inbound": [{"topic": "orders/+", "event": "orders.created"}]}


def outbound(server: Mosquitto) -> dict[str, Any]:
    return {"kind": "mqtt", "url": server.url, "secret": "broker-secret",
            "confirm_timeout_s": 1,
            "outbound": [{"events": ["plugin.src.*"], "topic": "out/events"}]}


def subscribed(app: Any) -> None:
    # The bridge's subscription is in place once its lane is up.
    eventually(lambda: bridge(app).status()["state"] == "up", "the bridge subscribed")


def test_a_message_reaches_a_durable_subscriber_and_is_acknowledged(
        mqtt_server: Mosquitto, bridge_app: BridgeApp) -> None:
    app = bridge_app(inbound(mqtt_server), mqtt_server.password)
    app.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    subscribed(app)
    peer = Peer(mqtt_server)
    peer.publish("orders/new", b'{"id": 7}', msg_id="m-1")
    eventually(lambda: seen(app, "sink") == 1, "the plugin got the message as an event")
    body = json.loads(app.kv.for_plugin("sink").get("last") or b"")
    assert body == {"topic": "orders.created", "data": {"id": 7}}
    eventually(lambda: bridge(app).status()["acked"] == 1, "the PUBACK sent after the store")
    peer.close()
    app.stop(grace=1)


@pytest.mark.parametrize("stored", [False, True], ids=["before-store", "after-store"])
def test_a_host_killed_between_receive_and_ack_has_the_message_resent_and_queued_once(
        mqtt_server: Mosquitto, bridge_app: BridgeApp, monkeypatch: pytest.MonkeyPatch,
        stored: bool) -> None:
    first = bridge_app(inbound(mqtt_server), mqtt_server.password, name="host1")
    first.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    subscribed(first)
    reached, gate = threading.Event(), threading.Event()
    deliver = first.subscriptions.deliver

    def dies(event: BridgeEvent) -> int:
        n = deliver(event) if stored else 0
        reached.set()
        gate.wait(60)
        return n

    monkeypatch.setattr(first.subscriptions, "deliver", dies)
    peer = Peer(mqtt_server)
    peer.publish("orders/new", b'{"id": 8}', msg_id="m-8")
    assert reached.wait(60)
    first.stop(grace=0)  # the host goes between the delivery and the PUBACK
    gate.set()
    # The same host back (its client id, so its session): the broker sends the message again.
    # The plugin loads before the bridge starts (as a host's folder does): the resend comes
    # as soon as the session is back.
    second = bridge_app(inbound(mqtt_server), mqtt_server.password, name="host2",
                        plugins=(events_wasm("sink", SINK),))
    eventually(lambda: bridge(second).status()["acked"] == 1, "the resent message acknowledged")
    eventually(lambda: seen(second, "sink") == 1, "the event handled")
    assert len(second.jobs.list(plugin="sink")) == 1  # the resend queued nothing twice
    peer.close()
    second.stop(grace=1)


def test_an_event_is_published_confirmed_with_a_stable_message_id(
        mqtt_server: Mosquitto, bridge_app: BridgeApp) -> None:
    peer = Peer(mqtt_server)
    peer.subscribe("out/#")
    app = bridge_app(outbound(mqtt_server), mqtt_server.password)
    app.plugins.load(events_wasm("src"), grants=GRANTS)
    bus = Calls(app, "plugin.src.*")
    assert pub(app, "src", "order", b'{"n": 1}') == 0
    bus.wait(lambda evs: len(evs) == 1)
    [msg] = peer.wait(1)
    assert msg.payload == b'{"n": 1}' and msg.topic == "out/events"
    props = dict(msg.properties.UserProperty)
    assert props[MSG_ID] == f"{app.name}:origin:{bus.events[0].origin}"
    assert props["omnicore-event"] == "plugin.src.order"
    eventually(lambda: bridge(app).status()["published"] == 1, "the PUBACK")
    peer.close()
    app.stop(grace=1)


def test_a_broker_outage_holds_outbound_events_and_delivers_them_in_order_after(
        mqtt_server: Mosquitto, bridge_app: BridgeApp) -> None:
    peer = Peer(mqtt_server)  # a persistent session: what is published while away waits
    peer.subscribe("out/#")
    peer.close()
    app = bridge_app(outbound(mqtt_server), mqtt_server.password)
    app.plugins.load(events_wasm("src"), grants=GRANTS)
    mqtt_server.halt()
    for n in range(3):
        assert pub(app, "src", "order", b'{"n": %d}' % n) == 0
    eventually(lambda: (s := bridge(app).status())["state"] == "down" and s["held"] == 3,
               "the events held while the broker is down")
    mqtt_server.resume()
    eventually(lambda: bridge(app).status()["held"] == 0, "the held events published")
    peer = Peer(mqtt_server)
    got = peer.wait(3)
    assert [m.payload for m in got] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    peer.close()
    app.stop(grace=1)


def test_a_disconnect_after_the_bridge_loop_closed_is_no_error(mqtt_server: Mosquitto) -> None:
    """paho's callbacks run on its own thread, which can outlive the bridge's event loop (the
    host stopping): a disconnect seen then has nobody to tell, and must not raise in paho's
    thread (it did: RuntimeError 'Event loop is closed', caught by a full run's guide test)."""
    import asyncio

    from omnicore.bridges._broker import Settings
    from omnicore.bridges.mqtt import MqttBroker
    from omnicore.config.bridges import BridgeConfig

    raised: list[BaseException] = []
    saved = threading.excepthook
    threading.excepthook = lambda args: raised.append(args.exc_value)  # type: ignore[assignment]
    broker = MqttBroker(Settings("b", BridgeConfig.model_validate(outbound(mqtt_server)),
                                 "host", mqtt_server.password))
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(broker.connect("outbound"))
        loop.close()  # the host stopped without closing this client
        client = broker._client
        client.disconnect()  # paho's thread now reports the disconnect
        client.loop_stop()
        assert raised == []
    finally:
        threading.excepthook = saved
