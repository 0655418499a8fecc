"""One trace across two hosts on one PostgreSQL (issue 62): a request to the host that does
not serve the plugin queues a job and starts a workflow run; the other host, the only one
serving it, claims the job and the run's step, and their spans continue the request's trace
(the context stored with the job and the run), each host named by its instance id. And the
issue's whole walk: one REST request starts a workflow whose steps run on both hosts, one
reading PostgreSQL (the stock example), the other calling an HTTP server (the GitHub
example against a stand-in on loopback); one trace, every span parented as it should."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.cluster.hosts import Host, wait_for
from tests.telemetry.receiver import Receiver, Span, receiving

ROOT = Path(__file__).resolve().parents[2]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"
STOCK = ROOT / "build" / "plugins" / "stock-rust.wasm"
ISSUES = ROOT / "build" / "plugins" / "github-issues-js.wasm"
SCHEMA = (ROOT / "plugins" / "stock" / "schema.sql").read_text()
RESTOCK = """\
format: omniflow/v1
name: restock
inputs: {type: object, properties: {sku: {type: string}}, required: [sku]}
steps:
  - id: check
    uses: plugin:stock-rust/check
    with: {sku: "${{ inputs.sku }}"}
  - id: issues
    uses: plugin:github-issues-js/issues
    needs: [check]
    with: {state: open, limit: 5}
"""
FLOW = """\
format: omniflow/v1
name: hello
inputs: {type: object, properties: {name: {type: string}}, required: [name]}
steps:
  - id: greet
    uses: plugin:greeter-rust/greet
    with: {name: "${{ inputs.name }}"}
