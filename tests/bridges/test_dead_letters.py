"""Dead letters (``bridges.<name>.dead_letter``): a message a plugin fails on ``after`` times
is a dead job (listed, retried by an operator) and is published to the bridge's dead-letter
target with its reason; a message refused on arrival goes there before it is acknowledged
(RabbitMQ: rejected into the queue's own dead-letter exchange). Tested with a plugin that
always fails, against a private rabbitmq-server and redis-server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import wasmtime

from omnicore.sandbox import wasmbin
from tests.bridges.conftest import BridgeApp, bridge
from tests.bridges.test_rabbitmq import Peer, consuming
from tests.brokers import RabbitMQ
from tests.dbservers import Redis
from tests.event_fixtures import EVENTS_WAT, GRANTS, events_wasm, seen
from tests.waiting import eventually

#: The events plugin whose ``on_event`` traps at once: a handler that always fails.
_ON_EVENT = '(func (export "on_event") (param $p i32) (param $n i32) (result i64)'
FAILS_WAT = EVENTS_WAT.replace(_ON_EVENT, _ON_EVENT + "\n    (unreachable)")
SINK = [{"topic": "orders.created", "handler": "on_event", "durable": True}]


def failing_wasm(name: str) -> bytes:
    manifest = {"name": name, "subscriptions": SINK}
    return wasmbin.set_custom_section(wasmtime.wat2wasm(FAILS_WAT), "omnicore.manifest",
                                      json.dumps(manifest).encode())


@pytest.fixture
def peer(rabbitmq: RabbitMQ) -> Iterator[Peer]:
    p = Peer(rabbitmq)
    yield p
    p.close()


def dead_jobs(app: Any) -> list[Any]:
    return app.jobs.list(plugin="sink", state="dead")


def test_rabbitmq_a_message_a_plugin_always_fails_on_is_dead_lettered_and_replayable(
        rabbitmq: RabbitMQ, peer: Peer, names: str, bridge_app: BridgeApp) -> None:
    peer.exchange(f"{names}.x")
    peer.exchange(f"{names}.dlx", "fanout")
    peer.queue(f"{names}.dead", f"{names}.dlx", "")
    config = {"kind": "rabbitmq", "url": rabbitmq.url, "secret": "broker-secret",
              "max_message_bytes": 1024, "confirm_timeout_s": 2,
              "inbound": [{"queue": f"{names}.orders", "exchange": f"{names}.x",
                           "routing_key": "orders.*", "event": "orders.created"}],
              "dead_letter": {"after": 2, "exchange": f"{names}.dlx"}}
    app = bridge_app(config, rabbitmq.password, plugins=(failing_wasm("sink"),))
    consuming(peer, f"{names}.orders")
    peer.publish(f"{names}.x", "orders.new", b'{"id": 7}', msg_id="m-7")
    [job] = eventually(lambda: dead_jobs(app), "the delivery dead after 2 attempts")
    assert job.attempts == 2 and job.max_attempts == 2 and "unreachable" in job.last_error
    [(method, props, body)] = peer.take(f"{names}.dead", 1)
    assert body == b'{"id":7}' and props.type == "orders.created"
    assert method.routing_key == "orders.created"  # the event type, no routing_key set
    headers = props.headers
    assert "unreachable" in headers["omnicore-dead-reason"]
    assert headers["omnicore-job"] == str(job.id) and headers["omnicore-attempts"] == "2"
    assert (headers["omnicore-plugin"], headers["omnicore-handler"]) == ("sink", "on_event")
    assert props.message_id == f"{app.name}:dead:job:{job.id}:2"
    assert bridge(app).status()["dead"] == 1
    labels = {"bridge": "b", "kind": "rabbitmq"}
    assert app.metrics.registry.get_sample_value("omnicore_bridge_dead_total", labels) == 1

    # Refused on arrival: rejected, and the broker's own dead-lettering takes it.
    peer.publish(f"{names}.x", "orders.big", b"x" * 4096, msg_id="big")
    [(_, props, body)] = peer.take(f"{names}.dead", 1)
    assert len(body) == 4096 and props.message_id == "big"
    [death] = props.headers["x-death"]
    assert death["reason"] == "rejected" and death["queue"] == f"{names}.orders"
    assert bridge(app).status()["refused"] == 1

    # Replayed once the plugin is fixed: the operator's retry of the dead job.
    app.plugins.unload("sink")
    app.plugins.load(events_wasm("sink", SINK), grants=GRANTS)
    assert app.jobs.retry(job.id)
    eventually(lambda: seen(app, "sink") == 1, "the replayed delivery handled")
    eventually(lambda: app.jobs.get(job.id).state == "succeeded", "the job succeeded")
    app.stop(grace=1)
    assert peer.counts(f"{names}.orders") == (0, 0)


def test_redis_dead_letters_go_to_a_stream_with_their_reason(
        redis_server: Redis, bridge_app: BridgeApp) -> None:
    client = redis_server.client()
    client.xgroup_create("orders", "omnicore-b", "$", mkstream=True)
    config = {"kind": "redis", "url": f"redis://127.0.0.1:{redis_server.port}/0",
              "secret": "broker-secret", "max_message_bytes": 1024, "confirm_timeout_s": 2,
              "inbound": [{"stream": "orders", "event": "orders.created"}],
              "dead_letter": {"after": 3, "stream": "orders-dead"}}
    app = bridge_app(config, redis_server.password, plugins=(failing_wasm("sink"),))
    entry = client.xadd("orders", {"data": b"plain text"}).decode()
    [job] = eventually(lambda: dead_jobs(app), "the delivery dead after 3 attempts")
    assert job.attempts == 3
    [(_, fields)] = eventually(lambda: client.xrange("orders-dead"), "the dead letter")
    assert fields[b"data"] == b"plain text" and fields[b"event"] == b"orders.created"
    assert b"unreachable" in fields[b"omnicore-dead-reason"]
    assert fields[b"omnicore-job"] == str(job.id).encode()
    # Refused on arrival: the dead letter first (its reason), then the XACK.
    big = client.xadd("orders", {"data": b"x" * 4096}).decode()
    eventually(lambda: len(client.xrange("orders-dead")) == 2, "the refused entry")
    (_, fields) = client.xrange("orders-dead")[1]
    assert fields[b"omnicore-message-id"] == f"orders:{big}".encode()
    assert b"over max_message_bytes" in fields[b"omnicore-dead-reason"]
    assert fields[b"data"] == b""  # over the cap: never read into memory
    eventually(lambda: int(client.xpending("orders", "omnicore-b")["pending"]) == 0,
               "both acknowledged")
    assert bridge(app).status()["dead"] == 2 and entry
    app.stop(grace=1)
