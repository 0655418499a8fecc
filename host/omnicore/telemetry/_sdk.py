"""The tracer behind :mod:`omnicore.telemetry`: imported only once tracing is on.

Spans are omnicore's own small records (:mod:`._spans`: the SDK's span objects cost a REST
invoke half its CPU again); OpenTelemetry's packages do the rest: the resource
(``Resource.create``: ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``, the SDK's
attributes) and the OTLP/HTTP exporter (``OTEL_EXPORTER_OTLP_*``: endpoint, headers,
compression, TLS, timeout, retries), which is handed the request's bytes as :mod:`._otlp`
writes them. Any other exporter (a test's in-memory one, an exporter whose internals differ)
gets the SDK's ``ReadableSpan`` objects through its public ``export``, made on the export
thread. The sampler and the batch processor read the specification's variables
(``OTEL_TRACES_SAMPLER(_ARG)``, ``OTEL_BSP_*``) where ``telemetry.*`` is silent.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import context as _context
from opentelemetry import trace as _api
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter

from omnicore.errors import PluginError
from omnicore.telemetry import _http, _otlp
from omnicore.telemetry._settings import Settings
from omnicore.telemetry._spans import (
    CLIENT,
    CONSUMER,
    CURRENT,
    ERROR,
    INTERNAL,
    PRODUCER,
    SERVER,
    UNSET,
    Batcher,
    Parent,
    Record,
    Sampler,
    Span,
    _now,
    ended,
    new_context,
    new_span,
    parse_traceparent,
)

__all__ = ["count", "db_operation", "dropped", "flush", "ids", "log_ids", "outbound_http",
           "plugin_call", "queue", "reset", "setup", "span", "span_counts", "traceparent"]

log = logging.getLogger("omnicore.telemetry")

KINDS = {"internal": INTERNAL, "server": SERVER, "client": CLIENT, "producer": PRODUCER,
         "consumer": CONSUMER}
#: Connector kinds as the conventions' ``db.system`` names them.
_SYSTEMS = {"postgres": "postgresql", "postgresql": "postgresql", "mysql": "mysql",
            "mariadb": "mariadb", "redis": "redis", "sqlite": "sqlite"}
_KEYWORD = re.compile(r"\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*([A-Za-z]+)", re.S)
_SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on",
             "parentbased_always_off", "parentbased_traceidratio")
#: How long a plugin's instances' memory, read for a span, is used again (reading it walks
#: the plugin's instances).
MEMORY_TTL_S = 1.0

_sampler = Sampler(1.0, True)
_batcher: Batcher | None = None
_exporter: SpanExporter | None = None


# -- set-up -------------------------------------------------------------------------------

def _env_number(env: Mapping[str, str], name: str, default: float, low: float = 0,
                high: float = float("inf")) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        log.warning("%s=%r is not a number in [%g, %g]: %g is used", name, raw, low, high,
                    default)
        return default
    return value


def sampler_of(settings: Settings, env: Mapping[str, str]) -> Sampler:
    """``telemetry.sampler(_arg)``, else ``OTEL_TRACES_SAMPLER(_ARG)``, else the
    specification's default, ``parentbased_always_on``."""
    name, arg = settings.sampler, settings.sampler_arg
    if name is None:
        name = env.get("OTEL_TRACES_SAMPLER", "").strip().lower() or "parentbased_always_on"
        if name not in _SAMPLERS:
            log.warning("OTEL_TRACES_SAMPLER=%s is not one omnicore knows (%s): "
                        "parentbased_always_on is used", name, ", ".join(_SAMPLERS))
            name = "parentbased_always_on"
    if arg is None and name.endswith("traceidratio"):
        arg = _env_number(env, "OTEL_TRACES_SAMPLER_ARG", 1.0, 0.0, 1.0)
    return Sampler.named(name, arg)


