"""``/metrics`` over OTLP (omnicore.telemetry._metrics, issue 62): a Prometheus registry's
counters, gauges, histograms and info metrics, read and sent by the SDK's OTLP/HTTP metrics
exporter to a receiver on loopback that decodes the real protobuf (tests/telemetry/
receiver.py), under the names, labels and values ``/metrics`` shows."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from omnicore.telemetry import Settings, _metrics
from tests.telemetry.receiver import Point, Receiver, receiving


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with receiving() as found:
        yield found


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    calls = Counter("omnicore_plugin_calls", "Plugin calls, by plugin.", ["plugin"],
                    registry=registry)
    calls.labels("greeter").inc(3)
    calls.labels("notes").inc()
    Gauge("omnicore_tasks_pending", "Tasks queued.", registry=registry).set(2.5)
    seconds = Histogram("omnicore_plugin_call_seconds", "Call latency.", ["plugin"],
                        buckets=(0.001, 0.01, 0.1), registry=registry)
    for value in (0.0005, 0.005, 0.005, 0.05, 5.0):
        seconds.labels("greeter").observe(value)
    Info("omnicore_app", "The app's identity.", registry=registry).info({"name": "shop"})

    class Custom:  # as omnicore's own collectors make them, with no _created sample
        def collect(self) -> Iterator[object]:
            attempts = CounterMetricFamily("omnicore_job_attempts", "Attempts, by outcome.",
                                           labels=["outcome"])
            attempts.add_metric(["ok"], 7)
            yield attempts
            yield HistogramMetricFamily("omnicore_empty_seconds", "Nothing observed.",
                                        labels=["plugin"])

    registry.register(Custom())  # type: ignore[arg-type]
    return registry


def _by_name(points: list[Point]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for p in points:
        out.setdefault(p.name, []).append(p)
    return out


def test_a_registry_arrives_under_its_names_labels_and_values(receiver: Receiver) -> None:
    registry = _registry()
    settings = Settings(service_name="shop", metrics_endpoint=receiver.endpoint + "/v1/metrics",
                        metrics_interval_s=3600, resource_attributes={"deployment": "test"})
    export = _metrics.start(settings, "instance-1", registry.collect)
    try:
        export.export()
    finally:
        export.stop()  # exports once more
    assert len(receiver.points) == 2
    got = _by_name(receiver.points[0])
    calls = {p.attributes["plugin"]: p for p in got["omnicore_plugin_calls"]}
    assert {k: p.value for k, p in calls.items()} == {"greeter": 3.0, "notes": 1.0}
    assert all(p.kind == "sum" and p.monotonic and p.cumulative for p in calls.values())
    assert calls["greeter"].description == "Plugin calls, by plugin."
    (pending,) = got["omnicore_tasks_pending"]
    assert (pending.kind, pending.value) == ("gauge", 2.5)
    (latency,) = got["omnicore_plugin_call_seconds"]
    count, total, buckets, bounds = latency.value
    assert latency.kind == "histogram" and latency.cumulative
    assert latency.attributes == {"plugin": "greeter"}
    assert (count, bounds, buckets) == (5, [0.001, 0.01, 0.1], [1, 2, 1, 1])
    assert total == pytest.approx(5.0605)
    (info,) = got["omnicore_app_info"]
    assert (info.kind, info.value, info.attributes) == ("gauge", 1.0, {"name": "shop"})
    (attempts,) = got["omnicore_job_attempts"]
    assert (attempts.value, attempts.attributes) == (7.0, {"outcome": "ok"})
    assert "omnicore_empty_seconds" not in got  # no series: nothing to send
    assert info.resource["service.name"] == "shop"
    assert info.resource["service.instance.id"] == "instance-1"
    assert info.resource["deployment"] == "test"


def test_the_export_runs_every_interval_and_stops(receiver: Receiver) -> None:
    registry = _registry()
    settings = Settings(service_name="shop", metrics_endpoint=receiver.endpoint + "/v1/metrics",
                        metrics_interval_s=0.05)
    export = _metrics.start(settings, "", registry.collect)
    deadline = time.monotonic() + 30
    while len(receiver.points) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    export.stop()
    assert len(receiver.points) >= 3
    after = len(receiver.points)
    time.sleep(0.2)
    assert len(receiver.points) == after  # its thread ended


def test_a_broken_collector_is_logged_and_the_export_goes_on(
        receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def collect() -> list[object]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a collector's bug")
        return list(_registry().collect())

    settings = Settings(service_name="shop", metrics_endpoint=receiver.endpoint + "/v1/metrics")
    export = _metrics.start(settings, "", collect)
    with caplog.at_level("ERROR"):
        export.export()
        export.stop()
    assert "reading the metrics to export failed" in caplog.text
    assert len(receiver.points) == 1
