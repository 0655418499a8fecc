"""``bridges.<name>`` (omnicore.config.bridges): a bad bridge is refused when the config
loads, with the key and what to write instead; a good one is read as written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.bridges import Bridges
from omnicore.errors import ConfigError

NATS_IN = {"kind": "nats", "url": "nats://127.0.0.1:4222",
           "inbound": [{"subject": "orders.>", "event": "orders.created"}]}


@pytest.mark.parametrize(("bridge", "reason"), [
    ({**NATS_IN, "kind": "kafka"}, r"bridges\.b\.kind"),
    ({**NATS_IN, "url": "redis://127.0.0.1"}, r"url must be nats:// or tls://"),
    ({**NATS_IN, "url": "nats://me:pw@127.0.0.1"}, r"must not carry a password"),
    ({**NATS_IN, "ca_file": "ca.pem"}, r"ca_file needs a TLS url \(tls://\)"),
    ({"kind": "nats", "url": "nats://h"}, r"needs inbound or outbound routes"),
    ({**NATS_IN, "inbound": [{"stream": "S", "event": "x.y"}]},
     r"inbound\[0\]: a nats route reads a subject"),
    ({**NATS_IN, "inbound": [{"subject": "a", "event": "plugin.x.y"}]},
     r"plugin\.\* names what plugins publish"),
    ({**NATS_IN, "inbound": [{"subject": "a", "event": "no spaces"}]}, r"dotted name"),
    ({**NATS_IN, "inbound": [{"subject": "a", "event": "x", "partition": "q"}]},
     r"bridges\.b\.inbound\.0\.partition"),
    ({**NATS_IN, "inbound": [{"subject": "a", "event": "x", "queue": "q"}]},
     r"queue, exchange and routing_key are for rabbitmq bridges"),
    ({"kind": "rabbitmq", "url": "nats://h", "inbound": [{"queue": "q", "event": "x"}]},
     r"url must be amqp:// or amqps://"),
    ({"kind": "rabbitmq", "url": "amqp://h", "inbound": [{"subject": "a", "event": "x"}]},
     r"a rabbitmq route consumes a queue"),
    ({"kind": "rabbitmq", "url": "amqp://h",
      "inbound": [{"queue": "q", "event": "x", "group": "g"}]}, r"no group"),
    ({"kind": "rabbitmq", "url": "amqp://h",
      "inbound": [{"queue": "q", "event": "x", "routing_key": "a.*"}]},
     r"routing_key binds the queue to an exchange"),
    ({"kind": "rabbitmq", "url": "amqp://h",
      "inbound": [{"queue": "bad queue", "event": "x"}]}, r"must be 1-255 letters"),
    ({"kind": "rabbitmq", "url": "amqp://h", "outbound": [{"events": ["x"], "exchange": "e"}]},
     r"a rabbitmq route publishes to an exchange with a routing key"),
    ({"kind": "rabbitmq", "url": "amqp://h",
      "outbound": [{"events": ["x"], "routing_key": "a.#"}]}, r"no wildcard"),
    ({"kind": "redis", "url": "redis://h",
      "outbound": [{"events": ["x"], "stream": "s", "routing_key": "k"}]},
     r"exchange and routing_key are for rabbitmq bridges"),
    ({"kind": "redis", "url": "redis://h", "inbound": [{"subject": "a", "event": "x"}]},
     r"a redis route reads a stream"),
    ({"kind": "redis", "url": "redis://h", "outbound": [{"events": [], "stream": "s"}]},
     r"bridges\.b\.outbound\.0\.events"),
    ({"kind": "redis", "url": "redis://h", "outbound": [{"events": ["x"], "subject": "s"}]},
     r"a redis route appends to a stream"),
    ({**NATS_IN, "secret": "has space"}, r"bad secret name"),
    ({**NATS_IN, "plugin_publish": True, "plugin_exchange": "e"},
     r"plugin_exchange is for rabbitmq bridges only"),
    ({"kind": "nats", "url": "nats://h"}, r"\(or plugin_publish\)"),
    ({**NATS_IN, "dead_letter": {"exchange": "dlx"}},
     r"a nats bridge's dead letters go to subject, not exchange"),
    ({**NATS_IN, "dead_letter": {"after": 0}}, r"bridges\.b\.dead_letter\.after"),
    ({"kind": "rabbitmq", "url": "amqp://h", "inbound": [{"queue": "q", "event": "x"}],
      "dead_letter": {"routing_key": "dead"}}, r"routing_key needs dead_letter\.exchange"),
    ({**NATS_IN, "batch": 0}, r"bridges\.b\.batch"),
])
def test_a_bad_bridge_is_refused_at_load_naming_its_key(
        make_app: Callable[..., OmniApp], bridge: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        make_app(overrides={"bridges": {"b": bridge}})


def test_a_good_bridge_is_read_and_nothing_runs_without_one(
        make_app: Callable[..., OmniApp]) -> None:
    app = make_app(overrides={"bridges": {"b": {
        "kind": "redis", "url": "rediss://broker:6380/2", "secret": "redis-pw",
        "ca_file": "ca.pem", "inbound": [{"stream": "orders", "event": "orders.created"}],
        "outbound": [{"events": ["plugin.*.order"], "stream": "out", "max_len": 1000}]}}})
    config = app.config.bridges["b"]
    assert config.describe() == {
        "kind": "redis", "url": "rediss://broker:6380/2", "secret": "redis-pw",
        "inbound": [{"stream": "orders", "event": "orders.created"}],
        "outbound": [{"events": ["plugin.*.order"], "stream": "out", "max_len": 1000}]}
    assert config.ca_file is not None and config.ca_file.name == "ca.pem"
    idle = Bridges({}, events=app.events, deliver=lambda e: 0, secrets=lambda: app.secrets,
                   consumer="x")
    idle.start()  # no bridge: no thread, nothing to stop
    assert idle.status() == []
    idle.stop()
