"""omnicore's spans: small records made and ended on the call path, sent in batches by a
thread of their own.

The OpenTelemetry SDK's spans cost tens of microseconds each to make, end and encode (its
span objects, attribute validation, locks, context tokens, then a protobuf message tree per
span on export): two of them grew a REST invoke's host CPU by half. A span here is a slotted
record (random ids, as the SDK's), its context one
:class:`~contextvars.ContextVar`, its end one ``deque.append``; the export thread encodes a
batch straight into OTLP's protobuf bytes (:mod:`._otlp`). What they carry (ids, parentage,
W3C trace context, sampling, kinds, attributes, status) is the specification's; only the SDK's
plumbing is left out.

Standard library only, and the C extension ``_otlpenc`` where it is built: a context
(:class:`Parent`, :func:`new_context`), made for every request and plugin call traced or not,
a record made of an ended span's context (:func:`ended`) and the queue's
:meth:`Batcher.put` (:attr:`Batcher.sink`) are their C twins there (a
context cost some 4-5 thousand instructions in Python, a class's ``__init__`` and two
``random.getrandbits`` draws; a few hundred in C, its ids drawn by a generator of its own,
seeded by the kernel and again in a forked child). The Python ones below are what a host
without a compiler runs, and say what the C ones do.
"""

from __future__ import annotations

import logging
import math
import random
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

__all__ = ["CURRENT", "Batcher", "Parent", "Record", "Sampler", "Span", "ended", "new_context",
           "new_span", "parse_traceparent", "record", "took"]

log = logging.getLogger("omnicore.telemetry")

#: The span current in this context (a thread, a task, a copied context): what a new span
#: is the child of, what a ``traceparent`` sent or stored names.
CURRENT: ContextVar[Span | Parent | None] = ContextVar("omnicore_span", default=None)

INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER = 1, 2, 3, 4, 5
#: Status codes, as OTLP numbers them.
UNSET, ERROR = 0, 2
_HEX = frozenset("0123456789abcdef")
_LOW = 0xFFFF_FFFF_FFFF_FFFF
#: (module-level names: a span's ids and times are drawn on every request)
_bits = random.getrandbits
_now = time.time_ns


