"""``telemetry.*``: traces and metrics over OpenTelemetry, sent over OTLP/HTTP
(omnicore.telemetry, docs/guides/telemetry.md)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from omnicore.config.strict import Strict
from omnicore.httpfields import NAME_RULE, VALUE_RULE, is_name, is_value

__all__ = ["TelemetryConfig"]


class TelemetryConfig(Strict):
    """``telemetry.*``: traces, and the ``/metrics`` metrics, over OpenTelemetry (OTLP/HTTP;
    docs/guides/telemetry.md). Where a key is unset, the ``OTEL_*`` variable of the same
    meaning applies; ``OTEL_SDK_DISABLED=true`` turns telemetry off whatever this says."""

    enabled: bool | None = Field(
        default=None,
        description="trace and export metrics (needs the telemetry extra); unset: on when "
                    "an OTLP endpoint is given here or in "
                    "OTEL_EXPORTER_OTLP_(TRACES_|METRICS_)ENDPOINT")
    endpoint: str | None = Field(
        default=None,
        description="the OTLP/HTTP collector's base URL (/v1/traces and /v1/metrics are "
                    "added); unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT and "
                    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT or "
                    "http://localhost:4318")
    service_name: str | None = Field(
        default=None, description="service.name of the spans; unset: OTEL_SERVICE_NAME or "
                                  "the app's name")
    sampler: Literal["always_on", "always_off", "traceidratio", "parentbased_always_on",
                     "parentbased_always_off", "parentbased_traceidratio"] | None = Field(
        default=None, description="which traces are kept; unset: OTEL_TRACES_SAMPLER or "
                                  "parentbased_always_on")
    sampler_arg: float | None = Field(
        default=None, ge=0, le=1,
        description="the ratio of the traceidratio samplers; unset: OTEL_TRACES_SAMPLER_ARG "
                    "or 1.0")
    resource_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="extra resource attributes (deployment.environment...), over "
                    "OTEL_RESOURCE_ATTRIBUTES")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="headers sent to the collector (an API key); unset: "
                    "OTEL_EXPORTER_OTLP_HEADERS")
    max_queue_size: int | None = Field(
        default=None, gt=0,
        description="spans waiting for export (a full queue drops spans, counted: a call "
                    "never waits); unset: OTEL_BSP_MAX_QUEUE_SIZE or 2048")

    metrics: bool | None = Field(
        default=None,
        description="export the /metrics metrics over OTLP too (same names, labels and "
                    "values); unset: on with telemetry unless OTEL_METRICS_EXPORTER=none")
    metrics_interval_s: float | None = Field(
        default=None, gt=0,
        description="seconds between two exports of the metrics; unset: "
                    "OTEL_METRIC_EXPORT_INTERVAL (milliseconds) or 60")

    trace_url: str | None = Field(
        default=None,
        description="a trace viewer's http(s) URL holding {trace_id} (Jaeger: "
                    "http://jaeger:16686/trace/{trace_id}): a workflow run's page links its "
                    "trace there; unset: the trace id is shown, unlinked")

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"telemetry.endpoint {value!r} must be an http(s):// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _fields(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not is_name(name):
                raise ValueError(f"telemetry.headers: {name[:100]!r}: {NAME_RULE}")
            if not is_value(text):
                raise ValueError(f"telemetry.headers.{name}: {VALUE_RULE}")
        return value

    @field_validator("trace_url")
    @classmethod
    def _viewer_url(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme not in ("http", "https")
                                  or "{trace_id}" not in value):
            raise ValueError(f"telemetry.trace_url {value!r} must be an http(s):// URL "
                             "holding {trace_id}")
        return value
