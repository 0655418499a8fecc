"""RabbitMQ bridges (omnicore.bridges.rabbitmq, the host's own AMQP 0-9-1 over pamqp) against
a private rabbitmq-server, held against pika as the peer: a message reaches a subscribed
plugin and is acknowledged only after its delivery is stored, a host killed in between has it
redelivered and queued once (by its message_id), outbound publishes are confirmed and carry a
stable message_id, an unroutable one is retried with its reason until a queue takes it, and a
broker outage holds them until it returns."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from omnicore.modules.health import HealthStatus
from omnicore.subscriptions import BridgeEvent, PluginEvent
from tests.bridges.conftest import BridgeApp, bridge
from tests.brokers import RabbitMQ
from tests.event_fixtures import Calls, events_wasm, pub, seen
from tests.waiting import eventually

SINK = [{"topic": "orders.created", "handler": "on_event", "durable": True}]


class Peer:
    """The test's own AMQP client (pika), one blocking connection."""

    def __init__(self, server: RabbitMQ) -> None:
        import pika

        self.conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", server.port, credentials=pika.PlainCredentials(
                server.user, server.password)))
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()

    def exchange(self, name: str, kind: str = "topic") -> None:
        self.ch.exchange_declare(name, kind, durable=True)

    def queue(self, name: str, exchange: str | None = None, key: str = "#") -> None:
        self.ch.queue_declare(name, durable=True)
        if exchange is not None:
            self.ch.queue_bind(name, exchange, key)

    def publish(self, exchange: str, key: str, body: bytes, msg_id: str | None = None) -> None:
        import pika

        self.ch.basic_publish(exchange, key, body, pika.BasicProperties(
            message_id=msg_id, delivery_mode=2), mandatory=True)

    def get(self, queue: str) -> tuple[Any, Any, bytes] | None:
        method, props, body = self.ch.basic_get(queue, auto_ack=True)
        return None if method is None else (method, props, body)

    def take(self, queue: str, n: int) -> list[tuple[Any, Any, bytes]]:
        got: list[tuple[Any, Any, bytes]] = []

        def more() -> bool:
            while (one := self.get(queue)) is not None:
                got.append(one)
            return len(got) >= n

        eventually(more, f"{n} message(s) on {queue}")
        return got

    def counts(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of ``queue``; (0, 0) when it does not exist."""
        import pika.exceptions

        ch = self.conn.channel()
        try:
            ok = ch.queue_declare(queue, passive=True).method
        except pika.exceptions.ChannelClosedByBroker:
            return 0, 0
        ch.close()
        return ok.message_count, ok.consumer_count

    def close(self) -> None:
        if self.conn.is_open:
            self.conn.close()


@pytest.fixture
def peer(rabbitmq: RabbitMQ) -> Iterator[Peer]:
    p = Peer(rabbitmq)
    yield p
    p.close()


def inbound(server: RabbitMQ, names: str) -> dict[str, Any]:
    return {"kind": "rabbitmq", "url": server.url, "secret": "broker-secret",
            "inbound": [{"queue": f"{names}.orders", "exchange": f"{names}.x",
                         "routing_key": "orders.*", "event": "orders.created"}]}


def outbound(server: RabbitMQ, names: str) -> dict[str, Any]:
    return {"kind": "rabbitmq", "url": server.url, "secret": "broker-secret",
            "confirm_timeout_s": 2, "outbound": [{"events": ["plugin.src.*"],
                                                  "exchange": f"{names}.out",
                                                  "routing_key": "events.src"}]}


def consuming(peer: Peer, queue: str, n: int = 1) -> None:
    eventually(lambda: peer.counts(queue)[1] >= n, f"the bridge consuming {queue}")


def test_a_message_reaches_a_durable_subscriber_and_is_acknowledged(
        rabbitmq: RabbitMQ, peer: Peer, names: str, bridge_app: BridgeApp) -> None:
    peer.exchange(f"{names}.x")
    app = bridge_app(inbound(rabbitmq, names), rabbitmq.password,
                     plugins=(events_wasm("sink", SINK),))
    queue = f"{names}.orders"
    consuming(peer, queue)  # the bridge declared and bound its queue
    peer.publish(f"{names}.x", "orders.new", b'{"id": 7}', msg_id="m-1")
    eventually(lambda: seen(app, "sink") == 1, "the plugin got the message as an event")
    body = json.loads(app.kv.for_plugin("sink").get("last") or b"")
    assert body == {"topic": "orders.created", "data": {"id": 7}}
    [job] = app.jobs.list(plugin="sink")
    assert job.source == "event:orders.created"
    eventually(lambda: bridge(app).status()["acked"] == 1, "the basic.ack")
    status = bridge(app).status()
    assert status["state"] == "up" and status["delivered"] == 1
    labels = {"bridge": "b", "kind": "rabbitmq"}
    assert app.metrics.registry.get_sample_value("omnicore_bridge_acked_total", labels) == 1
    events = Calls(app, "orders.*")
    peer.publish(f"{names}.x", "orders.new", b"plain text")  # no message_id: one made
    events.wait(lambda evs: len(evs) == 1)
    assert events.events[0].message_id.startswith(f"{queue}:new:")
    app.stop(grace=1)
    # Acknowledged, not requeued when the bridge's connection closed.
    assert peer.counts(queue) == (0, 0)


@pytest.mark.parametrize("stored", [False, True], ids=["before-store", "after-store"])
def test_a_host_killed_between_receive_and_ack_has_the_message_redelivered_and_queued_once(
        rabbitmq: RabbitMQ, peer: Peer, names: str, bridge_app: BridgeApp,
        monkeypatch: pytest.MonkeyPatch, stored: bool) -> None:
    peer.exchange(f"{names}.x")
    first = bridge_app(inbound(rabbitmq, names), rabbitmq.password, name="host1",
                       plugins=(events_wasm("sink", SINK),))
    consuming(peer, f"{names}.orders")
    reached, gate = threading.Event(), threading.Event()
    deliver = first.subscriptions.deliver

    def dies(event: BridgeEvent) -> int:
        n = deliver(event) if stored else 0
        reached.set()
        gate.wait(60)
        return n

    monkeypatch.setattr(first.subscriptions, "deliver", dies)
    peer.publish(f"{names}.x", "orders.new", b'{"id": 8}', msg_id="m-8")
    assert reached.wait(60)
    first.stop(grace=0)  # the host goes between the delivery and the ack
    gate.set()
    # Its connection closed: the broker holds the message for the next consumer.
    eventually(lambda: peer.counts(f"{names}.orders") == (1, 0), "the message requeued")
    second = bridge_app(inbound(rabbitmq, names), rabbitmq.password, name="host2",
                        plugins=(events_wasm("sink", SINK),))
    eventually(lambda: bridge(second).status()["acked"] == 1, "the redelivery acknowledged")
    eventually(lambda: seen(second, "sink") == 1, "the event handled")
    assert len(second.jobs.list(plugin="sink")) == 1  # the redelivery queued nothing twice
    second.stop(grace=1)
    assert peer.counts(f"{names}.orders") == (0, 0)


def test_an_event_is_published_confirmed_with_a_stable_message_id(
        rabbitmq: RabbitMQ, peer: Peer, names: str, bridge_app: BridgeApp) -> None:
    peer.exchange(f"{names}.out")
    peer.queue(f"{names}.sink", f"{names}.out", "events.#")
    app = bridge_app(outbound(rabbitmq, names), rabbitmq.password,
                     plugins=(events_wasm("src"),))
    bus = Calls(app, "plugin.src.*")
    assert pub(app, "src", "order", b'{"n": 1}') == 0
    bus.wait(lambda evs: len(evs) == 1)
    event = bus.events[0]
    assert isinstance(event, PluginEvent)
    eventually(lambda: bridge(app).status()["published"] == 1, "the publisher confirm")
    [(method, props, body)] = peer.take(f"{names}.sink", 1)
    assert body == b'{"n": 1}' and method.routing_key == "events.src"
    assert props.message_id == f"{app.name}:origin:{event.origin}"
    assert props.type == "plugin.src.order" and props.delivery_mode == 2
    assert props.headers == {"omnicore-event": "plugin.src.order"}
    app.stop(grace=1)


def test_an_unroutable_publish_is_retried_with_its_reason_until_a_queue_takes_it(
        rabbitmq: RabbitMQ, peer: Peer, names: str, bridge_app: BridgeApp) -> None:
    peer.exchange(f"{names}.out")  # no queue bound yet: the broker returns the message
    app = bridge_app(outbound(rabbitmq, names), rabbitmq.password,
                     plugins=(events_wasm("src"),))
    assert pub(app, "src", "order", b'{"n": 1}') == 0
    eventually(lambda: "no queue took the message" in (bridge(app).status()["reason"] or ""),
               "the basic.return as the reason")
    assert bridge(app).status()["held"] == 1
    peer.queue(f"{names}.sink", f"{names}.out", "events.#")
    eventually(lambda: bridge(app).status()["published"] == 1, "published once routable")
    [(_, props, body)] = peer.take(f"{names}.sink", 1)
    assert body == b'{"n": 1}' and props.message_id.startswith(f"{app.name}:origin:")
    assert bridge(app).status()["state"] == "up"
    app.stop(grace=1)


def test_a_broker_outage_holds_outbound_events_and_delivers_them_in_order_after(
        rabbitmq: RabbitMQ, peer: Peer, names: str, bridge_app: BridgeApp) -> None:
    peer.exchange(f"{names}.out")
    peer.queue(f"{names}.sink", f"{names}.out", "events.#")
    peer.close()
    app = bridge_app(outbound(rabbitmq, names), rabbitmq.password,
                     plugins=(events_wasm("src"),))
    rabbitmq.halt()
    for n in range(3):
        assert pub(app, "src", "order", b'{"n": %d}' % n) == 0
    eventually(lambda: (s := bridge(app).status())["state"] == "down" and s["held"] == 3,
               "the events held while the broker is down")
    health = app.health.check().components["bridge:b"]
    assert health.status is HealthStatus.DEGRADED and "outbound" in health.detail
    rabbitmq.resume()
    eventually(lambda: bridge(app).status()["held"] == 0, "the held events published",
               timeout=90)
    again = Peer(rabbitmq)
    got = again.take(f"{names}.sink", 3)
    assert [body for _, _, body in got] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    again.close()
    assert bridge(app).status()["state"] == "up"
    app.stop(grace=1)


def test_a_wrong_password_is_a_clear_reason_not_a_silent_stop(
        rabbitmq: RabbitMQ, names: str, bridge_app: BridgeApp) -> None:
    app = bridge_app(inbound(rabbitmq, names), "not-the-password")
    eventually(lambda: "ACCESS_REFUSED" in (bridge(app).status()["reason"] or ""),
               "the broker's refusal as the reason")
    assert bridge(app).status()["state"] == "down"
    app.stop(grace=1)


def test_a_message_over_the_size_cap_is_refused_unkept_and_the_next_one_delivered(
        rabbitmq: RabbitMQ, peer: Peer, names: str, bridge_app: BridgeApp,
        caplog: pytest.LogCaptureFixture) -> None:
    peer.exchange(f"{names}.x")
    config = {**inbound(rabbitmq, names), "max_message_bytes": 1024}
    app = bridge_app(config, rabbitmq.password, plugins=(events_wasm("sink", SINK),))
    consuming(peer, f"{names}.orders")
    peer.publish(f"{names}.x", "orders.big", b"x" * 300_000, msg_id="big")  # 3 body frames
    peer.publish(f"{names}.x", "orders.new", b'{"id": 9}', msg_id="small")
    eventually(lambda: seen(app, "sink") == 1, "the message after the big one")
    eventually(lambda: bridge(app).status()["acked"] == 1, "the small one acknowledged")
    assert bridge(app).status()["refused"] == 1
    assert any(f"{names}.orders:big of 300000 bytes is over max_message_bytes" in r.getMessage()
               for r in caplog.records)
    app.stop(grace=1)
    assert peer.counts(f"{names}.orders") == (0, 0)


class Spoof:
    """A fake AMQP broker on a free port: each connection reads the protocol header and gets
    ``answer`` (then the socket stays open, as a broker that says no more would)."""

    def __init__(self, answer: bytes) -> None:
        import socket

        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[Any] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                conn.recv(8)
                conn.sendall(self.answer)
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


@pytest.mark.parametrize(("answer", "reason"), [
    # A method frame announcing 1 GiB: refused from its header, nothing read or allocated.
    (b"\x01\x00\x00\x40\x00\x00\x00" + b"\x00" * 64, "a frame of 1073741824 bytes, over the "
                                                      "131072 agreed"),
    # A frame without its end byte.
    (b"\x01\x00\x00\x00\x00\x00\x04\x00\x0a\x00\x0a\x00", "without its end byte"),
    # Not AMQP at all (an HTTP server).
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "over the 131072 agreed"),
])
def test_a_broker_that_answers_garbage_is_a_clear_reason_refused_from_the_frame_header(
        bridge_app: BridgeApp, answer: bytes, reason: str) -> None:
    spoof = Spoof(answer)
    config = {"kind": "rabbitmq", "url": f"amqp://omnicore@127.0.0.1:{spoof.port}/",
              "secret": "broker-secret", "confirm_timeout_s": 2,
              "inbound": [{"queue": "q", "event": "orders.created"}]}
    app = bridge_app(config, "pw")
    eventually(lambda: reason in (bridge(app).status()["reason"] or ""), reason)
    assert bridge(app).status()["state"] == "down"
    app.stop(grace=1)
    spoof.close()
