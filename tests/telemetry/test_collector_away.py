"""A collector that is away or refusing (issue 62, item 4: export never blocks a call, dropped
spans counted): spans of a batch it did not take are dropped and counted, not reported as
exported; the host says so once a minute in its own log instead of the OTLP client's line a
retry on stderr; and a host's stop waits for the collector a bounded time, not the
exporter's retries (a stop took 11.5 s with the collector away). Real HTTP servers on
loopback, and a port nothing listens on."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from omnicore import telemetry
from omnicore.telemetry import Settings, _metrics, _sdk
from omnicore.telemetry._spans import Batcher, Sampler, new_span


class Refusing:
    """An OTLP/HTTP endpoint that answers every export 400 (not retried by the client)."""

    def __init__(self) -> None:
        self.posts = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                outer.posts += 1
                self.send_response(400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def refusing() -> Iterator[Refusing]:
    r = Refusing()
    yield r
    r.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_spans_the_collector_refused_are_dropped_counted_and_said_once(
        refusing: Refusing, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    telemetry.start(Settings(service_name="away", traces_endpoint=refusing.url + "/v1/traces"),
                    "i")
    try:
        with caplog.at_level("WARNING"):
            for round_ in range(3):
                for i in range(4):
                    with telemetry.span(f"s{round_}.{i}"):
                        pass
                telemetry.flush(30)
        exported, dropped = _sdk.span_counts()
    finally:
        telemetry.reset()
    assert refusing.posts >= 3  # a batch a flush (the thread's own 5 s round may split one)
    assert (exported, dropped) == (0, 12)  # was (12, 0): handed over, so "exported"
    said = [r for r in caplog.records if "did not take a batch" in r.getMessage()]
    assert len(said) == 1 and said[0].name == "omnicore.telemetry", caplog.text
    # The OTLP client's own line a batch ("Failed to export spans batch code: 400 ..."),
    # outside the host's log format, is the host's line now.
    assert "Failed to export" not in capsys.readouterr().err
    assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]


def test_metrics_the_collector_refused_are_counted_and_said_once(
        refusing: Refusing, caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    Counter("omnicore_things", "Things.", registry=registry).inc()
    export = _metrics.start(Settings(service_name="away",
                                     metrics_endpoint=refusing.url + "/v1/metrics"),
                            "", registry.collect)
    try:
        with caplog.at_level("WARNING"):
            export.export()
            export.export()
    finally:
        export.stop()
    assert refusing.posts >= 2 and export.failed >= 2
    said = [r for r in caplog.records if "did not take the metrics" in r.getMessage()]
    assert len(said) == 1, caplog.text


def test_a_stop_with_the_collector_away_waits_a_bounded_time() -> None:
    # Nothing listens: the client retries the refused connection with backoff (about 1, 2
    # and 4 s, within its 10 s timeout) before giving the export up.
    from prometheus_client import CollectorRegistry, Counter

    registry = CollectorRegistry()
    Counter("omnicore_things", "Things.", registry=registry).inc()
    export = _metrics.start(Settings(service_name="away", metrics_endpoint=(
        f"http://127.0.0.1:{_closed_port()}/v1/metrics")), "", registry.collect)
    started = time.monotonic()
    export.stop(timeout_s=1.0)
    took = time.monotonic() - started
    assert took < 4.5, f"the stop waited {took:.1f} s (the retries take about 7)"


def test_a_flush_waits_for_a_stuck_export_at_most_its_timeout() -> None:
    # The export thread is held in an export (a collector that does not answer); an app's
    # stop flushes: it waits its timeout, not the export (which held the caller's drain on
    # the export's lock until it ended).
    gate = threading.Event()
    sent: list[int] = []

    def stuck(spans: list[Any]) -> None:
        gate.wait(60)
        sent.append(len(spans))

    batcher = Batcher(stuck, max_queue=100, batch=5, delay_s=600)
    try:
        for _ in range(5):  # a full batch wakes the thread, which is held in the export
            batcher.add(new_span("s", 1, None, None, Sampler(1.0, True)))
        batcher.add(new_span("t", 1, None, None, Sampler(1.0, True)))
        started = time.monotonic()
        assert batcher.flush(0.3) is False
        assert time.monotonic() - started < 5
    finally:
        gate.set()
    assert batcher.flush(30) is True  # once it answers, the rest goes at the flush's word
    assert sent == [5, 1]
    batcher.shutdown()
