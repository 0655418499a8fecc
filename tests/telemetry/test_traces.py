"""Traces end to end (issue 62): a real host (``omnicore run``) with the ``OTEL_*``
variables pointing at an OTLP/HTTP receiver on loopback (tests/telemetry/receiver.py, which
decodes the real protobuf), a REST invoke of a real plugin, and the spans that arrive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_types.version import LATEST_HANDSHAKE_VERSION
from pydantic import ValidationError

from omnicore.config.schema import OmniConfig, TelemetryConfig
from omnicore.mcp.tools import tool_name
from tests.hosts import Host
from tests.telemetry.receiver import Receiver, Span, receiving

ROOT = Path(__file__).resolve().parents[2]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
#: The operator's trace viewer (telemetry.trace_url): a run's page links its trace there.
VIEWER = "https://jaeger.example/trace/{trace_id}?uiFind=x&a=<b>"
FLOW = """\
format: omniflow/v1
name: hello
inputs: {type: object, properties: {name: {type: string}}, required: [name]}
steps:
  - id: greet
    uses: plugin:greeter-rust/greet
    with: {name: "${{ inputs.name }}"}
"""


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Host, Receiver]]:
    root = tmp_path_factory.mktemp("traced")
    with receiving() as receiver:
        config = {"name": "traced", "data_dir": "data", "mcp": {"expose": ["greeter-rust/*"]},
                  "telemetry": {"trace_url": VIEWER},
                  "plugins": {"greeter-rust": {"grants": ["config", "log"]}}}
        host = Host(root / "app", config, [GREETER], data=root / "app" / "data")
        (root / "app" / "workflows").mkdir()
        (root / "app" / "workflows" / "hello.yaml").write_text(FLOW)
        with host.start({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                         "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_METRIC_EXPORT_INTERVAL": "200",
                         "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=test"}):
            host.until(lambda: host.ready() or None, "the host's readiness")
            yield host, receiver


def _request(host: Host, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
    doc = host.until(lambda: host.console_file, "its console file")
    req = urllib.request.Request(doc["url"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", f"Bearer {doc['token']}")
    req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _invoke(host: Host, name: str, headers: dict[str, str] | None = None) -> Any:
    host.until(lambda: _request(host, "GET", "/api/v1/plugins/greeter-rust")["state"]
               == "loaded" or None, "the greeter's load")
    return _request(host, "POST", "/api/v1/plugins/greeter-rust/invoke",
                    {"handler": "greet", "input": json.dumps({"name": name})}, headers)


def _trace(host: Host, receiver: Receiver, trace_id: str, names: tuple[str, ...]
           ) -> list[Span]:
    def arrived() -> list[Span] | None:
        with receiver.lock:
            spans = [s for s in receiver.spans if s.trace_id == trace_id]
        return spans if all(any(s.name == n for s in spans) for n in names) else None

    return host.until(arrived, f"spans {names} of trace {trace_id}")


def test_the_section_is_in_the_apps_config() -> None:
    assert OmniConfig().telemetry == TelemetryConfig()
    with pytest.raises(ValidationError):
        OmniConfig(telemetry={"exporter": "grpc"})
    # A trace viewer's link: http(s), and naming where the trace id goes.
    for bad in ("javascript:alert(1)//{trace_id}", "https://jaeger.example/trace/",
                "file:///{trace_id}"):
        with pytest.raises(ValidationError, match="trace_url"):
            OmniConfig(telemetry={"trace_url": bad})


def test_a_rest_invoke_is_a_server_span_with_its_plugin_call_beneath(
        traced: tuple[Host, Receiver]) -> None:
    host, receiver = traced
    assert json.loads(_invoke(host, "Ada")["output"]) == {"message": "Hello, Ada!"}
    server = host.until(lambda: receiver.named("POST /api/v1/plugins/{name}/invoke") or None,
                        "the invoke's span")
    trace_id = server[-1].trace_id
    spans = _trace(host, receiver, trace_id, ("POST /api/v1/plugins/{name}/invoke",
                                              "call greeter-rust/greet"))
    request = next(s for s in spans if s.kind == "server")
    call = next(s for s in spans if s.name == "call greeter-rust/greet")
    assert request.parent_id == ""  # no traceparent came: a new trace
    assert call.parent_id == request.span_id and call.kind == "internal"
    assert request.attributes == {
        "http.request.method": "POST", "url.path": "/api/v1/plugins/greeter-rust/invoke",
        "url.scheme": "http", "http.route": "/api/v1/plugins/{name}/invoke",
        "http.response.status_code": 200}
    attrs = call.attributes
    assert attrs["omnicore.plugin.name"] == "greeter-rust"
    assert attrs["omnicore.plugin.handler"] == "greet"
    assert attrs["omnicore.plugin.outcome"] == "ok"
    assert attrs["omnicore.plugin.breaker"] == "closed"
    assert attrs["omnicore.plugin.digest"].startswith("sha256:")
    assert len(attrs["omnicore.plugin.digest"]) == len("sha256:") + 64
    assert attrs["omnicore.plugin.memory_bytes"] > 0
    assert attrs["omnicore.plugin.input_bytes"] == len('{"name": "Ada"}')
    assert attrs["omnicore.plugin.host_calls.config"] == 1  # its greeting: no span of its own
    assert {s.name for s in spans} == {"POST /api/v1/plugins/{name}/invoke",
                                       "call greeter-rust/greet"}
    # The resource: the app's name and instance, OTEL_RESOURCE_ATTRIBUTES merged in.
    assert request.resource["service.name"] == "traced"
    assert request.resource["deployment.environment"] == "test"
    assert request.resource["service.instance.id"]


def test_what_the_consoles_middleware_refuses_is_a_span_too(
        traced: tuple[Host, Receiver]) -> None:
    """The request's span is begun first in the console's one middleware pass, so a request
    it refuses before any route (a body declared past the cap: 413; a Host it does not
    answer to: 400) is a span of its own, continuing its traceparent."""
    import http.client

    host, receiver = traced
    url = urllib.parse.urlsplit(host.until(lambda: host.console_file, "its console file")["url"])
    cases = {"4bf92f3577b34da6a3ce929d0e0e4001": ({"Content-Length": str(1 << 40)}, 413),
             "4bf92f3577b34da6a3ce929d0e0e4002": ({"Host": "evil.example"}, 400)}
    for trace_id, (headers, status) in cases.items():
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            conn.putrequest("POST", "/api/v1/plugins/greeter-rust/invoke",
                            skip_host="Host" in headers)
            for k, v in {**headers, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}.items():
                conn.putheader(k, v)
            conn.endheaders()
            assert conn.getresponse().status == status
        finally:
            conn.close()
        (span,) = _trace(host, receiver, trace_id, ("POST",))
        assert span.kind == "server" and span.parent_id == "00f067aa0ba902b7"
        assert span.attributes["http.response.status_code"] == status
        assert "http.route" not in span.attributes  # refused before any route


def test_an_incoming_traceparent_is_continued_and_the_plugin_log_carries_the_ids(
        traced: tuple[Host, Receiver]) -> None:
    host, receiver = traced
    _invoke(host, "Grace", {"traceparent": PARENT})
    spans = _trace(host, receiver, TRACE_ID, ("POST /api/v1/plugins/{name}/invoke",
                                              "call greeter-rust/greet"))
    request = next(s for s in spans if s.kind == "server")
    call = next(s for s in spans if s.name == "call greeter-rust/greet")
    assert request.parent_id == "00f067aa0ba902b7"
    assert call.parent_id == request.span_id
    lines = _request(host, "GET", "/api/v1/plugins/greeter-rust/logs")["items"]
    said = [ln["message"] for ln in lines if ln["message"].startswith("greeting Grace")]
    assert said == [f"greeting Grace trace_id={TRACE_ID} span_id={call.span_id}"]


def test_an_mcp_tool_call_is_a_span_beneath_the_mcp_request(
        traced: tuple[Host, Receiver]) -> None:
    host, receiver = traced
    trace_id = "5e" * 16
    _invoke(host, "warm-up")  # loaded
    doc = host.until(lambda: host.console_file, "its console file")
    headers = {"Authorization": f"Bearer {doc['token']}", "Content-Type": "application/json",
               "Accept": "application/json, text/event-stream"}

    def rpc(body: dict[str, Any], extra: dict[str, str]) -> Any:
        req = urllib.request.Request(doc["url"] + "/mcp", method="POST",
                                     data=json.dumps(body).encode(), headers={**headers, **extra})
        return urllib.request.urlopen(req, timeout=30)

    with rpc({"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {},
                         "clientInfo": {"name": "raw", "version": "0"}}}, {}) as r:
        session = {"mcp-session-id": r.headers["mcp-session-id"],
                   "mcp-protocol-version": LATEST_HANDSHAKE_VERSION}
    rpc({"jsonrpc": "2.0", "method": "notifications/initialized"}, session).close()
    name = tool_name("greeter-rust", "greet")
    with rpc({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
              "params": {"name": name, "arguments": {"name": "Mo"}}},
             {**session, "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}) as r:
        assert "Hello, Mo!" in r.read().decode()
    spans = _trace(host, receiver, trace_id, ("POST /mcp", f"tools/call {name}",
                                              "call greeter-rust/greet"))
    request = next(s for s in spans if s.name == "POST /mcp")
    tool = next(s for s in spans if s.name == f"tools/call {name}")
    call = next(s for s in spans if s.name == "call greeter-rust/greet")
    assert request.attributes["http.route"] == "/mcp"
    assert tool.parent_id == request.span_id and call.parent_id == tool.span_id
    assert tool.attributes["mcp.method.name"] == "tools/call"
    assert tool.attributes["gen_ai.tool.name"] == name


def test_a_failing_call_is_an_error_span_named_by_its_class_only(
        traced: tuple[Host, Receiver]) -> None:
    host, receiver = traced
    secret = "do-not-export-this"
    with pytest.raises(urllib.error.HTTPError):
        _request(host, "POST", "/api/v1/plugins/greeter-rust/invoke",
                 {"handler": "greet", "input": json.dumps({"name": 7, "x": secret})},
                 {"traceparent": f"00-{'ab' * 16}-00f067aa0ba902b7-01"})
    spans = _trace(host, receiver, "ab" * 16, ("call greeter-rust/greet",))
    call = next(s for s in spans if s.name == "call greeter-rust/greet")
    assert call.attributes["omnicore.plugin.outcome"] == "error"
    assert call.attributes["error.type"] == "GuestError"
    assert call.status == 2  # STATUS_CODE_ERROR
    assert not any(secret.encode() in body for body in receiver.bodies)


def test_a_job_queued_by_a_request_runs_in_that_requests_trace(
        traced: tuple[Host, Receiver]) -> None:
    host, receiver = traced
    trace_id = "cd" * 16
    _invoke(host, "warm-up")  # loaded
    queued = _request(host, "POST", "/api/v1/jobs",
                      {"plugin": "greeter-rust", "handler": "greet",
                       "payload": {"name": "Jobbe"}},
                      {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    spans = _trace(host, receiver, trace_id, ("POST /api/v1/jobs", "job greeter-rust/greet",
                                              "call greeter-rust/greet"))
    request = next(s for s in spans if s.name == "POST /api/v1/jobs")
    job = next(s for s in spans if s.name == "job greeter-rust/greet")
    call = next(s for s in spans if s.name == "call greeter-rust/greet")
    # The job ran later, on a worker thread, from the row it was stored in: its span's parent
    # is the request's, read back from that row.
    assert job.parent_id == request.span_id and job.kind == "consumer"
    assert call.parent_id == job.span_id
    assert job.attributes["omnicore.job.id"] == queued["id"]
    assert job.attributes["omnicore.job.source"] == "operator"


def test_a_workflow_run_started_by_a_request_runs_its_steps_in_that_requests_trace(
        traced: tuple[Host, Receiver]) -> None:
    host, receiver = traced
    trace_id = "ef" * 16
    _invoke(host, "warm-up")  # loaded
    run = _request(host, "POST", "/api/v1/workflows/hello/runs", {"inputs": {"name": "Flo"}},
                   {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
    spans = _trace(host, receiver, trace_id, ("POST /api/v1/workflows/{name}/runs",
                                              "workflow step greet", "call greeter-rust/greet"))
    request = next(s for s in spans if s.kind == "server")
    step = next(s for s in spans if s.name == "workflow step greet")
    call = next(s for s in spans if s.name == "call greeter-rust/greet")
    assert step.parent_id == request.span_id and step.kind == "consumer"
    assert call.parent_id == step.span_id
    assert step.attributes["omnicore.workflow.run_id"] == run["id"]
    assert step.attributes["omnicore.workflow.step"] == "greet"
    # The run's trace is in what the API answers for it, and its id on the run's page.
    assert run["trace"].startswith(f"00-{trace_id}-{request.span_id}-")
    doc = host.until(lambda: host.console_file, "its console file")
    page = urllib.request.Request(f"{doc['url']}/workflows/runs/{run['id']}",
                                  headers={"Authorization": f"Bearer {doc['token']}"})
    with urllib.request.urlopen(page, timeout=30) as resp:
        html = resp.read().decode()
    link = VIEWER.replace("{trace_id}", trace_id).replace("&", "&amp;").replace("<", "&lt;") \
        .replace(">", "&gt;")
    assert f'trace <a href="{link}" rel="noopener noreferrer" target="_blank"><code ' \
        f'class="trace-id">{trace_id}</code></a>' in html


def _scrape(host: Host) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` as {sample name: {labels: value}}."""
    from prometheus_client.parser import text_string_to_metric_families

    doc = host.until(lambda: host.console_file, "its console file")
    req = urllib.request.Request(doc["url"] + "/metrics",
                                 headers={"Authorization": f"Bearer {doc['token']}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        text = resp.read().decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_the_metrics_go_over_otlp_too_under_their_metrics_names(
        traced: tuple[Host, Receiver]) -> None:
    host, receiver = traced
    for name in ("Mia", "Noa", "Ola"):
        _invoke(host, name)
    scraped = _scrape(host)
    made = scraped["omnicore_plugin_calls_total"][(("plugin", "greeter-rust"),)]
    assert made >= 3

    def exported() -> dict[str, list[Any]] | None:  # an export since the scrape
        points: dict[str, list[Any]] = {}
        for p in receiver.latest():
            points.setdefault(p.name, []).append(p)
        calls = [p for p in points.get("omnicore_plugin_calls", [])
                 if p.attributes.get("plugin") == "greeter-rust"]
        return points if calls and calls[0].value >= made else None

    points = host.until(exported, "an export of the greeter's calls")
    calls = next(p for p in points["omnicore_plugin_calls"]
                 if p.attributes.get("plugin") == "greeter-rust")
    assert calls.kind == "sum" and calls.monotonic and calls.cumulative
    assert calls.description == "Plugin calls, by plugin."
    latency = next(p for p in points["omnicore_plugin_call_seconds"]
                   if p.attributes.get("plugin") == "greeter-rust")
    assert latency.kind == "histogram" and latency.value[0] >= made
    assert points["omnicore_uptime_seconds"][0].kind == "gauge"
    (app,) = points["omnicore_app_info"]
    assert app.value == 1.0 and app.attributes.get("name") == "traced"
    assert app.resource["service.name"] == "traced"
    assert app.resource["service.instance.id"]
    # Every family /metrics showed is exported since, by the name /metrics gives it.
    names = {n.removesuffix("_total") for n in scraped
             if not n.endswith(("_bucket", "_sum", "_count", "_created"))}
    assert names <= set(points), sorted(names - set(points))
    assert "omnicore_telemetry_spans_exported" in points


_PROBE = """
import json, sys, threading
from omnicore.app import OmniApp
app = OmniApp("quiet", overrides={"data_dir": sys.argv[1], "sandbox": {"watch": False}})
app.start()
app.plugins.load(sys.argv[2], grants=["config", "log"])
out = app.plugins.call("greeter-rust", "greet", b'{"name": "Ada"}')
threads = sorted(t.name for t in threading.enumerate())
app.stop()
from omnicore import telemetry
print(json.dumps({"out": out.decode(), "on": telemetry.ON, "threads": threads,
                  "otel": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
"""


@pytest.mark.parametrize("env", [{}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
                                      "OTEL_SDK_DISABLED": "true"}])
def test_off_unless_configured_no_exporter_no_thread_no_import(tmp_path: Path,
                                                                env: dict[str, str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path), str(GREETER)],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["out"] == '{"message":"Hello, Ada!"}'
    assert found["on"] is False
    assert found["otel"] == []
    assert not [t for t in found["threads"] if "Otel" in t or "Batch" in t]
