"""The one at-least-once loop every bridge runs, whatever its broker (:class:`Bridge`).

Inbound, per route: fetch a batch; for each message, deliver it (durable deliveries stored as
jobs keyed by the message's broker id) and only then acknowledge it. A storage outage holds
the message unacknowledged and retries it until it is stored; a broker failure closes the
connection, waits (backing off) and reconnects, and the broker redelivers what was not
acknowledged. Outbound: events the bus carries that an outbound route names are held, in
order, in a buffer bounded in bytes, and published one at a time, each retried (same message
id) until the broker confirms it.

The outbound queue is a journal too (:meth:`Bridge.open_journal`): each message is written to
``<data_dir>/spool/bridge-<name>-<runtime id>.spool`` (fsynced) before it is held, and a
confirmation is written after the broker's, so a host killed with messages unconfirmed leaves
them to the next host of the data dir to start, which adopts the file and publishes them again
under the same message ids (the broker's idempotency key where it has one).

Dead letters (``dead_letter``): a message refused on arrival goes to the dead-letter target
before it is acknowledged (RabbitMQ: rejected, the broker's DLX takes it); a durable delivery
that failed ``after`` times (a dead job, seen on the bus) is held for the target as an
outbound message, with its reason. The dead job itself stays in the queue for an operator.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import fnmatch
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnicore.bridges._broker import Broker, Received, within
from omnicore.config.bridges import BridgeConfig, BridgeInbound, BridgeOutbound
from omnicore.core.events import Event
from omnicore.core.spool import Spool, decode_bytes, encode_bytes
from omnicore.logging import get_logger
from omnicore.storage import StorageError
from omnicore.subscriptions.events import BridgeEvent, PluginEvent, event_body

__all__ = ["Bridge", "Outgoing"]

log = get_logger("omnicore.bridges")

#: How long one fetch waits for a first message: a stop is seen within it too.
WAIT_S = 1.0
#: Backoff between attempts while the broker or the storage is out.
FIRST_S, MAX_S = 0.1, 2.0


@dataclass
class _Backoff:
    delay: float = FIRST_S

    def next(self) -> float:
        now, self.delay = self.delay, min(MAX_S, self.delay * 2)
        return now

    def reset(self) -> None:
        self.delay = FIRST_S


@dataclass(frozen=True)
class Outgoing:
    """An event held for the broker: its route, stable message id, type and bytes."""

    route: BridgeOutbound
    message_id: str
    event: str
    data: bytes = field(repr=False)
    headers: Mapping[str, str] | None = None


def _record(item: Outgoing) -> dict[str, Any]:
    """An outbound message as the journal keeps it."""
    return {"k": "out", "mid": item.message_id, "event": item.event,
            "route": item.route.model_dump(exclude_none=True), "data": encode_bytes(item.data),
            "headers": dict(item.headers) if item.headers else None}


def _outgoing(record: Mapping[str, Any]) -> Outgoing:
    return Outgoing(BridgeOutbound.model_validate(record["route"]), str(record["mid"]),
                    str(record["event"]), decode_bytes(record["data"]), record.get("headers"))


def message_id(app: str, event: Event) -> str:
    """The id an event is published under, the same on every retry: a logged plugin event by
    its event log id (every host of a database names it alike), a bridge's event by the
    broker id it came with, any other by a fresh uuid taken once."""
    if isinstance(event, PluginEvent) and event.event_id is not None:
        return f"{app}:event:{event.event_id}"
    if isinstance(event, PluginEvent) and event.origin is not None:
        return f"{app}:origin:{event.origin}"  # held in the spool: no event id yet
    if isinstance(event, BridgeEvent):
        return f"{app}:bridge:{event.bridge}:{event.message_id}"
    return f"{app}:{uuid.uuid4().hex}"


def dead_route(config: BridgeConfig) -> BridgeOutbound | None:
    """The bridge's dead-letter target as an outbound route, or None (no target)."""
    dead = config.dead_letter
    if dead is None or not dead.target:
        return None
    return BridgeOutbound(events=["*"], subject=dead.subject, stream=dead.stream,
                          topic=dead.topic, exchange=dead.exchange,
                          routing_key=dead.routing_key)


