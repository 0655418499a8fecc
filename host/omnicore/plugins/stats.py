"""Per-plugin call statistics.

Each plugin owns one :class:`CallStats` that the host updates after every call (a lock and a
bisect: well under a microsecond). Prometheus reads the same numbers through
:class:`~omnicore.plugins.metrics.PluginMetricsCollector` at scrape time, so there is no
second bookkeeping on the call path and an unloaded plugin's series disappear with it.

Percentiles (p50, p99) come from the exact durations of the last :data:`WINDOW` calls, kept in
a fixed ring of doubles (4 KiB a plugin), never from the histogram's bucket edges.
"""

from __future__ import annotations

import math
import threading
from array import array
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

__all__ = ["LATENCY_BUCKETS", "WINDOW", "CallStats", "StatsSnapshot"]

#: How many of the latest calls' durations the percentiles are computed from.
WINDOW = 512

# Plugin calls take microseconds, so Prometheus' default buckets (5 ms and up) would put
# every call in the first one. These span 10 µs to the 1 s default deadline and beyond.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005,
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


@dataclass(frozen=True)
class StatsSnapshot:
    """A consistent copy of one plugin's call statistics.

    ``buckets`` are cumulative counts per upper bound in :data:`LATENCY_BUCKETS`, followed by
    the ``+Inf`` bucket (== ``calls``). ``errors_by_type`` counts failed calls by the
    exception class name (``Trap``, ``GuestError``...).
    """

    calls: int
    errors: int
    errors_by_type: dict[str, int]
    total_seconds: float
    max_seconds: float
    buckets: tuple[int, ...]
    #: The exact durations of the latest calls (at most :data:`WINDOW`), in no order: a
    #: copy of the window's doubles, made into Python floats only when a quantile is asked
    #: (a snapshot is taken on every ``app.plugins.get``; most never read a percentile).
    recent: Sequence[float] = field(default=(), repr=False)

    @cached_property
    def _sorted(self) -> list[float]:
        return sorted(self.recent)

    @property
    def mean_seconds(self) -> float:
        """Mean call latency (0 before the first call)."""
        return self.total_seconds / self.calls if self.calls else 0.0

    def quantile(self, q: float) -> float:
        """A latency quantile of the latest calls (nearest rank over their exact durations);
        0 before the first call. A snapshot made without durations falls back to the
        histogram (the upper bound of the quantile's bucket)."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if not self.calls:
            return 0.0
        if self.recent:
            ordered = self._sorted
            return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
        rank = q * self.calls
        for bound, count in zip(LATENCY_BUCKETS, self.buckets, strict=False):
            if count >= rank:
                return min(bound, self.max_seconds)
        return self.max_seconds

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly summary for the CLI and the console."""
        return {
            "calls": self.calls,
            "errors": self.errors,
            "errors_by_type": dict(self.errors_by_type),
            "mean_us": round(self.mean_seconds * 1e6, 2),
            "p50_us": round(self.quantile(0.5) * 1e6, 2),
            "p99_us": round(self.quantile(0.99) * 1e6, 2),
            "max_us": round(self.max_seconds * 1e6, 2),
        }


class CallStats:
    """Call counters and a latency histogram for one plugin; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._errors = 0
        self._errors_by_type: dict[str, int] = {}
        self._total = 0.0
        self._max = 0.0
        # Non-cumulative per bucket (the last one is +Inf); made cumulative on snapshot so
        # that recording stays one increment.
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self._window = array("d", bytes(8 * WINDOW))

    def record(self, seconds: float, error: BaseException | None = None) -> None:
        """Count one call that took ``seconds`` and raised ``error`` (or succeeded)."""
        index = bisect_left(LATENCY_BUCKETS, seconds)
        with self._lock:
            self._window[self._calls % WINDOW] = seconds
            self._calls += 1
            self._total += seconds
            self._counts[index] += 1
            if seconds > self._max:
                self._max = seconds
            if error is not None:
                self._errors += 1
                kind = type(error).__name__
                self._errors_by_type[kind] = self._errors_by_type.get(kind, 0) + 1

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy of the numbers so far."""
        with self._lock:
            counts = list(self._counts)
            snap_calls, errors, total, top = self._calls, self._errors, self._total, self._max
            recent = self._window[:min(snap_calls, WINDOW)]  # one copy, in C
            by_type = dict(self._errors_by_type)
        cumulative: list[int] = []
        running = 0
        for count in counts:
            running += count
            cumulative.append(running)
        return StatsSnapshot(calls=snap_calls, errors=errors, errors_by_type=by_type,
                             total_seconds=total, max_seconds=top, buckets=tuple(cumulative),
                             recent=recent)
