"""Traces, and metrics, over OpenTelemetry: the one door the host's call sites go through.

Off unless configured (``telemetry.*`` in omnicore.yaml, or the ``OTEL_*`` variables the
OpenTelemetry specification defines: docs/guides/telemetry.md). While off, :data:`ON` is
False, nothing here makes a span object, and ``opentelemetry`` is never imported: a hot path
checks ``telemetry.ON`` itself and takes its untraced branch. :func:`configure` turns
tracing on once per process (the sampler and the span export thread are the process's);
:func:`export_metrics` sends an app's ``/metrics`` while that app runs.

Span names and attributes follow the semantic conventions where they have one
(``http.request.method``, ``db.system``...); the rest are ``omnicore.*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

from omnicore.telemetry._settings import Settings, resolve

if TYPE_CHECKING:
    from omnicore.config.schema import TelemetryConfig

__all__ = ["ON", "Settings", "configure", "count", "db_operation", "export_metrics", "flush", "ids",
           "log_ids", "outbound_http", "reset", "resolve", "span", "start", "traced_call",
           "traceparent"]

#: Whether spans are made in this process (set once by :func:`configure`).
ON = False
#: What :func:`span` gives while off (reusable: it holds nothing).
_OFF: AbstractContextManager[None] = nullcontext()
#: ``omnicore.telemetry._sdk`` once started (a name lookup, not an import, on a hot path).
_impl: Any = None


def configure(config: TelemetryConfig | None, *, service_name: str, instance: str = "",
              environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on if ``config`` (or, where it is silent, the ``OTEL_*`` variables of
    ``environ``) asks for it; whether it is on. Once on, later calls change nothing."""
    if ON:
        return True
    settings = resolve(config, service_name=service_name, environ=environ)
    if settings is None or not settings.traces:
        return False
    start(settings, instance, environ=environ)
    return True


def export_metrics(config: TelemetryConfig | None, collect: Callable[[], Iterable[Any]], *,
                   service_name: str, instance: str = "",
                   environ: Mapping[str, str] | None = None) -> Any:
    """The app's ``/metrics`` (``collect``: its Prometheus registry's ``collect``) exported
    over OTLP every interval, if ``config`` or the ``OTEL_*`` variables ask: an object whose
    ``stop()`` exports a last time and ends the export (None while off: nothing imported)."""
    settings = resolve(config, service_name=service_name, environ=environ)
    if settings is None or not settings.metrics:
        return None
    from omnicore.telemetry import _metrics

    return _metrics.start(settings, instance, collect)


def start(settings: Settings, instance: str, exporter: Any = None,
          environ: Mapping[str, str] | None = None) -> None:
    """Tracing on with ``settings`` (``exporter``: an OpenTelemetry ``SpanExporter``, the
    tests' own, else OTLP/HTTP's). The flag is this module's alone: the SDK side never
    imports the door back."""
    global ON, _impl
    from omnicore.telemetry import _sdk

    _sdk.setup(settings, instance, exporter, environ)
    _impl = _sdk
    _bind((_sdk.count, _sdk.log_ids, _sdk.plugin_call))
    ON = True


def reset() -> None:
    """Off again, the provider shut down (its exporter thread ended): for tests."""
    global ON
    ON = False
    _bind(_OFF_FUNCTIONS)
    from omnicore.telemetry import _sdk

    _sdk.reset()


def span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: str = "internal",
         parent: str | None = None) -> AbstractContextManager[Any]:
    """A span around a ``with`` block (None while off); ``kind`` is ``internal``, ``server``,
    ``client``, ``producer`` or ``consumer``; ``parent`` a W3C ``traceparent`` to continue
    instead of the current context (a stored job's). An exception escaping the block makes it
    an error span with the exception's class as ``error.type``, never its message."""
    if not ON:
        return _OFF
    return _impl.span(name, attributes, kind, parent)  # type: ignore[no-any-return]


def count(attribute: str) -> None:
    """Add one to the integer ``attribute`` of the current span, if it is recorded: a cheap
    host call (``omnicore.plugin.host_calls.kv``, ``.config``) counted on its plugin call's
    span rather than made a span of its own. Nothing while off."""
    if ON:
        _impl.count(attribute)


def db_operation(system: str, connector: str, statement: Any) -> Any:
    """A client span for one statement or command of a database connector, named by its
    operation (``SELECT``, ``HSET``): the statement's text and values never leave."""
    return _impl.db_operation(system, connector, statement)


def outbound_http(method: str, url: str, headers: MutableMapping[str, str]
                  ) -> Any:
    """A client span for an outbound request, by host; puts its ``traceparent`` into
    ``headers``. Yields a function to record the response's status with."""
    return _impl.outbound_http(method, url, headers)


def traceparent() -> str | None:
    """The current span's W3C ``traceparent`` (None while off or outside a span)."""
    if not ON:
        return None
    return _impl.traceparent()  # type: ignore[no-any-return]


def ids() -> tuple[str, str] | None:
    """The current ``(trace_id, span_id)`` in hex (None while off or outside a span): what a
    log line carries."""
    if not ON:
        return None
    return _impl.ids()  # type: ignore[no-any-return]


def log_ids() -> str:
    """What a plugin's log line ends with inside a span: `` trace_id=… span_id=…`` (logfmt,
    as log shippers read it); empty outside one."""
    return _impl.log_ids() if ON else ""


def flush(timeout_s: float = 3.0) -> None:
    """Send the spans ended so far, waiting at most ``timeout_s`` (an app's stop: a
    collector away does not hold it); nothing while off."""
    if ON:
        _impl.flush(timeout_s)


def traced_call(body: Callable[..., bytes], entry: Any, handler: str, data: bytes,
                run: Any) -> bytes:
    """``body(entry, handler, data, run, traced=True)`` (plugins.calls.call) inside a plugin
    call's span."""
    return _impl.plugin_call(body, entry, handler, data, run)  # type: ignore[no-any-return]


#: count, log_ids and traced_call as this module defines them, for :func:`reset`.
_OFF_FUNCTIONS = (count, log_ids, traced_call)


def _bind(functions: tuple[Any, Any, Any]) -> None:
    """While on, the door's functions on a plugin call's path are the SDK's own (C where the
    extension is built): a call site's ``telemetry.count(...)`` is then one call, not a
    frame of the door's around the SDK's, on every call, log line and kv or config read.
    Their callers check ON first, as they do while off."""
    global count, log_ids, traced_call
    count, log_ids, traced_call = functions
