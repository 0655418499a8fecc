"""``app.subscriptions``: plugins' events published, and delivered to subscribing handlers.

:meth:`Subscriptions.publish` puts a :class:`PluginEvent` on the app's event bus as
``plugin.<name>.<topic>`` (after the storage's event log has it) and the service routes every
bus event to the subscribers whose pattern matches it.

Delivery never runs on the publisher's call: each subscriber has a bounded in-memory inbox
drained by a small thread pool (an overflow is dropped, counted and logged), or, with
``durable: true``, a job in the durable queue (at least once, survives a restart). A durable
delivery the queue refuses (the database went away between the event log's write and the
queue's) is held in memory and queued again once the database answers, by one thread, so an
event a publish was told was taken reaches its durable subscribers; what is held is bounded
(:data:`HELD_BYTES`: beyond it a delivery is dropped, counted and logged).

Hosts sharing a database hear each other's plugin events (the event log's announcements), and
each delivers them to the subscribers it has: live ones on this host, durable ones as a job
queued under a key naming the event and the subscriber (:func:`delivery_key`), so every host
with the subscribing plugin may queue it and the queue keeps one. A durable subscriber that
only some hosts have still gets the events published on the others, and its jobs go only to
hosts serving it (the queue is routed by plugin). A plugin
does not receive its own events unless its subscription says ``self: true``. Every event
carries a hop count — one more than the work that published it — and a delivery beyond
``capabilities.events.max_hops`` is dropped, so plugins publishing to each other in a cycle
stop there.
"""

from __future__ import annotations

import collections
import enum
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from prometheus_client.registry import Collector

from omnicore.core.events import Event, Subscription
from omnicore.core.manifest_entries import granted_entries
from omnicore.core.outage import Outage
from omnicore.errors import ConfigError
from omnicore.jobs import Jobs, at_hops, current_hops
from omnicore.logging import get_logger
from omnicore.storage import Storage, StorageError
from omnicore.storage.base import EventRecord
from omnicore.subscriptions.events import BridgeEvent, PluginEvent, event_body
from omnicore.subscriptions.metrics import SubscriberMetrics
from omnicore.subscriptions.subscriber import Subscriber, manifest_subscriptions
from omnicore.types import HostApp

__all__ = ["DELIVERY_KEYS", "Refusal", "Subscriptions", "SubscriptionsApp"]

log = get_logger("omnicore.subscriptions")


#: The idempotency keys of durable deliveries begin so (the REST API refuses keys that do).
DELIVERY_KEYS = "omnicore:event:"


#: The bytes of durable deliveries held through an outage of the queue, at most.
HELD_BYTES = 16 * 1024 * 1024


def delivery_key(event_id: int, sub: Subscriber) -> str:
    """The idempotency key of ``sub``'s durable delivery of the logged event ``event_id``."""
    return f"{DELIVERY_KEYS}{event_id}:{sub.plugin}:{sub.handler}"


class Refusal(enum.Enum):
    """Why :meth:`Subscriptions.publish` did not publish."""

    TOO_LARGE = "the payload is over capabilities.events.max_payload_bytes"
    HOPS = "the event would be over capabilities.events.max_hops"
    RATE = "the plugin publishes over capabilities.events.max_publish_per_s"
    UNAVAILABLE = "the storage's event log cannot be written"


class SubscriptionsApp(HostApp, Protocol):
    """What the service needs of an app (``OmniApp`` has it): the host app (its config, bus
    and plugins) with its storage and job service."""

    @property
    def storage(self) -> Storage: ...

    @property
    def jobs(self) -> Jobs: ...


