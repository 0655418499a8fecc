"""The routes' metrics on ``/metrics`` (specs/http-routes.md §6), computed at scrape time
from :class:`~omnicore.routes.server.RoutesServer`'s counters."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnicore.routes.server import RoutesServer

__all__ = ["RoutesCollector", "attach"]


class RoutesCollector:
    """A prometheus_client collector over the server it is handed (the latest one: a
    console restarted in the same app hands over its new server)."""

    def __init__(self, server: RoutesServer) -> None:
        self.server = server

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        server = self.server
        table = server.table()
        requests = CounterMetricFamily("omnicore_route_requests",
                                       "HTTP answers of plugin routes, by status code",
                                       labels=["route", "plugin", "code"])
        seconds = CounterMetricFamily("omnicore_route_seconds",
                                      "wall time spent answering plugin routes",
                                      labels=["route", "plugin"])
        flight = GaugeMetricFamily("omnicore_route_in_flight",
                                   "calls of plugin routes in flight", labels=["route", "plugin"])
        refused = CounterMetricFamily("omnicore_route_refused",
                                      "requests plugin routes refused, by reason",
                                      labels=["route", "reason"])
        for name, st in sorted(server.stats.items()):
            route = table.by_name.get(name)
            plugin = route.plugin if route is not None else ""
            for code, n in sorted(st.codes.items()):
                requests.add_metric([name, plugin, str(code)], n)
            seconds.add_metric([name, plugin], st.seconds)
            flight.add_metric([name, plugin], st.in_flight)
            for reason, n in sorted(st.refused.items()):
                refused.add_metric([name, reason], n)
        for code, n in sorted(server.unmatched.codes.items()):
            requests.add_metric(["-", "", str(code)], n)
        for reason, n in sorted(server.unmatched.refused.items()):
            refused.add_metric(["-", reason], n)
        yield requests
        yield seconds
        yield flight
        yield refused
        yield GaugeMetricFamily("omnicore_routes", "plugin routes served", value=len(table))


_COLLECTORS: weakref.WeakKeyDictionary[Any, RoutesCollector] = weakref.WeakKeyDictionary()


def attach(app: Any, server: RoutesServer) -> None:
    """Show ``server``'s counters on ``app``'s ``/metrics`` (one collector per app: a later
    server of the same app takes the earlier one's place)."""
    collector = _COLLECTORS.get(app)
    if collector is not None:
        collector.server = server
        return
    collector = _COLLECTORS[app] = RoutesCollector(server)
    app.metrics.add_collector(collector)
