"""``app.subscriptions``: plugins' events published, and delivered to subscribing handlers.

:meth:`Subscriptions.publish` puts a :class:`PluginEvent` on the app's event bus as
``plugin.<name>.<topic>`` (after the storage's event log has it) and the service routes every
bus event to the subscribers whose pattern matches it.

Delivery never runs on the publisher's call: each subscriber has a bounded in-memory inbox
drained by a small thread pool (an overflow is dropped, counted and logged), or, with
``durable: true``, a job in the durable queue (at least once, survives a restart).

A plugin's publish is an outbox: the event and this host's durable deliveries of it commit in
one transaction (:meth:`EventLog.append_with_jobs`), so a logged event always has its jobs.
When the database cannot take it, the publish is written to this host's spool
(:class:`~omnicore.core.spool.Spool`, ``<data_dir>/spool/events-<runtime id>.spool``, fsynced
before the publish returns) and the plugin is told it was taken; one thread logs each held
publish with its deliveries once the database answers, oldest first, under the publish's
origin key, so a replay (a host killed while draining, restarted, adopting the file) logs and
queues nothing twice. A durable delivery the queue refuses otherwise (a host event, another
host's event read in the moment the database went away) is spooled the same way under its
delivery key. What is held is bounded per publishing plugin (``held_bytes_per_plugin``: over
it the publish is refused, ``Refusal.HELD``, its neighbours unaffected) and in all
(``held_bytes``).

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

Outboxes (:attr:`Subscriptions.outboxes`, the bridges' outbound routes): a callable naming,
for an event, durable deliveries to something other than a plugin's handler (an
:class:`Outbound`: a job of a reserved name such as ``@bridge:<name>``, which its service
claims and runs itself). A plugin's event queues them in the transaction that logs it (or
holds them in the spool with it), a bridge's message before it is acknowledged, a host event
as a keyed delivery: no window in which an event is stored and its outbound delivery is not.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from prometheus_client.registry import Collector

from omnicore.core.events import Event, Subscription
from omnicore.core.manifest_entries import granted_entries
from omnicore.core.outage import Outage
from omnicore.core.spool import Spool, decode_bytes, encode_bytes
from omnicore.errors import ConfigError
from omnicore.jobs import Jobs, at_hops, current_hops
from omnicore.jobs.service import IDEMPOTENCY_KEEP_S
from omnicore.logging import get_logger
from omnicore.storage import Storage, StorageError
from omnicore.storage.base import EventRecord, KeyedJob
from omnicore.subscriptions.events import BridgeEvent, PluginEvent, event_body
from omnicore.subscriptions.metrics import SubscriberMetrics
from omnicore.subscriptions.subscriber import Subscriber, manifest_subscriptions
from omnicore.types import HostApp

__all__ = ["DELIVERY_KEYS", "Outbound", "Outbox", "Refusal", "Subscriptions",
           "SubscriptionsApp"]

log = get_logger("omnicore.subscriptions")


#: The idempotency keys of durable deliveries begin so (the REST API refuses keys that do).
DELIVERY_KEYS = "omnicore:event:"


#: What the spool holds through an outage, at most: in all, and of each publishing plugin.
HELD_BYTES = 64 * 1024 * 1024
HELD_BYTES_PER_PLUGIN = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class _Held:
    """One record of the spool still to be written to the database: its ``owner`` (the
    publishing plugin, "" for the host) is charged its ``size``."""

    record: dict[str, Any]
    owner: str
    size: int


@dataclass(frozen=True, slots=True)
class Outbound:
    """A durable delivery that is not a plugin's handler (a bridge's publish): a job of the
    reserved ``plugin`` (``@bridge:<name>``, never a plugin's name) whose ``handler`` tells it
    from its siblings of the same event (the key's last part) and whose ``payload`` is all
    its runner needs; ``max_attempts`` its own (None: the queue's). ``key``: a host event's
    delivery key of its own (a dead letter's, so a repeat queues it once), else one is made."""

    plugin: str
    handler: str
    payload: bytes = dataclasses.field(repr=False)
    max_attempts: int | None = None
    key: str | None = None


#: ``outbox(event)``: the :class:`Outbound` deliveries ``event`` has (any thread; a plugin's
#: event comes with its ``origin`` set, what names it for ever).
Outbox = Callable[[Event], list[Outbound]]


def delivery_key(event_id: int, sub: Subscriber) -> str:
    """The idempotency key of ``sub``'s durable delivery of the logged event ``event_id``."""
    return f"{DELIVERY_KEYS}{event_id}:{sub.plugin}:{sub.handler}"


class Refusal(enum.Enum):
    """Why :meth:`Subscriptions.publish` did not publish."""

    TOO_LARGE = "the payload is over capabilities.events.max_payload_bytes"
    HOPS = "the event would be over capabilities.events.max_hops"
    RATE = "the plugin publishes over capabilities.events.max_publish_per_s"
    UNAVAILABLE = "the storage's event log cannot be written"
    HELD = ("the plugin's share of the events held until the database answers "
            "(capabilities.events.held_bytes_per_plugin) is full")


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
    many), ``held_bytes`` (64 MiB) and ``held_bytes_per_plugin`` (4 MiB) held in the spool
    through an outage.
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
            self.held_bytes = int(opts.pop("held_bytes", HELD_BYTES))
            self.held_bytes_per_plugin = int(opts.pop("held_bytes_per_plugin",
                                                      HELD_BYTES_PER_PLUGIN))
            if self.held_bytes < 0 or self.held_bytes_per_plugin < 0:
                raise ValueError("held_bytes and held_bytes_per_plugin must be >= 0")
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
        #: The spool (None: not started, or no data dir), what it holds for the database
        #: (oldest first), the bytes held in all and by owner, and the thread that drains it.
        self._spool: Spool | None = None
        self._spool_lock = threading.Lock()
        self._held: collections.deque[_Held] = collections.deque()
        self._held_bytes = 0
        self._held_by: collections.Counter[str] = collections.Counter()
        self._held_wake = threading.Condition(self._spool_lock)
        self._held_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        #: Publishes refused over a plugin's share of the spool.
        self.held_drops: collections.Counter[str] = collections.Counter()
        #: Who adds durable deliveries of their own to events (the bridges' outbound routes).
        self.outboxes: list[Outbox] = []
        #: Outbound deliveries of host events dropped (the database away, the hold full).
        self.outbound_dropped = 0

    def _outs(self, event: Event) -> list[Outbound]:
        """The outboxes' deliveries of ``event``; an outbox that raises is logged, skipped."""
        outs: list[Outbound] = []
        for outbox in list(self.outboxes):
            try:
                outs += outbox(event)
            except Exception:
                log.exception("an outbox failed on %s; its deliveries are not queued",
                              event.topic)
        return outs

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
        self._open_spool()
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
                                        event_id=record.id), remote=True)

    def stop(self) -> None:
        for sub in self._bus_subs:
            self._app.events.unsubscribe(sub)
        self._bus_subs = []
        self._stopping.set()
        with self._spool_lock:
            self._held_wake.notify_all()
            thread, self._held_thread = self._held_thread, None  # a restart starts another
        if thread is not None:
            thread.join()
        with self._spool_lock:
            spool, self._spool = self._spool, None
            left = len(self._held)
            self._held.clear()
            self._held_bytes = 0
            self._held_by.clear()
            if spool is not None:
                spool.close()
        if left and spool is not None:
            log.warning("%d event publish(es) and durable deliveries held through the outage "
                        "stay in %s: the next host of this data dir to start queues them",
                        left, spool.path)
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

    def _route(self, event: Event, *, remote: bool = False) -> None:
        stored = isinstance(event, PluginEvent) and event.stored
        if self.outboxes and not (stored or remote or isinstance(event, BridgeEvent)):
            # A host's event (or one put on the bus as it is, not published here): its
            # outbound deliveries are queued now. A plugin's were queued with it, a bridge's
            # before its ack, another host's by that host.
            self._send_out(event)
        if not self._subs or isinstance(event, BridgeEvent):
            return  # a bridge's event was delivered by deliver() before it reached the bus
        hops = int(getattr(event, "hops", 0))
        targets = [s for s in self.all() if s.matches(event) and not (s.durable and stored)]
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
                self._enqueue(sub, body, event.topic, hops, getattr(event, "event_id", None),
                              getattr(event, "plugin", None) or "")
            else:
                self._offer(sub, body, hops)

    def _enqueue(self, sub: Subscriber, body: bytes, topic: str, hops: int,
                 event_id: int | None, owner: str) -> None:
        # The queue failing is an outage: the delivery is spooled, under a key, and queued
        # once the database answers.
        key = delivery_key(event_id, sub) if event_id is not None else None
        if not self._outage.call(lambda: self._queue(sub.plugin, sub.handler, body, topic,
                                                     hops, key), False):
            if key is None:  # a host's own event: its key is taken now, once
                key = f"{DELIVERY_KEYS}host:{uuid.uuid4().hex}:{sub.plugin}:{sub.handler}"
            record = {"k": "delivery", "key": key, "plugin": sub.plugin,
                      "handler": sub.handler, "body": encode_bytes(body), "topic": topic,
                      "hops": hops}
            if self._hold(record, owner) is not None:
                sub.dropped += 1
                if sub.dropped == 1 or sub.dropped % 100 == 0:
                    log.warning("plugin '%s' handler '%s': a durable delivery of %s was "
                                "dropped: the database is away and its hold is full or "
                                "unwritable; %d dropped so far", sub.plugin, sub.handler,
                                topic, sub.dropped)

    def _send_out(self, event: Event) -> None:
        """Queue a host event's outbound deliveries, each under a key (its own or one taken
        now); the database away, held in the spool like a subscriber's delivery."""
        hops = int(getattr(event, "hops", 0))
        for out in self._outs(event):
            key = out.key or f"{DELIVERY_KEYS}host:{uuid.uuid4().hex}:{out.plugin}:{out.handler}"
            if self._outage.call(functools.partial(
                    self._queue, out.plugin, out.handler, out.payload, event.topic, hops, key,
                    out.max_attempts), False):
                continue
            record = {"k": "delivery", "key": key, "plugin": out.plugin,
                      "handler": out.handler, "body": encode_bytes(out.payload),
                      "topic": event.topic, "hops": hops, "attempts": out.max_attempts}
            if self._hold(record, "") is not None:
                self.outbound_dropped += 1
                if self.outbound_dropped in (1, 10, 100) or self.outbound_dropped % 1000 == 0:
                    log.error("%d outbound delivery(ies) of host events dropped: the "
                              "database is away and the events held for it are full or "
                              "unwritable", self.outbound_dropped)

    def _queue(self, plugin: str, handler: str, body: bytes, topic: str, hops: int,
               key: str | None, max_attempts: int | None = None) -> bool:
        source = f"event:{topic}"
        if key is None:  # a host's own event: only this host heard it
            self._app.jobs.enqueue(plugin, handler, body, source=source, hops=hops)
        else:  # keyed: a retry, or another host's delivery of the same event, queues one
            self._app.jobs.enqueue_once(plugin, handler, body, key, source=source, hops=hops,
                                        max_attempts=max_attempts)
        return True

    # -- the spool ------------------------------------------------------------------------

    def _open_spool(self) -> None:
        data_dir = getattr(self._app, "data_dir", None)
        if not isinstance(data_dir, Path):
            return  # no data dir: an outage refuses publishes (UNAVAILABLE)
        owner = getattr(self._app, "runtime_id", None) or uuid.uuid4().hex
        spool = Spool(data_dir / "spool", "events", str(owner))
        try:
            found = spool.open()
        except OSError as exc:
            log.error("event spool %s cannot be opened (%s): an outage of the database "
                      "refuses publishes", spool.path, exc)
            return
        with self._spool_lock:
            self._spool = spool
            for record in found:
                self._keep(record, str(record.get("owner", "")), _held_cost(record))
            if found:
                log.info("%d event publish(es) and durable deliveries held through an "
                         "outage by a host that stopped are queued from %s", len(found),
                         spool.path)
                self._start_drain()

    def _keep(self, record: dict[str, Any], owner: str, size: int) -> None:
        self._held.append(_Held(record, owner, size))
        self._held_bytes += size
        self._held_by[owner] += size

    def _start_drain(self) -> None:
        if self._held_thread is None:
            self._held_thread = threading.Thread(target=self._drain_spool,
                                                 name="omnicore-events-held", daemon=True)
            self._held_thread.start()
        self._held_wake.notify()

    def _hold(self, record: dict[str, Any], owner: str) -> Refusal | None:
        """Write ``record`` to the spool for the database, charged to ``owner`` what it
        costs (:func:`_held_cost`); None, or why not (its share or the whole hold is full, or
        the spool cannot be written)."""
        record["owner"] = owner
        size = _held_cost(record)
        with self._spool_lock:
            spool = self._spool
            if spool is None or self._stopping.is_set():
                return Refusal.UNAVAILABLE
            if self._held_by[owner] + size > self.held_bytes_per_plugin or \
                    self._held_bytes + size > self.held_bytes:
                return Refusal.HELD
            try:
                spool.append(record)
            except OSError as exc:
                log.error("event spool %s cannot be written: %s", spool.path, exc)
                return Refusal.UNAVAILABLE
            self._keep(record, owner, size)
            self._start_drain()
        return None

    @property
    def held(self) -> int:
        """Publishes and deliveries in the spool, waiting for the database."""
        with self._spool_lock:
            return len(self._held)

    def held_by(self) -> dict[str, tuple[int, int]]:
        """What the spool holds, per publishing plugin ("" the host): records, bytes."""
        with self._spool_lock:
            counts = collections.Counter(h.owner for h in self._held)
            return {owner: (counts[owner], size) for owner, size in self._held_by.items()}

    def _drain_spool(self) -> None:
        """Write the spool's records to the database, oldest first, each tried through the
        outage until it lands or the service stops."""
        while True:
            with self._spool_lock:
                while not self._held and not self._stopping.is_set():
                    self._held_wake.wait()
                if self._stopping.is_set():
                    return
                item = self._held[0]
            try:
                self._outage.persist(functools.partial(self._apply, item.record),
                                     self._stopping)
            except Exception:
                if self._stopping.is_set():
                    return  # it stays in the spool for the next start
                log.exception("a held %s of %s could not be written to the database; dropped",
                              item.record.get("k"), item.record.get("topic"))
            with self._spool_lock:
                self._held.popleft()
                self._held_bytes -= item.size
                self._held_by[item.owner] -= item.size
                if self._held_by[item.owner] <= 0:
                    del self._held_by[item.owner]
                spool = self._spool
                if spool is None:
                    continue
                try:
                    spool.settle(self._held, self._held_bytes,
                                 lambda: [h.record for h in self._held])
                except OSError as exc:  # what it holds is replayed, keyed: no harm
                    log.warning("event spool %s not compacted: %s", spool.path, exc)

    def _apply(self, record: dict[str, Any]) -> bool:
        if record.get("k") == "event":
            targets = [(str(p), str(h)) for p, h in record["to"]]
            self._log(record["topic"], str(record["plugin"]), decode_bytes(record["data"]),
                      int(record["hops"]), targets, str(record["origin"]),
                      _outbound(record), replay=True)
        else:
            attempts = record.get("attempts")
            self._queue(str(record["plugin"]), str(record["handler"]),
                        decode_bytes(record["body"]), str(record["topic"]),
                        int(record["hops"]), str(record["key"]),
                        None if attempts is None else int(attempts))
        return True

    def _log(self, topic: str, plugin: str, data: bytes, hops: int,
             targets: list[tuple[str, str]], origin: str, outs: Sequence[Outbound] = (), *,
             replay: bool = False) -> int:
        """Log the event and queue its durable deliveries to ``targets`` and ``outs`` in one
        transaction; the event's id. Raises StorageError."""
        jobs = self._app.jobs
        body = event_body(PluginEvent(topic=topic, plugin=plugin, data=data, hops=hops)) \
            if targets else b""
        keyed = [KeyedJob(f"{DELIVERY_KEYS}{{event}}:{p}:{h}",
                          *jobs.keyed(p, h, body, source=f"event:{topic}", hops=hops))
                 for p, h in targets]
        keyed += [KeyedJob(f"{DELIVERY_KEYS}{{event}}:{o.plugin}:{o.handler}",
                           *jobs.keyed(o.plugin, o.handler, o.payload, source=f"event:{topic}",
                                       hops=hops, max_attempts=o.max_attempts))
                  for o in outs]
        appended = self._app.storage.events.append_with_jobs(
            topic, plugin, data, self.retain, hops, keyed, origin=f"{DELIVERY_KEYS}origin:"
            f"{origin}", replay=replay, keep_s=IDEMPOTENCY_KEEP_S)
        if appended.jobs:
            jobs.queued(list(zip(appended.jobs, [k.spec for k in keyed], strict=False)))
        return appended.event_id

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
        ``plugin.<plugin>.<topic>``: written to the event log with this host's durable
        deliveries of it (or, the database away, to the spool), then put on the bus at one
        hop more than the work publishing it. None, or why not."""
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
        event = PluginEvent(topic=full, plugin=plugin, data=data, hops=hops)
        targets = [(s.plugin, s.handler) for s in self.all() if s.durable and s.matches(event)]
        # What names the publish until and after it is logged: its deliveries' replays look
        # for it (a publish without any needs none unless it is spooled), and an outbound
        # delivery's message id is made of it.
        origin = uuid.uuid4().hex if targets or self._held or self.outboxes else ""
        outs = self._outs(PluginEvent(topic=full, plugin=plugin, data=data, hops=hops,
                                      origin=origin)) if self.outboxes else []
        event_id = None
        if not self._held:  # else the spool first: publishes reach the database in order
            try:
                event_id = self._log(full, plugin, data, hops, targets, origin, outs)
            except StorageError:
                pass
        if event_id is None:
            origin = origin or uuid.uuid4().hex
            record = {"k": "event", "origin": origin, "topic": full, "plugin": plugin,
                      "data": encode_bytes(data), "hops": hops, "to": targets}
            if outs:
                record["out"] = [[o.plugin, o.handler, encode_bytes(o.payload),
                                  o.max_attempts] for o in outs]
            refused = self._hold(record, plugin)
            if refused is not None:
                if refused is Refusal.HELD:
                    self.held_drops[plugin] += 1
                    if self.held_drops[plugin] in (1, 10, 100) or \
                            self.held_drops[plugin] % 1000 == 0:
                        log.warning("plugin '%s': %d publish(es) refused: the database is "
                                    "away and its share of the events held for it (%d bytes, "
                                    "capabilities.events.held_bytes_per_plugin) is full",
                                    plugin, self.held_drops[plugin],
                                    self.held_bytes_per_plugin)
                return refused
        self._app.events.publish(PluginEvent(topic=full, plugin=plugin, data=data, hops=hops,
                                             event_id=event_id, stored=True,
                                             origin=origin or None))
        return None

    def deliver(self, event: BridgeEvent) -> int:
        """Deliver a bridge's ``event`` to its subscribers, then put it on the bus: durable
        ones as jobs keyed by the broker's message id (a redelivered message queues nothing
        twice, on any host of the database), live ones offered as any event. Returns the
        durable deliveries stored; raises StorageError when the queue cannot take them, so
        the bridge does not acknowledge the message (omnicore.bridges).

        A host serves, and its bridges consume, while its folder still loads: the message
        waits here, unacknowledged, until the start's plugins have loaded. Delivered before,
        it would miss every durable subscriber still compiling, and be acknowledged. A file
        dropped in later holds nobody's message while it compiles: its subscriptions begin
        once it has loaded, as a plugin's do for events published before it came."""
        while not self._app.plugins.wait_loaded(1.0):
            if self._stopping.is_set():
                raise StorageError("the host stopped before its plugins loaded: the message "
                                   "is not acknowledged, the broker delivers it again")
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
            for out in self._outs(event):  # an outbound route relaying it: before the ack
                key = (f"{DELIVERY_KEYS}bridge:{event.bridge}:{event.message_id}:"
                       f"{out.plugin}:{out.handler}")
                self._app.jobs.enqueue_once(out.plugin, out.handler, out.payload, key,
                                            source=f"event:{event.topic}", hops=event.hops,
                                            max_attempts=out.max_attempts)
                stored += 1
            for sub in targets:
                if not sub.durable:
                    self._offer(sub, body, event.hops)
        self._app.events.publish(event)
        return stored

    def collector(self) -> Collector:
        """Prometheus metrics of every subscriber's deliveries, read at scrape time."""
        return SubscriberMetrics(self)


def _outbound(record: dict[str, Any]) -> list[Outbound]:
    """The outbound deliveries a spooled publish holds (``out``: plugin, handler, payload,
    attempts)."""
    return [Outbound(str(p), str(h), decode_bytes(b), None if m is None else int(m))
            for p, h, b, m in record.get("out", ())]


#: What a held record costs besides its JSON: the dict, its strings' headers, its place in
#: the queue of what is held (an empty publish costs about this much in memory).
RECORD_COST = 512


def _held_cost(record: dict[str, Any]) -> int:
    """What a record held for the database is charged to its publisher's share: its JSON (its
    size in the spool's file, where data is base64, and about what its strings take in
    memory) and :data:`RECORD_COST`. Not its payload's length alone: an empty publish cost
    the file 138 bytes and memory about 470, and was charged 10 (a 4 MiB share held 420,000
    of them)."""
    return len(json.dumps(record, separators=(",", ":"))) + RECORD_COST
