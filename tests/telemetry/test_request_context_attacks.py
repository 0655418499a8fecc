"""Attacks on the request context's end (02f61518, adf5c7f9): the request's span takes the
request's span context back before the response's last message, the body deadline's timer is
made in a context of nothing, and a plugin call's span ends inline. What a hostile client (or
a failing plugin) does must still give each request its span, with the right status and
links, and leave no span context of a finished request in the loop's timers or ready
handles."""

from __future__ import annotations

import asyncio
import contextvars
import json
import shutil
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from omnicore import OmniApp, telemetry
from omnicore.console import ConsoleModule
from omnicore.errors import Trap
from omnicore.plugins.calls import call as call_entry
from omnicore.telemetry import Settings, _spans
from tests.console.conftest import push
from tests.waiting import eventually

GREETER = Path(__file__).resolve().parents[2] / "build" / "plugins" / "greeter-rust.wasm"
INVOKE = "/api/v1/plugins/greeter-rust/invoke"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


def _start(tmp_path: Path, **console: object) -> tuple[OmniApp, ConsoleModule]:
    (tmp_path / "plugins").mkdir()
    shutil.copy(GREETER, tmp_path / "plugins")
    app = OmniApp("attacks", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0, **console},
        "plugins": {"greeter-rust": {"grants": ["config", "log"]}}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    assert app.loop is not None and module.console is not None and module.url
    return app, module


@pytest.fixture
def served(tmp_path: Path, spans: InMemorySpanExporter) -> Iterator[tuple[OmniApp, str, str]]:
    app, module = _start(tmp_path, body_timeout_s=1.0)
    assert module.console is not None and module.url
    try:
        yield app, module.url, module.console.auth.local_token
    finally:
        app.stop()