class Parent:
    """A span context: from elsewhere (a W3C ``traceparent``: an incoming request's, a stored
    job's; the embedding application's own OpenTelemetry span), or that of a span of this
    process made current without a :class:`Span` (a request's, a plugin call's: their
    records are made from locals when they end, a slotted object of six fields being
    cheaper to make than a span's sixteen)."""

    __slots__ = ("attributes", "flags", "remote", "span_id", "state", "trace_id")

    def __init__(self, trace_id: int, span_id: int, flags: int, state: str | None,
                 remote: bool = True, attributes: dict[str, Any] | None = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.flags = flags
        self.state = state
        self.remote = remote
        #: A span of this process made current without a :class:`Span` (a plugin call's):
        #: its own attributes, which what runs inside it may add to (``count``); None for
        #: a context alone (a remote parent's, a request's, a sampled-out span's).
        self.attributes = attributes


def _hex(text: str, size: int) -> int | None:
    if len(text) != size or not _HEX.issuperset(text):
        return None
    return int(text, 16) or None


def parse_traceparent(header: str | None, state: str | None = None) -> Parent | None:
    """The W3C Trace Context ``traceparent`` (and ``tracestate``) as a remote parent; None
    for a missing or malformed one (then the span starts a trace of its own)."""
    if not header:
        return None
    parts = header.strip().split("-")
    if len(parts) < 4:
        return None
    version = parts[0]
    if len(version) != 2 or not _HEX.issuperset(version) or version == "ff" or \
            (version == "00" and len(parts) != 4):
        return None
    trace_id, span_id = _hex(parts[1], 32), _hex(parts[2], 16)
    if trace_id is None or span_id is None or len(parts[3]) != 2 or \
            not _HEX.issuperset(parts[3]):
        return None
    return Parent(trace_id, span_id, int(parts[3], 16) & 0x01,
                  None if state is None else _tracestate(state))


#: A W3C ``tracestate`` list-member (Trace Context §3.3.1): a key (lower-case, or a
#: ``tenant@system`` one), ``=``, a value of printable ASCII but ``,`` and ``=``.
_MEMBER = re.compile(r"([a-z][_0-9a-z\-*/]{0,255}"
                     r"|[a-z0-9][_0-9a-z\-*/]{0,240}@[a-z][_0-9a-z\-*/]{0,13})"
                     r"=([\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e])")


def _tracestate(header: str) -> str | None:
    """An incoming ``tracestate`` as it is sent on: its list-members, without the optional
    white space and empty members; None (nothing sent) when one member is not a W3C one, a
    key comes twice, or there are more than 32, as the OpenTelemetry SDK's ``TraceState``
    takes it (a header the next hop could not parse is not passed on)."""
    if len(header) > 8192:
        return None
    members: dict[str, str] = {}
    for member in header.split(","):
        member = member.strip(" \t")
        if not member:
            continue
        match = _MEMBER.fullmatch(member)
        if match is None or match[1] in members:
            return None
        members[match[1]] = match[2]
    if not members or len(members) > 32:
        return None
    return ",".join(f"{k}={v}" for k, v in members.items())


class Sampler:
    """Which new traces are kept: the specification's built-in samplers. ``parent_based``:
    a span with a parent follows its parent's decision; a root (and every span, when not
    parent-based) is kept when the low 64 bits of its trace id fall under ``ratio`` of their
    range (``TraceIdRatioBased``, as the SDK decides it: so always_on is ratio 1,
    always_off 0)."""

    __slots__ = ("bound", "parent_based", "ratio")

    def __init__(self, ratio: float, parent_based: bool) -> None:
        self.ratio = ratio
        self.parent_based = parent_based
        self.bound = round(ratio * (1 << 64))

    @classmethod
    def named(cls, name: str, arg: float | None) -> Sampler:
        ratio = 1.0 if arg is None else arg
        root = name.removeprefix("parentbased_")
        parent_based = name != root
        if root == "always_on":
            return cls(1.0, parent_based)
        if root == "always_off":
            return cls(0.0, parent_based)
        if root == "traceidratio":
            return cls(ratio, parent_based)
        raise ValueError(name)

    def keeps(self, trace_id: int, parent: Span | Parent | None) -> bool:
        if parent is not None and self.parent_based:
            return bool(parent.flags & 0x01)
        return (trace_id & 0xFFFF_FFFF_FFFF_FFFF) < self.bound


class Span:
    """One span. ``flags & 1``: sampled (kept and exported when it ends); an unsampled span is
    still made, so its context (trace id, the not-sampled flag) propagates.

    ``shared``: attributes many spans carry alike (a plugin version's name, handler and
    digest; a route's method and status), one mapping the spans share and nobody changes,
    encoded once for all of them (:mod:`._otlp`); ``attributes`` are the span's own, after
    them."""

    __slots__ = ("attributes", "description", "end_ns", "flags", "kind", "name", "parent_id",
                 "remote", "shared", "span_id", "start_ns", "state", "status", "trace_id")

    def __init__(self, name: str, kind: int, attributes: dict[str, Any], context: Parent,
                 parent: Span | Parent | None) -> None:
        """The span of ``context`` (its ids, flags and trace state: :func:`new_context`), the
        child of ``parent``."""
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.trace_id = context.trace_id
        self.span_id = context.span_id
        if parent is None:
            self.parent_id = 0
            self.remote = False
        else:
            self.parent_id = parent.span_id
            self.remote = parent.remote if parent.__class__ is Parent else False
        self.flags = context.flags
        self.state = context.state
        self.status = UNSET
        self.description: str | None = None
        self.shared: Mapping[str, Any] | None = None
        self.end_ns = 0
        self.start_ns = _now()

    @property
    def recording(self) -> bool:
        return bool(self.flags & 0x01)

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        self.attributes.update(attributes)

    def update_name(self, name: str) -> None:
        self.name = name

    def set_error(self, kind: str, description: str | None = None) -> None:
        """Status error, ``error.type`` set (a class name, a refusal: never a message)."""
        self.status = ERROR
        self.description = description
        self.attributes["error.type"] = kind

    def traceparent(self) -> str:
        return (f"00-{self.trace_id.to_bytes(16, 'big').hex()}-"
                f"{self.span_id.to_bytes(8, 'big').hex()}-{self.flags:02x}")

    def __repr__(self) -> str:
        return f"<Span {self.name!r} {self.trace_id:032x}/{self.span_id:016x}>"


def new_context(parent: Span | Parent | None, sampler: Sampler) -> Parent:
    """A new span's context, the child of ``parent`` (None: a new trace): its ids, and kept
    (flags) as ``sampler`` says (:meth:`Sampler.keeps`, written out here: this is made for
    every request and plugin call). A span sampled out is this alone, made current for what
    it calls (its context propagates); a kept one is a :class:`Span` of it."""
    if parent is None:
        trace_id = _bits(128) or 1
        return Parent(trace_id, _bits(64) or 1, 1 if trace_id & _LOW < sampler.bound else 0,
                      None, False)
    trace_id = parent.trace_id
    if sampler.parent_based:
        flags = parent.flags & 0x01
    else:
        flags = 1 if trace_id & _LOW < sampler.bound else 0
    return Parent(trace_id, _bits(64) or 1, flags, parent.state, False)



def new_span(name: str, kind: int, attributes: dict[str, Any] | None,
             parent: Span | Parent | None, sampler: Sampler) -> Span:
    """A span, the child of ``parent`` (None: a new trace), kept as ``sampler`` says."""
    return Span(name, kind, {} if attributes is None else attributes,
                new_context(parent, sampler), parent)


#: An ended span as the export queue holds it: ``(trace_id, span_id, parent_id, name, kind,
#: start_ns, end_ns, attributes, shared, status, description, flags, remote, state)``. A
#: plain tuple of strings, numbers and attribute dicts of strings and numbers, none of which
#: the garbage collector tracks once it has looked at the tuple: spans waiting for their
#: batch, had they been Span objects, were tracked, survived young collections into the old
#: generation and brought on full collections of the host's whole heap (a REST invoke's CPU
#: went up by a tenth, most of tracing's cost: bench/bench_telemetry.py).
Record = tuple[int, int, int, str, int, int, int, dict[str, Any], "Mapping[str, Any] | None",
               int, "str | None", int, bool, "str | None"]


def record(s: Span) -> Record:
    """``s`` (ended) as the export queue holds it."""
    return (s.trace_id, s.span_id, s.parent_id, s.name, s.kind, s.start_ns, s.end_ns,
            s.attributes, s.shared, s.status, s.description, s.flags, s.remote, s.state)


def ended(context: Parent, parent: Span | Parent | None, name: str, kind: int, start_ns: int,
          attributes: dict[str, Any], shared: Mapping[str, Any] | None, status: int,
          description: str | None) -> Record:
    """A span made without a :class:`Span` (a request's, a plugin call's: its ``context``, the
    child of ``parent``), ended now, as the export queue holds it."""
    if parent is None:
        parent_id, remote = 0, False
    else:
        parent_id = parent.span_id
        remote = parent.remote if parent.__class__ is Parent else False
    return (context.trace_id, context.span_id, parent_id, name, kind, start_ns, _now(),
            attributes, shared, status, description, context.flags, remote, context.state)


#: The Python ones, where the C twins are used (what tests/telemetry/test_context.py holds
#: the C ones to).
PYTHON_TWINS = {"Parent": Parent, "new_context": new_context, "ended": ended}
#: Batcher.put's C twin (Batcher.sink), None where the extension is not built.
_Sink: Any = None

if not TYPE_CHECKING:  # (typed as the Python ones: the same fields, the same rules)
    try:
        from omnicore.telemetry._otlpenc import Parent, ended
        from omnicore.telemetry._otlpenc import Sink as _Sink
        from omnicore.telemetry._otlpenc import context as new_context
    except ImportError:  # not built (no compiler): the Python ones above
        pass


def took(result: object) -> bool:
    """Whether an export's ``result`` says the collector took the batch: the SDK's
    ``SpanExportResult`` or ``MetricExportResult`` (``FAILURE``), its OTLP/HTTP client's
    result (``success``); None (an exporter that raises when it fails) as taken."""
    if result is None:
        return True
    success = getattr(result, "success", None)
    if success is not None:
        return bool(success)
    return getattr(result, "name", None) != "FAILURE"


class Batcher:
    """A bounded queue of ended spans and the thread that exports them in batches: every
    ``delay_s`` what is queued, and as soon as a batch is full the full batches (as the
    SDK's ``BatchSpanProcessor`` does): woken by a full batch, the thread sends full ones
    only and leaves the rest for the next. (It once sent all it found: under steady load,
    the spans that came during one post were the next post, a few dozen, so that each span
    bore a post's cost many times over.) A full queue drops the span, and a batch the
    collector did not take (away, refusing: the exporter's retries spent) drops its spans,
    both counted in :attr:`dropped` with one warning a minute: a call never waits for the
    collector."""

    def __init__(self, export: Callable[[list[Any]], object], *, max_queue: int,
                 batch: int, delay_s: float, encode: bool = False) -> None:
        self._export = export
        self.max_queue = max_queue
        self.batch = batch
        self.delay_s = delay_s
        #: Ended spans: their records, or (``encode``) their bytes, every span going
        #: through :attr:`sink` (:meth:`add` too); ``export`` takes both (``_otlp.request``).
        self.queue: deque[Record | bytes] = deque()
        self.dropped = 0
        self.exported = 0
        self._said: dict[str, float] = {}
        self._drops = threading.Lock()
        self._wake = threading.Event()
        #: Set by a flush: the thread's next round sends what is queued, full batch or not.
        self._everything = False
        self._lock = threading.Lock()  # one export at a time: the thread's, a drain's
        #: Notified after each of the thread's rounds: a flush waits on it.
        self._idle = threading.Condition()
        self._stopping = False
        #: :meth:`put` as the call path calls it (``_sdk.queue``): the C twin where the
        #: extension is built (a call of a few hundred instructions, not two Python frames),
        #: of this queue and these bounds.
        self.sink: Callable[[Record], None] = self.put
        if _Sink is not None:
            # ``encode``: a record is made into its OTLP bytes as it is queued, on the thread
            # that ended its span, and let go there. Queued as a record, it and what it holds
            # (its attributes, their strings) waited for their batch, to be read and freed by
            # the export thread: some 2 thousand objects a batch made on one thread and
            # touched again on another after the request's cache had moved on, and the
            # young collections they brought on (4 per 1,000 traced requests; bytes are not
            # the collector's). The export thread then joins bytes.
            self.sink = _Sink(self.queue, max_queue, batch, self._wake, self._drop,
                              encode=encode)
        self._thread = threading.Thread(target=self._run, name="omnicore-span-export",
                                        daemon=True)
        self._thread.start()

    def add(self, s: Span) -> None:
        """Queue an ended, sampled span (from any thread), as its :data:`Record` through
        :attr:`sink` (encoded there too, where records are: an application's span, a
        database or HTTP client's, as a request's or a plugin call's)."""
        self.sink((s.trace_id, s.span_id, s.parent_id, s.name, s.kind, s.start_ns, s.end_ns,
                   s.attributes, s.shared, s.status, s.description, s.flags, s.remote,
                   s.state))

    def put(self, r: Record) -> None:
        """Queue an ended, sampled span's record (from any thread). (The call path calls
        :attr:`sink`: this, or its C twin.)"""
        queue = self.queue
        if len(queue) >= self.max_queue:
            self._drop(1, "full")
            return
        queue.append(r)
        # At a full batch or past one: two threads' spans, each appended before either
        # looked, pass the full batch's length unseen by both (the schedule, seconds away,
        # then found a queue full and dropping).
        if len(queue) >= self.batch and not self._wake.is_set():
            self._wake.set()

    def _drop(self, count: int, why: str, error: object = None) -> None:
        with self._drops:  # several threads end spans at once
            self.dropped += count
            now = time.monotonic()
            if now - self._said.get(why, -math.inf) < 60:
                return
            self._said[why] = now
        if why == "full":
            log.warning("the span queue is full (the collector is slow or away): %d span(s) "
                        "dropped so far (telemetry.max_queue_size)", self.dropped)
        elif why == "unencodable":
            # (On the thread that ended the span: an error that cannot say itself is named
            # by its class, never raised into that request or call.)
            try:
                said = str(error)[:200]
            except Exception:
                said = ""
            log.warning("a span could not be encoded (%s): dropped, %d so far",
                        said or type(error).__name__, self.dropped)
        else:
            log.warning("the collector did not take a batch of %d span(s) (%s): dropped, %d "
                        "so far (telemetry, OTEL_EXPORTER_OTLP_ENDPOINT)", count,
                        str(error)[:200] if error else "the exporter gave it up", self.dropped)

    def _run(self) -> None:
        while not self._stopping:
            woken = self._wake.wait(self.delay_s)
            self._wake.clear()
            everything = not woken or self._everything or self._stopping
            self._everything = False
            self.drain(full_only=not everything)
            with self._idle:
                self._idle.notify_all()

    def drain(self, deadline: float | None = None, full_only: bool = False) -> None:
        """Export what is queued now, a batch at a time (no new batch past ``deadline``, a
        ``time.monotonic()``: what is left waits for the thread); ``full_only``: full
        batches only, the rest left for the schedule."""
        with self._lock:
            queue = self.queue
            least = self.batch if full_only else 1
            while len(queue) >= least and (deadline is None or time.monotonic() < deadline):
                taken = [queue.popleft() for _ in range(min(len(queue), self.batch))]
                error: object = None
                try:
                    result = self._export(taken)
                    ok = took(result)
                    if not ok:
                        error = getattr(result, "error", None) or getattr(
                            result, "status_code", None)
                except Exception as exc:  # an exporter's bug must not end the thread
                    log.exception("exporting %d span(s) failed", len(taken))
                    ok, error = False, exc
                if ok:
                    self.exported += len(taken)
                else:
                    self._drop(len(taken), "refused", error)

    def flush(self, timeout_s: float) -> bool:
        """Have the thread export what is queued now, and wait for it at most ``timeout_s``
        (an app's stop): a collector slow or away does not hold the caller past it (the
        exporter retries one for up to its own timeout); the thread goes on with what is
        left. Whether the queue was sent (taken or dropped) in time."""
        end = time.monotonic() + timeout_s
        with self._idle:
            while self.queue or self._lock.locked():
                left = end - time.monotonic()
                if left <= 0 or not self._thread.is_alive():
                    return False
                self._everything = True  # (not full batches only)
                self._wake.set()  # (again: spans that came during a round wait for none)
                self._idle.wait(left)
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """End the thread, exporting what is queued within ``timeout_s`` (what is left then
        is lost with the thread, a daemon)."""
        end = time.monotonic() + timeout_s
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.drain(end)
