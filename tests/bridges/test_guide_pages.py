"""Each broker's guide page runs (docs/guides/bridges/*.md): its ``omnicore.yaml`` (the page's
yaml block, only the broker's address and password the test's) serves the demo's relay
(plugins/relay/js, built by the real toolchain) against a private server of that broker, and
the page's Python script, run as the reader runs it, publishes three orders and prints the
three ledger entries that come back through the bridge."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from omnicore.app import OmniApp
from omnicore.toolchains import build
from tests.bridges.conftest import rabbitmq_node  # noqa: F401  (the session's node)
from tests.brokers import Mosquitto, Nats, RabbitMQ
from tests.dbservers import Redis
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "docs" / "guides" / "bridges"
_BLOCK = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>yaml|python)\n(?P<body>.*?)^(?P=indent)```",
                    re.DOTALL | re.MULTILINE)


def page_blocks(page: str) -> tuple[dict[str, Any], str]:
    """The page's first yaml block (parsed) and first python block (dedented)."""
    found: dict[str, str] = {}
    for match in _BLOCK.finditer((PAGES / page).read_text(encoding="utf-8")):
        found.setdefault(match["lang"], textwrap.dedent(match["body"]))
    return yaml.safe_load(found["yaml"]), found["python"]


@pytest.fixture(scope="module")
def relay_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(ROOT / "plugins" / "relay" / "js", tmp_path_factory.mktemp("relay"))


def run_page(page: str, tmp_path: Path, relay: Path, url: str, secret: str,
             env: dict[str, str], ready: Any = None) -> None:
    config, script = page_blocks(page)
    [(name, bridge)] = config["bridges"].items()
    bridge.update(url=url, secret="broker-secret")
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "relay-js.wasm").write_bytes(relay.read_bytes())
    app = OmniApp(config["name"], environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "sandbox": {"watch": False}, "plugins": config["plugins"],
        "bridges": {name: bridge}})
    app.secrets.set("broker-secret", secret)
    app.start()
    try:
        eventually(lambda: app.bridges.status()[0]["state"] == "up", "the bridge up")
        if ready is not None:
            eventually(ready, "the bridge's source made")
        (tmp_path / "orders.py").write_text(script)
        proc = subprocess.run([sys.executable, str(tmp_path / "orders.py")], cwd=tmp_path,
                              env={**os.environ, **env}, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("ledger entry: ")]
        assert sorted(lines) == [
            f"ledger entry: {{'order': {n}, 'cents': {100 * n}, 'relayed_by': 'relay-js'}}"
            for n in range(3)], proc.stdout
        status = app.bridges.status()[0]
        assert status["acked"] == 3 and status["published"] == 3, status
    finally:
        app.stop(grace=1)


def test_the_nats_page_runs(nats_server: Nats, relay_wasm: Path, tmp_path: Path) -> None:
    # The page's script makes the streams; here the bridge meets them already made.
    import asyncio

    import nats

    async def streams() -> None:
        nc = await nats.connect(nats_server.url, token=nats_server.token)
        js = nc.jetstream()
        await js.add_stream(name="ORDERS", subjects=["orders.>"])
        await js.add_stream(name="LEDGER", subjects=["ledger.>"])
        await nc.close()

    asyncio.run(streams())
    run_page("nats.md", tmp_path, relay_wasm, nats_server.url, nats_server.token,
             {"NATS_URL": nats_server.url, "NATS_TOKEN": nats_server.token})


def test_the_redis_page_runs(relay_wasm: Path, tmp_path: Path) -> None:
    server = Redis.start()
    try:
        run_page("redis.md", tmp_path, relay_wasm, f"redis://127.0.0.1:{server.port}/0",
                 server.password,
                 {"REDIS_URL": f"redis://:{server.password}@127.0.0.1:{server.port}/0"},
                 ready=lambda: server.client().exists("orders")
                 and server.client().xinfo_groups("orders"))
    finally:
        server.stop()


def test_the_rabbitmq_page_runs(rabbitmq_node: RabbitMQ, relay_wasm: Path,  # noqa: F811
                                tmp_path: Path) -> None:
    import pika

    node = rabbitmq_node

    def declared() -> bool:
        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", node.port, credentials=pika.PlainCredentials(node.user, node.password)))
        try:
            conn.channel().queue_declare("orders", passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker:
            return False
        finally:
            if conn.is_open:
                conn.close()

    run_page("rabbitmq.md", tmp_path, relay_wasm, f"amqp://{node.user}@127.0.0.1:{node.port}/",
             node.password,
             {"AMQP_URL": f"amqp://{node.user}:{node.password}@127.0.0.1:{node.port}/%2F"},
             ready=declared)


def test_the_mqtt_page_runs(relay_wasm: Path, tmp_path: Path) -> None:
    server = Mosquitto.start()
    try:
        run_page("mqtt.md", tmp_path, relay_wasm, server.url, server.password,
                 {"MQTT_PORT": str(server.port), "MQTT_USER": server.user,
                  "MQTT_PASSWORD": server.password})
    finally:
        server.stop()
