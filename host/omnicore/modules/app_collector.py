"""The app's own metrics (identity, uptime, module states, tasks, extensions), computed
at scrape time for :class:`~omnicore.modules.metrics.MetricsModule`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from omnicore import __version__
from omnicore.core.lifecycle import State

if TYPE_CHECKING:
    from omnicore.core.module import ModuleHost

__all__ = ["AppCollector"]


class AppCollector(Collector):
    """Reads the app's state on every scrape."""

    def __init__(self, app: ModuleHost) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        app = self.app
        info = InfoMetricFamily("omnicore_app", "The app's identity.")
        info.add_metric([], {"name": app.name, "runtime_id": app.runtime_id,
                             "version": __version__})
        yield info
        up = GaugeMetricFamily("omnicore_uptime_seconds", "Seconds since the app started.")
        up.add_metric([], app.uptime)
        yield up
        states = GaugeMetricFamily("omnicore_module_state",
                                   "1 for each module's current lifecycle state.",
                                   labels=["module", "state"])
        for m in app.modules:
            for s in State:
                states.add_metric([m.name, s.value], 1.0 if m.state is s else 0.0)
        yield states
        tasks = app.tasks
        pending = GaugeMetricFamily("omnicore_tasks_pending", "Tasks queued in the TaskEngine.")
        pending.add_metric([], float(tasks.pending))
        yield pending
        running = GaugeMetricFamily("omnicore_tasks_running", "Tasks the TaskEngine is running.")
        running.add_metric([], float(tasks.running))
        yield running
        ext = GaugeMetricFamily("omnicore_extensions_failed",
                                "Python host extensions that failed to load or run.")
        ext.add_metric([], float(len(app.extensions.failures))
                       if hasattr(app, "extensions") else 0.0)
        yield ext
