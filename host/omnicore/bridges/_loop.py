"""The one at-least-once loop every bridge runs, whatever its broker (:class:`Bridge`).

Inbound, per route: fetch a batch; for each message, deliver it (durable deliveries stored as
jobs keyed by the message's broker id) and only then acknowledge it. A storage outage holds
the message unacknowledged and retries it until it is stored; a broker failure closes the
connection, waits (backing off) and reconnects, and the broker redelivers what was not
acknowledged.

Outbound: an event an outbound route names is a durable delivery, a job of the reserved
plugin ``@bridge:<name>`` (:meth:`Bridge.outbound` makes it, the events service queues it in
the event's own transaction: :class:`~omnicore.subscriptions.service.Outbound`). The
outbound lane claims those jobs, oldest first, publishes each and finishes it once the broker
confirmed; a publish that failed is queued again where it stood (its message id the same) and
the lane reconnects. A host killed mid-publish leaves the job leased: it is claimed again when
the lease ends (at once by the next host of a SQLite data dir), by any host running the
bridge, and published under the same message id.

Dead letters (``dead_letter``): a message refused on arrival goes to the dead-letter target
before it is acknowledged (RabbitMQ: rejected, the broker's DLX takes it); a durable delivery
that failed ``after`` times (a dead job, seen on the bus) is queued for the target as an
outbound message, with its reason. The dead job itself stays in the queue for an operator.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import fnmatch
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omnicore.bridges._broker import Broker, Received, within
from omnicore.config.bridges import BridgeConfig, BridgeInbound, BridgeOutbound
from omnicore.core.events import Event
from omnicore.logging import get_logger
from omnicore.storage import Job, JobQueue, StorageError
from omnicore.subscriptions.events import BridgeEvent, PluginEvent, event_body
from omnicore.subscriptions.service import DELIVERY_KEYS, Outbound

__all__ = ["Bridge", "Outgoing"]

log = get_logger("omnicore.bridges")

#: How long one fetch waits for a first message: a stop is seen within it too.
WAIT_S = 1.0
#: Backoff between attempts while the broker or the storage is out.
FIRST_S, MAX_S = 0.1, 2.0
#: The attempts of an outbound delivery when the bridge has no ``dead_letter.after``: it is
#: retried until the broker confirms it.
UNTIL_CONFIRMED = 2**31 - 1
#: How long a held count (status) is reused before the queue is asked again.
HELD_TTL_S = 0.2


def _stopping() -> bool:
    """Whether the running task was asked to stop (a cancellation pending, even one a
    client's code swallowed)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _check_stop() -> None:
    """Raise CancelledError when the running task was asked to stop: after a client's await
    that returned as if nothing came (a client that swallowed the cancellation gives no error
    to see it by), so the lane stops there rather than go on to its next step."""
    if _stopping():
        raise asyncio.CancelledError


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
    """A message for the broker, as its job carries it: its route, stable message id, event
    type and bytes, and headers (a dead letter's reason...)."""

    route: BridgeOutbound
    message_id: str
    event: str
    data: bytes = field(repr=False)
    headers: Mapping[str, str] | None = None

    def payload(self) -> bytes:
        """The job's payload: the same bytes for the same message (a redelivered inbound
        message relayed out queues nothing twice: its key's digest is of these)."""
        doc: dict[str, Any] = {"id": self.message_id, "event": self.event,
                               "route": self.route.model_dump(exclude_none=True),
                               "data": base64.b64encode(self.data).decode()}
        if self.headers:
            doc["headers"] = dict(self.headers)
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def of(cls, payload: bytes) -> Outgoing:
        doc = json.loads(payload)
        return cls(BridgeOutbound.model_validate(doc["route"]), str(doc["id"]),
                   str(doc["event"]), base64.b64decode(doc["data"]), doc.get("headers"))


def message_id(app: str, event: Event) -> str:
    """The id an event is published under, the same on every retry and host: a plugin's
    event by its origin (taken when it was published, before its transaction), a bridge's
    event by the broker id it came with, any other by a fresh uuid taken once (its job keeps
    it)."""
    if isinstance(event, PluginEvent) and event.origin:
        return f"{app}:origin:{event.origin}"
    if isinstance(event, PluginEvent) and event.event_id is not None:
        return f"{app}:event:{event.event_id}"
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
    outage); ``queue()`` is the storage's job queue the outbound deliveries are claimed from
    (None: an app without one publishes nothing); ``owner`` names this host on the leases.
    """

    def __init__(self, name: str, config: BridgeConfig, make: Callable[[], Broker],
                 deliver: Callable[[BridgeEvent], int], app: str = "omnicore",
                 queue: Callable[[], JobQueue] | None = None, owner: str = "",
                 lease_s: float = 30.0) -> None:
        self.name, self.config, self._make, self._deliver = name, config, make, deliver
        self._app = app
        self._queue, self._owner = queue, owner or uuid.uuid4().hex
        #: The lease of a claimed outbound delivery: a publish's confirmation comes long
        #: before it (``confirm_timeout_s``), so it is never renewed.
        self._lease_s = max(lease_s, 3 * config.confirm_timeout_s)
        #: The reserved plugin name of this bridge's outbound deliveries (jobs).
        self.plugin = f"@bridge:{name}"
        self.state = "stopped"
        #: Why the bridge is down (the last failure), or None.
        self.reason: str | None = None
        self.counters: collections.Counter[str] = collections.Counter()
        self._held_seen: tuple[float, int] = (0.0, 0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._down_since: dict[str, float] = {}
        #: Lanes whose last publish the broker took and never confirmed: reaching the broker
        #: again does not make them up, only a confirmed publish (or nothing to publish) does.
        self._unconfirmed: set[str] = set()
        dead = config.dead_letter
        #: Where dead letters are published (None: they stay in the host's job queue).
        self.dead_route = dead_route(config)
        self._attempts = dead.after if dead is not None else None
        #: Of each outbound delivery: dead (listed, retried by an operator) after them.
        self._out_attempts = dead.after if dead is not None else UNTIL_CONFIRMED
        #: The event types this bridge's inbound routes make (whose dead jobs are its own).
        self.makes = frozenset(r.event for r in config.inbound)
        self._granted: dict[str, BridgeOutbound] = {}

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
        """Outbound deliveries not yet confirmed by the broker (queued or being published,
        by any host of the database), counted at most every ``HELD_TTL_S``; the last count
        while the storage does not answer."""
        return self.count_held()

    def count_held(self, fresh: bool = False) -> int:
        """:attr:`held`; ``fresh``: asked of the queue now."""
        at, count = self._held_seen
        if self._queue is None or (not fresh and time.monotonic() - at < HELD_TTL_S):
            return count
        try:
            counts = self._queue().counts()
        except StorageError:
            return count
        count = counts.get((self.plugin, "queued"), 0) + counts.get((self.plugin, "running"), 0)
        self._held_seen = (time.monotonic(), count)
        return count

    def status(self) -> dict[str, Any]:
        """State, reason and counters (the console, the CLI, /readyz)."""
        return {"name": self.name, "kind": self.config.kind, "state": self.state,
                "reason": self.reason, "held": self.held,
                **{k: self.counters[k] for k in ("received", "delivered", "acked", "refused",
                                                 "dead", "published", "dropped", "retried")}}

    # -- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Run every lane until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.state = "starting"
        lanes = [self._inbound(i, r) for i, r in enumerate(self.config.inbound)]
        if self._queue is not None and (self.config.outbound or self.dead_route is not None
                                        or self.config.plugin_publish):
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
                        _check_stop()
                        if lane not in self._unconfirmed:
                            self._up(lane)  # reached; a fetch or publish may still fail
                    if await step(broker):
                        self._up(lane)
                    backoff.reset()
                    _check_stop()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if _stopping():
                        # A client lost the cancellation: Python 3.11's asyncio.wait_for (in
                        # nats-py's connect) raises what its awaitable raised as the cancel
                        # came (a refused connection), and the lane retried for ever, the
                        # host's stop waiting on it.
                        raise asyncio.CancelledError from exc
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

    def outbound(self, event: Event) -> list[Outbound]:
        """The durable deliveries ``event`` has on this bridge: one per outbound route naming
        its type, and a plugin's publish to ``bridge.<this bridge>.<subject>`` for that
        subject (any thread; the events service queues them). The grant was checked where the
        plugin published (omnicore:events, its ``bridges`` patterns)."""
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
            return []
        data = event.data if isinstance(event, PluginEvent | BridgeEvent) else event_body(event)
        mid = message_id(self._app, event)
        return [Outbound(self.plugin, "out" if i == 0 else f"out:{i}",
                         Outgoing(route, mid if i == 0 else f"{mid}:{i}", topic, data).payload(),
                         self._out_attempts)
                for i, route in enumerate(routes)]

    def dead(self, job: Any) -> list[Outbound]:
        """A durable delivery of one of this bridge's messages failed its last attempt (the
        dead ``job``): counted, logged, and queued for the dead-letter target if there is one
        (any thread), keyed by the job and its attempts (a repeat queues it once)."""
        self.counters["dead"] += 1
        topic = job.source.removeprefix("event:")
        log.error("bridge %s: a delivery of %s to %s.%s failed %d time(s) (job %d is dead: "
                  "omnicore jobs retry %d): %s", self.name, topic, job.plugin, job.handler,
                  job.attempts, job.id, job.id, job.last_error)
        if self.dead_route is None:
            return []
        headers = {"omnicore-dead-reason": (job.last_error or "failed")[:1000],
                   "omnicore-plugin": job.plugin, "omnicore-handler": job.handler,
                   "omnicore-job": str(job.id), "omnicore-attempts": str(job.attempts)}
        mid = f"{self._app}:dead:job:{job.id}:{job.attempts}"
        return [Outbound(self.plugin, "dead", Outgoing(self.dead_route, mid, topic,
                                                       message_of(job.payload),
                                                       headers).payload(),
                         self._out_attempts, key=f"{DELIVERY_KEYS}dead:job:{job.id}:"
                         f"{job.attempts}:{self.plugin}:dead")]

    def wake(self) -> None:
        """An outbound delivery of this bridge was queued: the lane claims it now (any
        thread)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the bridge stopped
                loop.call_soon_threadsafe(wake.set)

    # -- the outbound lane: claim, publish, finish --------------------------------------------

    def _claim(self) -> Job | None:
        assert self._queue is not None
        return self._queue().claim(self._owner, time.time(), self._lease_s, [self.plugin])

    def _finish(self, job: Job) -> None:
        assert self._queue is not None
        self._queue().finish(job.id, self._owner, time.time())

    def _release(self, job: Job) -> None:
        """Give ``job`` back uncounted (the lane stops): the next claim takes it first."""
        assert self._queue is not None
        try:
            self._queue().release(self._owner, [job.id])
        except Exception as exc:  # its lease ends: it is claimed again then
            log.warning("bridge %s: outbound delivery %d not given back: %s", self.name,
                        job.id, exc)

    def _failed(self, job: Job, error: str, last: bool = False) -> None:
        """The publish of ``job`` failed: queued again where it stood (the next claim takes
        it first, under the same message id), or dead after its last attempt (or ``last``)."""
        assert self._queue is not None
        last = last or job.attempts >= job.max_attempts
        try:
            self._queue().fail(job.id, self._owner, time.time(), error,
                               None if last else job.run_at)
        except StorageError as exc:  # its lease ends: it is claimed again then
            log.warning("bridge %s: outbound delivery %d's failure not written: %s",
                        self.name, job.id, exc)
            return
        if last:
            self.counters["dead"] += 1
            log.error("bridge %s: outbound delivery %d (%s) failed %d time(s) and is dead "
                      "(omnicore jobs retry %d): %s", self.name, job.id, job.source,
                      job.attempts, job.id, error)

    async def _outbound(self) -> None:
        assert self._wake is not None
        wake = self._wake
        storage = _Backoff()
        #: The last confirmed job's finish, written while the next one is claimed and
        #: published (its lease keeps it from being claimed again meanwhile).
        finishing: asyncio.Task[None] | None = None

        async def finish(job: Job) -> None:
            while True:  # confirmed: written done, through a storage outage
                try:
                    await asyncio.to_thread(self._finish, job)
                    return
                except StorageError as exc:
                    self._down("storage", exc)
                    await asyncio.sleep(storage.next())

        async def step(broker: Broker) -> bool:
            nonlocal finishing
            wake.clear()  # before the claim: a job queued after it wakes the wait below
            claim = asyncio.ensure_future(asyncio.to_thread(self._claim))
            try:
                job = await asyncio.shield(claim)
            except asyncio.CancelledError:  # the thread claims on: what it took goes back
                try:
                    late = await claim
                except Exception:
                    late = None
                if late is not None:
                    self._release(late)
                raise
            except StorageError as exc:
                self._down("storage", exc)
                await asyncio.sleep(storage.next())
                return False
            self._up("storage")
            storage.reset()
            if job is None:  # polled too: another host's deliveries, a lease that ended
                self._unconfirmed.discard("outbound")  # nothing left waiting on it
                self._up("outbound")
                if finishing is not None:
                    done, finishing = finishing, None
                    await done
                try:
                    await within(wake.wait(), WAIT_S)
                except TimeoutError:
                    pass
                return False
            if job.attempts > 1:
                self.counters["retried"] += 1
            try:
                item = Outgoing.of(job.payload)
            except (ValueError, KeyError, TypeError) as exc:
                await asyncio.to_thread(self._failed, job, f"not an outbound message: {exc}",
                                        True)
                return True
            try:
                await within(broker.publish(item.route, item.message_id, item.event,
                                            item.data, item.headers),
                             self.config.confirm_timeout_s)
            except asyncio.CancelledError:
                self._release(job)
                raise
            except TimeoutError:
                # Taken (perhaps) and never confirmed: down until a publish is, whatever a
                # reconnect says.
                self._unconfirmed.add("outbound")
                error = (f"the broker did not confirm a publish within confirm_timeout_s "
                         f"({self.config.confirm_timeout_s:g} s)")
                await asyncio.to_thread(self._failed, job, f"TimeoutError: {error}")
                raise TimeoutError(error) from None
            except Exception as exc:
                # Refused (a JetStream subject no stream takes) or lost: the message waits,
                # so the lane stays down through the reconnect until a publish is confirmed
                # (a reconnect said "up" for the moment before the same refusal).
                self._unconfirmed.add("outbound")
                await asyncio.to_thread(self._failed, job, f"{type(exc).__name__}: {exc}")
                raise
            self._unconfirmed.discard("outbound")
            if finishing is not None:  # one finish at a time, in order
                done, finishing = finishing, None
                await done
            finishing = asyncio.ensure_future(finish(job))
            self.counters["published"] += 1
            return True

        try:
            await self._lane("outbound", step)
        finally:
            if finishing is not None:  # a confirmed job is written done before the lane ends
                # (the storage away: left leased, published again under its id when the
                # lease ends)
                await asyncio.wait({finishing}, timeout=self.config.confirm_timeout_s)
