"""The job service in Prometheus: the queue by state (read at scrape time) and the attempts
this host finished, by outcome."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from omnicore.jobs.service import Jobs
from omnicore.logging import get_logger
from omnicore.storage import StorageError

__all__ = ["JobMetrics"]

log = get_logger("omnicore.jobs")


class JobMetrics(Collector):
    """``omnicore_jobs{plugin,state}`` and ``omnicore_job_attempts_total{plugin,outcome}``."""

    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    def collect(self) -> Iterator[Metric]:
        counts: list[tuple[tuple[str, str], int]] = []
        if self.jobs.started:  # a stopped app's storage is closed: a scrape must not reopen it
            try:
                counts = sorted(self.jobs.counts().items())
            except StorageError as exc:
                log.warning("metrics: cannot count jobs: %s", exc)
        stored = GaugeMetricFamily("omnicore_jobs", "Durable plugin jobs in the queue, by state.",
                                   labels=["plugin", "state"])
        for (plugin, state), n in counts:
            stored.add_metric([plugin, state], float(n))
        yield stored
        ended = CounterMetricFamily("omnicore_job_attempts",
                                    "Job attempts this host finished, by outcome (failed: "
                                    "retried later; dead: the last attempt failed).",
                                    labels=["plugin", "outcome"])
        for (plugin, outcome), n in self.jobs.runner.counts():
            ended.add_metric([plugin, outcome], float(n))
        yield ended
