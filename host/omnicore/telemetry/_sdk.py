"""The OpenTelemetry SDK behind :mod:`omnicore.telemetry`: imported only once tracing is on.

One tracer provider of omnicore's own (the process's global one is left to the embedding
application), a batch processor with a bounded queue (a full queue drops spans, it never
blocks a call) and the OTLP/HTTP exporter.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from omnicore.telemetry._settings import Settings

__all__ = ["DROPS", "db_operation", "dropped", "flush", "ids", "outbound_http", "plugin_call",
           "reset", "setup", "span", "traceparent"]

_KINDS = {"internal": SpanKind.INTERNAL, "server": SpanKind.SERVER,
          "client": SpanKind.CLIENT, "producer": SpanKind.PRODUCER,
          "consumer": SpanKind.CONSUMER}
#: Connector kinds as the conventions' ``db.system`` names them.
_SYSTEMS = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql",
            "mariadb": "mariadb", "redis": "redis", "sqlite": "sqlite"}
_KEYWORD = re.compile(r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([A-Za-z]+)", re.S)
_PROPAGATOR = TraceContextTextMapPropagator()

_provider: TracerProvider | None = None
_tracer: Tracer | None = None


def _sampler(settings: Settings) -> sampling.Sampler | None:
    name, arg = settings.sampler, settings.sampler_arg
    if name is None:
        return None  # the SDK reads OTEL_TRACES_SAMPLER(_ARG)
    ratio = 1.0 if arg is None else arg
    made: dict[str, sampling.Sampler] = {
        "always_on": sampling.ALWAYS_ON, "always_off": sampling.ALWAYS_OFF,
        "traceidratio": sampling.TraceIdRatioBased(ratio),
        "parentbased_always_on": sampling.ParentBased(sampling.ALWAYS_ON),
        "parentbased_always_off": sampling.ParentBased(sampling.ALWAYS_OFF),
        "parentbased_traceidratio": sampling.ParentBased(sampling.TraceIdRatioBased(ratio)),
    }
    return made[name]


def setup(settings: Settings, instance: str, exporter: SpanExporter | None = None) -> None:
    """Make the provider, processor and exporter (``exporter``: another than OTLP/HTTP's),
    then set :data:`omnicore.telemetry.ON`."""
    global _provider, _tracer
    attributes: dict[str, Any] = {"service.name": settings.service_name,
                                  **settings.resource_attributes}
    if instance:
        attributes.setdefault("service.instance.id", instance)
    provider = TracerProvider(resource=Resource.create(attributes), sampler=_sampler(settings))
    if exporter is None:
        exporter = OTLPSpanExporter(endpoint=settings.traces_endpoint,
                                    headers=settings.headers or None)
    size = settings.max_queue_size  # None: OTEL_BSP_MAX_QUEUE_SIZE, or the SDK's 2048
    provider.add_span_processor(BatchSpanProcessor(
        exporter, max_queue_size=size,
        max_export_batch_size=None if size is None else min(size, 512)))
    _provider, _tracer = provider, provider.get_tracer("omnicore")


def reset() -> None:
    """The provider shut down (its exporter thread ended): for tests, through
    :func:`omnicore.telemetry.reset`."""
    global _provider, _tracer
    if _provider is not None:
        _provider.shutdown()
    _provider = _tracer = None


class _Drops(logging.Filter):
    """Counts the spans the full queue dropped; lets one warning a minute through (the SDK
    warns once per span, which would flood the host's log when the collector lags)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self._said = -math.inf

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith("Queue full"):
            return True
        self.count += 1
        now = time.monotonic()
        if now - self._said < 60:
            return False
        self._said = now
        record.msg, record.args = ("the span queue is full (the collector is slow or away): "
                                   "%d span(s) dropped so far (telemetry.max_queue_size)",
                                   (self.count,))
        return True


DROPS = _Drops()
# First: the SDK's own filter drops repeated records before a filter added after it sees them.
logging.getLogger("opentelemetry.sdk._shared_internal").filters.insert(0, DROPS)


def dropped() -> int:
    """Spans dropped by the full queue since tracing was turned on."""
    return DROPS.count


def _parent(traceparent: str | None) -> Context | None:
    return None if not traceparent else _PROPAGATOR.extract({"traceparent": traceparent})


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None, kind: str,
         parent: str | None = None,
         carrier: Mapping[str, str] | None = None) -> Iterator[Span]:
    """A span made current for the block; an exception escaping it is recorded."""
    assert _tracer is not None
    context = _PROPAGATOR.extract(carrier) if carrier else _parent(parent)
    with _tracer.start_as_current_span(name, context=context, kind=_KINDS[kind],
                                       attributes=attributes) as made:
        yield made


def plugin_call(body: Callable[..., bytes], entry: Any, handler: str, data: bytes,
                run: Any) -> bytes:
    """A plugin call's span: plugin, handler, version digest, outcome, breaker, fuel and
    memory (the runtime's, when it measures them)."""
    from omnicore.errors import PluginError

    assert _tracer is not None
    version = entry.version
    attributes: dict[str, Any] = {"omnicore.plugin.name": entry.name,
                                  "omnicore.plugin.handler": handler,
                                  "omnicore.plugin.input_bytes": len(data)}
    usage = None
    if version is not None:
        attributes["omnicore.plugin.digest"] = f"sha256:{version.module.sha256}"
        attributes["omnicore.plugin.version"] = str(
            version.module.manifest.get("version", "0.0.0"))
        usage = getattr(version.runtime, "usage", None)
    with _tracer.start_as_current_span(f"call {entry.name}/{handler}", kind=SpanKind.INTERNAL,
                                       attributes=attributes, record_exception=False,
                                       set_status_on_exception=False) as made:
        fuel = usage().fuel if usage is not None else None
        ended: dict[str, Any] = {}
        try:
            out = body(entry, handler, data, run, traced=True)
        except BaseException as exc:
            ended["omnicore.plugin.outcome"] = "error" if isinstance(exc, PluginError) \
                else "host-error"
            ended["error.type"] = type(exc).__name__
            # The class only: a guest's message may quote its input.
            made.set_status(StatusCode.ERROR, type(exc).__name__)
            raise
        else:
            ended["omnicore.plugin.outcome"] = "ok"
            ended["omnicore.plugin.output_bytes"] = len(out)
            return out
        finally:
            ended["omnicore.plugin.breaker"] = str(entry.breaker.state)
            if usage is not None:
                after = usage()
                ended["omnicore.plugin.memory_bytes"] = after.memory_bytes
                if fuel is not None and after.fuel is not None:
                    ended["omnicore.plugin.fuel"] = after.fuel - fuel
            made.set_attributes(ended)


def operation_of(statement: Any) -> str:
    """A statement's first keyword (``SELECT``), or a command's name: never more."""
    if not isinstance(statement, str):
        return "UNKNOWN"
    found = _KEYWORD.match(statement)
    return found.group(1).upper()[:32] if found else "UNKNOWN"


@contextmanager
def db_operation(system: str, connector: str, statement: Any) -> Iterator[Span]:
    operation = operation_of(statement)
    db = _SYSTEMS.get(system, system)
    with span(f"{operation} {connector}", {"db.system": db, "db.system.name": db,
                                           "db.operation.name": operation,
                                           "omnicore.connector": connector},
              "client") as made:
        yield made


@contextmanager
def outbound_http(method: str, url: str, headers: MutableMapping[str, str]
                  ) -> Iterator[Callable[[int], None]]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    attributes: dict[str, Any] = {"http.request.method": method, "server.address": host}
    if parts.port is not None:
        attributes["server.port"] = parts.port
    with span(f"{method} {host}", attributes, "client") as made:
        for name in [k for k in headers if k.lower() in ("traceparent", "tracestate")]:
            del headers[name]  # the host's span is the request's parent, not the guest's say
        _PROPAGATOR.inject(headers)

        def status(code: int) -> None:
            made.set_attribute("http.response.status_code", code)
            if code >= 500:
                made.set_status(StatusCode.ERROR)

        yield status


def traceparent() -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def ids() -> tuple[str, str] | None:
    context = get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def flush(timeout_s: float) -> None:
    if _provider is not None:
        _provider.force_flush(int(timeout_s * 1000))
