"""Spans into OTLP's protobuf bytes (``ExportTraceServiceRequest``, opentelemetry-proto's
``trace.proto``), written directly by the C extension ``omnicore.telemetry._otlpenc``
(_otlpenc.c, built by setup.py): the wire format of the few messages a span needs, the
resource and scope encoded once for the process.

The SDK's encoder builds a protobuf message tree per span, then serializes it: about 40 µs a
span, on the export thread but in the host's process and under its GIL; omnicore's encoder in
Python took some 24 thousand instructions a span, the extension a few hundred. It writes the
same bytes (tests/telemetry/test_otlp.py decodes both and compares them). Without a compiler
the extension is not built (:data:`AVAILABLE` False): spans then go to the SDK's exporter as
its own ``ReadableSpan`` objects, encoded by the SDK (``_sdk._export_of``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from typing import Any

from omnicore.telemetry._spans import Record

__all__ = ["AVAILABLE", "attributes", "request", "scope"]

_otlpenc: Any
try:
    _otlpenc = importlib.import_module("omnicore.telemetry._otlpenc")
except ImportError:  # not built (no compiler): the SDK's encoder instead
    _otlpenc = None

AVAILABLE = _otlpenc is not None


def attributes(tag: bytes, items: Mapping[str, Any]) -> bytes:
    """``items`` as the repeated ``KeyValue`` field ``tag`` (None values left out)."""
    assert _otlpenc is not None
    encoded: bytes = _otlpenc.attributes(tag[0], items)
    return encoded


def _field(tag: bytes, payload: bytes) -> bytes:
    n, length = len(payload), bytearray()
    while n >= 0x80:
        length.append((n & 0x7F) | 0x80)
        n >>= 7
    length.append(n)
    return tag + bytes(length) + payload


def scope(resource: Mapping[str, Any], name: str, version: str | None) -> tuple[bytes, bytes]:
    """The encoded ``Resource`` (as ResourceSpans' field 1) and ``InstrumentationScope`` (as
    ScopeSpans' field 1): the same for every span of the process."""
    scope_fields = _field(b"\x0a", name.encode("utf-8", "replace"))
    if version:
        scope_fields += _field(b"\x12", version.encode("utf-8", "replace"))
    return _field(b"\x0a", attributes(b"\x0a", resource)), _field(b"\x0a", scope_fields)


def request(resource: bytes, scope_bytes: bytes, spans: Iterable[Record | bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` of ``spans`` (ended spans' records, or the bytes
    the export queue's sink made of them), all of one resource and scope."""
    assert _otlpenc is not None
    encoded: bytes = _otlpenc.request(resource, scope_bytes, spans)
    return encoded
