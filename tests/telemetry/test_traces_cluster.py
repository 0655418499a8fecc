"""One trace across two hosts on one PostgreSQL (issue 62): a request to the host that does
not serve the plugin queues a job and starts a workflow run; the other host, the only one
serving it, claims the job and the run's step, and their spans continue the request's trace
(the context stored with the job and the run), each host named by its instance id."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.hosts import Host, wait_for
from tests.telemetry.receiver import Receiver, Span, receiving

ROOT = Path(__file__).resolve().parents[2]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"
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


def _post(host: Host, path: str, body: Any, traceparent: str) -> Any:
    doc = host.until(lambda: host.console_file, "its console file")
    req = urllib.request.Request(doc["url"] + path, method="POST",
                                 data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {doc['token']}",
                                          "Content-Type": "application/json",
                                          "traceparent": traceparent})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


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
