"""The span export thread's batches (``_spans.Batcher``: woken by a full batch it sends full
batches only, the rest on its schedule or a flush, 2b50257e), attacked: threads whose puts
cross a full batch together, a flush racing a woken round, a queue filled past its cap while
the collector hangs, a collector that refuses or raises, a host stopped right after a
request, a plugin route served while the exporter hangs. Interleavings are forced with gates
(a line tracer holding one thread at one line of the Batcher's own code), never with sleeps;
a span is either exported or counted as dropped."""

from __future__ import annotations

import inspect
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from omnicore import telemetry
from omnicore.telemetry import Settings, _sdk
from omnicore.telemetry._spans import INTERNAL, Batcher, Record, Sampler, new_span, record
from tests.routes import conftest as routes
from tests.routes.conftest import RouteHost
from tests.routes.test_hostile import route
from tests.waiting import eventually

route_host = routes.route_host  # the routes tests' host, as a fixture here
KEEP = Sampler(1.0, True)
HOUR = 3600.0  # a schedule that never comes during a test: what is sent, a wake sent


def _record(i: int) -> Record:
    s = new_span(f"span {i}", INTERNAL, {"i": i}, None, KEEP)
    s.end_ns = s.start_ns + 1
    return record(s)


class _Collector:
    """An exporter whose posts wait on ``gate`` (open unless closed): records each batch's
    span names, says when a post started."""

    def __init__(self, *, gated: bool = False) -> None:
        self.batches: list[list[str]] = []
        self.posting = threading.Event()
        self.gate = threading.Event()
        if not gated:
            self.gate.set()

    def __call__(self, batch: list[Record]) -> Any:
        self.batches.append([r[3] for r in batch])
        self.posting.set()
        assert self.gate.wait(120), "the test never opened the gate"
        return None

    def sent(self) -> list[str]:
        return [name for b in self.batches for name in b]


def _line_after(function: Callable[..., Any], text: str) -> int:
    """The number of the first line after the one of ``function`` holding ``text``."""
    lines, first = inspect.getsourcelines(function)
    at = next(i for i, line in enumerate(lines) if text in line)
    return first + next(i for i in range(at + 1, len(lines))
                        if lines[i].strip() and not lines[i].strip().startswith("#"))


class _Hold:
    """A line tracer for the calling thread (or the threads it is installed for): the first
    time ``code`` reaches ``line`` (armed), ``reached`` is set and the thread waits for
    ``release``."""

    def __init__(self, code: Any, line: int) -> None:
        self.code, self.line = code, line
        self.armed = threading.Event()
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, frame: FrameType, event: str, _arg: Any) -> Any:
        if event == "call":
            return self._local if frame.f_code is self.code else None
        return None

    def _local(self, frame: FrameType, event: str, _arg: Any) -> Any:
        if event == "line" and frame.f_lineno == self.line and self.armed.is_set() \
                and not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(120), "the test never released the thread"
        return self._local


def _span(i: int) -> Any:
    s = new_span(f"span {i}", INTERNAL, {"i": i}, None, KEEP)
    s.end_ns = s.start_ns + 1
    return s


#: How a span reaches the queue: a record (a request's, a plugin call's: ``put``) or an
#: ended Span (the host's other spans: ``add``), and the line after its append.
QUEUE: dict[str, tuple[Any, str, Callable[[int], Any]]] = {
    "put": (Batcher.put, "queue.append(r)", _record), "add": (Batcher.add, "", _span)}


# (``add`` is not held: it hands its record to the sink, the C one a single step under the
# GIL, else ``put``, held here.)
@pytest.mark.parametrize(("held", "other"), [("put", "put"), ("put", "add")])
def test_two_spans_that_cross_a_full_batch_together_still_wake_the_thread(
        held: str, other: str) -> None:
    """Two threads end spans at once (a plugin call's worker, the loop's request span, a
    host call's span): the first's span makes the batch full, the second's comes before the
    first looks at the length. Neither may leave the full batch to the schedule (an hour
    here; 5 s in a host, during which a busy host's queue fills and drops spans): the thread
    is woken and sends it."""
    collector = _Collector()
    batcher = Batcher(collector, max_queue=100, batch=4, delay_s=HOUR)
    function, text, make = QUEUE[held]
    hold = _Hold(function.__code__, _line_after(function, text))
    try:
        for i in range(3):
            batcher.put(_record(i))

        def first() -> None:
            sys.settrace(hold)
            try:
                getattr(batcher, held)(make(3))  # the fourth: held after its append
            finally:
                sys.settrace(None)

        hold.armed.set()
        a = threading.Thread(target=first)
        a.start()
        assert hold.reached.wait(60)
        getattr(batcher, other)(QUEUE[other][2](4))  # the fifth; the fourth's put not looked
        hold.release.set()
        a.join(60)
        eventually(lambda: len(collector.sent()) >= 4, "the full batch sent, not scheduled")
        assert collector.batches[0] == [f"span {i}" for i in range(4)]
        assert batcher.flush(60)
        assert collector.sent() == [f"span {i}" for i in range(5)]
        assert (batcher.exported, batcher.dropped) == (5, 0)
    finally:
        hold.release.set()
        batcher.shutdown()


