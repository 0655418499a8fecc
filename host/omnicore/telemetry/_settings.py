"""Whether telemetry is on, and how: ``telemetry.*`` over the ``OTEL_*`` variables.

The file's keys win where they are set (as code-given options win over the environment in
every OpenTelemetry SDK); what they leave unset is read from ``OTEL_*``
(``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_METRIC_EXPORT_INTERVAL``...). ``OTEL_SDK_DISABLED=true`` turns it all off whatever the
file says; ``OTEL_TRACES_EXPORTER=none`` the traces, ``OTEL_METRICS_EXPORTER=none`` the
metrics. Standard library only: the host asks this on every start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnicore.config.schema import TelemetryConfig

__all__ = ["Settings", "resolve"]

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
              "OTEL_EXPORTER_OTLP_ENDPOINT")
#: The specification's default: a minute between two exports of the metrics.
METRICS_INTERVAL_S = 60.0


@dataclass(frozen=True)
class Settings:
    """What :func:`omnicore.telemetry.configure` sets up. ``None``: the SDK's own default
    (from its ``OTEL_*`` variable, or the specification's)."""

    service_name: str
    #: The OTLP/HTTP traces URL (``…/v1/traces``).
    traces_endpoint: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    sampler: str | None = None
    sampler_arg: float | None = None
    resource_attributes: dict[str, str] = field(default_factory=dict)
    max_queue_size: int | None = None
    #: Spans made and exported (else only the metrics).
    traces: bool = True
    #: The ``/metrics`` metrics exported too, every ``metrics_interval_s``.
    metrics: bool = True
    #: The OTLP/HTTP metrics URL (``…/v1/metrics``).
    metrics_endpoint: str | None = None
    metrics_interval_s: float = METRICS_INTERVAL_S


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _none(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() == "none"


def _interval(env: Mapping[str, str]) -> float:
    raw = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    try:
        ms = float(raw)
    except ValueError:
        return METRICS_INTERVAL_S
    return ms / 1000 if ms > 0 else METRICS_INTERVAL_S


def _signal(endpoint: str | None, path: str) -> str | None:
    if endpoint is None:
        return None
    base = endpoint.rstrip("/")
    for known in ("/v1/traces", "/v1/metrics"):
        if base.endswith(known):
            base = base[:-len(known)]
    return base + path


def resolve(config: TelemetryConfig | None, *, service_name: str,
            environ: Mapping[str, str] | None = None) -> Settings | None:
    """The settings when telemetry is asked for, else None: ``telemetry.enabled: true``, or
    unset with an endpoint in the file or in ``OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)ENDPOINT``;
    and traces or metrics left on."""
    env = os.environ if environ is None else environ
    if _true(env.get("OTEL_SDK_DISABLED")):
        return None
    endpoint = config.endpoint if config is not None else None
    enabled = config.enabled if config is not None else None
    if enabled is False:
        return None
    if enabled is None and endpoint is None and not any(env.get(k) for k in _ENDPOINTS):
        return None
    traces = not _none(env, "OTEL_TRACES_EXPORTER")
    wanted = config.metrics if config is not None else None
    metrics = (not _none(env, "OTEL_METRICS_EXPORTER")) if wanted is None else wanted
    if not traces and not metrics:
        return None
    interval = config.metrics_interval_s if config is not None else None
    name = (config.service_name if config is not None else None) \
        or env.get("OTEL_SERVICE_NAME") or service_name
    common: dict[str, Any] = {
        "service_name": name, "traces_endpoint": _signal(endpoint, "/v1/traces"),
        "metrics_endpoint": _signal(endpoint, "/v1/metrics"), "traces": traces,
        "metrics": metrics,
        "metrics_interval_s": interval if interval is not None else _interval(env)}
    if config is None:
        return Settings(**common)
    return Settings(**common, headers=dict(config.headers), sampler=config.sampler,
                    sampler_arg=config.sampler_arg,
                    resource_attributes=dict(config.resource_attributes),
                    max_queue_size=config.max_queue_size)
