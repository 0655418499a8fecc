"""A host killed while its broker is down loses no outbound message (issue 66's outbox).

A real ``omnicore run`` with a NATS JetStream bridge publishing ``plugin.src.*`` to
``out.events``: the broker is stopped, events are published (each written to the bridge's
journal before the publish returns), the host is killed with SIGKILL, the broker started
again, the host started again: it adopts the dead host's journal and every message is
confirmed, each stored once (the message id, ``<app>:event:<event id>``, is JetStream's
``Nats-Msg-Id``), and the journal ends empty.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.core import spool
from tests.bridges.test_nats import js, stream_messages
from tests.brokers import Nats
from tests.event_fixtures import events_wasm
from tests.hosts import OMNICORE, Host

BEFORE, DURING = 3, 20


@pytest.fixture
def nats_server() -> Iterator[Nats]:
    server = Nats.start()
    yield server
    server.stop()


def _publish(host: Host, n: int) -> int:
    topic = b"order"
    out = host.remote().call("src", "pub", struct.pack("<I", len(topic)) + topic +
                             json.dumps({"n": n}).encode())
    return int(struct.unpack("<i", out)[0])


def _journal(data: Path) -> list[dict[str, Any]]:
    """The outbound messages the bridge's journals hold unconfirmed."""
    records: list[dict[str, Any]] = []
    for path in sorted((data / "spool").glob("bridge-b-*.spool")):
        fd = os.open(path, os.O_RDONLY)
        try:
            records += list(spool._records(fd))
        finally:
            os.close(fd)
    done = {r["mid"] for r in records if r["k"] == "done"}
    return [r for r in records if r["k"] == "out" and r["mid"] not in done]


def _stored(server: Nats) -> Counter[int]:
    return Counter(json.loads(m.data)["n"] for m in stream_messages(server, "OUT"))


def test_a_host_killed_while_its_broker_is_down_loses_no_outbound_message(
        tmp_path: Path, nats_server: Nats) -> None:
    js(nats_server, lambda j: j.add_stream(name="OUT", subjects=["out.>"]))
    wasm = tmp_path / "src.wasm"
    wasm.write_bytes(events_wasm("src"))
    config = {"name": "outbox", "data_dir": "data", "plugins_dir": "plugins",
              "log": {"format": "json"}, "sandbox": {"watch": False},
              "bridges": {"b": {"kind": "nats", "url": nats_server.url,
                                "secret": "broker-secret", "confirm_timeout_s": 1,
                                "outbound": [{"events": ["plugin.src.*"],
                                              "subject": "out.events"}]}},
              "plugins": {"src": {"grants": ["events", "kv"], "limits": {"timeout_ms": 30000}}}}
    host = Host(tmp_path / "app", config, [wasm])
    subprocess.run([*OMNICORE, "secrets", "set", "broker-secret", "--app", str(host.dir)],
                   input=nats_server.token.encode(), check=True, capture_output=True)
    host.start()
    try:
        host.logged("plugins: 1 loaded", timeout=180)
        assert [_publish(host, n) for n in range(BEFORE)] == [0] * BEFORE
        host.until(lambda: _stored(nats_server) == Counter(range(BEFORE)),
                   "the messages before the outage")

        nats_server.halt()
        assert [_publish(host, n) for n in range(BEFORE, BEFORE + DURING)] == [0] * DURING
        held = _journal(host.data)  # written before each publish returned
        assert [json.loads(spool.decode_bytes(r["data"]))["n"] for r in held] == \
            list(range(BEFORE, BEFORE + DURING))
        assert host.stop(signal.SIGKILL) == -signal.SIGKILL

        nats_server.resume()
        host.start()
        want = Counter(range(BEFORE + DURING))
        host.until(lambda: _stored(nats_server) == want, "every message confirmed, once",
                   timeout=120)
        host.until(lambda: _journal(host.data) == [], "the adopted journal drained")
        assert "left unconfirmed are published again" in host.text
        ids = [m.headers["Nats-Msg-Id"] for m in stream_messages(nats_server, "OUT")]
        assert len(set(ids)) == len(ids) == BEFORE + DURING
        assert all(i.startswith("outbox:event:") for i in ids)
    finally:
        code = host.stop()
    assert code == 0
