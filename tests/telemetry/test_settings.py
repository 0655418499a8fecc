"""Whether telemetry is on, and how (omnicore.telemetry._settings): ``telemetry.*`` over the
``OTEL_*`` variables, off unless one of them asks; traces and metrics each with their own
off switch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from omnicore.config.telemetry import TelemetryConfig
from omnicore.telemetry import Settings, resolve

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}


def test_off_unless_an_endpoint_or_enabled_asks() -> None:
    assert resolve(None, service_name="app", environ={}) is None
    assert resolve(TelemetryConfig(), service_name="app", environ={}) is None
    on = resolve(TelemetryConfig(enabled=True), service_name="app", environ={})
    assert on == Settings(service_name="app")  # the SDK's defaults: localhost:4318


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT",
                                      "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])
def test_an_otlp_endpoint_variable_turns_it_on_and_the_sdk_reads_it(variable: str) -> None:
    found = resolve(TelemetryConfig(), service_name="app", environ={variable: "http://c:4318"})
    # Left to the exporter, which reads the variables by their specification's rules.
    assert found is not None and found.traces_endpoint is None


def test_the_file_wins_where_it_speaks() -> None:
    config = TelemetryConfig(endpoint="http://file:4318/", service_name="shop",
                             sampler="parentbased_traceidratio", sampler_arg=0.25,
                             resource_attributes={"deployment.environment": "prod"},
                             headers={"api-key": "k"})
    found = resolve(config, service_name="app",
                    environ={**ENDPOINT, "OTEL_SERVICE_NAME": "env-name"})
    assert found == Settings(service_name="shop",
                             traces_endpoint="http://file:4318/v1/traces",
                             metrics_endpoint="http://file:4318/v1/metrics",
                             headers={"api-key": "k"}, sampler="parentbased_traceidratio",
                             sampler_arg=0.25,
                             resource_attributes={"deployment.environment": "prod"})
    assert resolve(TelemetryConfig(endpoint="http://c/v1/traces"), service_name="a",
                   environ={}).traces_endpoint == "http://c/v1/traces"  # type: ignore[union-attr]


def test_otel_service_name_names_the_service_over_the_apps_name() -> None:
    found = resolve(None, service_name="app", environ={**ENDPOINT, "OTEL_SERVICE_NAME": "svc"})
    assert found is not None and found.service_name == "svc"


@pytest.mark.parametrize("environ", [{**ENDPOINT, "OTEL_SDK_DISABLED": "true"},
                                     {**ENDPOINT, "OTEL_SDK_DISABLED": " TRUE "},
                                     {**ENDPOINT, "OTEL_TRACES_EXPORTER": "none",
                                      "OTEL_METRICS_EXPORTER": "none"}])
def test_the_specifications_off_switches_win_over_the_file(environ: dict[str, str]) -> None:
    assert resolve(TelemetryConfig(enabled=True, endpoint="http://c:4318"),
                   service_name="app", environ=environ) is None


def test_traces_and_metrics_each_have_their_off_switch() -> None:
    no_traces = resolve(None, service_name="app", environ={**ENDPOINT,
                                                            "OTEL_TRACES_EXPORTER": "none"})
    assert no_traces is not None and (no_traces.traces, no_traces.metrics) == (False, True)
    no_metrics = resolve(None, service_name="app", environ={**ENDPOINT,
                                                             "OTEL_METRICS_EXPORTER": "none"})
    assert no_metrics is not None and (no_metrics.traces, no_metrics.metrics) == (True, False)
    # The file's key wins over the variable, either way.
    kept = resolve(TelemetryConfig(metrics=True), service_name="app",
                   environ={**ENDPOINT, "OTEL_METRICS_EXPORTER": "none"})
    assert kept is not None and kept.metrics
    dropped = resolve(TelemetryConfig(metrics=False), service_name="app", environ=ENDPOINT)
    assert dropped is not None and not dropped.metrics and dropped.traces


@pytest.mark.parametrize(("config", "environ", "interval"), [
    (TelemetryConfig(), ENDPOINT, 60.0),
    (TelemetryConfig(), {**ENDPOINT, "OTEL_METRIC_EXPORT_INTERVAL": "250"}, 0.25),
    (TelemetryConfig(), {**ENDPOINT, "OTEL_METRIC_EXPORT_INTERVAL": "soon"}, 60.0),
    (TelemetryConfig(metrics_interval_s=15), {**ENDPOINT, "OTEL_METRIC_EXPORT_INTERVAL": "250"},
     15.0),
])
def test_the_metrics_interval(config: TelemetryConfig, environ: dict[str, str],
                              interval: float) -> None:
    found = resolve(config, service_name="app", environ=environ)
    assert found is not None and found.metrics_interval_s == interval


def test_one_endpoint_serves_both_signals() -> None:
    for given in ("http://c:4318", "http://c:4318/", "http://c:4318/v1/traces"):
        found = resolve(TelemetryConfig(endpoint=given), service_name="a", environ={})
        assert found is not None
        assert (found.traces_endpoint, found.metrics_endpoint) == (
            "http://c:4318/v1/traces", "http://c:4318/v1/metrics")
    # A metrics endpoint variable alone turns it on too; the exporter reads it.
    found = resolve(None, service_name="a",
                    environ={"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:4318/v1/metrics"})
    assert found is not None and found.metrics_endpoint is None


def test_enabled_false_wins_over_the_variables() -> None:
    assert resolve(TelemetryConfig(enabled=False), service_name="app", environ=ENDPOINT) is None


@pytest.mark.parametrize("bad", [{"endpoint": "collector:4318"}, {"sampler": "sometimes"},
                                 {"sampler_arg": 2}, {"max_queue_size": 0},
                                 {"metrics_interval_s": 0}, {"metrics": "sometimes"},
                                 {"exporter": "grpc"}])
def test_a_wrong_key_is_refused_at_load(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        TelemetryConfig.model_validate(bad)


def test_headers_the_export_cannot_send_are_refused_in_the_config() -> None:
    """telemetry.headers by RFC 9110's grammar (omnicore/httpfields.py): a name that is not a
    token or a value with a control character is a config error, not an export that fails
    at every post."""
    for headers, said in (({"x key": "v"}, "a header name is a token"),
                          ({"x-key": "a\r\nx-injected: 1"}, "no CR, LF, NUL"),
                          ({"x-key": "a\x7f"}, "no CR, LF, NUL")):
        with pytest.raises(ValidationError, match=said):
            TelemetryConfig(headers=headers)
    assert TelemetryConfig(headers={"x-api-key": "abc def\t1"}).headers == {
        "x-api-key": "abc def\t1"}
