"""``omnicore:events`` (specs/abi.md §4.8) and ``app.subscriptions``, which delivers them.

``publish(topic, payload)`` puts a :class:`PluginEvent` on the app's event bus as
``plugin.<name>.<topic>`` (a plugin cannot forge host events). Plugins subscribe in their
manifest (``subscriptions: [{"topic": "plugin.*.order", "handler": "on_order"}]``, needs the
``events`` grant) to plugin or host events (``plugin.loaded``, ``job.dead``...); the host calls
the handler with JSON ``{"topic", "data"}``.

Delivery never runs on the publisher's call: each subscriber has a bounded in-memory inbox
drained by a small thread pool (an overflow is dropped, counted and logged), or, with
``durable: true``, a job in the durable queue (at least once, survives a restart). A plugin
does not receive its own events unless its subscription says ``self: true``. Every event
carries a hop count — one more than the work that published it — and a delivery beyond
``capabilities.events.max_hops`` is dropped, so plugins publishing to each other in a cycle
stop there.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import fnmatch
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from omnicore.capabilities import guestjson
from omnicore.config import OmniConfig
from omnicore.core.events import Event, EventBus, Subscription
from omnicore.core.manifest_entries import handler_entries
from omnicore.errors import ConfigError, PluginNotFound
from omnicore.jobs import Jobs, at_hops, current_hops
from omnicore.logging import get_logger
from omnicore.sandbox.capability import (
    Capability,
    GuestMemory,
    HostFunction,
    PluginContext,
    Status,
    WitFunction,
)
from omnicore.storage import Storage, StorageError

if TYPE_CHECKING:
    from omnicore.types import PluginCaller

__all__ = ["CAPABILITY", "MAX_TOPIC_BYTES", "TOPIC", "PluginEvent", "Subscriber",
           "Subscriptions", "capability", "check_manifest", "for_app",
           "manifest_subscriptions"]

log = get_logger("omnicore.subscriptions")

TOPIC = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
MAX_TOPIC_BYTES = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginEvent(Event):
    """What a plugin published: ``topic`` is ``plugin.<plugin>.<its topic>``."""

    topic: str  # type: ignore[misc]  # per instance, unlike host events
    plugin: str
    data: bytes = field(repr=False)
    hops: int = 1


def event_body(event: Event) -> bytes:
    """The JSON a subscribing handler receives: ``{"topic", "data"}``."""
    if isinstance(event, PluginEvent):
        try:
            data: Any = guestjson.loads(event.data) if event.data else None
        except ValueError:
            try:
                data = event.data.decode()
            except UnicodeDecodeError:
                data = {"base64": base64.b64encode(event.data).decode()}
    else:
        data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)
                if f.name not in ("exc",)}
    return json.dumps({"topic": event.topic, "data": data}, default=str,
                      separators=(",", ":")).encode()


@dataclass
class Subscriber:
    """One manifest subscription of one plugin, with its delivery counters."""

    plugin: str
    handler: str
    pattern: str
    durable: bool = False
    self_events: bool = False
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    inbox: collections.deque[tuple[bytes, int]] = field(default_factory=collections.deque)
    busy: bool = False

    def matches(self, event: Event) -> bool:
        if isinstance(event, PluginEvent) and event.plugin == self.plugin \
                and not self.self_events:
            return False
        return self.pattern in ("*", event.topic) or fnmatch.fnmatchcase(event.topic,
                                                                         self.pattern)


def parse_subscription(plugin: str, raw: Any, where: str) -> Subscriber:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("topic"), str) \
            or not isinstance(raw.get("handler"), str):
        raise ConfigError(f"{where}: a subscription is an object like "
                          '{"topic": "plugin.*.order", "handler": "on_order"}', key=where)
    unknown = set(raw) - {"topic", "handler", "durable", "self"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", key=where)
    return Subscriber(plugin, raw["handler"], raw["topic"], bool(raw.get("durable", False)),
                      bool(raw.get("self", False)))


def manifest_subscriptions(plugin: str, manifest: Mapping[str, Any],
                           handlers: Sequence[str] = ()) -> list[Subscriber]:
    """The subscriptions of ``plugin``'s manifest; ConfigError names the first bad one."""
    return handler_entries(manifest, "subscriptions",
                           lambda item, where: parse_subscription(plugin, item, where),
                           handlers)


def check_manifest(plugin: str, manifest: Mapping[str, Any], handlers: Sequence[str]) -> None:
    """Plugin host hook: a subscription that cannot work fails the load (with the reason)."""
    manifest_subscriptions(plugin, manifest, handlers)


