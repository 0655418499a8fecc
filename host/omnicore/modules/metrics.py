"""MetricsModule: a Prometheus registry with the app's own metrics.

Each app has its own ``CollectorRegistry`` (several apps in one process must not collide).
App metrics are computed at scrape time by a collector, so there is nothing to update on
hot paths. Per-plugin metrics arrive the same way: the sandbox registers its collector with
:meth:`MetricsModule.add_collector`. prometheus_client is imported when the module is made,
not when this file is: an app without metrics (``omnicore call``'s) never loads it (nor the
HTTP server and urllib it imports).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from omnicore.core.module import Module

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    from omnicore.core.module import ModuleHost
    from omnicore.modules.app_collector import AppCollector

__all__ = ["CONTENT_TYPE", "MetricsModule"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsModule(Module):
    """Owns ``registry``; ``render()`` gives the Prometheus text exposition."""

    name = "metrics"

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry

        super().__init__()
        self._own_registry = registry is None
        self.registry = registry if registry is not None else CollectorRegistry()
        self._extra: list[Collector] = []
        self._app_collector: AppCollector | None = None

    def on_attach(self, app: ModuleHost) -> None:
        from omnicore.modules.app_collector import AppCollector

        self._app_collector = AppCollector(app)
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
        from prometheus_client import generate_latest

        return generate_latest(self._live().registry)
