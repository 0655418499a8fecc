"""The span export thread's batches (``_spans.Batcher``): woken by a full batch it sends full
batches only, as the OpenTelemetry SDK's ``BatchSpanProcessor`` does; what is left goes on
its schedule or with a flush. It once sent whatever it found: under steady load the spans
that came while one batch was posted were the next post, a few dozen at a time, each post's
cost borne by a few spans."""

from __future__ import annotations

import threading
from typing import Any

from omnicore.telemetry._spans import INTERNAL, Batcher, Record, Sampler, new_span, record
from tests.waiting import eventually

KEEP = Sampler(1.0, True)


def _record(i: int) -> Record:
    s = new_span(f"span {i}", INTERNAL, {"i": i}, None, KEEP)
    s.end_ns = s.start_ns + 1
    return record(s)


class _SlowCollector:
    """An exporter whose first post waits on a gate: spans queue meanwhile."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.posting = threading.Event()
        self.gate = threading.Event()

    def __call__(self, batch: list[Record]) -> Any:
        self.batches.append([r[3] for r in batch])
        self.posting.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return None


def _idle(batcher: Batcher, posts: int) -> None:
    """Until the export thread ended the round in which it made ``posts`` posts."""
    with batcher._idle:
        assert batcher._idle.wait_for(lambda: batcher.exported >= 4 * posts
                                      and not batcher._lock.locked(), timeout=60)


def test_spans_that_come_during_a_post_wait_for_a_full_batch_of_their_own() -> None:
    collector = _SlowCollector()
    batcher = Batcher(collector, max_queue=100, batch=4, delay_s=3600)
    try:
        for i in range(4):
            batcher.put(_record(i))
        assert collector.posting.wait(60)  # woken by the full batch, not the schedule
        for i in range(4, 9):  # five more while the first post is under way
            batcher.put(_record(i))
        collector.gate.set()
        _idle(batcher, 2)
        assert collector.batches == [[f"span {i}" for i in range(4)],
                                     [f"span {i}" for i in range(4, 8)]]
        assert [r[3] for r in batcher.queue] == ["span 8"]  # not a post of its own

        assert batcher.flush(60)  # a flush sends what is left, full batch or not
        assert collector.batches[2:] == [["span 8"]]
        assert not batcher.queue
        assert (batcher.exported, batcher.dropped) == (9, 0)
    finally:
        collector.gate.set()
        batcher.shutdown()


def test_a_batch_short_of_full_goes_on_the_schedule() -> None:
    sent: list[int] = []
    batcher = Batcher(lambda batch: sent.append(len(batch)), max_queue=100, batch=512,
                      delay_s=0.05)
    try:
        for i in range(3):
            batcher.put(_record(i))
        eventually(lambda: sent == [3])
        assert not batcher.queue
    finally:
        batcher.shutdown()


def test_shutdown_sends_what_is_queued() -> None:
    sent: list[int] = []
    batcher = Batcher(lambda batch: sent.append(len(batch)), max_queue=100, batch=4,
                      delay_s=3600)
    for i in range(6):
        batcher.put(_record(i))
    batcher.shutdown()
    assert sum(sent) == 6 and all(n <= 4 for n in sent)
    assert not batcher.queue


def test_a_full_batch_passed_by_two_threads_at_once_still_wakes_the_export() -> None:
    """Two threads end spans at once: each appends, then looks at the queue's length. When
    both appended before either looked, neither saw the full batch's length; the export must
    still be woken (it waited for its schedule, here an hour: the queue filled and dropped)."""
    sent: list[list[str]] = []
    batcher = Batcher(lambda batch: sent.append([r[3] for r in batch]), max_queue=100,
                      batch=4, delay_s=3600)
    try:
        for i in range(3):
            batcher.put(_record(i))
        # The other thread's span, appended but not yet looked at (its put still to run its
        # check, which then sees five): this thread's put sees the queue past a full batch.
        batcher.queue.append(_record(3))
        batcher.put(_record(4))
        eventually(lambda: sent == [[f"span {i}" for i in range(4)]])
        assert [r[3] for r in batcher.queue] == ["span 4"]
        assert batcher.dropped == 0
    finally:
        batcher.shutdown()


def test_the_call_paths_sink_is_the_c_one_where_built() -> None:
    """A request's and a plugin call's records go through ``Batcher.sink`` (``_sdk.queue``):
    put's C twin where the extension is built, no Python frame on every call."""
    from omnicore.telemetry import _otlpenc

    batcher = Batcher(lambda batch: None, max_queue=10, batch=4, delay_s=3600)
    try:
        assert type(batcher.sink) is _otlpenc.Sink
        assert (batcher.sink.max_queue, batcher.sink.batch) == (10, 4)
    finally:
        batcher.shutdown()


def test_the_sink_queues_wakes_at_a_full_batch_and_drops_past_the_cap_as_put_does() -> None:
    """The sink and put, side by side: each record queued in order until ``max_queue``, the
    export thread woken at a full batch (held here: it is not set again while set), each
    record past the cap dropped, counted, never waited for."""
    for how in ("sink", "put"):
        batcher = Batcher(lambda batch: None, max_queue=6, batch=4, delay_s=3600)
        batcher._stopping = True  # (the thread's round ends; the queue is only looked at)
        batcher._wake.set()
        batcher._thread.join(10)
        batcher._wake.clear()
        add = batcher.sink if how == "sink" else batcher.put
        woken = []
        for i in range(9):
            add(_record(i))
            woken.append(batcher._wake.is_set())
        assert [r[3] for r in batcher.queue] == [f"span {i}" for i in range(6)], how
        assert woken == [False] * 3 + [True] * 6, how
        assert batcher.dropped == 3, how
        batcher._wake.clear()
        batcher.queue.popleft()
        add(_record(9))  # past a full batch, not set: set again
        assert batcher._wake.is_set() and len(batcher.queue) == 6, how