"""


@pytest.fixture
def two(tmp_path: Path, pg_url: str) -> Iterator[tuple[Host, Host, Receiver]]:
    with receiving() as receiver:
        config = {"plugins": {"greeter-rust": {"grants": ["config", "log"]}},
                  "workflows": {"poll_s": 0.2}}
        front = Host(tmp_path, pg_url, 0, [], config)
        (front.dir / "workflows").mkdir()
        (front.dir / "workflows" / "hello.yaml").write_text(FLOW)
        worker = Host(tmp_path, pg_url, 1, [GREETER], config)
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50"}
        try:
            for host in (front, worker):
                host.start(**env)
            wait_for(lambda: front.ready() and worker.ready(), "both hosts ready",
                     [front, worker], timeout=120)
            yield front, worker, receiver
        finally:
            for host in (front, worker):
                host.stop()


def _send(host: Host, method: str, path: str, body: Any,
          headers: dict[str, str] | None = None) -> Any:
    doc = host.until(lambda: host.console_file, "its console file")
    req = urllib.request.Request(doc["url"] + path, method=method,
                                 data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {doc['token']}",
                                          "Content-Type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _post(host: Host, path: str, body: Any, traceparent: str) -> Any:
    return _send(host, "POST", path, body, {"traceparent": traceparent})


def _spans(receiver: Receiver, trace_id: str, names: tuple[str, ...],
           hosts: list[Host]) -> dict[str, Span]:
    found: dict[str, Span] = {}

    def arrived() -> bool:
        with receiver.lock:
            for s in receiver.spans:
                if s.trace_id == trace_id:
                    found[s.name] = s
        return all(n in found for n in names)

    wait_for(arrived, f"spans {names}", hosts, timeout=60)
    return found


def test_a_job_and_a_workflow_step_run_on_another_host_continue_the_requests_trace(
        two: tuple[Host, Host, Receiver]) -> None:
    front, worker, receiver = two
    trace_id = "0a" * 16
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    # The front host serves no greeter: only the worker claims its job and its step.
    _post(front, "/api/v1/jobs", {"plugin": "greeter-rust", "handler": "greet",
                                  "payload": {"name": "Ada"}}, parent)
    run = _post(front, "/api/v1/workflows/hello/runs", {"inputs": {"name": "Bo"}}, parent)
    spans = _spans(receiver, trace_id, ("POST /api/v1/jobs", "POST /api/v1/workflows/{name}/runs",
                                        "job greeter-rust/greet", "workflow step greet"),
                   [front, worker])
    enqueue, start = spans["POST /api/v1/jobs"], spans["POST /api/v1/workflows/{name}/runs"]
    job, step = spans["job greeter-rust/greet"], spans["workflow step greet"]
    assert enqueue.parent_id == start.parent_id == "00f067aa0ba902b7"
    assert job.parent_id == enqueue.span_id
    assert step.parent_id == start.span_id
    assert step.attributes["omnicore.workflow.run_id"] == run["id"]
    # Two hosts: the requests' spans come from one, the job's and the step's from the other.
    here = enqueue.resource["service.instance.id"]
    there = job.resource["service.instance.id"]
    assert here != there and start.resource["service.instance.id"] == here
    assert step.resource["service.instance.id"] == there
    calls = [s for s in receiver.named("call greeter-rust/greet") if s.trace_id == trace_id]
    assert sorted(c.parent_id for c in calls) == sorted([job.span_id, step.span_id])


class _Api:
    """GitHub's issues list, on loopback: records each request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                api.seen.append({k.lower(): v for k, v in self.headers.items()})
                body = json.dumps([{"number": 1, "title": "Restock B-2", "state": "open",
                                    "html_url": "https://example.invalid/1", "labels": [],
                                    "comments": 0}]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_request_starts_a_workflow_whose_steps_on_both_hosts_call_postgresql_and_http(
        tmp_path: Path, pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as db:
        db.execute(SCHEMA)  # the stock example's table, in the cluster's own database
    # The connector's URL carries no password: the host holds it as a secret.
    parts = urlsplit(pg_url)
    password = parts.password or ""
    bare = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{password}@", "@")))
    api = _Api()
    common = {"workflows": {"poll_s": 0.2}}
    with receiving() as receiver:
        # The front host takes the request and serves the PostgreSQL step; the other the HTTP.
        front = Host(tmp_path, pg_url, 0, [STOCK], {
            **common,
            "connectors": {"orders": {"kind": "postgres", "url": bare,
                                      "secret": "orders-db-password"}},
            "plugins": {"stock-rust": {"grants": {"sql": {"connectors": ["orders"]}}}}})
        (front.dir / "workflows").mkdir()
        (front.dir / "workflows" / "restock.yaml").write_text(RESTOCK)
        other = Host(tmp_path, pg_url, 1, [ISSUES], {
            **common,
            "connectors": {"github": {"base_url": api.base, "auth": "none",
                                      "allow_addresses": ["127.0.0.1/32"]}},
            "plugins": {"github-issues-js": {
                "grants": {"config": {}, "http": {"connectors": ["github"]}},
                "config": {"repo": "ada/demo"}}}})
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "50",
               "OTEL_METRICS_EXPORTER": "none"}
        try:
            for host in (front, other):
                host.start(**env)
            wait_for(lambda: front.ready() and other.ready(), "both hosts ready",
                     [front, other], timeout=120)
            _send(front, "PUT", "/api/v1/secrets/orders-db-password", {"value": password})
            trace_id = "7e" * 16
            run = _post(front, "/api/v1/workflows/restock/runs", {"inputs": {"sku": "A-1"}},
                        f"00-{trace_id}-00f067aa0ba902b7-01")
            names = ("POST /api/v1/workflows/{name}/runs", "workflow step check",
                     "call stock-rust/check", "SELECT orders", "workflow step issues",
                     "call github-issues-js/issues", "GET 127.0.0.1")
            try:
                spans = _spans(receiver, trace_id, names, [front, other])
            except AssertionError:
                doc = front.until(lambda: front.console_file, "its console file")
                req = urllib.request.Request(f"{doc['url']}/api/v1/workflow-runs/{run['id']}",
                                             headers={"Authorization": f"Bearer {doc['token']}"})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    state = resp.read().decode()
                with receiver.lock:
                    seen = sorted(x.name for x in receiver.spans if x.trace_id == trace_id)
                raise AssertionError(f"the trace has {seen}; the run: {state[:3000]}") from None
        finally:
            for host in (front, other):
                host.stop()
            api.server.shutdown()
            api.server.server_close()
    request = spans["POST /api/v1/workflows/{name}/runs"]
    check, issues = spans["workflow step check"], spans["workflow step issues"]
    stock, github = spans["call stock-rust/check"], spans["call github-issues-js/issues"]
    select, get = spans["SELECT orders"], spans["GET 127.0.0.1"]
    assert request.parent_id == "00f067aa0ba902b7" and request.kind == "server"
    assert check.parent_id == issues.parent_id == request.span_id
    assert stock.parent_id == check.span_id and github.parent_id == issues.span_id
    assert select.parent_id == stock.span_id and select.kind == "client"
    assert select.attributes["db.system"] == "postgresql"
    assert get.parent_id == github.span_id and get.kind == "client"
    assert stock.attributes["omnicore.plugin.outcome"] == "ok"
    assert github.attributes["omnicore.plugin.outcome"] == "ok"
    # Both hosts: the request and the PostgreSQL step on one, the HTTP step on the other.
    here = request.resource["service.instance.id"]
    assert check.resource["service.instance.id"] == select.resource["service.instance.id"] \
        == here
    assert issues.resource["service.instance.id"] == get.resource["service.instance.id"] != here
    # The HTTP server heard the trace go on: the client span is its caller.
    assert any(h.get("traceparent", "").startswith(f"00-{trace_id}-{get.span_id}-")
               for h in api.seen)
    assert run["trace"].startswith(f"00-{trace_id}-{request.span_id}-")
    # Every span of the trace has its parent in it, but the request's (the caller's span).
    with receiver.lock:
        everything = [x for x in receiver.spans if x.trace_id == trace_id]
    ids = {x.span_id for x in everything}
    assert [x.name for x in everything if x.parent_id not in ids] == [request.name]
