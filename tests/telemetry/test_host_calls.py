"""The spans of host calls that leave the process (omnicore.telemetry, issue 62): outbound
HTTP by host with its ``traceparent`` sent, SQL and Redis by operation and never a statement's
text or values, an event's publish by topic. In this process, on an in-memory exporter, turned
off again after each test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from omnicore import telemetry
from omnicore.capabilities import events as events_capability
from omnicore.capabilities import redis as redis_capability
from omnicore.capabilities import sql as sql_capability
from omnicore.egress.client import Client
from omnicore.egress.policy import Policy
from omnicore.egress.request import Request
from omnicore.subscriptions import Refusal
from omnicore.telemetry import Settings, _sdk


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    telemetry.flush()
    return list(exporter.get_finished_spans())


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_outbound_http_is_a_client_span_by_host_and_sends_its_traceparent(
        spans: InMemorySpanExporter, server: tuple[str, list[dict[str, str]]]) -> None:
    url, seen = server
    client = Client(Policy.from_grant({"allow_hosts": [url],
                                       "allow_addresses": ["127.0.0.0/8"]}, "fetcher"))
    with telemetry.span("call fetcher/run") as outer:
        answer = client.send(Request("GET", url=url + "/items?token=s3cret",
                                     headers={"TraceParent": "00-" + "1" * 32 + "-" + "2" * 16
                                              + "-01"}))
    assert answer.status == 204
    made = {s.name: s for s in finished(spans)}
    request = made["GET 127.0.0.1"]
    assert request.kind is SpanKind.CLIENT
    assert request.parent is not None and request.parent.span_id == \
        outer.span_id
    assert dict(request.attributes or {}) == {
        "http.request.method": "GET", "server.address": "127.0.0.1",
        "server.port": int(url.rsplit(":", 1)[1]), "http.response.status_code": 204}
    # The host's span is the parent the server hears of, not what the guest put there.
    context = request.context
    assert seen[0]["traceparent"].startswith(
        f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    assert "1" * 32 not in str(seen)


class _Backend:
    def __init__(self, kind: str) -> None:
        self.connector = SimpleNamespace(kind=kind)
        self.ran: list[Any] = []

    def request(self, req: dict[str, Any]) -> tuple[str, list[Any]]:
        return req["sql"], req.get("args", [])

    def run(self, *args: Any) -> bytes:
        self.ran.append(args)
        return b'{"rows": []}'

    def command(self, *args: Any) -> bytes:
        self.ran.append(args)
        return b'"OK"'


class _Bound:
    plugin = "shop"

    def __init__(self, backend: _Backend) -> None:
        self._backend = backend

    def backend(self, name: str) -> _Backend:
        return self._backend


SECRET = "4111-1111-1111-1111"


@pytest.mark.parametrize(("kind", "system", "sql", "operation"), [
    ("postgres", "postgresql", f"SELECT * FROM cards WHERE number = '{SECRET}'", "SELECT"),
    ("mysql", "mysql", f"/* why */ -- and\n  insert into cards VALUES ('{SECRET}')", "INSERT"),
    ("postgres", "postgresql", f"'{SECRET}'", "UNKNOWN"),
])
def test_a_statement_is_a_client_span_by_operation_never_its_text_or_values(
        spans: InMemorySpanExporter, kind: str, system: str, sql: str, operation: str) -> None:
    backend = _Backend(kind)
    with telemetry.span("call shop/buy"):
        out = sql_capability._run(True, _Bound(backend),  # type: ignore[arg-type]
                                  "orders", {"sql": sql, "args": [SECRET]}, 1e18, None)
    assert out == b'{"rows": []}' and len(backend.ran) == 1
    made = {s.name: s for s in finished(spans)}
    statement = made[f"{operation} orders"]
    assert statement.kind is SpanKind.CLIENT
    assert dict(statement.attributes or {}) == {
        "db.system": system, "db.system.name": system, "db.operation.name": operation,
        "omnicore.connector": "orders"}
    assert statement.parent is not None
    assert SECRET not in repr([(s.name, dict(s.attributes or {}), s.events) for s in made.values()])


def test_a_redis_command_is_a_client_span_by_command_never_its_keys(
        spans: InMemorySpanExporter) -> None:
    backend = _Backend("redis")
    out = redis_capability._send(_Bound(backend), 1e18, "cache",  # type: ignore[arg-type]
                                 {"cmd": "hset", "args": [SECRET, "f", SECRET]})
    assert out == b'"OK"'
    (command,) = finished(spans)
    assert command.name == "HSET cache"
    assert dict(command.attributes or {}) == {
        "db.system": "redis", "db.system.name": "redis", "db.operation.name": "HSET",
        "omnicore.connector": "cache"}
    assert SECRET not in repr(dict(command.attributes or {}))


def test_off_the_host_calls_make_no_span_and_send_no_traceparent(
        server: tuple[str, list[dict[str, str]]]) -> None:
    assert telemetry.ON is False
    url, seen = server
    client = Client(Policy.from_grant({"allow_hosts": [url],
                                       "allow_addresses": ["127.0.0.0/8"]}, "fetcher"))
    with telemetry.span("nothing") as made:
        assert made is None
        client.send(Request("GET", url=url))
    assert "traceparent" not in seen[0]
    assert telemetry.traceparent() is None and telemetry.ids() is None


class _Subs:
    def __init__(self, refusal: Refusal | None) -> None:
        self.refusal = refusal
        self.seen: list[str | None] = []

    def publish(self, plugin: str, topic: str, size: int, payload: Any) -> Refusal | None:
        self.seen.append(telemetry.traceparent())  # what a durable delivery would store
        return self.refusal


@pytest.mark.parametrize("refusal", [None, Refusal.RATE])
def test_a_publish_is_a_producer_span_by_topic_never_its_payload(
        spans: InMemorySpanExporter, refusal: Refusal | None) -> None:
    subs = _Subs(refusal)
    state = SimpleNamespace(plugin="notes", subs=subs, patterns=("*",))
    status = events_capability._send(state, "notes.saved", 12,  # type: ignore[arg-type]
                                     lambda: SECRET.encode())
    assert (status == 0) is (refusal is None)
    (publish,) = finished(spans)
    assert publish.name == "publish notes.saved" and publish.kind is SpanKind.PRODUCER
    expected: dict[str, Any] = {
        "messaging.system": "omnicore", "messaging.operation.type": "publish",
        "messaging.destination.name": "notes.saved", "messaging.message.body.size": 12,
        "omnicore.plugin.name": "notes"}
    if refusal is not None:
        expected["error.type"] = "RATE"
    assert dict(publish.attributes or {}) == expected
    # Inside the span: the deliveries it queues carry its context.
    assert subs.seen[0] is not None and f"{publish.context.span_id:016x}" in subs.seen[0]


class _Stuck(InMemorySpanExporter):
    """A collector that does not answer until told to."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()

    def export(self, spans: Any) -> Any:
        self.go.wait(10)
        return super().export(spans)


