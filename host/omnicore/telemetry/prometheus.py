"""The span export's own counters in ``/metrics`` (and so over OTLP too, while on): spans
sent to the collector and spans dropped (the full queue's, and a batch the collector did not
take). Nothing while tracing is off."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

import omnicore.telemetry as door

__all__ = ["SpanMetrics"]


class SpanMetrics(Collector):
    """``omnicore_telemetry_spans_exported_total`` and ``..._dropped_total``, read at scrape
    time from the export thread's counts."""

    def collect(self) -> Iterator[Metric]:
        if not door.ON:
            return
        counts = door._impl.span_counts()
        yield CounterMetricFamily("omnicore_telemetry_spans_exported",
                                  "Spans handed to the OTLP exporter (telemetry.*).",
                                  value=counts[0])
        yield CounterMetricFamily("omnicore_telemetry_spans_dropped",
                                  "Spans dropped: the export queue full "
                                  "(telemetry.max_queue_size), or their batch not taken by "
                                  "the collector (away or refusing, its retries spent).",
                                  value=counts[1])
