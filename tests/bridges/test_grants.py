"""A plugin's own publishes to a broker (``plugin_publish``, the events grant's ``bridges``):
``bridge.<bridge>.<subject>`` of omnicore:events reaches the broker only when the operator
granted that subject's pattern on that bridge and the bridge takes plugins' publishes; every
other case is refused at the call, and nothing reaches the broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from omnicore.errors import ConfigError
from omnicore.sandbox import capability as cap
from tests.bridges.conftest import BridgeApp, bridge
from tests.bridges.test_rabbitmq import Peer
from tests.brokers import RabbitMQ
from tests.event_fixtures import events_wasm, pub
from tests.waiting import eventually


@pytest.fixture
def peer(rabbitmq: RabbitMQ) -> Iterator[Peer]:
    p = Peer(rabbitmq)
    yield p
    p.close()


def config(server: RabbitMQ, names: str, **more: Any) -> dict[str, Any]:
    return {"kind": "rabbitmq", "url": server.url, "secret": "broker-secret",
            "confirm_timeout_s": 2, "plugin_publish": True,
            "plugin_exchange": f"{names}.plugins", **more}


def grants(*bridges: str, publish: list[str] | None = None) -> dict[str, Any]:
    events: dict[str, Any] = {"bridges": list(bridges)}
    if publish is not None:
        events["publish"] = publish
    return {"kv": {}, "tasks": {}, "events": events}


def test_a_granted_subject_is_published_and_every_other_is_refused(
        rabbitmq: RabbitMQ, peer: Peer, names: str, bridge_app: BridgeApp) -> None:
    peer.exchange(f"{names}.plugins")
    peer.queue(f"{names}.seen", f"{names}.plugins", "#")
    app = bridge_app(config(rabbitmq, names), rabbitmq.password)
    app.plugins.load(events_wasm("src"), grants=grants("b:orders.*"))
    app.plugins.load(events_wasm("plain"), grants=grants(publish=["*"]))
    app.plugins.load(events_wasm("other"), grants=grants("elsewhere:orders.*"))

    assert pub(app, "src", "bridge.b.orders.new", b'{"n": 1}') == 0
    [(method, props, body)] = peer.take(f"{names}.seen", 1)
    assert body == b'{"n": 1}' and method.routing_key == "orders.new"
    assert props.type == "plugin.src.bridge.b.orders.new"
    assert props.message_id.startswith(f"{app.name}:origin:")
    eventually(lambda: bridge(app).status()["published"] == 1, "the confirm")

    denied = int(cap.Status.DENIED)
    assert pub(app, "src", "bridge.b.billing.new", b"{}") == denied  # outside its pattern
    assert pub(app, "src", "bridge.b.orders.new.more", b"{}") == 0  # a glob's * spans dots
    assert pub(app, "plain", "bridge.b.orders.new", b"{}") == denied  # publish: * is not it
    assert pub(app, "other", "bridge.b.orders.new", b"{}") == denied  # another bridge's
    assert pub(app, "other", "bridge.elsewhere.orders.new", b"{}") == denied  # no such bridge
    assert pub(app, "src", "bridge.b", b"{}") == int(cap.Status.INVALID)  # no subject
    assert pub(app, "plain", "orders.new", b"{}") == 0  # its ordinary events still go
    eventually(lambda: bridge(app).status()["published"] == 2, "the one more admitted")
    got = peer.take(f"{names}.seen", 1)
    assert [m.routing_key for m, _, _ in got] == ["orders.new.more"]
    assert peer.get(f"{names}.seen") is None  # nothing refused reached the broker
    app.stop(grace=1)


def test_a_bridge_without_plugin_publish_refuses_even_a_granted_plugin(
        rabbitmq: RabbitMQ, names: str, bridge_app: BridgeApp) -> None:
    closed = {**config(rabbitmq, names), "plugin_publish": False,
              "inbound": [{"queue": f"{names}.in", "event": "orders.created"}]}
    app = bridge_app(closed, rabbitmq.password)
    app.plugins.load(events_wasm("src"), grants=grants("b:*"))
    assert pub(app, "src", "bridge.b.orders.new", b"{}") == int(cap.Status.DENIED)
    app.stop(grace=1)


@pytest.mark.parametrize("entry", ["orders.*", "b:", ":x", "a.b:x", "b:no spaces"])
def test_a_malformed_bridges_pattern_is_refused_when_the_plugin_loads(
        rabbitmq: RabbitMQ, names: str, bridge_app: BridgeApp, entry: str) -> None:
    app = bridge_app(config(rabbitmq, names), rabbitmq.password)
    with pytest.raises(ConfigError, match=r"grant\.events\.bridges"):
        app.plugins.load(events_wasm("src"), grants=grants(entry))
    app.stop(grace=1)
