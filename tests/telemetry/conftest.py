"""The telemetry tests' in-process tracing: ``spans``, every span the host ends, kept in
memory (OpenTelemetry SDK's own exporter), tracing on for the test and off after it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from omnicore import telemetry
from omnicore.telemetry import Settings


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.start(Settings(service_name="test"), "instance-1", exporter)
    try:
        yield exporter
    finally:
        telemetry.reset()
    assert telemetry.ON is False
