"""MetricsModule: a Prometheus registry with the app's own metrics.

Each app has its own ``CollectorRegistry`` (several apps in one process must not collide).
App metrics are computed at scrape time by a collector, so there is nothing to update on
hot paths. Per-plugin metrics arrive the same way: the sandbox registers its collector with
:meth:`MetricsModule.add_collector`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from omnicore import __version__
from omnicore.core.lifecycle import State
from omnicore.core.module import Module

if TYPE_CHECKING:
    from omnicore.core.module import ModuleHost

__all__ = ["CONTENT_TYPE", "MetricsModule"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _AppCollector(Collector):
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


class MetricsModule(Module):
    """Owns ``registry``; ``render()`` gives the Prometheus text exposition."""

    name = "metrics"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__()
        self._own_registry = registry is None
        self.registry = registry if registry is not None else CollectorRegistry()
        self._extra: list[Collector] = []
        self._app_collector: _AppCollector | None = None

    def on_attach(self, app: ModuleHost) -> None:
        self._app_collector = _AppCollector(app)
        self.registry.register(self._app_collector)

    def replaces(self, old: Module) -> None:
        if not isinstance(old, MetricsModule):
            return
        for collector in old._extra:
            self.add_collector(collector)

    def _live(self) -> MetricsModule:
        live = self.current
        return live if isinstance(live, MetricsModule) else self

    def add_collector(self, collector: Collector) -> None:
        """Register a collector (e.g. the sandbox's per-plugin metrics) with this registry.

        Collectors added this way follow a replacement of the module; ones registered on
        ``registry`` directly do not.
        """
        live = self._live()
        live.registry.register(collector)
        live._extra.append(collector)

    def remove_collector(self, collector: Collector) -> None:
        """Unregister a collector added with :meth:`add_collector`."""
        live = self._live()
        if collector in live._extra:
            live._extra.remove(collector)
            live.registry.unregister(collector)

    def render(self) -> bytes:
        """The registry in Prometheus text format (serve with :data:`CONTENT_TYPE`)."""
        return generate_latest(self._live().registry)
