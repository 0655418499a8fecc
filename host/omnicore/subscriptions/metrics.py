"""Every subscriber's deliveries in ``/metrics``, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from omnicore.subscriptions.subscriber import Subscriber

__all__ = ["Deliveries", "SubscriberMetrics"]


class Deliveries(Protocol):
    """What the metrics read of the subscriptions service (which makes the collector)."""

    @property
    def hop_drops(self) -> int:
        """Events dropped over the hop limit."""

    @property
    def rate_drops(self) -> Mapping[str, int]:
        """Publishes refused over the rate limit, per plugin."""

    @property
    def held_drops(self) -> Mapping[str, int]:
        """Publishes refused over the plugin's share of the spool, per plugin."""

    def held_by(self) -> dict[str, tuple[int, int]]:
        """What the spool holds for the database, per publishing plugin: records, bytes."""

    def all(self) -> list[Subscriber]:
        """Every subscriber, whatever its plugin's state."""


class SubscriberMetrics(Collector):
    """``omnicore_events_*`` of one :class:`~omnicore.subscriptions.Subscriptions`."""

    def __init__(self, subs: Deliveries) -> None:
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
        yield _per_plugin("omnicore_events_rate_drops", "Publishes refused over "
                          "capabilities.events.max_publish_per_s.", self.subs.rate_drops)
        held = GaugeMetricFamily("omnicore_events_held", "Publishes and durable deliveries "
                                 "held in the spool until the database answers, by publishing "
                                 "plugin (\"\" the host).", labels=["plugin"])
        held_bytes = GaugeMetricFamily("omnicore_events_held_bytes", "Their bytes, charged to "
                                       "capabilities.events.held_bytes_per_plugin.",
                                       labels=["plugin"])
        for plugin, (n, size) in sorted(self.subs.held_by().items()):
            held.add_metric([plugin], float(n))
            held_bytes.add_metric([plugin], float(size))
        yield held
        yield held_bytes
        yield _per_plugin("omnicore_events_held_refused", "Publishes refused over the "
                          "plugin's share of the spool.", self.subs.held_drops)


def _per_plugin(name: str, doc: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    """A counter labelled by plugin, one sample per plugin of ``counts``."""
    family = CounterMetricFamily(name, doc, labels=["plugin"])
    for plugin, n in sorted(counts.items()):
        family.add_metric([plugin], float(n))
    return family
