"""Every bridge's state and counters in ``/metrics``, read at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["BridgeMetrics"]

#: status() counter → its help text.
COUNTERS = {
    "received": "Messages read from the broker (redeliveries included)",
    "delivered": "Inbound messages whose deliveries were stored",
    "acked": "Inbound messages acknowledged to the broker after their delivery was stored",
    "refused": "Inbound messages acknowledged without delivery (over the size cap, or "
               "undeliverable), each logged with its reason",
    "dead": "Dead letters: inbound messages refused on arrival, or whose durable delivery "
            "failed dead_letter.after times (the job is dead), with a dead_letter set",
    "published": "Outbound messages the broker confirmed",
    "retried": "Outbound publishes sent again after a failure or an unconfirmed attempt",
    "dropped": "Outbound messages dropped: a plugin's publish to a subject the bridge's kind "
               "cannot name",
}


class _Statuses(Protocol):
    def status(self) -> list[dict[str, Any]]: ...


class BridgeMetrics(Collector):
    """``omnicore_bridge_*`` of the bridges service (None: not made, nothing to show)."""

    def __init__(self, bridges: Callable[[], _Statuses | None]) -> None:
        self._bridges = bridges

    def collect(self) -> Iterator[Metric]:
        service = self._bridges()
        statuses = service.status() if service is not None else []
        labels = ["bridge", "kind"]
        up = GaugeMetricFamily("omnicore_bridge_up", "1 while every lane of the bridge "
                               "reaches its broker and the storage, else 0", labels=labels)
        held = GaugeMetricFamily("omnicore_bridge_held_messages", "Outbound messages waiting "
                                 "for the broker's confirmation (the bridge's jobs queued or "
                                 "being published)", labels=labels)
        counters = {k: CounterMetricFamily(f"omnicore_bridge_{k}", text, labels=labels)
                    for k, text in COUNTERS.items()}
        for s in statuses:
            at = [s["name"], s["kind"]]
            up.add_metric(at, 1.0 if s["state"] == "up" else 0.0)
            held.add_metric(at, s["held"])
            for k, family in counters.items():
                family.add_metric(at, s[k])
        yield up
        yield held
        yield from counters.values()