class SubscriptionsApp(Protocol):
    config: OmniConfig
    events: EventBus

    @property
    def storage(self) -> Storage: ...

    @property
    def plugins(self) -> PluginCaller: ...

    @property
    def jobs(self) -> Jobs: ...


class Subscriptions:
    """``app.subscriptions``: routes bus events to plugin handlers.

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
        self._threads = ThreadPoolExecutor(self.workers, thread_name_prefix="omnicore-events")
        bus = self._app.events
        self._bus_subs = [bus.subscribe(t, self._on_plugin_change)
                          for t in ("plugin.loaded", "plugin.reloaded", "plugin.unloaded")]
        self._bus_subs.append(bus.subscribe("*", self._route))
        for info in list(host):
            self.sync(info.name)
        # What plugins publish on the other hosts of a shared database reaches the live
        # subscribers here too (their durable subscriptions were queued once, by the origin).
        self._app.storage.on_event(self._from_another_host)

    def _from_another_host(self, event_ids: list[int]) -> None:
        if self._threads is None or not self._subs:
            return  # nobody here listens: no query at all
        for record in self._app.storage.events.get_many(event_ids):  # one query a burst
            if record.plugin is not None:
                self._route(PluginEvent(topic=record.topic, plugin=record.plugin,
                                        data=record.payload), live_only=True)

    def stop(self) -> None:
        for sub in self._bus_subs:
            self._app.events.unsubscribe(sub)
        self._bus_subs = []
        if self._threads is not None:
            self._threads.shutdown(wait=True, cancel_futures=True)
            self._threads = None

    def _on_plugin_change(self, event: Any) -> None:
        self.sync(event.plugin)

    def sync(self, plugin: str) -> None:
        """(Re)read ``plugin``'s manifest subscriptions (only if it is granted ``events``)."""
        found: list[Subscriber] = []
        try:
            info = self._app.plugins.get(plugin)
        except PluginNotFound:
            info = None
        if info is not None and info.state == "loaded" and info.manifest.get("subscriptions"):
            if "events" not in info.granted:
                log.warning("plugin '%s' subscribes to events but is not granted 'events'; "
                            "it receives none", plugin)
            else:
                try:
                    found = manifest_subscriptions(plugin, info.manifest, info.handlers)
                except ConfigError as exc:  # a host built without the manifest checks
                    log.error("plugin '%s' %s; it receives no events", plugin, exc)
        with self._lock:
            if found:
                self._subs[plugin] = found
            else:
                self._subs.pop(plugin, None)

    def _route(self, event: Event, live_only: bool = False) -> None:
        if not self._subs:
            return
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
                if live_only:
                    continue
                self._app.jobs.enqueue(sub.plugin, sub.handler, body,
                                       source=f"event:{event.topic}", hops=hops)
            else:
                self._offer(sub, body, hops)

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


    def collector(self) -> Collector:
        """Prometheus metrics of every subscriber's deliveries, read at scrape time."""
        return _SubscriberMetrics(self)


class _SubscriberMetrics(Collector):
    def __init__(self, subs: Subscriptions) -> None:
        self.subs = subs

    def collect(self) -> Iterator[Metric]:
        labels = ["plugin", "handler", "topic"]
        families = {
            "delivered": CounterMetricFamily("omnicore_events_delivered", "Events a subscribing "
                                             "handler took without error.", labels=labels),
            "failed": CounterMetricFamily("omnicore_events_failed", "Events whose subscribing "
                                          "handler failed.", labels=labels),
            "dropped": CounterMetricFamily("omnicore_events_dropped", "Events dropped because "
                                           "the subscriber's inbox was full.", labels=labels),
        }
        inbox = GaugeMetricFamily("omnicore_events_inbox", "Events waiting in a subscriber's "
                                  "inbox.", labels=labels)
        for sub in self.subs.all():
            key = [sub.plugin, sub.handler, sub.pattern]
            for name, family in families.items():
                family.add_metric(key, float(getattr(sub, name)))
            inbox.add_metric(key, float(len(sub.inbox)))
        yield from families.values()
        yield inbox
        hops = CounterMetricFamily("omnicore_events_hop_drops", "Events dropped over "
                                   "capabilities.events.max_hops (plugins in a cycle).")
        hops.add_metric([], float(self.subs.hop_drops))
        yield hops
        rate = CounterMetricFamily("omnicore_events_rate_drops", "Publishes refused over "
                                   "capabilities.events.max_publish_per_s.", labels=["plugin"])
        for plugin, n in sorted(self.subs.rate_drops.items()):
            rate.add_metric([plugin], float(n))
        yield rate