def test_a_full_queue_drops_spans_counted_and_warns_once_never_blocking(
        caplog: pytest.LogCaptureFixture) -> None:
    stuck = _Stuck()
    telemetry.start(Settings(service_name="test", max_queue_size=2), "i", stuck)
    try:
        before = _sdk.dropped()
        with caplog.at_level("WARNING"):
            for i in range(50):
                with telemetry.span(f"s{i}"):
                    pass
        assert _sdk.dropped() - before >= 40
        said = [r for r in caplog.records if "span queue is full" in r.getMessage()]
        assert len(said) <= 1
        assert not [r for r in caplog.records if r.getMessage().startswith("Queue full")]
    finally:
        stuck.go.set()
        telemetry.reset()


def test_a_flush_starts_no_batch_past_its_timeout() -> None:
    """An app's stop flushes: a collector that answers slowly must not hold it for every
    batch queued; what is left waits for the export thread."""
    from omnicore.telemetry._spans import Batcher, Sampler, new_span

    sent: list[int] = []

    def slow(spans: list[Any]) -> None:
        time.sleep(0.2)
        sent.append(len(spans))

    batcher = Batcher(slow, max_queue=100, batch=10, delay_s=600)
    try:
        batcher.queue.extend(new_span("s", 1, None, None, Sampler(1.0, True))
                             for _ in range(30))
        started = time.monotonic()
        batcher.drain(time.monotonic() + 0.1)
        assert time.monotonic() - started < 2
        assert sent == [10] and len(batcher.queue) == 20
    finally:
        batcher.shutdown()
    assert sent == [10, 10, 10]  # the rest at the shutdown
