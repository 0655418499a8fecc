"""MQTT 5 (paho-mqtt, the ``bridges`` extra): inbound through a QoS 1 shared subscription
acknowledged by hand, outbound through QoS 1 publishes confirmed by their PUBACK.

Each lane is one client with a persistent session (``clean_start`` off, the session kept a
day) under a client id stable across the host's restarts (``client_id``, else
``omnicore-<bridge>-<machine name>``, plus ``-in<N>`` or ``-out``): a message the host received
and did not acknowledge stays in its session and the broker sends it again when the host
reconnects. Inbound routes subscribe to ``$share/<group>/<topic>``, so each message goes to
one host of the cluster. The PUBACK of a message is sent only after its deliveries are stored
(paho's ``manual_ack``).

MQTT carries no message id a redelivery keeps: a message's id is its ``omnicore-msg-id`` user
property when the publisher set one (omnicore's outbound always does), else one taken when
it arrives, and then a redelivery may queue its durable deliveries twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from omnicore.bridges._broker import Received, Settings, within
from omnicore.config.bridges import BridgeInbound, BridgeOutbound

__all__ = ["MSG_ID", "MqttBroker"]

#: The user properties naming an outbound message's id and event type.
MSG_ID, EVENT = "omnicore-msg-id", "omnicore-event"
#: How long the broker keeps a host's session (its unacknowledged messages) while it is away.
SESSION_S = 86400
_LOST = object()


class MqttBroker:
    """One MQTT client of a bridge (:class:`omnicore.bridges.Broker`); an inbound lane's
    client subscribes as it connects."""

    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[None]] = {}

    async def connect(self, lane: str) -> None:
        self._loop = asyncio.get_running_loop()
        if lane == "outbound":
            await self._open("out")
            return
        index = int(lane.removeprefix("inbound[").removesuffix("]"))
        client = await self._open(f"in{index}")
        route = self._s.config.inbound[index]
        from paho.mqtt.subscribeoptions import SubscribeOptions

        rc, mid = client.subscribe(f"$share/{self._s.group(route)}/{route.topic}",
                                   options=SubscribeOptions(qos=1))
        if rc != 0 or mid is None:
            raise ConnectionError(f"the MQTT subscribe failed ({rc})")
        suback = self._pending[mid] = self._loop.create_future()
        await within(suback, self._s.timeout)

    def _client_id(self, lane: str) -> str:
        base = self._s.config.client_id or f"omnicore-{self._s.name}-{socket.gethostname()}"
        return f"{base}-{lane}"[:128]

    async def _open(self, lane: str) -> Any:
        if self._client is not None:
            return self._client
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        loop = asyncio.get_running_loop()
        self._loop = loop
        s = self._s
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self._client_id(lane),
                             protocol=mqtt.MQTTv5, manual_ack=True, reconnect_on_failure=False)
        if s.user is not None or s.secret is not None:
            client.username_pw_set(s.user or "", s.secret)
        tls = s.tls()
        if tls is not None:
            client.tls_set_context(tls)
        connected: asyncio.Future[None] = loop.create_future()

        def settle(fut: asyncio.Future[None], code: Any) -> None:
            if fut.done():
                return
            if getattr(code, "is_failure", False):
                fut.set_exception(ConnectionError(f"the MQTT broker answered {code}"))
            else:
                fut.set_result(None)

        def post(fn: Callable[..., object], *args: Any) -> None:
            # paho's callbacks run on its own thread, which can outlive the bridge's loop (a
            # disconnect seen as the host stops): then nobody is left to hear it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

        def on_connect(_c: Any, _u: Any, _f: Any, code: Any, _p: Any) -> None:
            post(settle, connected, code)

        def on_disconnect(_c: Any, _u: Any, _f: Any, code: Any, _p: Any) -> None:
            post(self._lost, f"the MQTT broker closed the connection ({code})")

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            post(self._queue.put_nowait, msg)

        def on_publish(_c: Any, _u: Any, mid: int, code: Any, _p: Any) -> None:
            post(lambda: settle(self._pending.pop(mid, loop.create_future()), code))

        def on_subscribe(_c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
            bad = [c for c in codes if getattr(c, "is_failure", False)]
            post(lambda: settle(self._pending.pop(mid, loop.create_future()),
                                bad[0] if bad else None))

        client.on_subscribe = on_subscribe
        client.on_connect, client.on_disconnect = on_connect, on_disconnect
        client.on_message, client.on_publish = on_message, on_publish
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_S
        if lane != "out":
            # The broker pushes QoS 1 messages until this many are unacknowledged: what an
            # inbound lane holds (a slow consumer included) is its batch, not MQTT's default
            # (65535, so only the broker's own limit: mosquitto's 20).
            props.ReceiveMaximum = s.config.batch
        parts = urlsplit(s.config.url)
        port = parts.port or (8883 if tls is not None else 1883)
        timeout = s.timeout
        client.connect_timeout = timeout
        await within(asyncio.to_thread(
            client.connect, parts.hostname or "", port, 30, clean_start=False,
            properties=props), timeout)
        self._client = client
        client.loop_start()
        await within(connected, timeout)
        return client

    def _lost(self, why: str) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError(why))
        self._pending.clear()
        self._queue.put_nowait((_LOST, why))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.disconnect()
                await asyncio.to_thread(client.loop_stop)
            except Exception:  # closing a broken connection: nothing to do
                pass

    async def fetch(self, route: BridgeInbound, limit: int, wait_s: float) -> list[Received]:
        if self._client is None:
            raise ConnectionError("not connected")
        try:
            first = await within(self._queue.get(), wait_s)
        except TimeoutError:
            return []
        msgs = [first]
        while len(msgs) < limit and not self._queue.empty():
            msgs.append(self._queue.get_nowait())
        out: list[Received] = []
        for msg in msgs:
            if isinstance(msg, tuple) and msg[0] is _LOST:
                self._queue.put_nowait(msg)  # and every later fetch fails alike
                if out:
                    break
                raise ConnectionError(msg[1])
            props = dict(getattr(msg.properties, "UserProperty", None) or [])
            mid = props.get(MSG_ID) or f"new:{uuid.uuid4().hex}"
            out.append(Received(f"{msg.topic}:{mid}", msg.payload, msg.mid))
        return out

    async def ack(self, route: BridgeInbound, message: Received) -> None:
        if self._client is None:
            raise ConnectionError("not connected")
        rc = self._client.ack(message.token, 1)
        if rc != 0:
            raise ConnectionError(f"the MQTT acknowledgement could not be sent ({rc})")

    async def publish(self, route: BridgeOutbound, message_id: str, event: str,
                      data: bytes, headers: Mapping[str, str] | None = None) -> str:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = self._client
        if client is None:
            raise ConnectionError("not connected")
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.UserProperty = [(MSG_ID, message_id), (EVENT, event), *(headers or {}).items()]
        info = client.publish(str(route.topic), data, qos=1, properties=props)
        if info.rc != 0:
            raise ConnectionError(f"the MQTT publish could not be sent ({info.rc})")
        assert self._loop is not None
        done = self._pending[info.mid] = self._loop.create_future()
        await done
        return f"{route.topic}:{info.mid}"