def test_a_flush_racing_a_round_woken_by_a_full_batch_sends_everything() -> None:
    """The thread, woken by a full batch, has decided on full batches only and not yet
    cleared the flush's request when a flush asks for everything: the flush's request is
    overwritten for that round, and the flush must still see every span sent before it
    says it is done (its next round), the full batch first."""
    collector = _Collector()
    hold = _Hold(Batcher._run.__code__, _line_after(Batcher._run, "everything = "))
    threading.settrace(hold)  # the export thread is made traced
    try:
        batcher = Batcher(collector, max_queue=100, batch=4, delay_s=HOUR)
    finally:
        threading.settrace(None)
    flushed: list[bool] = []
    try:
        hold.armed.set()
        for i in range(4):
            batcher.put(_record(i))  # a full batch: the thread wakes, and is held
        assert hold.reached.wait(60)
        for i in range(4, 6):
            batcher.put(_record(i))  # short of a batch: a flush's to send
        flusher = threading.Thread(target=lambda: flushed.append(batcher.flush(120)))
        flusher.start()
        eventually(lambda: batcher._everything, "the flush's request")
        hold.release.set()
        flusher.join(120)
        assert flushed == [True]
        assert collector.batches == [[f"span {i}" for i in range(4)], ["span 4", "span 5"]]
        assert not batcher.queue and (batcher.exported, batcher.dropped) == (6, 0)
    finally:
        hold.release.set()
        batcher.shutdown()


def test_a_queue_past_its_cap_counts_each_dropped_span_and_never_blocks_a_put() -> None:
    """The collector hangs on its first post; 26 more spans come from another thread (a
    plugin call's): none of the puts waits (the thread ends while the post still hangs),
    the queue holds its cap and each span past it is counted; once the collector answers,
    what was queued is sent, the short rest with a flush: every span exported or counted."""
    collector = _Collector(gated=True)
    batcher = Batcher(collector, max_queue=10, batch=4, delay_s=HOUR)
    try:
        for i in range(4):
            batcher.put(_record(i))
        assert collector.posting.wait(60)
        done = threading.Event()

        def more() -> None:
            for i in range(4, 30):
                batcher.put(_record(i))
            done.set()

        threading.Thread(target=more).start()
        assert done.wait(60), "a put waited for the collector"
        assert not collector.gate.is_set() and len(batcher.queue) == 10
        assert batcher.dropped == 16
        collector.gate.set()
        assert batcher.flush(60)
        assert collector.sent() == [f"span {i}" for i in range(14)]  # in order, none twice
        assert (batcher.exported, batcher.dropped) == (14, 16)
    finally:
        collector.gate.set()
        batcher.shutdown()


def test_a_collector_that_refuses_or_raises_has_its_spans_counted_as_dropped() -> None:
    """A post refused (the SDK's FAILURE), one that raises (an exporter's bug), then one
    taken: the thread lives on, the first two batches are counted dropped, the third
    exported; a shutdown then sends the rest."""
    answers: list[Any] = [SpanExportResult.FAILURE, ConnectionError("the collector is gone"),
                          SpanExportResult.SUCCESS]
    taken: list[int] = []

    def export(batch: list[Record]) -> Any:
        answer = answers.pop(0) if answers else SpanExportResult.SUCCESS
        if isinstance(answer, Exception):
            raise answer
        taken.append(len(batch))
        return answer

    batcher = Batcher(export, max_queue=100, batch=4, delay_s=HOUR)
    for i in range(14):
        batcher.put(_record(i))
    eventually(lambda: batcher.exported + batcher.dropped == 12, "three full batches")
    assert (batcher.exported, batcher.dropped) == (4, 8)
    batcher.shutdown()
    assert (batcher.exported, batcher.dropped) == (6, 8) and not batcher.queue