def setup(settings: Settings, instance: str, exporter: SpanExporter | None = None,
          environ: Mapping[str, str] | None = None) -> None:
    """The resource, sampler, exporter and export thread (``exporter``: another than
    OTLP/HTTP's), before :data:`omnicore.telemetry.ON` is set."""
    global _sampler, _batcher, _exporter, queue
    env = os.environ if environ is None else environ
    attributes: dict[str, Any] = {"service.name": settings.service_name,
                                  **settings.resource_attributes}
    if instance:
        attributes.setdefault("service.instance.id", instance)
    resource = Resource.create(attributes)
    _sampler = sampler_of(settings, env)
    if exporter is None:
        exporter = _otlp_exporter(settings)
    from omnicore import __version__

    size = settings.max_queue_size or int(_env_number(env, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1))
    batch = min(size, int(_env_number(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1)))
    delay_s = _env_number(env, "OTEL_BSP_SCHEDULE_DELAY", 5000) / 1000
    _exporter = exporter
    _http.report_client_failures_ourselves()
    export, encoded = _export_of(exporter, resource, "omnicore", __version__)
    _batcher = Batcher(export, max_queue=size, batch=batch, delay_s=delay_s, encode=encoded)
    queue = _batcher.sink


def _otlp_exporter(settings: Settings) -> OTLPSpanExporter:
    """The SDK's OTLP/HTTP span exporter, posting through :mod:`._http`'s kept connection
    where nothing asks for the SDK's ``requests`` transport (a proxy, a credential
    provider)."""
    exporter = OTLPSpanExporter(endpoint=settings.traces_endpoint,
                                headers=settings.headers or None)
    endpoint = getattr(exporter, "_endpoint", None)
    transport = _http.lean_transport(endpoint) if isinstance(endpoint, str) else None
    if transport is not None:
        try:
            lean = OTLPSpanExporter(endpoint=endpoint, headers=settings.headers or None,
                                    _transport=transport)
        except TypeError:  # an SDK without the transport parameter: its own transport
            return exporter
        made: SpanExporter = exporter
        made.shutdown()  # (closes the requests session it made)
        return lean
    return exporter


def _export_of(exporter: SpanExporter, resource: Resource, name: str,
               version: str) -> tuple[Callable[[list[Any]], object], bool]:
    """How a batch reaches ``exporter``, and whether its spans may be queued as their bytes:
    as OTLP's bytes (:mod:`._otlp`'s C encoder) where it is the SDK's OTLP/HTTP exporter with
    the client this was written against (True), else (and where the encoder was not built) as
    ``ReadableSpan``s (False)."""
    client = getattr(exporter, "_client", None)
    send = getattr(client, "export", None)
    if type(exporter) is OTLPSpanExporter and callable(send) and _otlp.AVAILABLE:
        encoded_resource, scope = _otlp.scope(resource.attributes, name, version)

        def post(spans: list[Any]) -> object:
            return send(_otlp.request(encoded_resource, scope, spans))

        return post, True
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    instrumentation = InstrumentationScope(name, version)
    return lambda spans: exporter.export(readable(spans, resource, instrumentation)), False


