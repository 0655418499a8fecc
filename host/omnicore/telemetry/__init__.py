"""Traces over OpenTelemetry: the one door the host's call sites go through.

Off unless configured (``telemetry.*`` in omnicore.yaml, or the ``OTEL_*`` variables the
OpenTelemetry specification defines: docs/guides/telemetry.md). While off, :data:`ON` is
False, nothing here makes a span object, and ``opentelemetry`` is never imported: a hot path
checks ``telemetry.ON`` itself and takes its untraced branch. :func:`configure` turns it on
once per process (the SDK's tracer provider and its exporter thread are the process's).

Span names and attributes follow the semantic conventions where they have one
(``http.request.method``, ``db.system``...); the rest are ``omnicore.*``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from omnicore.telemetry._settings import Settings, resolve

if TYPE_CHECKING:
    from omnicore.config.schema import TelemetryConfig

__all__ = ["ON", "Settings", "configure", "db_operation", "flush", "ids", "log_ids",
           "outbound_http", "reset", "resolve", "span", "start", "traced_call", "traceparent"]

#: Whether spans are made in this process (set once by :func:`configure`).
ON = False


def configure(config: TelemetryConfig | None, *, service_name: str, instance: str = "",
              environ: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on if ``config`` (or, where it is silent, the ``OTEL_*`` variables of
    ``environ``) asks for it; whether it is on. Once on, later calls change nothing."""
    if ON:
        return True
    settings = resolve(config, service_name=service_name, environ=environ)
    if settings is None:
        return False
    start(settings, instance)
    return True


def start(settings: Settings, instance: str, exporter: Any = None) -> None:
    """Tracing on with ``settings`` (``exporter``: the tests' own, else OTLP/HTTP). The flag
    is this module's alone: the SDK side never imports the door back."""
    global ON
    from omnicore.telemetry import _sdk

    _sdk.setup(settings, instance, exporter)
    ON = True


def reset() -> None:
    """Off again, the provider shut down (its exporter thread ended): for tests."""
    global ON
    ON = False
    from omnicore.telemetry import _sdk

    _sdk.reset()


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, *, kind: str = "internal",
         parent: str | None = None) -> Iterator[Any]:
    """A span around the block (None while off); ``kind`` is ``internal``, ``server``,
    ``client``, ``producer`` or ``consumer``; ``parent`` a W3C ``traceparent`` to continue
    instead of the current context (a stored job's)."""
    if not ON:
        yield None
        return
    from omnicore.telemetry import _sdk

    with _sdk.span(name, attributes, kind, parent) as made:
        yield made


def db_operation(system: str, connector: str, statement: Any) -> Any:
    """A client span for one statement or command of a database connector, named by its
    operation (``SELECT``, ``HSET``): the statement's text and values never leave."""
    from omnicore.telemetry import _sdk

    return _sdk.db_operation(system, connector, statement)


def outbound_http(method: str, url: str, headers: MutableMapping[str, str]
                  ) -> Any:
    """A client span for an outbound request, by host; puts its ``traceparent`` into
    ``headers``. Yields a function to record the response's status with."""
    from omnicore.telemetry import _sdk

    return _sdk.outbound_http(method, url, headers)


def traceparent() -> str | None:
    """The current span's W3C ``traceparent`` (None while off or outside a span)."""
    if not ON:
        return None
    from omnicore.telemetry import _sdk

    return _sdk.traceparent()


def ids() -> tuple[str, str] | None:
    """The current ``(trace_id, span_id)`` in hex (None while off or outside a span): what a
    log line carries."""
    if not ON:
        return None
    from omnicore.telemetry import _sdk

    return _sdk.ids()


def log_ids() -> str:
    """What a plugin's log line ends with inside a span: `` trace_id=… span_id=…`` (logfmt,
    as log shippers read it); empty outside one."""
    found = ids()
    return "" if found is None else f" trace_id={found[0]} span_id={found[1]}"


def flush(timeout_s: float = 5.0) -> None:
    """Send the spans ended so far (an app's stop); nothing while off."""
    if ON:
        from omnicore.telemetry import _sdk

        _sdk.flush(timeout_s)


def traced_call(body: Callable[..., bytes], entry: Any, handler: str, data: bytes,
                run: Any) -> bytes:
    """``body(entry, handler, data, run, traced=True)`` (plugins.calls.call) inside a plugin
    call's span."""
    from omnicore.telemetry import _sdk

    return _sdk.plugin_call(body, entry, handler, data, run)