def message_of(body: bytes) -> bytes:
    """The message a durable delivery's body (``{"topic", "data"}``, subscriptions'
    ``event_body``) was made of: JSON data as JSON, text as its bytes, base64 decoded."""
    try:
        data = json.loads(body)["data"]
    except (ValueError, KeyError, TypeError):
        return body
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, dict) and set(data) == {"base64"}:
        try:
            return base64.b64decode(data["base64"])
        except ValueError:
            return body
    return b"" if data is None else json.dumps(data, separators=(",", ":")).encode()


class Bridge:
    """One configured bridge: its inbound routes and outbound queue, its state and counters.

    ``make()`` opens a new (unconnected) :class:`Broker`; ``deliver(event)`` stores the
    event's durable deliveries (``Subscriptions.deliver``: blocking, raises StorageError in an
    outage).
    """

    def __init__(self, name: str, config: BridgeConfig, make: Callable[[], Broker],
                 deliver: Callable[[BridgeEvent], int], app: str = "omnicore") -> None:
        self.name, self.config, self._make, self._deliver = name, config, make, deliver
        self._app = app
        self.state = "stopped"
        #: Why the bridge is down (the last failure), or None.
        self.reason: str | None = None
        self.counters: collections.Counter[str] = collections.Counter()
        self._held: collections.deque[Outgoing] = collections.deque()
        self._held_bytes = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._down_since: dict[str, float] = {}
        dead = config.dead_letter
        #: Where dead letters are published (None: they stay in the host's job queue).
        self.dead_route = dead_route(config)
        self._attempts = dead.after if dead is not None else None
        #: The event types this bridge's inbound routes make (whose dead jobs are its own).
        self.makes = frozenset(r.event for r in config.inbound)
        self._granted: dict[str, BridgeOutbound] = {}
        #: Where held messages are written before they are held (None: memory only).
        self._journal: Spool | None = None

    # -- state ----------------------------------------------------------------------------

    def _down(self, lane: str, exc: BaseException) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        if lane not in self._down_since:
            self._down_since[lane] = time.monotonic()
            log.warning("bridge %s (%s) %s is down: %s; retrying", self.name, self.config.kind,
                        lane, reason)
        self.state, self.reason = "down", f"{lane}: {reason}"

    def _up(self, lane: str) -> None:
        since = self._down_since.pop(lane, None)
        if since is not None:
            log.info("bridge %s %s is back after %.1f s", self.name, lane,
                     time.monotonic() - since)
        if not self._down_since:
            self.state, self.reason = "up", None

    @property
    def held(self) -> int:
        """Outbound messages waiting for the broker's confirmation."""
        with self._lock:
            return len(self._held)

    def status(self) -> dict[str, Any]:
        """State, reason and counters (the console, the CLI, /readyz)."""
        with self._lock:
            held, held_bytes = len(self._held), self._held_bytes
        return {"name": self.name, "kind": self.config.kind, "state": self.state,
                "reason": self.reason, "held": held, "held_bytes": held_bytes,
                **{k: self.counters[k] for k in ("received", "delivered", "acked", "refused",
                                                 "dead", "published", "dropped", "retried")}}

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every lane until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.state = "starting"
        lanes = [self._inbound(i, r) for i, r in enumerate(self.config.inbound)]
        if self.config.outbound or self.dead_route is not None or self.config.plugin_publish:
            lanes.append(self._outbound())
        try:
            await asyncio.gather(*lanes)
        finally:
            self.state = "stopped"

    async def _lane(self, lane: str, step: Callable[[Broker], Any]) -> None:
        """Run ``step(broker)`` for ever on a connected broker, reconnecting with backoff."""
        backoff = _Backoff()
        broker: Broker | None = None
        try:
            while True:
                try:
                    if broker is None:
                        broker = self._make()
                        await broker.connect(lane)
                        self._up(lane)  # reached; a fetch or publish may still fail
                    if await step(broker):
                        self._up(lane)
                    backoff.reset()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self._down(lane, exc)
                    if broker is not None:
                        await broker.close()
                        broker = None
                    await asyncio.sleep(backoff.next())
        finally:
            if broker is not None:
                await asyncio.shield(broker.close())

    async def _inbound(self, index: int, route: BridgeInbound) -> None:
        async def step(broker: Broker) -> bool:
            messages = await broker.fetch(route, self.config.batch, WAIT_S)
            self._up(lane)
            for message in messages:
                self.counters["received"] += 1
                await self._take(broker, route, message)
            return True

        lane = f"inbound[{index}]"
        await self._lane(lane, step)

    async def _refuse(self, broker: Broker, route: BridgeInbound, message: Received,
                      reason: str) -> None:
        """Acknowledge ``message`` undelivered, a dead letter first when there is a target."""
        self.counters["refused"] += 1
        if self.dead_route is None:
            log.error("bridge %s: message %s %s; acknowledged and not delivered", self.name,
                      message.id, reason)
            await broker.ack(route, message)
            return
        reject = getattr(broker, "reject", None)
        if reject is not None:  # the broker's own dead-lettering (RabbitMQ's DLX)
            await reject(route, message)
        else:
            await broker.publish(self.dead_route, f"{self._app}:dead:{message.id}",
                                 route.event, message.data, {
                                     "omnicore-dead-reason": reason[:1000],
                                     "omnicore-message-id": message.id})
            await broker.ack(route, message)
        self.counters["dead"] += 1
        log.error("bridge %s: message %s %s; sent to the dead letters", self.name, message.id,
                  reason)

    async def _take(self, broker: Broker, route: BridgeInbound, message: Received) -> None:
        size = message.too_large if message.too_large is not None else len(message.data)
        if size > self.config.max_message_bytes:
            await self._refuse(broker, route, message, f"of {size} bytes is over "
                               f"max_message_bytes ({self.config.max_message_bytes})")
            return
        event = BridgeEvent(topic=route.event, bridge=self.name, data=message.data,
                            message_id=message.id, max_attempts=self._attempts)
        backoff = _Backoff()
        while True:
            try:
                await asyncio.to_thread(self._deliver, event)
                self._up("storage")
                break
            except StorageError as exc:  # held unacknowledged until the storage answers
                self._down("storage", exc)
                await asyncio.sleep(backoff.next())
            except Exception as exc:
                # Not an outage: this message can never be delivered (a dead letter).
                await self._refuse(broker, route, message,
                                   f"refused: {type(exc).__name__}: {exc}")
                return
        self.counters["delivered"] += 1
        await broker.ack(route, message)
        self.counters["acked"] += 1

    # -- outbound ---------------------------------------------------------------------------

    def granted(self, subject: str) -> BridgeOutbound:
        """Where a plugin's publish to ``subject`` goes (``plugin_publish``): the subject
        (NATS), the stream (Redis), the topic with ``/`` for ``.`` (MQTT), the routing key on
        ``plugin_exchange`` (RabbitMQ, amq.topic)."""
        route = self._granted.get(subject)
        if route is None:
            kind = self.config.kind
            route = BridgeOutbound(
                events=["*"], subject=subject if kind == "nats" else None,
                stream=subject if kind == "redis" else None,
                topic=subject.replace(".", "/") if kind == "mqtt" else None,
                exchange=(self.config.plugin_exchange or "amq.topic")
                if kind == "rabbitmq" else None,
                routing_key=subject if kind == "rabbitmq" else None)
            if len(self._granted) < 1024:
                self._granted[subject] = route
        return route

    def offer(self, event: Event) -> None:
        """Hold ``event`` for every outbound route naming its type, and a plugin's publish
        to ``bridge.<this bridge>.<subject>`` for that subject (any thread). The grant was
        checked where the plugin published (omnicore:events, its ``bridges`` patterns)."""
        topic = event.topic
        routes = [r for r in self.config.outbound
                  if any(p == topic or fnmatch.fnmatchcase(topic, p) for p in r.events)]
        if self.config.plugin_publish and isinstance(event, PluginEvent):
            head = f"plugin.{event.plugin}.bridge.{self.name}."
            if topic.startswith(head) and len(topic) > len(head):
                try:
                    routes.append(self.granted(topic[len(head):]))
                except ValueError as exc:  # a subject this kind cannot name
                    self.counters["dropped"] += 1
                    log.error("bridge %s: %s's publish to %s dropped: %s", self.name,
                              event.plugin, topic, exc)
        if not routes:
            return
        data = event.data if isinstance(event, PluginEvent | BridgeEvent) else event_body(event)
        mid = message_id(self._app, event)
        self._hold([Outgoing(route, mid if i == 0 else f"{mid}:{i}", topic, data)
                    for i, route in enumerate(routes)])

    def dead(self, job: Any) -> None:
        """A durable delivery of one of this bridge's messages failed its last attempt (the
        dead ``job``): counted, logged, and held for the dead-letter target if there is one
        (any thread)."""
        self.counters["dead"] += 1
        topic = job.source.removeprefix("event:")
        log.error("bridge %s: a delivery of %s to %s.%s failed %d time(s) (job %d is dead: "
                  "omnicore jobs retry %d): %s", self.name, topic, job.plugin, job.handler,
                  job.attempts, job.id, job.id, job.last_error)
        if self.dead_route is None:
            return
        headers = {"omnicore-dead-reason": (job.last_error or "failed")[:1000],
                   "omnicore-plugin": job.plugin, "omnicore-handler": job.handler,
                   "omnicore-job": str(job.id), "omnicore-attempts": str(job.attempts)}
        self._hold([Outgoing(self.dead_route, f"{self._app}:dead:job:{job.id}:{job.attempts}",
                             topic, message_of(job.payload), headers)])

    def open_journal(self, folder: Path, owner: str) -> int:
        """Keep the outbound queue in ``folder`` (this host's journal, ``owner`` naming it),
        taking over what hosts that died left unconfirmed in theirs: held first, in their
        order. How many were taken over."""
        journal = Spool(folder, f"bridge-{self.name}", owner)
        records = journal.open()
        done = {r.get("mid") for r in records if r.get("k") == "done"}
        pending = [_outgoing(r) for r in records if r.get("k") == "out" and r["mid"] not in done]
        with self._lock:
            self._journal = journal
            self._held.extendleft(reversed(pending))
            self._held_bytes += sum(len(i.data) for i in pending)
            journal.rewrite([_record(i) for i in self._held])
        if pending:
            log.info("bridge %s: %d outbound message(s) a host that stopped left unconfirmed "
                     "are published again (the same message ids)", self.name, len(pending))
        return len(pending)

    def _hold(self, items: list[Outgoing]) -> None:
        with self._lock:
            for item in items:
                if self._held_bytes + len(item.data) > self.config.max_held_bytes:
                    self.counters["dropped"] += 1
                    if self.counters["dropped"] in (1, 10, 100) or \
                            self.counters["dropped"] % 1000 == 0:
                        log.error("bridge %s: %d outbound message(s) dropped: the %d bytes "
                                  "held for the broker are full", self.name,
                                  self.counters["dropped"], self.config.max_held_bytes)
                    continue
                if self._journal is not None:
                    try:
                        self._journal.append(_record(item))
                    except OSError as exc:
                        self.counters["dropped"] += 1
                        log.error("bridge %s: an outbound message dropped: its journal %s "
                                  "cannot be written: %s", self.name, self._journal.path, exc)
                        continue
                self._held.append(item)
                self._held_bytes += len(item.data)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def lost(self) -> tuple[int, Path | None]:
        """Forget what is still held (the bridge stopped): how many, and the journal that
        keeps them for the next start (None: they are lost)."""
        with self._lock:
            n = len(self._held)
            self._held.clear()
            self._held_bytes = 0
            journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()
        return n, None if journal is None else journal.path

    def _confirmed(self, item: Outgoing) -> None:
        """The broker confirmed ``item``, the head of the queue (under the lock)."""
        self._held.popleft()
        self._held_bytes -= len(item.data)
        journal = self._journal
        if journal is None:
            return
        try:
            if not journal.settle(self._held, self._held_bytes,
                                  lambda: [_record(i) for i in self._held]):
                # lost at a kill: the message is published again, under its id
                journal.append({"k": "done", "mid": item.message_id}, sync=False)
        except OSError as exc:
            log.warning("bridge %s: journal %s not updated: %s", self.name, journal.path, exc)

    async def _outbound(self) -> None:
        assert self._wake is not None
        wake = self._wake
        tries = 0

        async def step(broker: Broker) -> bool:
            nonlocal tries
            with self._lock:
                item = self._held[0] if self._held else None
            if item is None:
                wake.clear()
                await wake.wait()
                return False
            if tries:
                self.counters["retried"] += 1
            tries += 1
            await within(broker.publish(item.route, item.message_id, item.event,
                                                  item.data, item.headers),
                                   self.config.confirm_timeout_s)
            tries = 0
            with self._lock:
                self._confirmed(item)
            self.counters["published"] += 1
            return True

        await self._lane("outbound", step)
