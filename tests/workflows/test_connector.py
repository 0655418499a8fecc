"""Connector steps against a real HTTP server on 127.0.0.1: credentials and secrets are sent,
and never land in the run's state, history, logs or database."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from omnicore import OmniApp
from omnicore.errors import GuestError

API_KEY = "sk-live-1234567890abcdef"
EXTRA = "extra-secret-value-42"


class Upstream:
    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                record = {"path": self.path, "headers": dict(self.headers),
                          "body": json.loads(body or b"null")}
                outer.seen.append(record)
                data = json.dumps({"echo": record}).encode()
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    up = Upstream()
    yield up
    up.server.shutdown()
    up.server.server_close()


FLOW = """\
format: omniflow/v1
name: post-it
steps:
  - id: call
    uses: connector:api
    method: POST
    path: "/items/${{ inputs.id }}"
    query: {verbose: "1"}
    headers: {X-Extra: "v=${{ secrets.EXTRA }}"}
    with: {title: "${{ inputs.title }}"}
    retry: {max_attempts: 2, initial: 10ms, jitter: false}
outputs: {status: "${{ steps.call.output.status }}"}
"""


def start(wf_app: Callable[..., OmniApp], port: int) -> OmniApp:
    app = wf_app({"post.yaml": FLOW}, extra=f"""\
        connectors:
          api: {{base_url: "http://127.0.0.1:{port}", auth: bearer, secret: API_KEY,
                allow_addresses: [127.0.0.1/32]}}
        """)
    app.secrets.set("API_KEY", API_KEY)
    app.secrets.set("EXTRA", EXTRA)
    return app


def test_secrets_are_sent_but_never_recorded(wf_app: Callable[..., OmniApp], upstream: Upstream,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app = start(wf_app, upstream.port)
    run = app.workflows.wait(app.workflows.start("post-it", {"id": 7, "title": "hi"}).id, 30)
    assert run.state == "succeeded", run.error
    sent = upstream.seen[0]
    assert sent["path"] == "/items/7?verbose=1"
    assert sent["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert sent["headers"]["X-Extra"] == f"v={EXTRA}"
    assert sent["headers"]["Idempotency-Key"] == f"post-it/{run.id}/call"
    assert sent["body"] == {"title": "hi"}

    row = app.workflows.store.step(run.id, "call")
    assert row is not None
    assert row.input["headers"] == {"X-Extra": "v=[secret EXTRA]"}
    echoed = row.output["body"]["echo"]["headers"]
    assert echoed["Authorization"] == "Bearer [REDACTED]" and echoed["X-Extra"] == "v=[REDACTED]"
    everything = json.dumps([r.as_dict() for r in app.workflows.steps(run.id)]) + json.dumps(
        [h.as_dict() for h in app.workflows.store.history(run.id)]) + caplog.text
    assert API_KEY not in everything and EXTRA not in everything
    app.stop()
    data = b"".join(p.read_bytes() for p in Path(app.data_dir).glob("omnicore.db*"))
    assert API_KEY.encode() not in data and EXTRA.encode() not in data


def test_upstream_errors_retry_or_not_and_stay_redacted(wf_app: Callable[..., OmniApp],
                                                        upstream: Upstream) -> None:
    app = start(wf_app, upstream.port)
    upstream.status = 503
    run = app.workflows.wait(app.workflows.start("post-it", {"id": 1, "title": "a"}).id, 30)
    row = app.workflows.store.step(run.id, "call")
    assert run.state == "failed" and row is not None and row.attempt == 2
    assert "answered 503" in (row.error or "") and API_KEY not in (row.error or "")
    upstream.status = 400
    run = app.workflows.wait(app.workflows.start("post-it", {"id": 2, "title": "b"}).id, 30)
    row = app.workflows.store.step(run.id, "call")
    assert run.state == "failed" and row is not None and row.attempt == 1  # 400: no retry


def test_a_missing_secret_fails_the_step_clearly(wf_app: Callable[..., OmniApp],
                                                 upstream: Upstream) -> None:
    app = start(wf_app, upstream.port)
    app.secrets.delete("EXTRA")
    run = app.workflows.wait(app.workflows.start("post-it", {"id": 1, "title": "a"}).id, 30)
    assert run.state == "failed"
    assert "secret 'EXTRA' is not set (omnicore secrets set EXTRA)" in (run.error or "")
    assert upstream.seen == []


PRIVATE = """\
format: omniflow/v1
name: private
steps:
  - id: call
    uses: connector:${{ inputs.to }}
    method: POST
    path: /x
    retry: {max_attempts: 3, initial: 10ms, jitter: false}
"""


@pytest.mark.parametrize("connector", ["named", "other_net"])
def test_a_private_address_is_refused_to_a_step_as_to_a_plugin(
        wf_app: Callable[..., OmniApp], upstream: Upstream, connector: str) -> None:
    from tests.capabilities.test_http import Guest, http_wasm

    flow = PRIVATE.replace("${{ inputs.to }}", connector)
    app = wf_app({"private.yaml": flow, "fine.yaml": PRIVATE.replace(
        "${{ inputs.to }}", "allowed").replace("name: private", "name: fine")}, extra=f"""\
        connectors:
          named: {{base_url: "http://localhost:{upstream.port}"}}
          other_net: {{base_url: "http://localhost:{upstream.port}",
                      allow_addresses: [10.0.0.0/8, "fd00::/8"]}}
          allowed: {{base_url: "http://localhost:{upstream.port}",
                    allow_addresses: [127.0.0.0/8, "::1"]}}
        """)
    run = app.workflows.wait(app.workflows.start("private", {}).id, 30)
    row = app.workflows.store.step(run.id, "call")
    assert run.state == "failed" and row is not None
    assert row.attempt == 1                                   # a refusal is not retried
    assert "DENIED" in (row.error or "") and "127.0.0.1" in (row.error or ""), row.error
    assert upstream.seen == []
    # The http capability refuses the same connector with the same words.
    app.plugins.load(http_wasm("web"), grants={"http": {"connectors": [connector]}})
    with pytest.raises(GuestError) as refused:
        Guest(app, "web").raw({"method": "POST", "connector": connector, "path": "/x"})
    assert refused.value.guest_message.startswith("DENIED:") and upstream.seen == []
    # Naming the network in the connector is what lets both through.
    fine = app.workflows.wait(app.workflows.start("fine", {}).id, 30)
    assert fine.state == "succeeded", fine.error
    assert len(upstream.seen) == 1