def test_a_round_short_of_a_batch_goes_on_the_schedule_after_a_woken_one() -> None:
    """Five spans, a batch of four: the full batch goes at once, the one left goes on the
    schedule (no flush, no more spans), not with the next full batch only."""
    collector = _Collector()
    batcher = Batcher(collector, max_queue=100, batch=4, delay_s=0.05)
    try:
        for i in range(5):
            batcher.put(_record(i))
        eventually(lambda: collector.sent() == [f"span {i}" for i in range(5)],
                   "the one left, on the schedule")
    finally:
        batcher.shutdown()


def test_a_shutdown_with_the_collector_hanging_returns_and_leaves_nothing_claimed() -> None:
    """A collector that never answers: a flush says it did not finish, a shutdown returns
    at its own timeout, and no span is counted exported that the collector did not take."""
    collector = _Collector(gated=True)
    batcher = Batcher(collector, max_queue=100, batch=4, delay_s=HOUR)
    try:
        for i in range(6):
            batcher.put(_record(i))
        assert collector.posting.wait(60)
        assert batcher.flush(0.01) is False
        batcher.shutdown(0.01)
        assert batcher.exported == 0 and batcher.dropped == 0
        assert len(batcher.queue) == 2  # what the thread had not taken yet
    finally:
        collector.gate.set()


# -- a real host -----------------------------------------------------------------------------


class _Exporter(SpanExporter):
    """The SDK's exporter interface: every span it was handed; its posts wait on ``gate``."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.gate = threading.Event()
        self.gate.set()
        self.posting = threading.Event()
        self.lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.posting.set()
        assert self.gate.wait(120), "the test never opened the gate"
        with self.lock:
            self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def names(self) -> list[str]:
        with self.lock:
            return [s.name for s in self.spans]

    def shutdown(self) -> None:
        self.gate.set()


@pytest.fixture
def exporter() -> Iterator[_Exporter]:
    made = _Exporter()
    yield made
    made.gate.set()
    telemetry.reset()


def test_a_host_stopped_right_after_a_request_has_sent_its_spans(
        exporter: _Exporter, route_host: Callable[..., RouteHost]) -> None:
    """A route's request, its answer read, then the host stopped at once (the schedule 5 s
    away, no flush of the test's): the request's span and its plugin call's were sent by
    the time the stop returned."""
    telemetry.start(Settings(service_name="test"), "instance-1", exporter, environ={})
    host = route_host(routes={"echo": route("echo", "/echo")})
    for _ in range(3):
        r = host.client.post("/http/echo", content=b"ok")
        assert r.status_code == 200 and r.content == b"ok"
    host.app.stop()
    names = exporter.names()
    assert names.count("POST /http/echo") == 3 and names.count("call web/echo") == 3, names
    assert _sdk.span_counts()[1] == 0


def test_a_route_served_while_the_exporter_hangs_never_waits_and_counts_its_spans(
        exporter: _Exporter, route_host: Callable[..., RouteHost]) -> None:
    """A batch of 2 and a queue of 8: the exporter hangs on its first post; 20 requests are
    answered meanwhile (their spans queued, then dropped and counted past the cap); once
    it answers, a flush sends the queued ones: every span of every request is exported or
    counted dropped."""
    telemetry.start(Settings(service_name="test", max_queue_size=8), "instance-1", exporter,
                    environ={"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "2",
                             "OTEL_BSP_SCHEDULE_DELAY": "3600000"})
    host = route_host(routes={"echo": route("echo", "/echo")})
    batcher = _sdk._batcher
    assert batcher is not None
    exporter.gate.clear()
    assert host.client.post("/http/echo", content=b"0").status_code == 200
    assert exporter.posting.wait(60)  # the first full batch, the post hanging
    for i in range(1, 21):
        r = host.client.post("/http/echo", content=b"%d" % i)
        assert r.status_code == 200 and r.content == b"%d" % i
    eventually(lambda: sum(_sdk.span_counts()) + len(batcher.queue) >= 40 or None,
               "the requests' spans queued or counted")  # (a request span follows its answer)
    assert len(batcher.queue) == 8 and exporter.names() == []
    exporter.gate.set()
    telemetry.flush(60)
    exported, dropped = _sdk.span_counts()
    names = exporter.names()
    assert exported == len(names) == 10 and dropped == 32
    assert names.count("POST /http/echo") + names.count("call web/echo") == 10
