"""The bridge tests' app: the events plugin of tests/event_fixtures.py, a bridge configured,
its secret in the store, started on a data dir two hosts may share one after the other; and
the RabbitMQ node a test session starts once per worker (Erlang boots in seconds), each test
on names of its own."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.bridges import Bridge
from tests.brokers import Mosquitto, Nats, RabbitMQ
from tests.dbservers import Redis
from tests.event_fixtures import GRANTS

BridgeApp = Callable[..., OmniApp]


@pytest.fixture
def bridge_app(make_app: Callable[..., OmniApp], tmp_path: Path) -> BridgeApp:
    """``bridge_app(bridge_config, secret, name=, plugins=)``: a started app with
    ``bridges.b`` on the data dir every app of the test shares (a second host of one
    database, or a restart), with ``plugins`` loaded before it starts."""

    def factory(config: dict[str, Any], secret: str, name: str = "host1",
                plugins: tuple[bytes, ...] = ()) -> OmniApp:
        app = make_app(name, builtin_extensions=None, overrides={
            "data_dir": str(tmp_path / "shared"),
            "sandbox": {"watch": False},
            "capabilities": {"jobs": {"poll_s": 0.2, "backoff_ms": 20}},
            "bridges": {"b": config}})
        app.secrets.set("broker-secret", secret)
        for wasm in plugins:  # loaded before the bridges start, as a host's folder is
            app.plugins.load(wasm, grants=GRANTS)
        app.start()
        return app

    return factory


def bridge(app: OmniApp) -> Bridge:
    return app.bridges.bridges["b"]


@pytest.fixture(scope="session")
def rabbitmq_node() -> Iterator[RabbitMQ]:
    server = RabbitMQ.start()
    yield server
    server.stop()


@pytest.fixture
def rabbitmq(rabbitmq_node: RabbitMQ) -> RabbitMQ:
    """The session's node, running (a test that halted it and failed is made good here)."""
    if not rabbitmq_node.running:
        rabbitmq_node.resume()
    return rabbitmq_node


@pytest.fixture
def names() -> str:
    """A prefix of this test's own for the queues and exchanges of a shared broker."""
    return f"t{uuid.uuid4().hex[:8]}"


# A broker a test module's tests share, started fresh for each test (its state is the test's).
@pytest.fixture
def redis_server() -> Iterator[Redis]:
    server = Redis.start()
    yield server
    server.stop()


@pytest.fixture
def nats_server() -> Iterator[Nats]:
    server = Nats.start()
    yield server
    server.stop()


@pytest.fixture
def mqtt_server() -> Iterator[Mosquitto]:
    server = Mosquitto.start()
    yield server
    server.stop()
