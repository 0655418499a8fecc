from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from omnicore.app import OmniApp
from omnicore.modules.metrics import MetricsModule

MakeApp = Callable[..., OmniApp]


def samples(app: OmniApp) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = app.metrics.render().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


class PluginCalls(Collector):
    def __init__(self) -> None:
        self.calls = 0

    def collect(self) -> Iterator[Metric]:
        c = CounterMetricFamily("omnicore_plugin_calls", "calls", labels=["plugin"])
        c.add_metric(["greeter"], self.calls)
        yield c


def test_app_metrics(make_app: MakeApp) -> None:
    app = make_app()
    app.start()
    s = samples(app)
    info = next(k for k in s if k[0] == "omnicore_app_info")
    assert ("runtime_id", app.runtime_id) in info[1]
    assert s[("omnicore_uptime_seconds", ())] > 0
    assert s[("omnicore_module_state", (("module", "health"), ("state", "running")))] == 1
    assert s[("omnicore_module_state", (("module", "health"), ("state", "created")))] == 0
    assert s[("omnicore_extensions_failed", ())] == 0
    assert s[("omnicore_tasks_pending", ())] == 0 and s[("omnicore_tasks_running", ())] == 0
    app.stop()
    s = samples(app)
    assert s[("omnicore_module_state", (("module", "metrics"), ("state", "stopped")))] == 1


def test_per_plugin_collector_hook_and_replacement(make_app: MakeApp) -> None:
    app = make_app()
    coll = PluginCalls()
    app.metrics.add_collector(coll)
    coll.calls = 3
    assert samples(app)[("omnicore_plugin_calls_total", (("plugin", "greeter"),))] == 3
    own = CollectorRegistry()
    mine = MetricsModule(registry=own)
    app.add_module(mine)  # replaces the default and keeps the sandbox's collector
    assert app.metrics is mine and mine.registry is own
    assert samples(app)[("omnicore_plugin_calls_total", (("plugin", "greeter"),))] == 3
    mine.remove_collector(coll)
    assert ("omnicore_plugin_calls_total", (("plugin", "greeter"),)) not in samples(app)


def test_two_apps_do_not_collide(make_app: MakeApp) -> None:
    a, b = make_app("a"), make_app("b")
    assert a.metrics.registry is not b.metrics.registry
    assert b"name=\"a\"" in a.metrics.render() and b"name=\"b\"" in b.metrics.render()


def test_stale_reference_adds_to_the_replacement(make_app: MakeApp) -> None:
    app = make_app()
    captured = app.metrics
    app.add_module(MetricsModule())
    coll = PluginCalls()
    coll.calls = 5
    captured.add_collector(coll)
    assert samples(app)[("omnicore_plugin_calls_total", (("plugin", "greeter"),))] == 5
    # The stale reference renders the replacement's registry, collector included.
    assert captured.render() == app.metrics.render()
    assert b'omnicore_plugin_calls_total{plugin="greeter"} 5.0' in captured.render()
