"""The one at-least-once loop every bridge runs, whatever its broker (:class:`Bridge`).

Inbound, per route: fetch a batch; for each message, deliver it (durable deliveries stored as
jobs keyed by the message's broker id) and only then acknowledge it. A storage outage holds
the message unacknowledged and retries it until it is stored; a broker failure closes the
connection, waits (backing off) and reconnects, and the broker redelivers what was not
acknowledged. Outbound: events the bus carries that an outbound route names are held, in
order, in a buffer bounded in bytes, and published one at a time, each retried (same message
id) until the broker confirms it.
"""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from omnicore.bridges._broker import Broker, Received
from omnicore.config.bridges import BridgeConfig, BridgeInbound, BridgeOutbound
from omnicore.core.events import Event
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


def message_id(app: str, event: Event) -> str:
    """The id an event is published under, the same on every retry: a logged plugin event by
    its event log id (every host of a database names it alike), a bridge's event by the
    broker id it came with, any other by a fresh uuid taken once."""
    if isinstance(event, PluginEvent) and event.event_id is not None:
        return f"{app}:event:{event.event_id}"
    if isinstance(event, BridgeEvent):
        return f"{app}:bridge:{event.bridge}:{event.message_id}"
    return f"{app}:{uuid.uuid4().hex}"


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
                                                 "published", "dropped", "retried")}}

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every lane until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.state = "starting"
        lanes = [self._inbound(i, r) for i, r in enumerate(self.config.inbound)]
        if self.config.outbound:
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

    async def _take(self, broker: Broker, route: BridgeInbound, message: Received) -> None:
        size = message.too_large if message.too_large is not None else len(message.data)
        if size > self.config.max_message_bytes:
            self.counters["refused"] += 1
            log.error("bridge %s: message %s of %d bytes is over max_message_bytes (%d); "
                      "acknowledged and not delivered", self.name, message.id, size,
                      self.config.max_message_bytes)
            await broker.ack(route, message)
            return
        event = BridgeEvent(topic=route.event, bridge=self.name, data=message.data,
                            message_id=message.id)
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
                self.counters["refused"] += 1
                log.error("bridge %s: message %s refused: %s: %s; acknowledged and not "
                          "delivered", self.name, message.id, type(exc).__name__, exc)
                await broker.ack(route, message)
                return
        self.counters["delivered"] += 1
        await broker.ack(route, message)
        self.counters["acked"] += 1

    # -- outbound ---------------------------------------------------------------------------

    def offer(self, event: Event) -> None:
        """Hold ``event`` for every outbound route naming its type (any thread)."""
        topic = event.topic
        routes = [r for r in self.config.outbound
                  if any(p == topic or fnmatch.fnmatchcase(topic, p) for p in r.events)]
        if not routes:
            return
        data = event.data if isinstance(event, PluginEvent | BridgeEvent) else event_body(event)
        mid = message_id(self._app, event)
        with self._lock:
            for i, route in enumerate(routes):
                if self._held_bytes + len(data) > self.config.max_held_bytes:
                    self.counters["dropped"] += 1
                    if self.counters["dropped"] in (1, 10, 100) or \
                            self.counters["dropped"] % 1000 == 0:
                        log.error("bridge %s: %d outbound message(s) dropped: the %d bytes "
                                  "held for the broker are full", self.name,
                                  self.counters["dropped"], self.config.max_held_bytes)
                    continue
                self._held.append(Outgoing(route, mid if i == 0 else f"{mid}:{i}", topic,
                                           data))
                self._held_bytes += len(data)
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def lost(self) -> int:
        """Forget what is still held (the bridge stopped); how many."""
        with self._lock:
            n = len(self._held)
            self._held.clear()
            self._held_bytes = 0
        return n

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
            await asyncio.wait_for(broker.publish(item.route, item.message_id, item.event,
                                                  item.data), self.config.confirm_timeout_s)
            tries = 0
            with self._lock:
                self._held.popleft()
                self._held_bytes -= len(item.data)
            self.counters["published"] += 1
            return True

        await self._lane("outbound", step)
