"""A plugin call's span (omnicore.telemetry, issue 62, items 2 and 4): the fuel a metered
call burnt and the memory its instances hold, and its cheap host calls (kv, config) counted
on it rather than each made a span. Real plugins in a plugin host in this process, on an
in-memory exporter, turned off again after each test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from omnicore import telemetry
from omnicore.capabilities import kv
from omnicore.plugins.host import PluginHost
from omnicore.storage import KVQuota, SQLiteStorage
from omnicore.telemetry import Settings

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "build" / "plugins"
KV, CONFIG = "omnicore.plugin.host_calls.kv", "omnicore.plugin.host_calls.config"


def calls(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    telemetry.flush()
    return [s for s in exporter.get_finished_spans() if s.name == name]


# counter-rust is a core module, counter-python a component: the two lanes host calls take.
@pytest.mark.parametrize("plugin", ["counter-rust", "counter-python"])
def test_kv_and_config_are_counted_on_the_calls_span_never_spans_of_their_own(
        spans: InMemorySpanExporter, plugin: str, tmp_path: Path) -> None:
    with PluginHost(data_dir=tmp_path) as host:
        host.load(PLUGINS / f"{plugin}.wasm", name=plugin, grants=["kv", "config"],
                  config={"start": 10})
        assert host.call(plugin, "count", b'{"by": 2}') == b'{"count":12}'
        assert host.call(plugin, "count", b'{"by": 3}') == b'{"count":15}'
    made = calls(spans, f"call {plugin}/count")
    assert len(made) == 2
    for span in made:  # count reads config "start" once and increments its key once
        assert span.attributes is not None
        assert span.attributes[CONFIG] == 1 and span.attributes[KV] == 1
    assert {s.name for s in spans.get_finished_spans()} == {f"call {plugin}/count"}


def test_a_metered_call_carries_the_fuel_it_burnt_and_its_memory(
        spans: InMemorySpanExporter) -> None:
    with PluginHost() as host:
        host.load(PLUGINS / "greeter-rust.wasm", name="greeter", grants=["config", "log"],
                  limits={"fuel": 50_000_000})
        host.call("greeter", "greet", b'{"name": "Ada"}')
        host.call("greeter", "greet", b'{"name": "Grace, at some length"}')
        burnt = dict(host.usage_items())["greeter"].fuel
    made = calls(spans, "call greeter/greet")
    assert len(made) == 2
    fuel = [s.attributes["omnicore.plugin.fuel"] for s in made if s.attributes]
    assert all(f > 0 for f in fuel) and sum(fuel) == burnt  # each call's own, not the total
    for span in made:
        assert span.attributes is not None
        assert span.attributes["omnicore.plugin.memory_bytes"] > 0
        assert span.attributes[CONFIG] == 1 and KV not in span.attributes


def test_outside_a_recorded_span_nothing_is_counted(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    telemetry.start(Settings(service_name="test", sampler="always_off"), "i", exporter)
    try:
        with PluginHost(data_dir=tmp_path) as host:
            host.load(PLUGINS / "counter-rust.wasm", name="c", grants=["kv", "config"])
            assert host.call("c", "count", b"{}") == b'{"count":1}'
        telemetry.flush()
        assert exporter.get_finished_spans() == ()
    finally:
        telemetry.reset()
    store = SQLiteStorage(tmp_path / "kv.db").kv("p")
    assert kv._State(store, KVQuota()).store is store  # off: the host calls reach the store
    telemetry.start(Settings(service_name="test"), "i", exporter)
    try:
        counted = kv._State(store, KVQuota()).store
        assert counted is not store
        counted.set("k", b"1")  # in no span: counted on nothing, and no span made
        with telemetry.span("outer") as outer:
            assert counted.incr("k", 1) == 2
            assert outer.attributes[kv.COUNTED] == 1
    finally:
        telemetry.reset()


def test_a_host_traced_then_not_spans_logs_and_counts_only_while_on(
        tmp_path: Path) -> None:
    """While on, the door's count, log_ids and traced_call are the SDK's own (no frame of the
    door's on every call); reset puts the door's back: one host, traced, then not, then traced
    again, spans its calls, puts its ids on a plugin's log lines and counts its config reads
    only while on."""
    with PluginHost(data_dir=tmp_path) as host:
        host.load(PLUGINS / "greeter-rust.wasm", name="greeter", grants=["config", "log"])
        log = host.logs("greeter")
        for on in (True, False, True):
            exporter = InMemorySpanExporter()
            if on:
                telemetry.start(Settings(service_name="test"), "i", exporter)
            try:
                host.call("greeter", "greet", b'{"name": "Ada"}')
                made = calls(exporter, "call greeter/greet")
            finally:
                if on:
                    telemetry.reset()
            line = log.lines()[-1].message
            if on:
                assert len(made) == 1 and made[0].attributes is not None
                assert made[0].attributes[CONFIG] == 1
                context = made[0].context
                assert context is not None
                assert line.endswith(f" trace_id={context.trace_id:032x} "
                                     f"span_id={context.span_id:016x}")
            else:
                assert made == [] and "trace_id=" not in line
    telemetry.count(CONFIG)  # the door's again: nothing while off
    assert telemetry.log_ids() == "" and telemetry.ON is False


def test_a_traced_call_is_one_span_around_one_run_of_the_call_path(tmp_path: Path) -> None:
    """``PluginHost.call`` makes a traced call's span itself, around ``plugins.calls.call``,
    rather than ``calls.call`` calling itself again inside its span (a Python frame more on
    every traced call, issue 62): one span a call, and the call path run once, traced or
    not."""
    from omnicore.plugins import calls as call_path

    runs: list[str] = []

    def profile(frame: Any, event: str, _arg: Any) -> None:
        if event == "call" and frame.f_code is call_path.call.__code__:
            runs.append(frame.f_code.co_name)

    with PluginHost(data_dir=tmp_path) as host:
        host.load(PLUGINS / "greeter-rust.wasm", name="greeter", grants=["config"])
        for on in (False, True):
            exporter = InMemorySpanExporter()
            if on:
                telemetry.start(Settings(service_name="test"), "i", exporter)
            runs.clear()
            sys.setprofile(profile)
            try:
                out = host.call("greeter", "greet", b'{"name": "Ada"}')
            finally:
                sys.setprofile(None)
                if on:
                    telemetry.reset()
            assert b"Ada" in out
            assert runs == ["call"], (on, runs)
            assert len(calls(exporter, "call greeter/greet")) == (1 if on else 0)
