"""``/metrics`` over OTLP too: the app's Prometheus registry, read every interval and sent by
the SDK's OTLP/HTTP metrics exporter. Imported only when telemetry is on.

Every metric keeps its ``/metrics`` name, labels and description, so one collector serves
both: a Prometheus counter is an OTLP monotonic cumulative sum named as its family (its
``_total`` samples' name without ``_total``, as OpenMetrics names the family and a collector's
Prometheus exporter names it back), a gauge a gauge, a histogram a cumulative histogram with
the same bucket bounds, an info metric (``omnicore_app_info``) a gauge of 1 with its labels;
values are doubles, as Prometheus keeps them.
The registry's values are already cumulative snapshots read at scrape time (histograms
included), which the OpenTelemetry API's instruments cannot observe; so they go as the SDK's
metric data, each point starting when the exporter did (or at a family's ``_created``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from omnicore.telemetry._settings import Settings
from omnicore.telemetry._spans import took

__all__ = ["MetricsExport", "convert"]

log = logging.getLogger("omnicore.telemetry")
_CUMULATIVE = AggregationTemporality.CUMULATIVE
#: How long a host's stop waits for its last metrics export.
STOP_S = 3.0


def _labels(sample: Any, drop: str = "") -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in sample.labels.items() if k != drop))


def _starts(family: Any, since_ns: int) -> dict[tuple[tuple[str, str], ...], int]:
    """Each label set's start: its ``_created`` sample where the family has one."""
    return {_labels(s): int(s.value * 1e9) for s in family.samples
            if s.name == family.name + "_created"} or {(): since_ns}


def convert(families: Iterable[Any], since_ns: int, now_ns: int) -> list[Metric]:
    """Prometheus metric families (``registry.collect()``) as OTLP metrics."""
    out: list[Metric] = []
    for family in families:
        kind, name = family.type, family.name
        starts = _starts(family, since_ns)
        description, unit = family.documentation or None, family.unit or None
        if kind == "counter":
            points = [NumberDataPoint(dict(s.labels), starts.get(_labels(s), since_ns), now_ns,
                                      float(s.value))
                      for s in family.samples if s.name == name + "_total"]
            if points:
                out.append(Metric(name, description, unit, Sum(points, _CUMULATIVE, True)))
        elif kind == "histogram":
            out += _histogram(family, starts, since_ns, now_ns, description, unit)
        elif kind in ("gauge", "unknown", "info", "stateset"):
            points = [NumberDataPoint(dict(s.labels), 0, now_ns, float(s.value))
                      for s in family.samples if not s.name.endswith("_created")]
            if points:
                # An info family's samples are NAME_info: named as /metrics shows them.
                named = name + "_info" if kind == "info" else name
                out.append(Metric(named, description, unit, Gauge(points)))
        # summary, gaugehistogram: none of omnicore's; left out rather than misread.
    return out


def _histogram(family: Any, starts: dict[tuple[tuple[str, str], ...], int], since_ns: int,
               now_ns: int, description: str | None, unit: str | None) -> list[Metric]:
    name = family.name
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for s in family.samples:
        if s.name == name + "_bucket":
            one = series.setdefault(_labels(s, "le"), {"buckets": []})
            one["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name in (name + "_sum", name + "_count"):
            series.setdefault(_labels(s), {"buckets": []})[s.name[len(name) + 1:]] = s.value
    points = []
    for labels, one in series.items():
        buckets = sorted(one["buckets"])
        bounds = [le for le, _ in buckets if not math.isinf(le)]
        counts, below = [], 0.0
        for _, cumulative in buckets:  # Prometheus buckets count all below: OTLP's, each
            counts.append(int(cumulative - below))
            below = cumulative
        if not buckets or not math.isinf(buckets[-1][0]):
            counts.append(int(one.get("count", below) - below))
        points.append(HistogramDataPoint(
            dict(labels), starts.get(labels, since_ns), now_ns,
            int(one.get("count", below)), float(one.get("sum", 0.0)), counts, bounds,
            None, None))  # type: ignore[arg-type]  # min and max: unknown, left unset
    return [Metric(name, description, unit, Histogram(points, _CUMULATIVE))] if points else []


class MetricsExport:
    """Reads ``collect`` (an app's registry) every ``interval_s`` on a thread of its own and
    exports what it finds; :meth:`stop` exports once more and shuts the exporter. An export
    the collector did not take (away, refusing: the exporter's retries spent) is counted in
    :attr:`failed`, with one warning a minute."""

    def __init__(self, collect: Callable[[], Iterable[Any]], exporter: MetricExporter,
                 resource: Resource, interval_s: float) -> None:
        from omnicore import __version__

        self._collect = collect
        self._exporter = exporter
        self._resource = resource
        self._scope = InstrumentationScope("omnicore", __version__)
        self.interval_s = interval_s
        self.since_ns = time.time_ns()
        self.exports = 0
        self.failed = 0
        self._said = -math.inf
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="omnicore-metrics-export",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.export()

    def export(self) -> None:
        """Read the registry and send it now."""
        with self._lock:
            try:
                metrics = convert(self._collect(), self.since_ns, time.time_ns())
            except Exception:  # a collector's bug must not end the thread
                log.exception("reading the metrics to export failed")
                return
            if not metrics:
                return
            data = MetricsData([ResourceMetrics(self._resource, [
                ScopeMetrics(self._scope, metrics, "")], "")])
            try:
                ok = took(self._exporter.export(data))
            except Exception:
                log.exception("exporting %d metric(s) failed", len(metrics))
                ok = False
            self.exports += 1
            if not ok:
                self.failed += 1
                now = time.monotonic()
                if now - self._said >= 60:
                    self._said = now
                    log.warning("the collector did not take the metrics (%d export(s) of "
                                "%d so far; telemetry, OTEL_EXPORTER_OTLP_ENDPOINT)",
                                self.failed, self.exports)

    def stop(self, timeout_s: float = STOP_S) -> None:
        """Export a last time and shut the exporter, within ``timeout_s``: the exporter
        retries a collector that is away for up to its own timeout (10 s), which a host's
        stop does not wait out (a stop took 11.5 s); shutting it ends its retries, and an
        export still under way then is given up."""
        end = time.monotonic() + timeout_s
        self._stop.set()
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            last = threading.Thread(target=self.export, name="omnicore-metrics-export-last",
                                    daemon=True)
            last.start()
            last.join(max(0.0, end - time.monotonic()))
        self._exporter.shutdown()


def start(settings: Settings, instance: str, collect: Callable[[], Iterable[Any]],
          exporter: MetricExporter | None = None) -> MetricsExport:
    """The export of ``collect``'s metrics as ``settings`` say (``exporter``: the tests' own,
    else OTLP/HTTP's)."""
    attributes: dict[str, Any] = {"service.name": settings.service_name,
                                  **settings.resource_attributes}
    if instance:
        attributes.setdefault("service.instance.id", instance)
    if exporter is None:
        exporter = OTLPMetricExporter(endpoint=settings.metrics_endpoint,
                                      headers=settings.headers or None)
    from omnicore.telemetry._http import report_client_failures_ourselves

    report_client_failures_ourselves()
    return MetricsExport(collect, exporter, Resource.create(attributes),
                         settings.metrics_interval_s)
