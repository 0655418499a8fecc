"""The telemetry tests' in-process tracing: ``spans``, every span the host ends, kept in
memory (OpenTelemetry SDK's own exporter), tracing on for the test and off after it;
``queued``, the records of spans ended (a plugin call's, a request's) as the export queue
would take them, kept in a list instead; ``peer``, a collector on loopback answering with
the bytes a test gives it (:mod:`tests.telemetry.wire`), and ``transport``, the OTLP/HTTP
transport, closed after the test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from omnicore import telemetry
from omnicore.telemetry import Settings, _http, _sdk
from omnicore.telemetry._spans import CURRENT
from tests.telemetry.wire import Answer, Peer


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.start(Settings(service_name="test"), "instance-1", exporter)
    try:
        yield exporter
    finally:
        telemetry.reset()
    assert telemetry.ON is False


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    telemetry.start(Settings(service_name="test"), "i", InMemorySpanExporter())
    got: list[Any] = []
    monkeypatch.setattr(_sdk, "queue", got.append)
    try:
        yield got
    finally:
        telemetry.reset()
        # (a failed case's span left current would be every later case's parent)
        CURRENT.set(None)


@pytest.fixture
def peer() -> Iterator[Callable[[list[Answer]], Peer]]:
    made: list[Peer] = []

    def make(answers: list[Answer]) -> Peer:
        made.append(Peer(answers))
        return made[-1]

    yield make
    for p in made:
        p.stop()


@pytest.fixture
def transport() -> Iterator[_http.ClientTransport]:
    made = _http.ClientTransport()
    yield made
    made.close()