# -- the capability ---------------------------------------------------------------------------

class _State:
    __slots__ = ("bus", "patterns", "plugin", "subs")

    def __init__(self, subs: Subscriptions, plugin: str, patterns: tuple[str, ...]) -> None:
        self.subs = subs
        self.bus = subs._app.events
        self.plugin = plugin
        self.patterns = patterns


def _admit(state: _State, topic: str) -> int:
    """0 if the plugin may publish ``topic``, else the Status refusing it."""
    if not 0 < len(topic.encode("utf-8", "surrogatepass")) <= MAX_TOPIC_BYTES or \
            not TOPIC.fullmatch(topic):
        return Status.INVALID
    if not any(fnmatch.fnmatchcase(topic, p) for p in state.patterns):
        return Status.DENIED
    return 0


def _send(state: _State, topic: str, size: int, payload: Callable[[], bytes]) -> int:
    """Publish ``payload()`` (``size`` bytes, read only once the event is admitted)."""
    subs = state.subs
    if size > subs.max_payload_bytes:
        return Status.TOO_LARGE
    hops = current_hops.get() + 1
    if hops > subs.max_hops:
        subs.hop_drops += 1
        return Status.QUOTA
    if not subs.admit_publish(state.plugin):
        return Status.QUOTA
    data = payload()
    full = f"plugin.{state.plugin}.{topic}"
    try:
        subs._app.storage.events.append(full, state.plugin, data, subs.retain)
    except StorageError:
        return Status.UNAVAILABLE
    state.bus.publish(PluginEvent(topic=full, plugin=state.plugin, data=data, hops=hops))
    return 0


def _publish(state: _State, mem: GuestMemory, tptr: int, tlen: int, pptr: int,
             plen: int) -> int:
    mem.check(tptr, tlen, "event topic")
    mem.check(pptr, plen, "event payload")
    if not 0 < tlen <= MAX_TOPIC_BYTES:
        return Status.INVALID
    topic = mem.read(tptr, tlen, "event topic").decode("utf-8", "replace")
    return _admit(state, topic) or _send(state, topic, plen,
                                         lambda: mem.read(pptr, plen, "event payload"))


def _wit_publish(state: _State, topic: str, payload: bytes) -> dict[str, Any]:
    """``omnicore:plugin/events.publish`` for components."""
    status = _admit(state, topic) or _send(state, topic, len(payload), lambda: payload)
    return Status.wit_error(status) if status else {"ok": None}


_ERROR = "enum { not-found, denied, invalid, quota, unavailable, too-large }"


def _patterns(options: Mapping[str, Any]) -> tuple[str, ...]:
    unknown = set(options) - {"publish"}
    if unknown:
        raise ConfigError(f"unknown option(s) for grant 'events': {', '.join(sorted(unknown))}; "
                          "known: publish", key="grant.events")
    raw = options.get("publish", ["*"])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise ConfigError("grant.events.publish must be a list of topic patterns",
                          key="grant.events.publish", value=raw)
    return tuple(raw)


def _check_grant(options: Mapping[str, Any]) -> None:
    _patterns(options)


def capability(subs_for: Callable[[PluginContext], Subscriptions]) -> Capability:
    def bind(ctx: PluginContext) -> _State:
        return _State(subs_for(ctx), ctx.plugin, _patterns(ctx.grant))

    return Capability(
        name="events",
        description="publish events under plugin.<name>. and receive subscribed ones",
        functions=(HostFunction("publish", ("ptr", "len", "ptr", "len"), ("i32",), _publish),),
        wit=(WitFunction("publish", f"func(topic: string, payload: list<u8>) -> "
                                    f"result<_, {_ERROR}>", _wit_publish),),
        bind=bind,
        check_grant=_check_grant,
        check_manifest=check_manifest,
    )


def _no_app(ctx: PluginContext) -> Subscriptions:
    raise ConfigError(f"plugin '{ctx.plugin}' is granted events, which need an app's event "
                      "bus (omnicore run, or OmniApp)", key="grant.events")


#: For plugin hosts without an app: granting ``events`` there is a clear error.
CAPABILITY = capability(_no_app)


class _SubscriptionsHolder(Protocol):
    @property
    def subscriptions(self) -> Subscriptions: ...


def for_app(app: _SubscriptionsHolder) -> Capability:
    """The events capability on ``app.subscriptions`` and the app's bus."""
    return capability(lambda _ctx: app.subscriptions)