def readable(spans: Sequence[Record], resource: Resource, scope: Any) -> list[Any]:
    """``spans`` (ended spans' records) as the SDK's ``ReadableSpan``s."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.span import TraceState

    kinds = {INTERNAL: SpanKind.INTERNAL, SERVER: SpanKind.SERVER, CLIENT: SpanKind.CLIENT,
             PRODUCER: SpanKind.PRODUCER, CONSUMER: SpanKind.CONSUMER}
    out = []
    for (trace_id, span_id, parent_id, name, kind, start_ns, end_ns, own, shared, status,
         description, flags, remote, state) in spans:
        trace_state = TraceState.from_header([state]) if state else None
        trace_flags = TraceFlags(flags)
        parent = SpanContext(trace_id, parent_id, remote, trace_flags, trace_state) \
            if parent_id else None
        merged = {**shared, **own} if shared else own
        out.append(ReadableSpan(
            name=name, context=SpanContext(trace_id, span_id, False, trace_flags, trace_state),
            parent=parent, resource=resource, kind=kinds[kind],
            attributes={k: v for k, v in merged.items() if v is not None},
            instrumentation_scope=scope,
            status=Status(StatusCode.ERROR, description) if status == ERROR else Status(),
            start_time=start_ns, end_time=end_ns))
    return out


def reset() -> None:
    """The export thread ended (what it held sent) and the exporter shut: for tests, through
    :func:`omnicore.telemetry.reset`."""
    global _batcher, _exporter, queue
    queue = _nowhere
    if _batcher is not None:
        _batcher.shutdown()
    if _exporter is not None:
        _exporter.shutdown()
    _batcher = _exporter = None


def dropped() -> int:
    """Spans dropped by the full queue since tracing was turned on."""
    return 0 if _batcher is None else _batcher.dropped


def span_counts() -> tuple[int, int]:
    """Spans handed to the exporter, and dropped, since tracing was turned on."""
    return (0, 0) if _batcher is None else (_batcher.exported, _batcher.dropped)


def flush(timeout_s: float) -> None:
    """Export the spans ended so far, waiting for them at most ``timeout_s``: the export
    thread sends them, and goes on with what is left past it (a collector away is retried
    for up to ``OTEL_EXPORTER_OTLP_TIMEOUT``, which an app's stop does not wait out)."""
    if _batcher is not None:
        _batcher.flush(timeout_s)


# -- spans --------------------------------------------------------------------------------

#: The OpenTelemetry API's own context variable (its default runtime context's): while it
#: holds an empty context, as it does unless the embedder made a span current, there is no
#: outer span, known without the API's lookups. None: another runtime context, asked.
_OTEL_CONTEXT = getattr(getattr(_context, "_RUNTIME_CONTEXT", None), "_current_context", None)


def _outer() -> Parent | None:
    """The embedding application's current OpenTelemetry span, if any: a root span of
    omnicore's is its child."""
    if _OTEL_CONTEXT is not None and not _OTEL_CONTEXT.get():
        return None
    context = _api.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return Parent(context.trace_id, context.span_id, int(context.trace_flags),
                  context.trace_state.to_header() or None, context.is_remote)


def start(name: str, attributes: dict[str, Any] | None, kind: int,
          parent: Span | Parent | None = None) -> Span:
    """A span, the child of ``parent`` or of the current span (not made current)."""
    if parent is None:
        parent = CURRENT.get() or _outer()
    return new_span(name, kind, attributes, parent, _sampler)


class Active:
    """A span current for a ``with`` block, ended (and queued, if sampled) at its end; an
    exception escaping the block sets its status to error with the exception's class as
    ``error.type`` (never its message, which may quote a guest's input)."""

    __slots__ = ("span", "token")

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> Span:
        self.token = CURRENT.set(self.span)
        return self.span

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        try:
            CURRENT.reset(self.token)
        except ValueError:  # ended in another context than it began in: left as it is
            pass
        s = self.span
        if kind is not None and s.status != ERROR and kind is not GeneratorExit:
            s.set_error(kind.__name__, kind.__name__)
        s.end_ns = time.time_ns()
        if s.flags & 0x01 and _batcher is not None:
            _batcher.add(s)


def end(s: Span) -> None:
    """End a span made with :func:`start`."""
    s.end_ns = time.time_ns()
    if s.flags & 0x01 and _batcher is not None:
        _batcher.add(s)


def _nowhere(r: Record) -> None:
    """No export queue (tracing reset): the record is let go."""


#: Queue an ended, sampled span's record (one made without a :class:`Span`): the export
#: queue's :attr:`~._spans.Batcher.sink` once set up (a C call where the extension is built:
#: no Python frame of its own on every request and plugin call), else nothing.
queue: Callable[[Record], None] = _nowhere


#: A server span's name and shared attributes by (method, scheme, route, status).
_served: dict[tuple[str, str, str | None, int], tuple[str, dict[str, Any]]] = {}


def served(method: str, scheme: str, route: str | None, status: int
           ) -> tuple[str, dict[str, Any]]:
    """A request span's name (``POST /api/v1/plugins/{name}/invoke``) and the attributes
    every request of that route and status carries, made once (bounded: a client picks the
    method)."""
    key = (method, scheme, route, status)
    found = _served.get(key)
    if found is None:
        shared: dict[str, Any] = {"http.request.method": method, "url.scheme": scheme}
        if route is not None:
            shared["http.route"] = route
        if status:
            shared["http.response.status_code"] = status
        found = (method if route is None else f"{method} {route}", shared)
        if len(_served) >= _CALLS_MAX:
            _served.clear()
        _served[key] = found
    return found


def span(name: str, attributes: Mapping[str, Any] | None, kind: str,
         parent: str | None = None) -> Active:
    """A span made current for the block; ``parent``: a W3C ``traceparent`` to continue."""
    return Active(start(name, None if attributes is None else dict(attributes), KINDS[kind],
                        parse_traceparent(parent) if parent else None))


_monotonic = time.monotonic
#: How many handlers' span names a version keeps (handler names come from callers: bounded).
_CALLS_MAX = 4096


def _call_of(name: str, version: Any, handler: str) -> tuple[str, dict[str, Any]]:
    """A call span's name and shared attributes (its plugin, handler, digest and version):
    made once, kept by the version (``Version.spans``) for every span of its calls."""
    found = None if version is None else version.spans.get(handler)
    if found is None:
        shared = {"omnicore.plugin.name": name, "omnicore.plugin.handler": handler}
        module = None if version is None else version.module
        if module is not None:
            shared["omnicore.plugin.digest"] = "sha256:" + module.sha256
            shared["omnicore.plugin.version"] = str(module.manifest.get("version", "0.0.0"))
        found = (f"call {name}/{handler}", shared)
        if version is not None:
            if len(version.spans) >= _CALLS_MAX:
                version.spans.clear()
            version.spans[handler] = found
    return found


def plugin_call(body: Callable[..., bytes], entry: Any, handler: str, data: bytes,
                run: Any) -> bytes:
    """A plugin call's span: plugin, handler, version digest (shared by its calls' spans),
    outcome, breaker, fuel (a metered plugin's) and memory (its instances', read at most once
    a second).

    Made for every call, so kept lean: what is current while it runs is its context alone
    (a :class:`Parent` holding its own attributes, for ``count``), its record made from
    locals once it ends, here (a function more for its end, of a dozen arguments, cost a
    tenth of the span)."""
    parent = CURRENT.get()
    if parent is None and (_OTEL_CONTEXT is None or _OTEL_CONTEXT.get()):
        parent = _outer()
    context = new_context(parent, _sampler)
    if not context.flags:  # sampled out: its context alone, for what the call sends on
        token = CURRENT.set(context)
        try:
            return body(entry, handler, data, run, traced=True)
        finally:
            CURRENT.reset(token)
    start_ns = _now()
    attributes: dict[str, Any] = {"omnicore.plugin.input_bytes": len(data)}
    context.attributes = attributes
    version = entry.version
    runtime = usage = fuel = None
    if version is not None:
        runtime = version.runtime
        usage = getattr(runtime, "usage", None)  # (a component's runtime has none)
        if usage is not None and getattr(runtime, "fuel_enabled", False):
            fuel = usage().fuel
    token = CURRENT.set(context)  # (after what can fail before the call: reset below)
    error = None
    try:
        out = body(entry, handler, data, run, traced=True)
        attributes["omnicore.plugin.outcome"] = "ok"
        attributes["omnicore.plugin.output_bytes"] = len(out)
        return out
    except BaseException as exc:
        error = type(exc).__name__
        attributes["omnicore.plugin.outcome"] = "error" if isinstance(exc, PluginError) \
            else "host-error"
        attributes["error.type"] = error
        raise
    finally:
        CURRENT.reset(token)
        attributes["omnicore.plugin.breaker"] = entry.breaker.state
        if usage is not None:
            try:
                if fuel is not None:
                    after = usage()
                    attributes["omnicore.plugin.memory_bytes"] = after.memory_bytes
                    if after.fuel is not None:
                        attributes["omnicore.plugin.fuel"] = after.fuel - fuel
                else:
                    attributes["omnicore.plugin.memory_bytes"] = _memory_of(version, usage)
            except Exception:  # a runtime closed meanwhile: the span goes without
                pass
        name, shared = _call_of(entry.name, version, handler)
        queue(ended(context, parent, name, INTERNAL, start_ns, attributes, shared,
                    UNSET if error is None else ERROR, error))


#: plugin_call as the Python it is written in, where the C twin is used (what
#: tests/telemetry/test_plugin_span.py holds the C one to).
PYTHON_PLUGIN_CALL = plugin_call

if not TYPE_CHECKING:  # (typed as the Python one: the same names read, the same span made)
    try:
        from omnicore.telemetry._otlpenc import PluginCalls

        # Its frame, its attributes' stores and its reads of the call's version, runtime and
        # breaker took some 1.8 us a call in Python, on the worker that runs the call, where
        # a REST invoke pays for work some 2.5 times over (the loop and the worker hand the
        # GIL to and fro on every call: docs/reference/performance.md). It reads the names
        # it uses from this module's globals on every call, as the Python one does.
        plugin_call = PluginCalls(globals())
    except ImportError:  # not built (no compiler): the Python one above
        pass


def _memory_of(version: Any, usage: Callable[[], Any]) -> int:
    """Its instances' memory, read again after :data:`MEMORY_TTL_S` (reading it walks them),
    the last reading kept by the version (``Version.memory_read``)."""
    now = _monotonic()
    seen: tuple[float, int] | None = version.memory_read
    if seen is None or now - seen[0] >= MEMORY_TTL_S:
        seen = version.memory_read = (now, int(usage().memory_bytes))
    return seen[1]


def count(attribute: str) -> None:
    current = CURRENT.get()
    if current is not None and current.flags & 0x01:
        attributes = current.attributes  # (a Span's, a plugin call's; None: a context alone)
        if attributes is not None:
            attributes[attribute] = attributes.get(attribute, 0) + 1


def operation_of(statement: Any) -> str:
    """A statement's first keyword (``SELECT``), or a command's name: never more."""
    if not isinstance(statement, str):
        return "UNKNOWN"
    found = _KEYWORD.match(statement)
    return found.group(1).upper()[:32] if found else "UNKNOWN"


def db_operation(system: str, connector: str, statement: Any) -> Active:
    operation = operation_of(statement)
    db = _SYSTEMS.get(system, system)
    return Active(start(f"{operation} {connector}", {
        "db.system": db, "db.system.name": db, "db.operation.name": operation,
        "omnicore.connector": connector}, CLIENT))


@contextmanager
def outbound_http(method: str, url: str, headers: MutableMapping[str, str]
                  ) -> Iterator[Callable[[int], None]]:
    parts = urlsplit(url)
    host = parts.hostname or ""
    attributes: dict[str, Any] = {"http.request.method": method, "server.address": host}
    if parts.port is not None:
        attributes["server.port"] = parts.port
    with Active(start(f"{method} {host}", attributes, CLIENT)) as made:
        for name in [k for k in headers if k.lower() in ("traceparent", "tracestate")]:
            del headers[name]  # the host's span is the request's parent, not the guest's say
        headers["traceparent"] = made.traceparent()
        if made.state:
            headers["tracestate"] = made.state

        def status(code: int) -> None:
            made.set_attribute("http.response.status_code", code)
            if code >= 500:
                made.status = ERROR

        yield status


def traceparent() -> str | None:
    current = CURRENT.get()
    if current is None:
        return None
    return (f"00-{current.trace_id.to_bytes(16, 'big').hex()}-"
            f"{current.span_id.to_bytes(8, 'big').hex()}-{current.flags:02x}")


def log_ids() -> str:
    current = CURRENT.get()
    if current is None:
        return ""
    # (bytes' hex: a third of what a format specification costs, the same digits)
    return (" trace_id=" + current.trace_id.to_bytes(16, "big").hex() + " span_id="
            + current.span_id.to_bytes(8, "big").hex())


def ids() -> tuple[str, str] | None:
    current = CURRENT.get()
    if current is None:
        return None
    return current.trace_id.to_bytes(16, "big").hex(), current.span_id.to_bytes(8, "big").hex()


#: count and log_ids as the Python they are written in, where the C twins are used (what
#: tests/telemetry/test_call_span_twins.py holds them to).
PYTHON_TWINS = {"count": count, "log_ids": log_ids}

if not TYPE_CHECKING:  # (typed as the Python ones)
    try:
        from omnicore.telemetry._otlpenc import count as _count_in
        from omnicore.telemetry._otlpenc import log_ids as _log_ids_in

        # Both run on a plugin call's worker: a log line's ids on every line a plugin writes
        # (two frames, two int-to-bytes and two hex strings in Python), a count on every kv
        # and config call. Bound to CURRENT here, read on every call.
        count = partial(_count_in, CURRENT)
        log_ids = partial(_log_ids_in, CURRENT)
    except ImportError:  # not built (no compiler): the Python ones above
        pass
