"""Bridges against the brokers' own Python clients (issue 66, deliverable 6): messages/s in and
out of each bridge beside the client alone in the same run, and the end-to-end latency
broker -> plugin -> broker beside the client relaying alone.

Run: ``.venv/bin/python bench/bench_bridges.py [--quick] [--kinds nats,redis,rabbitmq,mqtt]
[--messages N] [--rounds N] [--markdown]``.

Each broker is a private server from its Debian package (tests/brokers.py, tests/dbservers.py),
started once for the run. Per kind, round after round (the host and the floor take turns, so
a change in the machine's load falls on both):

- **in**: N messages waiting on the broker; a host starts with the bridge's inbound route to an
  event a plugin subscribes to *durably* (tests/event_fixtures' WAT plugin), and the clock runs
  until the bridge has acknowledged all N, each only after its job was stored (SQLite). Floor:
  the broker's client consuming the same N with the same acknowledgement (nats-py: a durable
  pull consumer, ``fetch`` by 64, ``ack_sync`` each; redis-py: ``XREADGROUP`` by 64, ``XACK``
  each; pika: ``basic_consume`` with prefetch 64, ``basic_ack`` each; paho-mqtt: a QoS 1
  subscription of a persistent session, PUBACK each).
- **out**: N events published as a plugin publishes them (``app.subscriptions.publish``: each
  logged with its outbound delivery in one transaction) for the outbound route, the clock
  running from the first publish until the broker confirmed all N (the bridge publishes one at
  a time, each confirmed, then its job finished). Floor: the client publishing N, each awaited
  for its confirmation (JetStream PubAck, the XADD's entry id, the publisher confirm, the
  PUBACK).
- **latency**: one message at a time published to the inbound route; plugins/relay/js (the
  demo's relay, built by the real toolchain) gets it as a durable job and publishes a ledger
  entry, which the outbound route sends back to the broker, where the client receives it.
  Floor: the same relay done by the broker's client in the same process (read with the same
  acknowledgement, publish confirmed), measured the same way. Medians [min-max] in ms.

``--quick`` (and ``OMNICORE_BENCH_SMOKE``, tests/test_bench.py) runs fewer messages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _measure import SMOKE, machine, render, runs, scratch

from tests.brokers import Mosquitto, Nats, RabbitMQ
from tests.dbservers import Redis

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("nats", "redis", "rabbitmq", "mqtt")
EVENT_IN = "bench.in"     # what the throughput route makes (a durable sink subscribes)
EVENT_RELAY = "orders.created"  # what the latency route makes (relay-js subscribes)


def _wait(check: Callable[[], bool], what: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.002)


# -- each broker: its server, the bridge's routes, and its own client as the floor ------------

class Kind:
    """One broker kind: the private server, the bridge config, and the client's operations."""

    name: str

    def __init__(self) -> None:
        self.run = 0

    def fresh(self) -> None:
        """New source and destination names for the next round (nothing left from the last)."""
        self.run += 1

    def bridge(self, event: str, outbound_events: list[str]) -> dict[str, Any]:
        raise NotImplementedError

    def secret(self) -> str:
        raise NotImplementedError

    def preload(self, n: int) -> None:
        """N messages waiting on the inbound source."""
        raise NotImplementedError

    def consume(self, n: int) -> None:
        """Floor in: consume N waiting messages, acknowledging each."""
        raise NotImplementedError

    #: Whether the floor's consumer sees the host's round's messages too (its own group or
    #: session on the same source): it then reads both rounds' (a queue gives them once).
    shared_source = True

    def publish_confirmed(self, n: int) -> None:
        """Floor out: publish N messages to the outbound destination, each confirmed."""
        raise NotImplementedError

    def out_count(self) -> int:
        raise NotImplementedError

    def latency(self, k: int, relay_by_client: bool) -> list[float]:
        """k round trips in -> (the host's relay, or the client's) -> out, in ms."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class NatsKind(Kind):
    name = "nats"

    def __init__(self) -> None:
        super().__init__()
        self.server = Nats.start()

    @property
    def subj(self) -> tuple[str, str, str, str]:
        r = self.run
        return f"in{r}.x", f"IN{r}", f"out{r}.x", f"OUT{r}"

    def _js(self, step: Callable[[Any, Any], Any]) -> Any:
        import nats

        async def go() -> Any:
            nc = await nats.connect(self.server.url, token=self.server.token)
            try:
                return await step(nc, nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(go())

    def fresh(self) -> None:
        super().fresh()
        subj_in, stream_in, subj_out, stream_out = self.subj

        async def make(_nc: Any, js: Any) -> None:
            await js.add_stream(name=stream_in, subjects=[subj_in])
            await js.add_stream(name=stream_out, subjects=[subj_out])

        self._js(make)

    def bridge(self, event: str, outbound_events: list[str]) -> dict[str, Any]:
        subj_in, stream_in, subj_out, _ = self.subj
        return {"kind": "nats", "url": self.server.url, "secret": "broker",
                "inbound": [{"subject": subj_in, "stream": stream_in, "event": event,
                             "group": f"host{self.run}"}],
                "outbound": [{"events": outbound_events, "subject": subj_out}]}

    def secret(self) -> str:
        return self.server.token

    def preload(self, n: int) -> None:
        subj_in = self.subj[0]

        async def go(_nc: Any, js: Any) -> None:
            futures = [js.publish(subj_in, json.dumps({"id": i, "cents": i}).encode())
                       for i in range(n)]
            for chunk in range(0, n, 256):
                await asyncio.gather(*futures[chunk:chunk + 256])

        self._js(go)

    def consume(self, n: int) -> None:
        subj_in, stream_in, _, _ = self.subj

        async def go(_nc: Any, js: Any) -> None:
            sub = await js.pull_subscribe(subj_in, durable=f"floor{self.run}", stream=stream_in)
            got = 0
            while got < n:
                for m in await sub.fetch(64, timeout=5):
                    await m.ack_sync()
                    got += 1

        self._js(go)

    def publish_confirmed(self, n: int) -> None:
        subj_out = self.subj[2]

        async def go(_nc: Any, js: Any) -> None:
            for i in range(n):
                await js.publish(subj_out, b'{"n": %d}' % i,
                                 headers={"Nats-Msg-Id": uuid.uuid4().hex})

        self._js(go)

    def out_count(self) -> int:
        stream_out = self.subj[3]

        async def go(_nc: Any, js: Any) -> int:
            return int((await js.stream_info(stream_out)).state.messages)

        return int(self._js(go))

    def latency(self, k: int, relay_by_client: bool) -> list[float]:
        subj_in, stream_in, subj_out, _ = self.subj

        async def go(nc: Any, js: Any) -> list[float]:
            arrived: asyncio.Queue[float] = asyncio.Queue()

            async def on_out(_msg: Any) -> None:
                arrived.put_nowait(time.perf_counter())

            await nc.subscribe(subj_out, cb=on_out)
            relay: asyncio.Task[None] | None = None
            if relay_by_client:
                sub = await js.pull_subscribe(subj_in, durable=f"relay{self.run}",
                                              stream=stream_in)

                async def relaying() -> None:
                    while True:
                        try:
                            msgs = await sub.fetch(64, timeout=1)
                        except Exception:
                            continue
                        for m in msgs:
                            order = json.loads(m.data)
                            await js.publish(subj_out, json.dumps(
                                {"order": order["id"], "cents": order["cents"]}).encode())
                            await m.ack_sync()

                relay = asyncio.create_task(relaying())
            out = []
            for i in range(k):
                start = time.perf_counter()
                await js.publish(subj_in, json.dumps({"id": i, "cents": i}).encode())
                out.append((await asyncio.wait_for(arrived.get(), 30) - start) * 1e3)
            if relay is not None:
                relay.cancel()
            return out

        return list(self._js(go))

    def stop(self) -> None:
        self.server.stop()


class RedisKind(Kind):
    name = "redis"

    def __init__(self) -> None:
        super().__init__()
        self.server = Redis.start()
        self.client = self.server.client()

    @property
    def names(self) -> tuple[str, str]:
        return f"in{self.run}", f"out{self.run}"

    def fresh(self) -> None:
        super().fresh()
        stream_in, _ = self.names
        for group in (f"host{self.run}", f"floor{self.run}", f"relay{self.run}"):
            self.client.xgroup_create(stream_in, group, "$", mkstream=True)

    def bridge(self, event: str, outbound_events: list[str]) -> dict[str, Any]:
        stream_in, stream_out = self.names
        return {"kind": "redis", "url": f"redis://127.0.0.1:{self.server.port}/0",
                "secret": "broker",
                "inbound": [{"stream": stream_in, "event": event, "group": f"host{self.run}"}],
                "outbound": [{"events": outbound_events, "stream": stream_out}]}

    def secret(self) -> str:
        return self.server.password

    def preload(self, n: int) -> None:
        pipe = self.client.pipeline(transaction=False)
        for i in range(n):
            pipe.xadd(self.names[0], {"data": json.dumps({"id": i, "cents": i})})
        pipe.execute()

    def consume(self, n: int) -> None:
        stream_in, group = self.names[0], f"floor{self.run}"
        got = 0
        while got < n:
            for _stream, entries in self.client.xreadgroup(group, "floor", {stream_in: ">"},
                                                           count=64, block=5000) or []:
                for entry_id, _fields in entries:
                    self.client.xack(stream_in, group, entry_id)
                    got += 1

    def publish_confirmed(self, n: int) -> None:
        for i in range(n):
            self.client.xadd(self.names[1], {"data": b'{"n": %d}' % i,
                                             "id": uuid.uuid4().hex})

    def out_count(self) -> int:
        return int(self.client.xlen(self.names[1]))

    def latency(self, k: int, relay_by_client: bool) -> list[float]:
        stream_in, stream_out = self.names
        stop = threading.Event()

        def relaying() -> None:
            client, group = self.server.client(), f"relay{self.run}"
            while not stop.is_set():
                for _s, entries in client.xreadgroup(group, "relay", {stream_in: ">"},
                                                     count=64, block=200) or []:
                    for entry_id, fields in entries:
                        order = json.loads(fields[b"data"])
                        client.xadd(stream_out, {"data": json.dumps(
                            {"order": order["id"], "cents": order["cents"]})})
                        client.xack(stream_in, group, entry_id)

        relay = threading.Thread(target=relaying, daemon=True) if relay_by_client else None
        if relay is not None:
            relay.start()
        reader = self.server.client()
        last = (reader.xrevrange(stream_out, count=1) or [(b"0-0", {})])[0][0]
        out = []
        for i in range(k):
            start = time.perf_counter()
            self.client.xadd(stream_in, {"data": json.dumps({"id": i, "cents": i})})
            got = reader.xread({stream_out: last}, count=1, block=30_000)
            out.append((time.perf_counter() - start) * 1e3)
            last = got[0][1][0][0]
        stop.set()
        if relay is not None:
            relay.join()
        return out

    def stop(self) -> None:
        self.server.stop()


class RabbitKind(Kind):
    name = "rabbitmq"
    shared_source = False

    def __init__(self) -> None:
        super().__init__()
        self.server = RabbitMQ.start()

    def _channel(self) -> tuple[Any, Any]:
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", self.server.port, credentials=pika.PlainCredentials(
                self.server.user, self.server.password)))
        return conn, conn.channel()

    @property
    def names(self) -> tuple[str, str]:
        return f"in{self.run}", f"out{self.run}"

    def fresh(self) -> None:
        super().fresh()
        conn, ch = self._channel()
        for queue in self.names:
            ch.queue_declare(queue, durable=True)
        conn.close()

    def bridge(self, event: str, outbound_events: list[str]) -> dict[str, Any]:
        queue_in, queue_out = self.names
        return {"kind": "rabbitmq",
                "url": f"amqp://{self.server.user}@127.0.0.1:{self.server.port}/",
                "secret": "broker", "inbound": [{"queue": queue_in, "event": event}],
                "outbound": [{"events": outbound_events, "routing_key": queue_out}]}

    def secret(self) -> str:
        return self.server.password

    def preload(self, n: int) -> None:
        import pika

        conn, ch = self._channel()
        ch.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2)
        for i in range(n):
            ch.basic_publish("", self.names[0], json.dumps({"id": i, "cents": i}).encode(),
                             props)
        conn.close()

    def consume(self, n: int) -> None:
        conn, ch = self._channel()
        ch.basic_qos(prefetch_count=64)
        got = 0

        def on_message(channel: Any, method: Any, _props: Any, _body: bytes) -> None:
            nonlocal got
            channel.basic_ack(method.delivery_tag)
            got += 1
            if got >= n:
                channel.stop_consuming()

        ch.basic_consume(self.names[0], on_message)
        ch.start_consuming()
        conn.close()

    def publish_confirmed(self, n: int) -> None:
        import pika

        conn, ch = self._channel()
        ch.confirm_delivery()
        props = pika.BasicProperties(delivery_mode=2, message_id="x")
        for i in range(n):
            ch.basic_publish("", self.names[1], b'{"n": %d}' % i, props, mandatory=True)
        conn.close()

    def out_count(self) -> int:
        conn, ch = self._channel()
        count = int(ch.queue_declare(self.names[1], passive=True).method.message_count)
        conn.close()
        return count

    def latency(self, k: int, relay_by_client: bool) -> list[float]:
        import pika

        queue_in, queue_out = self.names
        stop = threading.Event()

        def relaying() -> None:
            conn, ch = self._channel()
            ch.confirm_delivery()
            ch.basic_qos(prefetch_count=64)
            for method, _props, body in ch.consume(queue_in, inactivity_timeout=0.2):
                if stop.is_set():
                    break
                if method is None:
                    continue
                order = json.loads(body)
                ch.basic_publish("", queue_out, json.dumps(
                    {"order": order["id"], "cents": order["cents"]}).encode(),
                    pika.BasicProperties(delivery_mode=2))
                ch.basic_ack(method.delivery_tag)
            ch.cancel()
            conn.close()

        relay = threading.Thread(target=relaying, daemon=True) if relay_by_client else None
        if relay is not None:
            relay.start()
        conn, ch = self._channel()
        ch.confirm_delivery()
        reader_conn, reader = self._channel()
        reader.queue_purge(queue_out)
        out = []
        for i in range(k):
            start = time.perf_counter()
            ch.basic_publish("", queue_in, json.dumps({"id": i, "cents": i}).encode(),
                             pika.BasicProperties(delivery_mode=2))
            for method, _p, _b in reader.consume(queue_out, inactivity_timeout=30):
                assert method is not None, "no answer within 30 s"
                reader.basic_ack(method.delivery_tag)
                break
            out.append((time.perf_counter() - start) * 1e3)
        reader.cancel()
        stop.set()
        if relay is not None:
            relay.join()
        conn.close()
        reader_conn.close()
        return out

    def stop(self) -> None:
        self.server.stop()


class _Mosquitto(Mosquitto):
    """tests/brokers' mosquitto with no cap on the messages a session holds while its client
    is away (the default, 1,000, drops the rest of a preloaded round)."""

    def prepare(self) -> None:
        super().prepare()
        conf = self.root / "mosquitto.conf"
        conf.write_text(conf.read_text() + "max_queued_messages 0\nmax_inflight_messages 0\n")


class MqttKind(Kind):
    name = "mqtt"

    def __init__(self) -> None:
        super().__init__()
        self.server = _Mosquitto.start()

    @property
    def names(self) -> tuple[str, str]:
        return f"in{self.run}", f"out{self.run}"

    def _client(self, client_id: str, clean: bool = True) -> Any:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(self.server.user, self.server.password)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if clean else 3600
        c.connect("127.0.0.1", self.server.port, clean_start=clean, properties=props)
        c.loop_start()
        _wait(c.is_connected, "the MQTT client connected", 30)
        return c

    def bridge(self, event: str, outbound_events: list[str]) -> dict[str, Any]:
        topic_in, topic_out = self.names
        return {"kind": "mqtt", "url": self.server.url, "secret": "broker",
                "client_id": f"bench-host{self.run}",
                "inbound": [{"topic": f"{topic_in}/#", "event": event,
                             "group": f"host{self.run}"}],
                "outbound": [{"events": outbound_events, "topic": f"{topic_out}/x"}]}

    def secret(self) -> str:
        return self.server.password

    def fresh(self) -> None:
        super().fresh()
        # Persistent sessions subscribed before the messages come, as the bridge's and the
        # floor's are (a QoS 1 message waits in a session that subscribed).
        # (the bridge's inbound lane's client id is its client_id and the lane's name)
        for group, client_id in ((f"host{self.run}", f"bench-host{self.run}-in0"),
                                 (f"floor{self.run}", f"floor{self.run}-sub")):
            c = self._client(client_id, clean=False)
            done = threading.Event()
            c.on_subscribe = lambda *_a, e=done: e.set()
            c.subscribe(f"$share/{group}/{self.names[0]}/#", qos=1)
            done.wait(10)
            c.loop_stop()
            c.disconnect()

    def preload(self, n: int) -> None:
        c = self._client(f"pre-{uuid.uuid4().hex[:6]}")
        infos = [c.publish(f"{self.names[0]}/x", json.dumps({"id": i, "cents": i}), qos=1)
                 for i in range(n)]
        for info in infos:
            info.wait_for_publish(30)
        c.loop_stop()
        c.disconnect()

    def consume(self, n: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        got = 0
        done = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"floor{self.run}-sub",
                        protocol=mqtt.MQTTv5, manual_ack=True)
        c.username_pw_set(self.server.user, self.server.password)

        def on_message(client: Any, _u: Any, msg: Any) -> None:
            nonlocal got
            client.ack(msg.mid, msg.qos)
            got += 1
            if got >= n:
                done.set()

        c.on_message = on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        c.connect("127.0.0.1", self.server.port, clean_start=False, properties=props)
        c.loop_start()
        if not done.wait(300):
            raise TimeoutError(f"the floor got {got} of {n}")
        c.loop_stop()
        c.disconnect()

    def publish_confirmed(self, n: int) -> None:
        # Driven in this thread (paho's loop() until the PUBACK): wait_for_publish beside
        # loop_start's thread waits ~50 ms a message here, which is no floor.
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:6]}",
                        protocol=mqtt.MQTTv5)
        c.username_pw_set(self.server.user, self.server.password)
        c.connect("127.0.0.1", self.server.port)
        while not c.is_connected():
            c.loop(0.05)
        for i in range(n):
            info = c.publish(f"{self.names[1]}/x", b'{"n": %d}' % i, qos=1)
            while not info.is_published():
                c.loop(0.05)
        c.disconnect()

    def out_count(self) -> int:
        return self.counted

    counted = 0

    def watch_out(self) -> Any:
        """A subscriber counting what reaches the outbound topic (MQTT keeps no log)."""
        self.counted = 0
        c = self._client(f"watch-{uuid.uuid4().hex[:6]}")
        done = threading.Event()
        c.on_subscribe = lambda *_a: done.set()

        def on_message(*_a: Any) -> None:
            self.counted += 1

        c.on_message = on_message
        c.subscribe(f"{self.names[1]}/#", qos=1)
        done.wait(10)
        return c

    def latency(self, k: int, relay_by_client: bool) -> list[float]:
        topic_in, topic_out = self.names
        relay = None
        if relay_by_client:
            relay = self._client(f"relay-{uuid.uuid4().hex[:6]}")
            ready = threading.Event()
            relay.on_subscribe = lambda *_a: ready.set()

            def relaying(client: Any, _u: Any, msg: Any) -> None:
                order = json.loads(msg.payload)
                client.publish(f"{topic_out}/x", json.dumps(
                    {"order": order["id"], "cents": order["cents"]}), qos=1)

            relay.on_message = relaying
            relay.subscribe(f"{topic_in}/#", qos=1)
            ready.wait(10)
        arrived: list[float] = []
        got = threading.Event()
        reader = self._client(f"reader-{uuid.uuid4().hex[:6]}")
        subscribed = threading.Event()
        reader.on_subscribe = lambda *_a: subscribed.set()

        def on_out(*_a: Any) -> None:
            arrived.append(time.perf_counter())
            got.set()

        reader.on_message = on_out
        reader.subscribe(f"{topic_out}/#", qos=1)
        subscribed.wait(10)
        pub = self._client(f"lat-{uuid.uuid4().hex[:6]}")
        out = []
        for i in range(k):
            got.clear()
            start = time.perf_counter()
            pub.publish(f"{topic_in}/x", json.dumps({"id": i, "cents": i}), qos=1)
            if not got.wait(30):
                raise TimeoutError("no answer within 30 s")
            out.append((arrived[-1] - start) * 1e3)
        for c in (pub, reader, relay):
            if c is not None:
                c.loop_stop()
                c.disconnect()
        return out

    def stop(self) -> None:
        self.server.stop()


MAKERS: dict[str, Callable[[], Kind]] = {"nats": NatsKind, "redis": RedisKind,
                                         "rabbitmq": RabbitKind, "mqtt": MqttKind}


# -- the host ---------------------------------------------------------------------------------

def host(kind: Kind, tmp: Path, event: str, outbound_events: list[str],
         plugins: dict[str, bytes], events: dict[str, Any] | None = None) -> Any:
    """A started host with the kind's bridge ``b`` and ``plugins`` loaded (file -> bytes)."""
    from omnicore.app import OmniApp

    folder = tmp / f"{kind.name}-{kind.run}-{uuid.uuid4().hex[:6]}"
    (folder / "plugins").mkdir(parents=True)
    for file, wasm in plugins.items():
        (folder / "plugins" / file).write_bytes(wasm)
    grants = {Path(f).stem: {"grants": ["kv", "events", "tasks"]} for f in plugins}
    app = OmniApp("bench-bridges", environ={}, entry_points=False, overrides={
        "data_dir": str(folder / "data"), "plugins_dir": str(folder / "plugins"),
        "log": {"level": "warning"}, "sandbox": {"watch": False},
        "plugins": grants, "bridges": {"b": kind.bridge(event, outbound_events)},
        **({"capabilities": {"events": events}} if events else {})})
    app.secrets.set("broker", kind.secret())
    app.start()
    return app


