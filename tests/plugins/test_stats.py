"""Call statistics and their Prometheus exposition."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from omnicore.errors import GuestError, Trap
from omnicore.plugins.metrics import PluginMetricsCollector
from omnicore.plugins.stats import LATENCY_BUCKETS, WINDOW, CallStats


def test_counts_errors_and_histogram() -> None:
    stats = CallStats()
    stats.record(0.000004)
    stats.record(0.00003)
    stats.record(0.2, Trap("x"))
    stats.record(7.0, GuestError("bad"))
    snap = stats.snapshot()
    assert snap.calls == 4 and snap.errors == 2
    assert snap.errors_by_type == {"Trap": 1, "GuestError": 1}
    assert snap.buckets[0] == 1  # <= 10 µs
    assert snap.buckets[LATENCY_BUCKETS.index(0.00005)] == 2
    assert snap.buckets[LATENCY_BUCKETS.index(0.25)] == 3
    assert snap.buckets[-1] == 4  # +Inf holds everything
    assert snap.max_seconds == 7.0
    assert snap.mean_seconds == pytest.approx((0.000004 + 0.00003 + 0.2 + 7.0) / 4)
    assert snap.quantile(0.25) == 0.000004  # the call's own duration, not its bucket's edge
    assert snap.quantile(1.0) == 7.0
    summary = snap.as_dict()
    assert summary["calls"] == 4 and summary["max_us"] == 7_000_000.0


def test_percentiles_are_exact_over_the_latest_calls() -> None:
    stats = CallStats()
    for i in range(1, 101):  # 1..100 ms: a bucketed p50 would say 100 ms (the 0.1 s edge)
        stats.record(i / 1000)
    snap = stats.snapshot()
    assert snap.quantile(0.5) == 0.050 and snap.quantile(0.99) == 0.099
    assert snap.quantile(0.5) <= snap.mean_seconds + 1e-12
    assert snap.as_dict()["p50_us"] == 50_000.0 and snap.as_dict()["p99_us"] == 99_000.0
    for _ in range(WINDOW):  # a window of newer calls pushes every old one out
        stats.record(0.000123)
    later = stats.snapshot()
    assert later.quantile(0.0) == later.quantile(1.0) == 0.000123
    assert later.max_seconds == 0.1 and later.calls == 100 + WINDOW  # totals keep history
    assert len(later.recent) == WINDOW


def test_empty_stats() -> None:
    snap = CallStats().snapshot()
    assert snap.calls == 0 and snap.mean_seconds == 0.0 and snap.quantile(0.99) == 0.0
    with pytest.raises(ValueError):
        snap.quantile(1.5)


def test_concurrent_recording_loses_nothing() -> None:
    stats = CallStats()

    def work() -> None:
        for _ in range(5000):
            stats.record(0.0001)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stats.snapshot().calls == 20000
    assert stats.snapshot().buckets[-1] == 20000


def test_prometheus_exposition_follows_the_live_plugin_set() -> None:
    plugins = {"echo": CallStats(), "greeter": CallStats()}
    plugins["echo"].record(0.00002)
    plugins["echo"].record(0.00002, Trap("x"))
    registry = CollectorRegistry()
    registry.register(PluginMetricsCollector(lambda: list(plugins.items())))
    text = generate_latest(registry).decode()
    assert 'omnicore_plugin_calls_total{plugin="echo"} 2.0' in text
    assert 'omnicore_plugin_errors_total{error="Trap",plugin="echo"} 1.0' in text
    assert 'omnicore_plugin_call_seconds_bucket{le="2.5e-05",plugin="echo"} 2.0' in text
    assert 'omnicore_plugin_call_seconds_count{plugin="echo"} 2.0' in text
    assert 'omnicore_plugin_calls_total{plugin="greeter"} 0.0' in text
    del plugins["greeter"]
    assert 'plugin="greeter"' not in generate_latest(registry).decode()
    assert registry.get_sample_value("omnicore_plugin_calls_total", {"plugin": "echo"}) == 2.0
