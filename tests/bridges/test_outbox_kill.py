"""A host killed between an event's commit and its publish loses no outbound message (issue
66's outbox).

A real ``omnicore run`` with a NATS JetStream bridge publishing ``plugin.src.*`` to
``out.events``. An outbound message is a job of ``@bridge:b`` committed in the transaction
that logs its event, so the gate that holds the window between the commit and the broker's
confirmation open is the broker itself: either stopped (the bridge cannot connect: every
message waits queued) or frozen with SIGSTOP while connected, every thread of it stopped
before the test goes on (the first message is claimed and its publish is in flight,
unconfirmed; the rest wait queued). Events are published, each taken (committed) before the
plugin's call returns; the jobs are read from the database; the
host is killed with SIGKILL; the gate opens (the broker started or continued); the host starts
again: every message is confirmed, each stored once (the message id,
``<app>:origin:<uuid>``, is JetStream's ``Nats-Msg-Id``: a message the frozen broker took
before the kill is a duplicate the second time), and no outbound job is left. On PostgreSQL,
a host killed with its broker down leaves its committed messages to another host of the
database, which publishes each once without the dead host ever coming back.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import struct
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.bridges.test_nats import js, stream_messages
from tests.brokers import Nats
from tests.event_fixtures import events_wasm
from tests.hosts import OMNICORE, Host
from tests.pgcluster import Cluster
from tests.waiting import all_threads_stopped

BEFORE, DURING = 3, 20


def _publish(host: Host, n: int) -> int:
    topic = b"order"
    out = host.remote().call("src", "pub", struct.pack("<I", len(topic)) + topic +
                             json.dumps({"n": n}).encode())
    return int(struct.unpack("<i", out)[0])


def _jobs(data: Path) -> list[tuple[int, str, int, str | None]]:
    """The bridge's outbound jobs as ``(n, state, attempts, last_error)``, ``n`` that of
    its message, oldest first (read from the host's database, read-only)."""
    db = sqlite3.connect(f"file:{data / 'omnicore.db'}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT payload, state, attempts, last_error FROM jobs "
                          "WHERE plugin='@bridge:b' ORDER BY id").fetchall()
    finally:
        db.close()
    return [(json.loads(base64.b64decode(json.loads(payload)["data"]))["n"], state, attempts,
             error) for payload, state, attempts, error in rows]


def _outbound(data: Path) -> dict[str, list[int]]:
    """The bridge's outbound jobs by state, each as the ``n`` of its message, oldest first."""
    found: dict[str, list[int]] = {}
    for n, state, _, _ in _jobs(data):
        found.setdefault(state, []).append(n)
    return found


def _until_outbound(host: Host, check: Callable[[dict[str, list[int]]], bool], what: str
                    ) -> None:
    """Wait until ``check`` holds of :func:`_outbound`; a timeout says what the jobs were."""
    try:
        host.until(lambda: check(_outbound(host.data)), what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe outbound jobs then (n, state, attempts, "
                             f"last_error): {_jobs(host.data)}") from None


def _stored(server: Nats) -> Counter[int]:
    return Counter(json.loads(m.data)["n"] for m in stream_messages(server, "OUT"))


@pytest.mark.parametrize("gate", ["stopped", "frozen"])
def test_a_host_killed_between_the_commit_and_the_publish_loses_no_outbound_message(
        tmp_path: Path, nats_server: Nats, gate: str) -> None:
    js(nats_server, lambda j: j.add_stream(name="OUT", subjects=["out.>"]))
    wasm = tmp_path / "src.wasm"
    wasm.write_bytes(events_wasm("src"))
    config = {"name": "outbox", "data_dir": "data", "plugins_dir": "plugins",
              "log": {"format": "json"}, "sandbox": {"watch": False},
              # frozen: the publish in flight waits for its PubAck until the kill
              "bridges": {"b": {"kind": "nats", "url": nats_server.url,
                                "secret": "broker-secret",
                                "confirm_timeout_s": 1 if gate == "stopped" else 300,
                                "outbound": [{"events": ["plugin.src.*"],
                                              "subject": "out.events"}]}},
              "plugins": {"src": {"grants": ["events", "kv"], "limits": {"timeout_ms": 30000}}}}
    host = Host(tmp_path / "app", config, [wasm])
    subprocess.run([*OMNICORE, "secrets", "set", "broker-secret", "--app", str(host.dir)],
                   input=nats_server.token.encode(), check=True, capture_output=True)
    host.start()
    assert nats_server.proc is not None
    try:
        host.logged("plugins: 1 loaded", timeout=180)
        assert [_publish(host, n) for n in range(BEFORE)] == [0] * BEFORE
        host.until(lambda: _stored(nats_server) == Counter(range(BEFORE)),
                   "the messages before the gate")
        _until_outbound(host, lambda jobs: set(jobs) == {"succeeded"}, "their jobs done")

        if gate == "stopped":
            nats_server.halt()
        else:
            nats_server.proc.send_signal(signal.SIGSTOP)
            # SIGSTOP is asynchronous: the signal reaches the server's threads in their turn,
            # and until they have all stopped the server still takes and confirms what comes
            # (on a loaded machine the first message was confirmed and the second one was the
            # publish in flight: "running" never read [BEFORE]).
            pid = nats_server.proc.pid
            host.until(lambda: all_threads_stopped(pid), "every thread of the NATS server "
                       "stopped")
        assert [_publish(host, n) for n in range(BEFORE, BEFORE + DURING)] == [0] * DURING
        during = list(range(BEFORE, BEFORE + DURING))
        if gate == "stopped":  # committed with their events, none claimed
            assert _outbound(host.data).get("queued") == during
        else:  # the first claimed, its publish unconfirmed; the rest committed behind it
            _until_outbound(host, lambda jobs: jobs.get("running") == [BEFORE],
                            "the first message's publish in flight")
            assert _outbound(host.data).get("queued") == during[1:]
        assert host.stop(signal.SIGKILL) == -signal.SIGKILL

        if gate == "stopped":
            nats_server.resume()
        else:
            nats_server.proc.send_signal(signal.SIGCONT)
        host.start()
        want = Counter(range(BEFORE + DURING))
        host.until(lambda: _stored(nats_server) == want, "every message confirmed, once",
                   timeout=120)
        _until_outbound(host, lambda jobs: set(jobs) == {"succeeded"}, "every outbound job done")
        ids = [m.headers["Nats-Msg-Id"] for m in stream_messages(nats_server, "OUT")]
        assert len(set(ids)) == len(ids) == BEFORE + DURING
        assert all(i.startswith("outbox:origin:") for i in ids)
        assert not list((host.data / "spool").glob("bridge-*"))  # no journal any more
    finally:
        code = host.stop()
    assert code == 0


@pytest.fixture
def pg() -> Iterator[Cluster]:
    cluster = Cluster.start()
    yield cluster
    cluster.stop()


def test_a_host_killed_with_its_broker_down_leaves_its_messages_to_another_host_of_the_database(
        tmp_path: Path, nats_server: Nats, pg: Cluster) -> None:
    # Two hosts of one PostgreSQL database, never on the same data dir: the outbound jobs
    # the first host committed are the second's to publish once the first is dead.
    js(nats_server, lambda j: j.add_stream(name="OUT", subjects=["out.>"]))
    env = {"OMNICORE_STORAGE__URL": pg.database("outbox")}
    wasm = tmp_path / "src.wasm"
    wasm.write_bytes(events_wasm("src"))
    config = {"name": "outbox", "data_dir": "data", "plugins_dir": "plugins",
              "log": {"format": "json"}, "sandbox": {"watch": False},
              "capabilities": {"jobs": {"poll_s": 0.2}},
              "bridges": {"b": {"kind": "nats", "url": nats_server.url,
                                "secret": "broker-secret", "confirm_timeout_s": 1,
                                "outbound": [{"events": ["plugin.src.*"],
                                              "subject": "out.events"}]}},
              "plugins": {"src": {"grants": ["events", "kv"], "limits": {"timeout_ms": 30000}}}}

    def made(name: str) -> Host:
        host = Host(tmp_path / name, config, [wasm])
        subprocess.run([*OMNICORE, "secrets", "set", "broker-secret", "--app", str(host.dir)],
                       input=nats_server.token.encode(), check=True, capture_output=True,
                       env={**os.environ, **env})
        host.start(env)
        host.logged("plugins: 1 loaded", timeout=180)
        return host

    def jobs() -> dict[str, int]:
        rows = pg.psql("SELECT state, count(*) FROM jobs WHERE plugin='@bridge:b' "
                       "GROUP BY state", db="outbox").split()
        return {state: int(n) for state, _, n in (r.partition("|") for r in rows)}

    first = made("a")
    second: Host | None = None
    try:
        nats_server.halt()
        assert [_publish(first, n) for n in range(DURING)] == [0] * DURING
        assert jobs() == {"queued": DURING}  # committed with their events
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        nats_server.resume()
        second = made("b")
        second.until(lambda: _stored(nats_server) == Counter(range(DURING)),
                     "every message published by the other host, once", timeout=120)
        second.until(lambda: jobs() == {"succeeded": DURING}, "every outbound job done")
        assert {m.headers["Nats-Msg-Id"].split(":")[1] for m in
                stream_messages(nats_server, "OUT")} == {"origin"}
    finally:
        first.stop()
        code = second.stop() if second is not None else 0
    assert code == 0
