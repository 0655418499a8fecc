"""Whether tracing is on, and how: ``telemetry.*`` over the ``OTEL_*`` variables.

The file's keys win where they are set (as code-given options win over the environment in
every OpenTelemetry SDK); what they leave unset the SDK reads from ``OTEL_*`` itself
(``OTEL_TRACES_SAMPLER``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_RESOURCE_ATTRIBUTES``...).
``OTEL_SDK_DISABLED=true`` turns it off whatever the file says. Standard library only: the
host asks this on every start.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omnicore.config.schema import TelemetryConfig

__all__ = ["Settings", "resolve"]

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


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


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def resolve(config: TelemetryConfig | None, *, service_name: str,
            environ: Mapping[str, str] | None = None) -> Settings | None:
    """The settings when tracing is asked for, else None: ``telemetry.enabled: true``, or
    unset with an endpoint in the file or in ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``."""
    env = os.environ if environ is None else environ
    if _true(env.get("OTEL_SDK_DISABLED")) or \
            env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    endpoint = config.endpoint if config is not None else None
    enabled = config.enabled if config is not None else None
    if enabled is False:
        return None
    if enabled is None and endpoint is None and not any(env.get(k) for k in _ENDPOINTS):
        return None
    traces = None
    if endpoint is not None:
        traces = endpoint if endpoint.rstrip("/").endswith("/v1/traces") \
            else endpoint.rstrip("/") + "/v1/traces"
    name = (config.service_name if config is not None else None) \
        or env.get("OTEL_SERVICE_NAME") or service_name
    if config is None:
        return Settings(service_name=name, traces_endpoint=traces)
    return Settings(service_name=name, traces_endpoint=traces, headers=dict(config.headers),
                    sampler=config.sampler, sampler_arg=config.sampler_arg,
                    resource_attributes=dict(config.resource_attributes),
                    max_queue_size=config.max_queue_size)
