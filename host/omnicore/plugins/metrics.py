"""Every plugin's call statistics as Prometheus metrics (``omnicore_plugin_*``).

Apart from :mod:`omnicore.plugins.stats` so that a plugin host without a metrics module
(``omnicore call``) never imports prometheus_client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from omnicore.plugins.stats import LATENCY_BUCKETS, CallStats
from omnicore.sandbox import modcache

__all__ = ["PluginMetricsCollector"]


class PluginMetricsCollector(Collector):
    """Exposes every plugin's :class:`CallStats` as Prometheus metrics at scrape time.

    ``source`` returns the current ``(plugin name, stats)`` pairs; register the collector once
    in the MetricsModule's registry.
    """

    def __init__(self, source: Callable[[], Iterable[tuple[str, CallStats]]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("omnicore_plugin_calls", "Plugin calls, by plugin.",
                                    labels=["plugin"])
        errors = CounterMetricFamily("omnicore_plugin_errors",
                                     "Failed plugin calls, by plugin and error type.",
                                     labels=["plugin", "error"])
        latency = HistogramMetricFamily("omnicore_plugin_call_seconds",
                                        "Plugin call latency in seconds, by plugin.",
                                        labels=["plugin"])
        for name, stats in self._source():
            snap = stats.snapshot()
            calls.add_metric([name], snap.calls)
            for kind, count in sorted(snap.errors_by_type.items()):
                errors.add_metric([name, kind], count)
            buckets = [(_bound(b), float(c))
                       for b, c in zip(LATENCY_BUCKETS, snap.buckets, strict=False)]
            buckets.append(("+Inf", float(snap.calls)))
            latency.add_metric([name], buckets, snap.total_seconds)
        yield calls
        yield errors
        yield latency
        # Compiled code a host would not run: forged, damaged, another key's (issue 61).
        refused = CounterMetricFamily(
            "omnicore_module_cache_rejected",
            "Compiled-module cache entries refused (failed authentication or wasmtime's "
            "check) and compiled again, since this host started.")
        refused.add_metric([], modcache.rejected())
        yield refused


def _bound(value: float) -> str:
    return repr(value)