def _held(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """Every span context current in the context of a timer (cancelled or not) or a ready
    handle of ``loop``, read on the loop itself."""
    async def look() -> list[Any]:
        handles = [*loop._scheduled, *loop._ready]  # type: ignore[attr-defined]
        found = []
        for h in handles:
            ctx = getattr(h, "_context", None)
            if ctx is not None and ctx.get(_spans.CURRENT) is not None:
                found.append(ctx.get(_spans.CURRENT))
        return found

    return asyncio.run_coroutine_threadsafe(look(), loop).result(10)


def _server(spans: InMemorySpanExporter) -> list[ReadableSpan]:
    telemetry.flush()
    return [s for s in spans.get_finished_spans() if s.parent is None or s.parent.is_remote
            or (s.attributes or {}).get("url.path") is not None]


def _finished(spans: InMemorySpanExporter, servers: int) -> tuple[ReadableSpan, ...]:
    """Every span ended, once ``servers`` requests' spans are among them: a request's span
    ends after its last message is sent, so the client may have its answer first."""
    def ended() -> tuple[ReadableSpan, ...] | None:
        telemetry.flush()
        found = spans.get_finished_spans()
        return found if sum(s.kind.name == "SERVER" for s in found) >= servers else None

    found = eventually(ended, f"{servers} request spans")
    assert sum(s.kind.name == "SERVER" for s in found) == servers, found
    return found


def _by_path(spans: InMemorySpanExporter, path: str) -> list[ReadableSpan]:
    return [s for s in _server(spans) if (s.attributes or {}).get("url.path") == path]


def _trickle(url: str, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """``body`` sent in pieces a tenth of the deadline (1 s) apart, whole well before it; the
    answer's first bytes."""
    host, port = url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as sock:
        sock.settimeout(15)
        head = (f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Length: {len(body)}\r\n")
        sock.sendall((head + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                      + "\r\n").encode())
        for i in range(0, len(body), 8):
            sock.sendall(body[i:i + 8])
            time.sleep(0.02)
        return sock.recv(200)


def _greet(name: str) -> dict[str, str]:
    return {"handler": "greet", "input": json.dumps({"name": name})}


def test_errors_and_successes_on_one_connection_each_keep_their_span_and_nothing_leaks(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter) -> None:
    app, url, token = served
    assert app.loop is not None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as client:
        codes = [
            client.post(INVOKE, json=_greet("Ada")).status_code,
            client.get("/api/v1/plugins/no-such-plugin").status_code,
            client.post(INVOKE, json={"handler": "nope", "input": "{}"}).status_code,
            client.post(INVOKE, json=_greet("")).status_code,
            client.post(INVOKE, content=b"{not json",
                        headers={"Content-Type": "application/json"}).status_code,
            client.get("/api/v1/info", headers={"Authorization": "Bearer wrong"}).status_code,
            client.post(INVOKE, json=_greet("Grace")).status_code,
        ]
        assert codes[0] == codes[-1] == 200
        assert all(400 <= c < 500 for c in codes[1:-1]), codes
        finished = _finished(spans, len(codes))
        assert _held(app.loop) == []
    server = [s for s in finished if s.kind.name == "SERVER"]
    assert [(s.attributes or {}).get("http.response.status_code") for s in server] == codes
    assert all(s.status.status_code is not StatusCode.ERROR for s in server)
    calls = [s for s in finished if s.name.startswith("call greeter-rust/")]
    # Every plugin call is a child of a request span of the same trace.
    by_id = {s.context.span_id: s for s in server}
    for call in calls:
        assert call.parent is not None and call.parent.span_id in by_id, call
        assert by_id[call.parent.span_id].context.trace_id == call.context.trace_id


def test_many_requests_on_fresh_and_kept_alive_connections_leave_no_span_context(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter) -> None:
    app, url, token = served
    assert app.loop is not None
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for i in range(30):
            assert client.post(INVOKE, json=_greet(f"n{i}")).status_code == 200
            assert client.get("/api/v1/plugins/missing").status_code == 404
        _finished(spans, 60)
        assert _held(app.loop) == []
    for i in range(10):
        with httpx.Client(base_url=url, headers=headers, timeout=30) as one:
            assert one.post(INVOKE, json=_greet(f"f{i}")).status_code == 200
    _finished(spans, 70)
    assert _held(app.loop) == []


def test_an_incoming_traceparent_is_continued_and_not_kept(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter) -> None:
    app, url, token = served
    assert app.loop is not None
    with httpx.Client(base_url=url, timeout=30, headers={
            "Authorization": f"Bearer {token}",
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01", "tracestate": "k=v"}) as client:
        assert client.post(INVOKE, json=_greet("Ada")).status_code == 200
        finished = _finished(spans, 1)
        assert _held(app.loop) == []
    (request,) = [s for s in finished if s.kind.name == "SERVER"]
    assert f"{request.context.trace_id:032x}" == TRACE_ID
    assert request.parent is not None and request.parent.is_remote
    assert f"{request.parent.span_id:016x}" == PARENT_ID
    (call,) = [s for s in finished if s.name == "call greeter-rust/greet"]
    assert call.parent is not None and call.parent.span_id == request.context.span_id
    assert f"{call.context.trace_id:032x}" == TRACE_ID


def test_a_traceparent_not_sampled_is_followed_and_leaves_nothing(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter) -> None:
    app, url, token = served
    assert app.loop is not None
    with httpx.Client(base_url=url, timeout=30, headers={
            "Authorization": f"Bearer {token}",
            "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"}) as client:
        for _ in range(5):
            assert client.post(INVOKE, json=_greet("Ada")).status_code == 200
            assert client.get("/api/v1/plugins/missing").status_code == 404
        assert _held(app.loop) == []
    telemetry.flush()
    assert spans.get_finished_spans() == ()


def test_sampled_out_requests_take_the_same_path(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    telemetry.start(Settings(service_name="test", sampler="always_off"), "i", exporter)
    try:
        app, module = _start(tmp_path)
        assert app.loop is not None and module.console is not None and module.url
        try:
            with httpx.Client(base_url=module.url, timeout=30, headers={
                    "Authorization": f"Bearer {module.console.auth.local_token}"}) as client:
                for i in range(10):
                    assert client.post(INVOKE, json=_greet(f"n{i}")).status_code == 200
                assert client.post(INVOKE, json={"handler": "x", "input": "{}"}).status_code \
                    == 404
                assert _held(app.loop) == []
        finally:
            app.stop()
        telemetry.flush()
        assert exporter.get_finished_spans() == ()
    finally:
        telemetry.reset()


def test_a_trickled_body_is_cut_at_its_deadline_while_traced(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter) -> None:
    app, url, token = served
    assert app.loop is not None
    bearer = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    pushed = push(url, "PUT", "/api/v1/secrets/SLOW", bearer, total=64 * 1024, chunk=16,
                  declare=True, pause_s=0.2)
    assert " 408 " in f"{pushed.status} ", pushed
    # A body in time (trickled, but whole before its deadline) is not cut.
    body = json.dumps({"value": "s3cret"}).encode()
    assert _trickle(url, "PUT", "/api/v1/secrets/SLOW", bearer, body).startswith(b"HTTP/1.1 20")
    _finished(spans, 2)
    cut, whole = _by_path(spans, "/api/v1/secrets/SLOW")
    assert (cut.attributes or {}).get("http.response.status_code") == 408
    assert (whole.attributes or {}).get("http.response.status_code") in (200, 201, 204)
    assert app.secrets.names() == ["SLOW"]


def test_a_client_gone_mid_request_still_gives_a_span_and_leaves_nothing(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter) -> None:
    app, url, token = served
    assert app.loop is not None
    host, port = url.split("//")[1].rsplit(":", 1)
    body = json.dumps(_greet("Ada")).encode()
    # A declared body half sent, then the connection closed: the request never completes.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall((f"POST {INVOKE} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                      f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body[:5])
    # A streamed answer (a static file) begun, then the connection reset under it.
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"GET /static/console.css HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n"
                     .encode())
        assert sock.recv(12).startswith(b"HTTP/1.1 200")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def both() -> list[ReadableSpan] | None:
        telemetry.flush()
        found = [s for s in spans.get_finished_spans() if s.kind.name == "SERVER"]
        return found if len(found) == 2 else None

    ended = eventually(both, "the two abandoned requests' spans")
    (half,) = [s for s in ended if (s.attributes or {}).get("url.path") == INVOKE]
    (static,) = [s for s in ended if s.name == "GET /static"]
    # The half body: the route saw the client go, an error span with no status sent.
    assert (half.attributes or {}).get("error.type") == "ClientDisconnect"
    assert "http.response.status_code" not in (half.attributes or {})
    assert half.status.status_code is StatusCode.ERROR
    assert (static.attributes or {}).get("http.response.status_code") == 200
    # No plugin was called for the half body; only the streamed answer (the documented
    # case: sent from a task of its own) may still hold its span context.
    assert [s for s in spans.get_finished_spans() if s.name.startswith("call ")] == []
    assert {p.span_id for p in _held(app.loop)} <= {static.context.span_id}


def test_a_failing_plugin_call_is_an_error_span_under_its_request(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter) -> None:
    _, url, token = served
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as client:
        bad = client.post(INVOKE, json=_greet(""))
        missing = client.post(INVOKE, json={"handler": "nope", "input": "{}"})
    assert bad.status_code >= 400 and missing.status_code == 404
    finished = _finished(spans, 2)
    (failed,) = [s for s in finished if s.name == "call greeter-rust/greet"]
    attributes = failed.attributes or {}
    assert attributes["omnicore.plugin.outcome"] == "error"
    assert attributes["error.type"] == "GuestError"
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes["omnicore.plugin.breaker"] == "closed"
    assert "omnicore.plugin.output_bytes" not in attributes
    assert attributes["omnicore.plugin.input_bytes"] == len(_greet("")["input"])
    (request,) = [s for s in finished if s.kind.name == "SERVER"
                  and s.context.span_id == (failed.parent.span_id if failed.parent else 0)]
    assert (request.attributes or {})["http.response.status_code"] == bad.status_code
    (nope,) = [s for s in finished if s.name == "call greeter-rust/nope"]
    assert (nope.attributes or {})["omnicore.plugin.outcome"] == "error"
    assert (nope.attributes or {})["error.type"] == "HandlerNotFound"


@pytest.mark.parametrize(("raised", "outcome"), [
    (Trap("unreachable", plugin="greeter-rust", handler="greet"), "error"),
    (ValueError("not the plugin's doing"), "host-error"),
    (KeyboardInterrupt(), "host-error"),
])
def test_a_call_raising_ends_its_span_with_its_outcome_and_resets_the_context(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter,
        raised: BaseException, outcome: str) -> None:
    app = served[0]
    entry = app.plugins._entries.get("greeter-rust")
    assert entry is not None

    def run(entry: Any, version: Any, data: bytes) -> bytes:
        raise raised

    request = _spans.new_context(None, _spans.Sampler(1.0, True))

    def inside() -> None:
        token = _spans.CURRENT.set(request)
        try:
            with pytest.raises(type(raised)):
                call_entry(entry, "greet", b"{}", run)
            assert _spans.CURRENT.get() is request  # taken back, even on the way out
        finally:
            _spans.CURRENT.reset(token)

    contextvars.Context().run(inside)
    telemetry.flush()
    (span,) = [s for s in spans.get_finished_spans() if s.name == "call greeter-rust/greet"]
    attributes = span.attributes or {}
    assert attributes["omnicore.plugin.outcome"] == outcome
    assert attributes["error.type"] == type(raised).__name__
    assert span.status.status_code is StatusCode.ERROR
    assert "omnicore.plugin.output_bytes" not in attributes
    assert isinstance(attributes["omnicore.plugin.memory_bytes"], int)
    assert span.parent is not None and span.parent.span_id == request.span_id
    assert span.context.trace_id == request.trace_id
    # A host error gives the breaker back; a trap counts against it, but once is not open.
    assert attributes["omnicore.plugin.breaker"] == "closed" == entry.breaker.state



def test_http2_streams_keep_their_spans_and_links(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter) -> None:
    app, url, token = served
    assert app.loop is not None
    # h2c with prior knowledge: every request a stream of one connection.
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      http1=False, http2=True, timeout=30) as client:
        answers = [client.post(INVOKE, json=_greet(f"n{i}")) for i in range(5)]
        answers.append(client.get("/api/v1/plugins/missing"))
        assert {r.http_version for r in answers} == {"HTTP/2"}
        assert [r.status_code for r in answers] == [200] * 5 + [404]
    finished = _finished(spans, 6)
    server = [s for s in finished if s.kind.name == "SERVER"]
    assert [(s.attributes or {}).get("http.response.status_code") for s in server] == \
        [200] * 5 + [404]
    calls = [s for s in finished if s.name == "call greeter-rust/greet"]
    assert sorted(c.parent.span_id for c in calls if c.parent) == \
        sorted(s.context.span_id for s in server[:5])


@pytest.mark.parametrize("case", ["408-trickled", "401-anonymous-body", "h2-get"])
def test_an_answer_before_its_body_leaves_no_span_context(
        served: tuple[OmniApp, str, str], spans: InMemorySpanExporter, case: str) -> None:
    app, url, token = served
    assert app.loop is not None
    path = "/api/v1/secrets/SLOW"
    headers = {"Content-Type": "application/json"}
    if case == "h2-get":
        path, status = "/api/v1/info", 200
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                          http1=False, http2=True, timeout=30) as client:
            r = client.get(path)
            assert (r.http_version, r.status_code) == ("HTTP/2", status)
            _finished(spans, 1)
            held = _held(app.loop)
    else:
        status = int(case[:3])
        if status == 408:
            headers["Authorization"] = f"Bearer {token}"
            pushed = push(url, "PUT", path, headers, total=64 * 1024, chunk=16, declare=True,
                          pause_s=0.2)
        else:
            pushed = push(url, "PUT", path, headers, total=8 * 1024 * 1024, declare=True)
        assert f" {status} " in f"{pushed.status} ", pushed
        _finished(spans, 1)
        held = _held(app.loop)
    (request,) = _by_path(spans, path)
    assert (request.attributes or {})["http.response.status_code"] == status
    assert held == []