def status(app: Any) -> dict[str, Any]:
    return dict(app.bridges.status()[0])


def round_in(kind: Kind, tmp: Path, n: int, sink: bytes) -> tuple[float, float]:
    """(host, floor) messages/s of one round of the inbound direction."""
    kind.fresh()
    kind.preload(n)
    app = host(kind, tmp, EVENT_IN, ["none.*"], {"sink.wasm": sink})
    start = time.perf_counter()
    _wait(lambda: status(app)["acked"] >= n, f"{kind.name}: the bridge acknowledged {n}")
    took = time.perf_counter() - start
    app.stop(grace=1)
    kind.preload(n)  # the floor's own N (a queue's first N went to the host)
    waiting = 2 * n if kind.shared_source else n
    begin = time.perf_counter()
    kind.consume(waiting)
    floor = time.perf_counter() - begin
    return n / took, waiting / floor


def round_out(kind: Kind, tmp: Path, n: int) -> tuple[float, float]:
    """(host, floor) messages/s of one round of the outbound direction."""
    kind.fresh()
    watcher = kind.watch_out() if isinstance(kind, MqttKind) else None
    app = host(kind, tmp, EVENT_IN, ["plugin.bench.out"], {},
               {"max_publish_per_s": 10 * n + 1000})  # the rate budget is not measured
    _wait(lambda: status(app)["state"] == "up", f"{kind.name}: the bridge up", 60)
    start = time.perf_counter()
    for i in range(n):
        data = b'{"n": %d}' % i
        refused = app.subscriptions.publish("bench", "out", len(data), lambda d=data: d)
        assert refused is None, refused
    _wait(lambda: status(app)["published"] >= n, f"{kind.name}: the bridge published {n}")
    took = time.perf_counter() - start
    app.stop(grace=1)
    begin = time.perf_counter()
    kind.publish_confirmed(n)
    floor = time.perf_counter() - begin
    if watcher is not None:
        _wait(lambda: kind.out_count() >= 2 * n, "mqtt: every message seen", 60)
        watcher.loop_stop()
        watcher.disconnect()
    else:
        assert kind.out_count() >= 2 * n, (kind.name, kind.out_count())
    return n / took, n / floor