class Subscriptions:
    """``app.subscriptions``: routes bus events to plugin handlers, publishes plugins' events.

    Options (``capabilities.events``): ``queue_size`` (1000 per subscriber), ``workers`` (4),
    ``max_hops`` (8), ``retain`` (10000 events in the storage's event log),
    ``max_payload_bytes`` (64 KiB), ``max_publish_per_s`` (1000 per plugin, bursts up to as
    many).
    """

    def __init__(self, app: SubscriptionsApp) -> None:
        self._app = app
        opts = dict(app.config.capabilities.get("events", {}))
        try:
            self.queue_size = int(opts.pop("queue_size", 1000))
            self.workers = int(opts.pop("workers", 4))
            self.max_hops = int(opts.pop("max_hops", 8))
            self.retain = int(opts.pop("retain", 10_000))
            self.max_payload_bytes = int(opts.pop("max_payload_bytes", 64 * 1024))
            self.max_publish_per_s = float(opts.pop("max_publish_per_s", 1000))
            if self.max_publish_per_s <= 0:
                raise ValueError("max_publish_per_s must be positive")
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"capabilities.events: {exc}", key="capabilities.events") from None
        if opts:
            raise ConfigError(f"capabilities.events: unknown option(s) {', '.join(sorted(opts))}",
                              key="capabilities.events")
        self._subs: dict[str, list[Subscriber]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._threads: ThreadPoolExecutor | None = None
        self._bus_subs: list[Subscription] = []
        self.hop_drops = 0
        #: Per plugin: its publish budget, and the publishes refused over it. Each publish
        #: costs a write to the event log and, with a shared database, a query on every
        #: other host with live subscribers: a plugin publishing in a loop is bounded here.
        self._budgets: dict[str, list[float]] = {}
        self.rate_drops: collections.Counter[str] = collections.Counter()
        #: The storage as deliveries see it (events of other hosts, durable deliveries).
        self._outage = Outage("event subscriptions", log, transient=(StorageError,))
        #: Durable deliveries the queue refused, to queue again (oldest first), their bytes,
        #: and the thread that does (started with the first).
        self._held: collections.deque[tuple[Subscriber, bytes, str, int, int | None]] = \
            collections.deque()
        self._held_bytes = 0
        self._held_wake = threading.Condition(self._lock)
        self._held_thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def admit_publish(self, plugin: str) -> bool:
        """Take one publish from ``plugin``'s token bucket; False (and counted) when empty."""
        rate = self.max_publish_per_s
        now = time.monotonic()
        with self._lock:
            bucket = self._budgets.setdefault(plugin, [rate, now])
            bucket[0] = min(rate, bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
            if bucket[0] < 1:
                self.rate_drops[plugin] += 1
                return False
            bucket[0] -= 1
            return True

    def all(self) -> list[Subscriber]:
        with self._lock:
            return [s for subs in self._subs.values() for s in subs]

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every in-memory inbox is empty and idle; False on timeout."""
        with self._idle:
            return self._idle.wait_for(
                lambda: not any(s.busy or s.inbox for subs in self._subs.values()
                                for s in subs), timeout)

    def start(self) -> None:
        try:
            host = self._app.plugins
        except AttributeError:
            return
        self._stopping.clear()
        self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="omnicore-events")
        bus = self._app.events
        self._bus_subs = [bus.subscribe(t, self._on_plugin_change)
                          for t in ("plugin.loaded", "plugin.reloaded", "plugin.unloaded")]
        self._bus_subs.append(bus.subscribe("*", self._route))
        for info in list(host):
            self.sync(info.name)
        # What plugins publish on the other hosts of a shared database reaches the
        # subscribers here too (a durable delivery keyed by the event: queued once).
        self._app.storage.on_event(self._from_another_host)

    def _from_another_host(self, event_ids: list[int]) -> None:
        if self._threads is None or not self._subs:
            return  # nobody here listens: no query at all
        # One query a burst; in an outage the burst is not delivered here (live: at most
        # once; durable: by the hosts that read it).
        none: list[EventRecord] = []
        records = self._outage.call(lambda: self._app.storage.events.get_many(event_ids), none)
        for record in records:
            if record.plugin is not None:
                self._route(PluginEvent(topic=record.topic, plugin=record.plugin,
                                        data=record.payload, hops=record.hops,
                                        event_id=record.id))

    def stop(self) -> None:
        for sub in self._bus_subs:
            self._app.events.unsubscribe(sub)
        self._bus_subs = []
        self._stopping.set()
        with self._lock:
            self._held_wake.notify_all()
            thread, self._held_thread = self._held_thread, None  # a restart starts another
        if thread is not None:
            thread.join()
        with self._lock:
            lost = len(self._held)
            for held in self._held:
                held[0].dropped += 1
            self._held.clear()
            self._held_bytes = 0
        if lost:
            log.error("%d durable event deliveries held through the outage were not queued "
                      "before the host stopped (the events stay in the event log)", lost)
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None

    def _on_plugin_change(self, event: Any) -> None:
        self.sync(event.plugin)

    def sync(self, plugin: str) -> None:
        """(Re)read ``plugin``'s manifest subscriptions (only if it is granted ``events``)."""
        found = granted_entries(
            self._app.plugins.get, plugin, "subscriptions", "events", manifest_subscriptions,
            log, ungranted="subscribes to events but is not granted 'events'; it receives none",
            broken="it receives no events")
        with self._lock:
            if found:
                self._subs[plugin] = found
            else:
                self._subs.pop(plugin, None)

    def _route(self, event: Event) -> None:
        if not self._subs or isinstance(event, BridgeEvent):
            return  # a bridge's event was delivered by deliver() before it reached the bus
        hops = int(getattr(event, "hops", 0))
        targets = [s for s in self.all() if s.matches(event)]
        if not targets:
            return
        if hops > self.max_hops:
            self.hop_drops += 1
            log.warning("event %s dropped: %d hops is over capabilities.events.max_hops (%d); "
                        "plugins may be publishing to each other in a cycle", event.topic, hops,
                        self.max_hops)
            return
        body = event_body(event)
        for sub in targets:
            if sub.durable:
                self._enqueue(sub, body, event.topic, hops, getattr(event, "event_id", None))
            else:
                self._offer(sub, body, hops)

    def _enqueue(self, sub: Subscriber, body: bytes, topic: str, hops: int,
                 event_id: int | None) -> None:
        # The event log took the event a moment ago; the queue failing now is an outage that
        # began in between: the delivery is held and queued once the database answers.
        if not self._outage.call(lambda: self._queue(sub, body, topic, hops, event_id), False):
            self._hold(sub, body, topic, hops, event_id)

    def _queue(self, sub: Subscriber, body: bytes, topic: str, hops: int,
               event_id: int | None) -> bool:
        source = f"event:{topic}"
        if event_id is None:  # a host's own event: only this host heard it
            self._app.jobs.enqueue(sub.plugin, sub.handler, body, source=source, hops=hops)
        else:  # keyed: a retry, or another host's delivery of the same event, queues one
            self._app.jobs.enqueue_once(sub.plugin, sub.handler, body,
                                        delivery_key(event_id, sub), source=source, hops=hops)
        return True

    def _hold(self, sub: Subscriber, body: bytes, topic: str, hops: int,
              event_id: int | None) -> None:
        with self._lock:
            if self._stopping.is_set() or self._held_bytes + len(body) > HELD_BYTES:
                sub.dropped += 1
                full = not self._stopping.is_set()
            else:
                full = False
                self._held.append((sub, body, topic, hops, event_id))
                self._held_bytes += len(body)
                if self._held_thread is None:
                    self._held_thread = threading.Thread(
                        target=self._requeue, name="omnicore-events-held", daemon=True)
                    self._held_thread.start()
                self._held_wake.notify()
        if full and (sub.dropped == 1 or sub.dropped % 100 == 0):
            log.warning("plugin '%s' handler '%s': a durable delivery was dropped: the %d "
                        "bytes held for the queue until the database answers are full; %d "
                        "dropped so far", sub.plugin, sub.handler, HELD_BYTES, sub.dropped)

    def _requeue(self) -> None:
        """Queue the held deliveries, oldest first, each tried through the outage until it
        lands or the service stops."""
        while True:
            with self._lock:
                while not self._held and not self._stopping.is_set():
                    self._held_wake.wait()
                if self._stopping.is_set():
                    return
                item = self._held[0]
            sub, body = item[0], item[1]
            try:
                self._outage.persist(functools.partial(self._queue, *item), self._stopping)
            except Exception:
                if self._stopping.is_set():
                    return  # stop() counts what is left
                log.exception("plugin '%s' handler '%s': a held durable delivery could not "
                              "be queued; dropped", sub.plugin, sub.handler)
                with self._lock:
                    sub.dropped += 1
            with self._lock:
                self._held.popleft()
                self._held_bytes -= len(body)

    def _offer(self, sub: Subscriber, body: bytes, hops: int) -> None:
        threads = self._threads
        with self._lock:
            if len(sub.inbox) >= self.queue_size:
                sub.dropped += 1
                if sub.dropped == 1 or sub.dropped % 100 == 0:
                    log.warning("plugin '%s' handler '%s' is behind: its inbox of %d is "
                                "full, %d event(s) dropped so far", sub.plugin, sub.handler,
                                self.queue_size, sub.dropped)
                return
            sub.inbox.append((body, hops))
            if sub.busy or threads is None:
                return
            sub.busy = True
        threads.submit(self._drain, sub)

    def _drain(self, sub: Subscriber) -> None:
        while True:
            with self._lock:
                if not sub.inbox:
                    sub.busy = False
                    self._idle.notify_all()
                    return
                body, hops = sub.inbox.popleft()
            try:
                with at_hops(hops):
                    self._app.plugins.call(sub.plugin, sub.handler, body)
                sub.delivered += 1
            except Exception as exc:
                sub.failed += 1
                log.warning("plugin '%s' handler '%s' failed on an event: %s: %s", sub.plugin,
                            sub.handler, type(exc).__name__, exc)

    def publish(self, plugin: str, topic: str, size: int,
                payload: Callable[[], bytes]) -> Refusal | None:
        """Publish ``payload()`` (``size`` bytes, read only once admitted) as
        ``plugin.<plugin>.<topic>``: written to the event log, then put on the bus at one hop
        more than the work publishing it. None, or why not."""
        if size > self.max_payload_bytes:
            return Refusal.TOO_LARGE
        hops = current_hops.get() + 1
        if hops > self.max_hops:
            self.hop_drops += 1
            return Refusal.HOPS
        if not self.admit_publish(plugin):
            return Refusal.RATE
        data = payload()
        full = f"plugin.{plugin}.{topic}"
        try:
            event_id = self._app.storage.events.append(full, plugin, data, self.retain, hops)
        except StorageError:
            return Refusal.UNAVAILABLE
        self._app.events.publish(PluginEvent(topic=full, plugin=plugin, data=data, hops=hops,
                                             event_id=event_id))
        return None

    def deliver(self, event: BridgeEvent) -> int:
        """Deliver a bridge's ``event`` to its subscribers, then put it on the bus: durable
        ones as jobs keyed by the broker's message id (a redelivered message queues nothing
        twice, on any host of the database), live ones offered as any event. Returns the
        durable deliveries stored; raises StorageError when the queue cannot take them, so
        the bridge does not acknowledge the message (omnicore.bridges)."""
        stored = 0
        if event.hops > self.max_hops:
            self.hop_drops += 1
        else:
            body = event_body(event)
            targets = [s for s in self.all() if s.matches(event)]
            for sub in targets:  # all stored before any live one is offered (a retry)
                if sub.durable:
                    key = (f"{DELIVERY_KEYS}bridge:{event.bridge}:{event.message_id}:"
                           f"{sub.plugin}:{sub.handler}")
                    self._app.jobs.enqueue_once(sub.plugin, sub.handler, body, key,
                                                source=f"event:{event.topic}", hops=event.hops,
                                                max_attempts=event.max_attempts)
                    stored += 1
            for sub in targets:
                if not sub.durable:
                    self._offer(sub, body, event.hops)
        self._app.events.publish(event)
        return stored

    def collector(self) -> Collector:
        """Prometheus metrics of every subscriber's deliveries, read at scrape time."""
        return SubscriberMetrics(self)
