"""RabbitMQ (AMQP 0-9-1): inbound through a queue consumed with manual acknowledgements,
outbound through publisher confirms.

The host speaks AMQP itself over asyncio, with pamqp (the ``bridges`` extra) as the frame
codec only, as the Redis bridge speaks RESP: every frame is read within the frame size the
connection agreed on, a message's body is kept only up to ``max_message_bytes`` (a larger one
is read off and dropped, its size reported), and no more than the prefetch is buffered, so a
broker that answers garbage, huge frames or more than it was asked for costs the host a
bounded amount of memory and a clear reason.

Inbound, a route's ``queue`` is declared durable (with the bridge's dead-letter exchange as
its ``x-dead-letter-exchange`` when one is set) and bound to ``exchange`` when named; every
host consumes it (``basic.consume``, prefetch = ``batch``), so the broker hands each message
to one host. A message is acknowledged (``basic.ack``) after its deliveries are stored; one
the host did not acknowledge is given again (``redelivered``) when its connection closes.
A message's id is ``QUEUE:<message_id property>`` (omnicore's outbound always sets it); a
message published without one gets an id on arrival, and a redelivery of it may queue twice.

Outbound, the channel is in confirm mode (``confirm.select``); each message is published
``mandatory`` and persistent (delivery mode 2) with ``message_id`` the stable message id and
``type`` (and the ``omnicore-event`` header) its event type, and counts as published once
the broker's ``basic.ack`` came: a ``basic.nack``, or a ``basic.return`` (no queue took it),
fails it and the loop sends it again. RabbitMQ keeps no duplicate window: a publish whose
confirm was lost is queued twice, with the same ``message_id``.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from pamqp import commands, frame, heartbeat
from pamqp.header import ContentHeader

from omnicore.bridges._broker import Received, Settings, within
from omnicore.config.bridges import BridgeInbound, BridgeOutbound

__all__ = ["EVENT_HEADER", "RabbitBroker"]

#: The header naming an outbound message's event type (also its ``type`` property).
EVENT_HEADER = "omnicore-event"
#: The heartbeat the host asks for (seconds): a silent broker is found dead within twice it.
HEARTBEAT_S = 10
#: The largest frame the host accepts and sends (RabbitMQ's default; the minimum is 4096).
FRAME_MAX = 131072
_CHANNEL = 1
_FRAME_END = 0xCE
_METHOD, _HEADER, _BODY, _HEARTBEAT = 1, 2, 3, 8
_PROTOCOL = b"AMQP\x00\x00\x09\x01"


class _Content:
    """A message whose header or body frames are still coming."""

    __slots__ = ("body", "method", "properties", "seen", "size")

    def __init__(self, method: Any) -> None:
        self.method = method
        self.properties: Any = None
        self.size = -1
        self.seen = 0
        self.body: list[bytes] | None = []


class RabbitBroker:
    """One AMQP connection (and its one channel) of a bridge (:class:`omnicore.bridges.Broker`).

    A reader task takes every frame as it comes: the replies the lane waits for, deliveries
    into a queue no longer than the prefetch, confirms, heartbeats; a heartbeat task sends
    the host's and fails the connection when the broker's stop.
    """

    def __init__(self, settings: Settings) -> None:
        self._s = settings
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._frame_max = FRAME_MAX
        self._heartbeat = 0
        self._seen = time.monotonic()
        self._failure: BaseException | None = None
        self._reply: asyncio.Future[Any] | None = None
        self._content: _Content | None = None
        self._deliveries: asyncio.Queue[Received | None] = asyncio.Queue()
        self._consuming: set[int] = set()
        #: The queue each consumer tag of this connection reads.
        self._queues: dict[str, str] = {}
        self._confirming = False
        self._tag = 0
        self._confirms: dict[int, asyncio.Future[None]] = {}
        self._returned: str | None = None
        self._blocked: str | None = None

    # -- the connection ---------------------------------------------------------------------

    async def connect(self, lane: str) -> None:
        s = self._s
        parts = urlsplit(s.config.url)
        reader, writer = await s.open(5672, 5671)
        self._reader, self._writer = reader, writer
        writer.write(_PROTOCOL)
        start = await self._handshake(commands.Connection.Start)
        if "PLAIN" not in str(start.mechanisms).split():
            raise ConnectionError(f"the broker offers no PLAIN login ({start.mechanisms})")
        user = s.user or "guest"
        password = s.secret if s.secret is not None else "guest"
        self._send(commands.Connection.StartOk(
            client_properties={
                "product": "omnicore", "connection_name": f"omnicore-{s.name}-{lane}",
                "capabilities": {"publisher_confirms": True, "basic.nack": True,
                                 "consumer_cancel_notify": True, "connection.blocked": True,
                                 "authentication_failure_close": True}},
            mechanism="PLAIN", response=f"\0{user}\0{password}"), channel=0)
        tune = await self._handshake(commands.Connection.Tune)
        self._frame_max = min(FRAME_MAX, tune.frame_max or FRAME_MAX)
        if self._frame_max < 4096:
            raise ConnectionError(f"the broker's frame_max {tune.frame_max} is below AMQP's 4096")
        self._heartbeat = min(HEARTBEAT_S, tune.heartbeat or HEARTBEAT_S)
        self._send(commands.Connection.TuneOk(channel_max=1, frame_max=self._frame_max,
                                              heartbeat=self._heartbeat), channel=0)
        self._send(commands.Connection.Open(virtual_host=_vhost(parts.path)), channel=0)
        await self._handshake(commands.Connection.OpenOk)
        self._seen = time.monotonic()
        self._tasks = [asyncio.create_task(self._read(), name=f"amqp {s.name} {lane} reader"),
                       asyncio.create_task(self._beat(), name=f"amqp {s.name} {lane} heartbeat")]
        await self._call(commands.Channel.Open(), commands.Channel.OpenOk)

    async def _handshake(self, expect: type) -> Any:
        """The next method frame on channel 0 before the reader runs: ``expect``, else the
        broker's Connection.Close as an error."""
        while True:
            kind, channel, payload = await within(self._frame(), self._s.timeout)
            if kind == _HEARTBEAT:
                continue
            if kind != _METHOD or channel != 0:
                raise ConnectionError(f"the broker sent a frame of type {kind} on channel "
                                      f"{channel} while connecting")
            method = _method(payload)
            if isinstance(method, commands.Connection.Close):
                raise self._closed(method)
            if not isinstance(method, expect):
                raise ConnectionError(f"the broker answered {method.name} instead of "
                                      f"{expect.__name__}")
            return method

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        writer, self._writer = self._writer, None
        if writer is not None:
            try:
                if self._failure is None:
                    writer.write(_frame(commands.Connection.Close(
                        reply_code=200, reply_text="omnicore closes the bridge", class_id=0,
                        method_id=0), 0))
            except Exception:  # closing a broken connection: nothing to say
                pass
            finally:
                writer.close()
            with contextlib.suppress(Exception):
                await within(writer.wait_closed(), 1.0)
        self._fail(ConnectionError("the connection to the AMQP broker is closed"))

    # -- frames -----------------------------------------------------------------------------

    async def _frame(self) -> tuple[int, int, bytes]:
        """One frame, its size checked before it is read."""
        assert self._reader is not None
        try:
            head = await self._reader.readexactly(7)
            kind, channel, size = struct.unpack(">BHI", head)
            if size > self._frame_max:
                raise ConnectionError(f"the broker sent a frame of {size} bytes, over the "
                                      f"{self._frame_max} agreed")
            payload = await self._reader.readexactly(size + 1)
        except asyncio.IncompleteReadError:
            raise ConnectionError("the AMQP broker closed the connection") from None
        if payload[-1] != _FRAME_END:
            raise ConnectionError(f"the broker sent garbage (a frame of type {kind} without its "
                                  "end byte)")
        return kind, channel, payload[:-1]

    def _send(self, method: Any, channel: int = _CHANNEL) -> None:
        if self._writer is None:
            raise ConnectionError("not connected")
        self._writer.write(_frame(method, channel))

    def _closed(self, close: Any) -> ConnectionError:
        """The broker's Connection.Close or Channel.Close, answered with its CloseOk (as AMQP
        asks; best effort, the broker ends it either way): the error saying its code and
        text."""
        connection = isinstance(close, commands.Connection.Close)
        with contextlib.suppress(Exception):
            if connection:
                self._send(commands.Connection.CloseOk(), channel=0)
            else:
                self._send(commands.Channel.CloseOk())
        return ConnectionError(f"the broker closed the {'connection' if connection else 'channel'}"
                               f": {close.reply_code} {close.reply_text}")

    async def _call(self, method: Any, expect: type) -> Any:
        """Send a synchronous method on the channel and wait for its reply."""
        self._check()
        reply = self._reply = asyncio.get_running_loop().create_future()
        self._send(method)
        try:
            got = await within(asyncio.shield(reply), self._s.timeout)
        finally:
            self._reply = None
        if not isinstance(got, expect):
            raise ConnectionError(f"the broker answered {got.name} to {method.name}")
        return got

    def _check(self) -> None:
        if self._failure is not None:
            raise ConnectionError(str(self._failure))
        if self._writer is None:
            raise ConnectionError("not connected")

    def _fail(self, exc: BaseException) -> None:
        """The connection is unusable: everything waiting on it fails with ``exc``."""
        if self._failure is None:
            self._failure = exc
        for fut in (self._reply, *self._confirms.values()):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(str(self._failure)))
        self._confirms.clear()
        self._deliveries.put_nowait(None)  # every later fetch fails alike

    async def _beat(self) -> None:
        every = self._heartbeat / 2
        while True:
            await asyncio.sleep(every)
            if time.monotonic() - self._seen > 2 * self._heartbeat:
                self._fail(ConnectionError(f"the broker sent nothing for {2 * self._heartbeat} s "
                                           "(no heartbeat)"))
                if self._writer is not None:
                    self._writer.close()
                return
            if self._writer is not None:
                self._writer.write(heartbeat.Heartbeat.marshal())

    async def _read(self) -> None:
        try:
            while True:
                kind, channel, payload = await self._frame()
                self._seen = time.monotonic()
                if kind == _HEARTBEAT:
                    continue
                if channel == 0:
                    self._connection_frame(kind, payload)
                elif channel != _CHANNEL:
                    raise ConnectionError(f"the broker sent a frame on channel {channel}, "
                                          "never opened")
                elif kind == _METHOD:
                    self._method(_method(payload))
                elif kind == _HEADER:
                    self._header(payload)
                elif kind == _BODY:
                    self._body(payload)
                else:
                    raise ConnectionError(f"the broker sent a frame of unknown type {kind}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc if isinstance(exc, ConnectionError) else
                       ConnectionError(f"{type(exc).__name__}: {exc}"))

    def _connection_frame(self, kind: int, payload: bytes) -> None:
        method = _method(payload) if kind == _METHOD else None
        if isinstance(method, commands.Connection.Close):
            raise self._closed(method)
        if isinstance(method, commands.Connection.Blocked):
            self._blocked = method.reason or "a resource alarm"
        elif isinstance(method, commands.Connection.Unblocked):
            self._blocked = None
        elif not isinstance(method, commands.Connection.CloseOk):
            raise ConnectionError(f"the broker sent {getattr(method, 'name', kind)} on channel 0")

    def _method(self, method: Any) -> None:
        if isinstance(method, commands.Basic.Deliver | commands.Basic.Return):
            if self._content is not None:
                raise ConnectionError("the broker sent a method before the body of a message")
            self._content = _Content(method)
        elif isinstance(method, commands.Basic.Ack | commands.Basic.Nack):
            self._confirmed(method)
        elif isinstance(method, commands.Channel.Close):
            raise self._closed(method)
        elif isinstance(method, commands.Basic.Cancel):
            raise ConnectionError(f"the broker cancelled the consumer {method.consumer_tag} (its "
                                  "queue was deleted?)")
        elif self._reply is not None and not self._reply.done():
            self._reply.set_result(method)
        else:
            raise ConnectionError(f"the broker sent {method.name} unasked")

    def _header(self, payload: bytes) -> None:
        content = self._content
        if content is None or content.size >= 0:
            raise ConnectionError("the broker sent a content header out of place")
        header = ContentHeader()
        header.unmarshal(payload)
        content.properties, content.size = header.properties, header.body_size
        if content.size > self._s.config.max_message_bytes or \
                isinstance(content.method, commands.Basic.Return):
            content.body = None  # read off, not kept
        if content.size == 0:
            self._complete(content)

    def _body(self, payload: bytes) -> None:
        content = self._content
        if content is None or content.size < 0:
            raise ConnectionError("the broker sent a body frame out of place")
        content.seen += len(payload)
        if content.seen > content.size:
            raise ConnectionError(f"the broker sent {content.seen} body bytes for a message of "
                                  f"{content.size}")
        if content.body is not None:
            content.body.append(payload)
        if content.seen == content.size:
            self._complete(content)

    def _complete(self, content: _Content) -> None:
        self._content = None
        method = content.method
        if isinstance(method, commands.Basic.Return):
            self._returned = f"{method.reply_code} {method.reply_text}"
            return
        if self._deliveries.qsize() >= self._s.config.batch:
            raise ConnectionError(f"the broker sent more than the prefetch of "
                                  f"{self._s.config.batch} unacknowledged messages")
        props = content.properties
        queue = self._queues.get(method.consumer_tag, "?")
        mid = getattr(props, "message_id", None) or f"new:{uuid.uuid4().hex}"
        if content.body is None:
            message = Received(f"{queue}:{mid}", b"", method.delivery_tag,
                               too_large=content.size)
        else:
            message = Received(f"{queue}:{mid}", b"".join(content.body), method.delivery_tag)
        self._deliveries.put_nowait(message)

    def _confirmed(self, method: Any) -> None:
        nack = isinstance(method, commands.Basic.Nack)
        tags = [t for t in self._confirms if t == method.delivery_tag or
                (method.multiple and t <= method.delivery_tag)]
        for tag in tags:
            fut = self._confirms.pop(tag)
            if fut.done():
                continue
            if nack:
                fut.set_exception(ConnectionError("the broker refused the message (basic.nack)"))
            elif self._returned is not None:
                fut.set_exception(ConnectionError(f"no queue took the message (basic.return "
                                                  f"{self._returned})"))
            else:
                fut.set_result(None)
        self._returned = None

    # -- inbound ----------------------------------------------------------------------------

    async def _consume(self, route: BridgeInbound) -> None:
        if id(route) in self._consuming:
            return
        s = self._s
        queue = str(route.queue)
        await self._call(commands.Basic.Qos(prefetch_count=s.config.batch),
                         commands.Basic.QosOk)
        await self._call(commands.Queue.Declare(queue=queue, durable=True,
                                                arguments=dead_letter_arguments(s)),
                         commands.Queue.DeclareOk)
        if route.exchange is not None:
            await self._call(commands.Queue.Bind(queue=queue, exchange=route.exchange,
                                                 routing_key=route.routing_key or "#"),
                             commands.Queue.BindOk)
        tag = f"omnicore-{s.name}-{s.consumer}-{len(self._consuming)}"
        self._queues[tag] = queue
        await self._call(commands.Basic.Consume(queue=queue, consumer_tag=tag),
                         commands.Basic.ConsumeOk)
        self._consuming.add(id(route))

    async def fetch(self, route: BridgeInbound, limit: int, wait_s: float) -> list[Received]:
        await self._consume(route)
        try:
            first = await within(self._deliveries.get(), wait_s)
        except TimeoutError:
            self._check()
            return []
        got = [first]
        while len(got) < limit and not self._deliveries.empty():
            got.append(self._deliveries.get_nowait())
        out = [m for m in got if m is not None]
        if len(out) < len(got):
            self._deliveries.put_nowait(None)
            if not out:
                self._check()
                raise ConnectionError("the connection to the AMQP broker failed")
        return out

    async def ack(self, route: BridgeInbound, message: Received) -> None:
        self._check()
        self._send(commands.Basic.Ack(delivery_tag=message.token))
        assert self._writer is not None
        await within(self._writer.drain(), self._s.timeout)

    async def reject(self, route: BridgeInbound, message: Received) -> None:
        """Refuse ``message`` without requeueing it: the broker dead-letters it to the
        queue's ``x-dead-letter-exchange`` (or drops it when the queue has none)."""
        self._check()
        self._send(commands.Basic.Reject(delivery_tag=message.token, requeue=False))
        assert self._writer is not None
        await within(self._writer.drain(), self._s.timeout)

    # -- outbound ---------------------------------------------------------------------------

    async def publish(self, route: BridgeOutbound, message_id: str, event: str,
                      data: bytes, headers: Mapping[str, str] | None = None) -> str:
        """Publish one message and wait for the broker's confirm."""
        # A dead letter without a routing key of its own goes under its event type.
        exchange = route.exchange or ""
        routing_key = route.routing_key if route.routing_key is not None else event
        self._check()
        if self._blocked is not None:
            raise ConnectionError(f"the broker blocks publishers: {self._blocked}")
        if not self._confirming:
            await self._call(commands.Confirm.Select(), commands.Confirm.SelectOk)
            self._confirming = True
        self._tag += 1
        tag = self._tag
        done = self._confirms[tag] = asyncio.get_running_loop().create_future()
        props = commands.Basic.Properties(
            content_type="application/octet-stream", delivery_mode=2, message_id=message_id,
            message_type=event[:255], app_id="omnicore",
            headers={EVENT_HEADER: event, **(headers or {})})
        chunk = self._frame_max - 8
        frames = [_frame(commands.Basic.Publish(exchange=exchange, routing_key=routing_key,
                                                mandatory=True), _CHANNEL),
                  _raw(_HEADER, ContentHeader(0, len(data), props).marshal())]
        frames += [_raw(_BODY, data[i:i + chunk]) for i in range(0, len(data), chunk)]
        assert self._writer is not None
        self._writer.write(b"".join(frames))
        await self._writer.drain()
        await done
        return f"{exchange}:{routing_key}:{tag}"


