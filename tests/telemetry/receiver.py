"""An OTLP/HTTP receiver on loopback, traces and metrics: what a collector would be, for the
tests.

It decodes what the exporters really send (protobuf ``ExportTraceServiceRequest`` and
``ExportMetricsServiceRequest``, from ``opentelemetry-proto``) into :class:`Span` and
:class:`Point` rows, and answers as a collector does.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["Point", "Receiver", "Span", "receiving"]

#: The protobuf's span kinds, as the SDK's names.
KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
         5: "consumer"}


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status: int
    raw: bytes = field(repr=False)


@dataclass(frozen=True)
class Point:
    """One data point of an exported metric: ``kind`` is ``sum``, ``gauge`` or
    ``histogram``; ``value`` a number, or for a histogram ``(count, sum, bucket_counts,
    bounds)``."""

    name: str
    kind: str
    attributes: dict[str, Any]
    value: Any
    resource: dict[str, Any]
    monotonic: bool = False
    cumulative: bool = False
    description: str = ""


class Receiver:
    """Collects every span posted to ``/v1/traces`` and every metric point posted to
    ``/v1/metrics`` (``endpoint`` is the base URL)."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.points: list[list[Point]] = []  # one list per export
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path not in ("/v1/traces", "/v1/metrics") or \
                        self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                if self.path == "/v1/traces":
                    receiver.take(body)
                    answer = ExportTraceServiceResponse().SerializeToString()
                else:
                    receiver.take_metrics(body)
                    answer = ExportMetricsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        found = []
        for rs in request.resource_spans:
            resource = {a.key: _value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    found.append(Span(
                        name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(), kind=KINDS[s.kind],
                        attributes={a.key: _value(a.value) for a in s.attributes},
                        resource=resource, status=s.status.code, raw=s.SerializeToString()))
        with self.lock:
            self.bodies.append(body)
            self.spans.extend(found)

    def take_metrics(self, body: bytes) -> None:
        request = ExportMetricsServiceRequest()
        request.ParseFromString(body)
        found = []
        for rm in request.resource_metrics:
            resource = {a.key: _value(a.value) for a in rm.resource.attributes}
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    data = getattr(m, kind)
                    for p in data.data_points:
                        attributes = {a.key: _value(a.value) for a in p.attributes}
                        if kind == "histogram":
                            value: Any = (p.count, p.sum, list(p.bucket_counts),
                                          list(p.explicit_bounds))
                        else:
                            value = getattr(p, p.WhichOneof("value"))
                        found.append(Point(
                            name=m.name, kind=kind, attributes=attributes, value=value,
                            resource=resource,
                            monotonic=bool(getattr(data, "is_monotonic", False)),
                            cumulative=getattr(data, "aggregation_temporality", 0) == 2,
                            description=m.description))
        with self.lock:
            self.points.append(found)

    def latest(self) -> list[Point]:
        """The points of the last metrics export ([] before the first)."""
        with self.lock:
            return list(self.points[-1]) if self.points else []

    def named(self, prefix: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.name.startswith(prefix)]


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