def round_latency(kind: Kind, tmp: Path, k: int, relay: bytes) -> tuple[list[float],
                                                                       list[float]]:
    kind.fresh()
    app = host(kind, tmp, EVENT_RELAY, ["plugin.relay-js.ledger"], {"relay-js.wasm": relay})
    _wait(lambda: status(app)["state"] == "up", f"{kind.name}: the bridge up", 60)
    kind.latency(3, relay_by_client=False)  # warm: the plugin's first calls
    through = kind.latency(k, relay_by_client=False)
    app.stop(grace=1)
    kind.fresh()
    alone = kind.latency(k, relay_by_client=True)
    return through, alone


def med(values: list[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def ms(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}-{max(values):.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--messages", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    quick = args.quick or SMOKE
    n = args.messages or (20 if SMOKE else 300 if quick else 2000)
    rounds = runs(args.rounds or (2 if quick else 3))
    k = 3 if SMOKE else 20 if quick else 50
    kinds = [x for x in args.kinds.split(",") if x]

    from omnicore.toolchains import build
    from tests.event_fixtures import events_wasm

    tmp = scratch("omnicore-bench-bridges-")
    sink = events_wasm("sink", [{"topic": EVENT_IN, "handler": "on_event", "durable": True}])
    relay = build(ROOT / "plugins" / "relay" / "js", tmp / "relay").read_bytes()
    rows = []
    for name in kinds:
        kind = MAKERS[name]()
        try:
            ins = [round_in(kind, tmp, n, sink) for _ in range(rounds)]
            outs = [round_out(kind, tmp, n) for _ in range(rounds)]
            lat = [round_latency(kind, tmp, k, relay) for _ in range(rounds)]
        finally:
            kind.stop()
        through = [v for t, _ in lat for v in t]
        alone = [v for _, a in lat for v in a]
        rows.append([name, "in (msg/s)", med([h for h, _ in ins]), med([f for _, f in ins]),
                     f"{statistics.median(h / f for h, f in ins):.2f}"])
        rows.append([name, "out (msg/s)", med([h for h, _ in outs]), med([f for _, f in outs]),
                     f"{statistics.median(h / f for h, f in outs):.2f}"])
        rows.append([name, "broker→plugin→broker (ms)", ms(through), ms(alone),
                     f"{statistics.median(through) / statistics.median(alone):.2f}"])
        print(f"{name} done", file=sys.stderr, flush=True)
    print(f"{machine()}; {n} messages a round, {rounds} round(s), {k} round trips a round\n")
    print(render(["broker", "what", "bridge, median [min-max]",
                  "client alone (floor), median [min-max]", "bridge / floor"], rows,
                 args.markdown))


if __name__ == "__main__":
    main()