def dead_letter_arguments(settings: Settings) -> dict[str, Any] | None:
    """What a route's queue is declared with: the bridge's dead-letter exchange (and routing
    key) as its ``x-dead-letter-*`` arguments, so a message the host rejects goes there
    through the broker's own dead-lettering (``x-death`` headers)."""
    dead = settings.config.dead_letter
    if dead is None or dead.exchange is None:
        return None
    args: dict[str, Any] = {"x-dead-letter-exchange": dead.exchange}
    if dead.routing_key is not None:
        args["x-dead-letter-routing-key"] = dead.routing_key
    return args


def _vhost(path: str) -> str:
    """The virtual host a URL's path names: ``/`` when empty (``amqp://h/%2F`` too)."""
    name = unquote(path[1:]) if path.startswith("/") else unquote(path)
    return name or "/"


def _frame(method: Any, channel: int) -> bytes:
    return frame.marshal(method, channel)


def _raw(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, _CHANNEL, len(payload)) + payload + b"\xce"


def _method(payload: bytes) -> Any:
    if len(payload) < 4:
        raise ConnectionError("the broker sent a method frame too short to name its method")
    index = struct.unpack(">I", payload[:4])[0]
    kind = commands.INDEX_MAPPING.get(index)
    if kind is None:
        raise ConnectionError(f"the broker sent an unknown method {index:#x}")
    method = kind()
    try:
        method.unmarshal(payload[4:])
    except Exception as exc:
        raise ConnectionError(f"the broker sent a {method.name} that does not decode: "
                              f"{exc}") from None
    return method
