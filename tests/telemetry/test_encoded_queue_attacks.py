"""Attacks on spans queued as their OTLP bytes (commit 8d6df171, issue 62): on the OTLP/HTTP
path the C sink (``_otlpenc.Sink(encode=True)``) encodes an ended span's record where the
span ends, on the loop or a plugin call's worker thread, and queues the bytes; one that
cannot be encoded is dropped and counted ('unencodable'), never raised into the caller;
``request()`` takes bytes that are one whole span field.

Three defects it found are fixed and held here: the queue's bound read before the encoding
(which can run an attribute's str() and let other threads in), an encoding error whose own
str() raised out of the drop, and the spans queued by ``Batcher.add`` (``telemetry.span``,
database and HTTP client spans) left as records, one unencodable taking its whole batch down
on the export thread. Real plugins
(build/plugins/greeter-rust.wasm) in a plugin host in this process, exporting over real
OTLP/HTTP to the loopback receiver (tests/telemetry/receiver.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from omnicore import telemetry
from omnicore.plugins.host import PluginHost
from omnicore.telemetry import Settings, _otlp, _sdk, _spans
from omnicore.telemetry._spans import Batcher, Sampler
from tests.hosts import Host
from tests.telemetry.receiver import Receiver, receiving

pytestmark = pytest.mark.skipif(not _otlp.AVAILABLE, reason="the C encoder is not built")

ROOT = Path(__file__).resolve().parents[2]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"
RESOURCE = Resource.create({"service.name": "shop"})
SCOPE = InstrumentationScope("omnicore", "1")
ENCODED = _otlp.scope(RESOURCE.attributes, "omnicore", "1") if _otlp.AVAILABLE else (b"", b"")
FIELDS = ["trace_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns",
          "attributes", "shared", "status", "description", "flags", "remote", "state"]


def _record(**changes: Any) -> tuple[Any, ...]:
    defaults: tuple[Any, ...] = (1, 2, 0, "n", 1, 0, 1, {}, None, 0, None, 1, False, None)
    base: dict[str, Any] = dict(zip(FIELDS, defaults, strict=True))
    base.update(changes)
    return tuple(base[f] for f in FIELDS)


def _made(attributes: dict[Any, Any], shared: Mapping[Any, Any] | None = None,
          error: str | None = None) -> tuple[Any, ...]:
    s = _spans.new_span("x", _spans.INTERNAL, attributes, None, Sampler(1.0, True))
    if error is not None:
        s.set_error(error, error)
    s.shared = shared
    s.end_ns = s.start_ns + 10
    return _spans.record(s)


def _batcher(max_queue: int = 1000) -> Batcher:
    # batch past max_queue, delay of an hour: the export thread never takes from the queue
    return Batcher(lambda batch: None, max_queue=max_queue, batch=10**9, delay_s=3600,
                   encode=True)


def _flagless(message: ExportTraceServiceRequest) -> bytes:
    for s in message.resource_spans[0].scope_spans[0].spans:
        s.flags &= ~0xFF
    return bytes(message.SerializeToString(deterministic=True))


def _in_child(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter (-X dev): a crash is its exit, not pytest's."""
    return subprocess.run([sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")


class NotText:
    def __str__(self) -> Any:
        return 42


class Loud(Exception):
    """An exception that cannot be put into words: its own str() raises."""

    def __str__(self) -> str:
        raise ValueError("not even this")


class RaisesLoud:
    def __str__(self) -> str:
        raise Loud()


class Shifting(Mapping[Any, Any]):
    """A mapping whose items() empties the span's own attributes as they are read."""

    def __init__(self, victim: dict[Any, Any]) -> None:
        self.victim = victim

    def __getitem__(self, key: Any) -> Any:
        return 1

    def __iter__(self) -> Iterator[Any]:
        self.victim.clear()
        return iter(["a", "b"])

    def __len__(self) -> int:
        return 2


# ---- the bytes are the records' bytes ------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 127, 128, 380, 440, 448, 460, 470, 480, 490, 500,
                                  510, 511, 512, 513, 600, 1023, 1024, 16383, 16384,
                                  1 << 20, 8 << 20])
def test_queued_bytes_across_the_stack_buffer_decode_as_the_sdks_encoder(size: int) -> None:
    """A span whose encoding ends just short of, at and past span_bytes' 512-byte stack
    buffer (and past 1 KiB, 16 KiB, 8 MiB: the heap buffer's doublings and the length's
    varint widths): the sink queues ``span(record)``, and a request of it is the request of
    the record, which decodes to what the SDK's encoder makes of the same span."""
    _otlpenc = import_module("omnicore.telemetry._otlpenc")

    shared = {"omnicore.plugin.name": "greeter", "n": 7}
    record = _made({"big": "é" * (size // 2) + "x" * (size % 2), "n": 1, "l": [1, "a"]},
                   shared, error="Trap")
    batcher = _batcher()
    try:
        batcher.sink(record)
        assert batcher.dropped == 0 and list(batcher.queue) == [_otlpenc.span(record)]
        queued = batcher.queue[0]
        assert isinstance(queued, bytes)
        ours = _otlp.request(*ENCODED, [queued])  # type: ignore[list-item]
        assert ours == _otlp.request(*ENCODED, [record])
        theirs = encode_spans(_sdk.readable([record], RESOURCE, SCOPE))
        assert _flagless(ExportTraceServiceRequest.FromString(ours)) == _flagless(theirs)
    finally:
        batcher.shutdown()


def _deep(depth: int) -> list[Any]:
    root: list[Any] = []
    cursor = root
    for _ in range(depth):
        cursor.append([])
        cursor = cursor[0]
    return root


def _looped() -> dict[str, Any]:
    looped: dict[str, Any] = {}
    looped["me"] = looped
    return looped


def _emptied() -> dict[Any, Any]:
    victim: dict[Any, Any] = {"a": 1, "b": 2}
    victim["m"] = Shifting(victim)
    return victim


#: Hostile attributes, made afresh for each use; the last field: whether they encode.
GNARLY: list[tuple[str, Any, bool]] = [
    ("unpaired surrogate", lambda: {"k": "\ud800 x \udfff"}, True),
    ("surrogate key", lambda: {"\udc80": "v"}, True),
    ("int past 64 bits", lambda: {"k": 1 << 70, "n": -(1 << 90) - 3}, True),
    ("keys not str", lambda: {7: "v", (1, 2): "w"}, True),
    ("str subclass", lambda: {"k": type("S", (str,), {"__str__": lambda self: "o"})("t")},
     True),
    ("deep array", lambda: {"k": _deep(200)}, True),  # within the recursion limit
    ("deeper array", lambda: {"k": _deep(100_000)}, False),  # a RecursionError
    ("dict holding itself", lambda: {"k": _looped()}, False),
    ("str raises", lambda: {"k": Unprintable()}, False),
    ("str not text", lambda: {"k": NotText()}, False),
    ("key's str raises", lambda: {Unprintable(): 1}, False),
    ("a mapping empties the attributes", _emptied, True),
    ("set", lambda: {"k": {1, 2}}, True),
    ("huge, then str raises", lambda: {"a": "y" * 5000, "b": Unprintable()}, False),
]


@pytest.mark.parametrize(("what", "attributes", "encodes"), GNARLY,
                         ids=[g[0] for g in GNARLY])
def test_a_hostile_span_is_queued_as_its_records_bytes_or_dropped_as_it_fails(
        what: str, attributes: Any, encodes: bool) -> None:
    """Where a request of a hostile span's record succeeds, the sink queues bytes that make
    that very request, byte for byte; where it raises, the sink drops the span, counts it and
    raises nothing. Either way: queued or dropped, once."""
    try:
        whole = _otlp.request(*ENCODED, [_record(attributes=attributes(), status=2,
                                                 description="E")])
    except Exception:
        whole = None
    assert (whole is not None) == encodes
    batcher = _batcher()
    try:
        batcher.sink(_record(attributes=attributes(), status=2, description="E"))
        assert len(batcher.queue) + batcher.dropped == 1
        assert len(batcher.queue) == int(encodes)
        if whole is not None:
            queued: list[Any] = [batcher.queue[0]]
            assert _otlp.request(*ENCODED, queued) == whole
    finally:
        batcher.shutdown()


def test_malformed_bytes_handed_to_request_are_refused() -> None:
    """Bytes not framed as one span field: a length varint past 5 bytes, a length past the
    end, two spans in one item; a bytes subclass is taken for a record; a mixed batch of
    bytes and records is the records' request."""
    _otlpenc = import_module("omnicore.telemetry._otlpenc")

    record = _made({"k": "v" * 200})
    good = _otlpenc.span(record)
    for bad in (b"\x12\x80\x80\x80\x80\x80\x00", b"\x12\xff\xff\xff\xff\x0f" + b"x" * 10,
                good[:2] + good, good * 2):
        with pytest.raises(ValueError, match="one ScopeSpans span field"):
            _otlp.request(*ENCODED, [record, bad])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        _otlp.request(*ENCODED, [type("B", (bytes,), {})(good)])
    assert _otlp.request(*ENCODED, [good, record, good]) == \
        _otlp.request(*ENCODED, [record, record, record])


# ---- drops, counts and the queue's bound ---------------------------------------------------

def test_many_threads_ending_spans_into_one_encoding_sink_count_exactly() -> None:
    """Eight threads end 600 spans each at once (a third unencodable) into a queue of 2,000:
    it holds 2,000 bytes items exactly, and queued + dropped is every span ended."""
    batcher = _batcher(max_queue=2000)
    threads, per = 8, 600
    gate = threading.Barrier(threads, timeout=60)

    def end_spans(n: int) -> None:
        gate.wait()
        for i in range(per):
            value: Any = Unprintable() if i % 3 == 0 else f"t{n}-{i}" * (i % 40)
            batcher.sink(_record(span_id=n * per + i + 1, attributes={"k": value}))

    try:
        workers = [threading.Thread(target=end_spans, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert len(batcher.queue) == 2000
        assert all(isinstance(q, bytes) for q in batcher.queue)
        assert len(batcher.queue) + batcher.dropped == threads * per
    finally:
        batcher.shutdown()


def test_spans_encoded_on_many_threads_at_once_are_each_their_own_records_bytes() -> None:
    """The encoder's cache of shared attributes (256 slots, by a mapping's address) was the
    export thread's alone; now every thread that ends a span writes it. In a fresh
    interpreter (-X dev), eight threads switching every microsecond encode 2,400 spans over
    700 shared mappings (slots taken from each other all the time), their own attributes
    sometimes a shared key too, each with a value whose str() is Python code (a switch in
    the middle of an encoding): every queued span is, byte for byte, what ``span()`` makes of
    its record alone on one thread afterwards."""
    done = _in_child("""
        import sys, threading
        from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans
        from omnicore.telemetry import _otlpenc
        from omnicore.telemetry._spans import Batcher

        class Slow:
            def __init__(self, n):
                self.n = n
            def __str__(self):
                return "".join(str(i) for i in range(self.n % 50))

        shared = [{"omnicore.plugin.name": f"p{i}", "i": i, "h": "x" * (i % 300)}
                  for i in range(700)]
        threads, per = 8, 300
        records = {}
        for t in range(threads):
            for i in range(per):
                sid = t * per + i + 1
                own = {"k": Slow(sid), "n": sid}
                if sid % 7 == 0:
                    own["i"] = -sid  # a key the shared mapping sets too
                records[sid] = (1 << 100 | sid, sid, 0, f"s{sid}", 1, sid, sid + 1, own,
                                shared[(sid * 13) % 700], sid % 3, "E", 1, sid % 2 == 0,
                                None)
        b = Batcher(lambda batch: None, max_queue=10**6, batch=10**9, delay_s=3600,
                    encode=True)
        gate = threading.Barrier(threads)

        def run(t):
            gate.wait()
            for i in range(per):
                b.sink(records[t * per + i + 1])

        sys.setswitchinterval(1e-6)
        workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        sys.setswitchinterval(0.005)
        assert b.dropped == 0 and len(b.queue) == threads * per, (b.dropped, len(b.queue))
        wrong = 0
        for q in b.queue:
            sid = int.from_bytes(ScopeSpans.FromString(q).spans[0].span_id, "big")
            wrong += q != _otlpenc.span(records[sid])
        assert wrong == 0, wrong
        b.shutdown()
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_unencodable_spans_warn_once_a_minute_and_are_all_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    batcher = _batcher()
    try:
        with caplog.at_level("WARNING", logger="omnicore.telemetry"):
            for _ in range(50):
                batcher.sink(_record(attributes={"k": Unprintable()}))
        assert batcher.dropped == 50 and not batcher.queue
        said = [r for r in caplog.records if "could not be encoded" in r.getMessage()]
        assert len(said) == 1 and "no str" in said[0].getMessage()
    finally:
        batcher.shutdown()


def test_the_queue_bound_holds_while_spans_are_being_encoded() -> None:
    """Threads that meet inside an attribute's str() while their spans are encoded each
    append after the queue's length is read: the bound is read after the encoding."""
    threads = 4
    gate = threading.Barrier(threads, timeout=60)

    class Gated:
        def __str__(self) -> str:
            gate.wait()  # every thread is encoding at once
            return "g"

    batcher = _batcher(max_queue=1)
    try:
        workers = [threading.Thread(target=batcher.sink,
                                    args=(_record(attributes={"k": Gated()}),))
                   for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert len(batcher.queue) + batcher.dropped == threads
        assert len(batcher.queue) <= batcher.max_queue
    finally:
        batcher.shutdown()


def test_a_full_queue_drops_a_span_before_encoding_it() -> None:
    """With the collector away the queue fills, and each span after is dropped: encoding it
    first would cost every call an encoding thrown away. An attribute's str() counts the
    encodings: one for each span queued, none for those dropped."""
    encoded = []

    class Counted:
        def __str__(self) -> str:
            encoded.append(1)
            return "c"

    batcher = _batcher(max_queue=3)
    try:
        for _ in range(10):
            batcher.sink(_record(attributes={"k": Counted()}))
        assert len(batcher.queue) == 3 and batcher.dropped == 7
        assert len(encoded) == 3
    finally:
        batcher.shutdown()


def test_an_error_that_cannot_be_worded_is_still_dropped_not_raised() -> None:
    """The drop's warning words the encoding error on the thread that ended the span: an
    error whose own str() raises is named by its class, not raised into that call."""
    batcher = _batcher()
    try:
        batcher.sink(_record(attributes={"k": RaisesLoud()}))
        assert batcher.dropped == 1 and not batcher.queue
    finally:
        batcher.shutdown()


def test_a_dropped_span_and_its_error_are_let_go_and_nothing_leaks_or_crashes() -> None:
    """In a fresh interpreter (-X dev): 3,000 unencodable spans, each first growing the
    encoder past its stack buffer (a heap buffer to free), then failing; the hostile value,
    its record and the error holding its frame are all freed; traced memory does not grow;
    and 100,000-deep arrays on eight threads are RecursionErrors dropped, not a crash."""
    done = _in_child("""
        import gc, threading, tracemalloc, weakref
        from omnicore.telemetry._spans import Batcher

        class Unprintable:
            def __str__(self):
                raise RuntimeError("no str" * 100)

        def rec(attributes):
            return (1, 2, 0, "n", 1, 0, 1, attributes, None, 0, None, 1, False, None)

        b = Batcher(lambda batch: None, max_queue=10, batch=10**9, delay_s=3600, encode=True)
        value = Unprintable()
        alive = weakref.ref(value)
        b.sink(rec({"a": "y" * 4000, "b": value}))
        del value
        gc.collect()
        assert alive() is None, "the hostile value was kept (its error or record leaked)"
        for _ in range(200):
            b.sink(rec({"a": "y" * 4000, "b": Unprintable()}))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(3000):
            b.sink(rec({"a": "y" * 4000, "b": Unprintable()}))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert grown < 200_000, grown

        def deep():
            root = cursor = []
            for _ in range(100_000):
                cursor.append([])
                cursor = cursor[0]
            return root

        arrays = [deep() for _ in range(8)]
        workers = [threading.Thread(target=b.sink, args=(rec({"k": a}),)) for a in arrays]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert b.dropped == 3201 + 8 and not b.queue, (b.dropped, len(b.queue))
        b.shutdown()
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


# ---- a real plugin host exporting over OTLP/HTTP -------------------------------------------

@pytest.fixture
def otlp() -> Iterator[Receiver]:
    """Tracing on, to the loopback receiver over the SDK's OTLP/HTTP exporter (the encoding
    path); spans leave on flush only (a schedule of an hour)."""
    with receiving() as receiver:
        telemetry.start(Settings(service_name="attacks",
                                 traces_endpoint=receiver.endpoint + "/v1/traces"), "i-1",
                        environ={"OTEL_BSP_SCHEDULE_DELAY": "3600000"})
        try:
            assert _sdk._batcher is not None
            assert _sdk._batcher.sink.encode  # type: ignore[attr-defined]
            yield receiver
        finally:
            telemetry.reset()


def _arrived(receiver: Receiver) -> dict[str, Any]:
    telemetry.flush(30)
    with receiver.lock:
        return {s.span_id: s for s in receiver.spans}


def test_real_plugin_calls_on_many_threads_all_arrive_parented(otlp: Receiver,
                                                                tmp_path: Path) -> None:
    """Six threads, 30 real greeter calls each, every one inside an operator's span: every
    call span (queued as bytes by its worker) and every outer span arrives, each call under
    its own outer span, with its attributes; the queue held bytes."""
    threads, per = 6, 30
    outers: list[tuple[str, str]] = []
    seen_bytes: list[bool] = []
    gate = threading.Barrier(threads, timeout=60)

    with PluginHost(data_dir=tmp_path) as host:
        host.load(GREETER, name="greeter", grants=["config", "log"])

        def calls(n: int) -> None:
            gate.wait()
            for i in range(per):
                with telemetry.span(f"outer {n}-{i}", {"n": n, "i": i}):
                    ids = telemetry.ids()
                    assert ids is not None
                    out = host.call("greeter", "greet", f'{{"name": "p{n}-{i}"}}'.encode())
                    assert out == f'{{"message":"Hello, p{n}-{i}!"}}'.encode(), out
                outers.append(ids)
            assert _sdk._batcher is not None
            seen_bytes.append(any(isinstance(q, bytes) for q in list(_sdk._batcher.queue)))

        workers = [threading.Thread(target=calls, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert len(outers) == threads * per and any(seen_bytes)
    spans = _arrived(otlp)
    assert _sdk._batcher is not None and _sdk._batcher.dropped == 0
    by_parent = {s.parent_id: s for s in spans.values() if s.name == "call greeter/greet"}
    assert len(by_parent) == threads * per
    for trace_id, span_id in outers:
        outer, call = spans[span_id], by_parent[span_id]
        assert outer.trace_id == call.trace_id == trace_id
        assert call.attributes["omnicore.plugin.name"] == "greeter"
        assert call.attributes["omnicore.plugin.outcome"] == "ok"
        assert call.attributes["omnicore.plugin.input_bytes"] > 0


def test_a_plugin_call_inside_a_span_that_cannot_be_encoded_returns_its_result(
        otlp: Receiver, tmp_path: Path) -> None:
    with PluginHost(data_dir=tmp_path) as host:
        host.load(GREETER, name="greeter", grants=["config", "log"])
        with telemetry.span("outer", {"evil": Unprintable()}):
            out = host.call("greeter", "greet", b'{"name": "Ada"}')
    assert out == b'{"message":"Hello, Ada!"}'
    spans = _arrived(otlp)
    assert not any(s.name == "outer" for s in spans.values())
    assert _sdk._batcher is not None and _sdk._batcher.dropped >= 1


def test_a_span_that_cannot_be_encoded_does_not_take_its_batch_down(
        otlp: Receiver, tmp_path: Path) -> None:
    """An application's span (``Batcher.add``) is encoded where it ends too: one that cannot
    be is dropped alone, and the plugin call's span beside it arrives."""
    with PluginHost(data_dir=tmp_path) as host:
        host.load(GREETER, name="greeter", grants=["config", "log"])
        with telemetry.span("outer", {"evil": Unprintable()}):
            host.call("greeter", "greet", b'{"name": "Ada"}')
    spans = _arrived(otlp)
    assert any(s.name == "call greeter/greet" for s in spans.values())
    assert _sdk._batcher is not None and _sdk._batcher.dropped == 1


# ---- a real host (omnicore run) answering REST requests ------------------------------------

def _rest(doc: dict[str, Any], method: str, path: str, body: Any = None) -> int:
    req = urllib.request.Request(doc["url"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", f"Bearer {doc['token']}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as e:
        e.read()
        return int(e.code)


def test_a_real_host_exports_every_rest_request_and_call_span_hostile_names_and_all(
        tmp_path: Path) -> None:
    """``omnicore run`` with a real greeter, its spans to the loopback receiver over
    OTLP/HTTP (the encoding path): REST invokes from four threads at once, some naming a
    handler that is an unpaired surrogate (JSON's \\ud800: refused, 400, with no call) or
    20,000 characters, some for a path of invalid UTF-8, each answered; every request's
    server span arrives, and every call's span under its invoke's. (An unpaired surrogate in
    a span's name is sent as '?': tests/telemetry/test_otlp_attacks.py.)"""
    with receiving() as receiver:
        config = {"name": "encq", "data_dir": "data",
                  "plugins": {"greeter-rust": {"grants": ["config", "log"]}}}
        host = Host(tmp_path / "app", config, [GREETER], data=tmp_path / "app" / "data")
        with host.start({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                         "OTEL_BSP_SCHEDULE_DELAY": "50"}):
            host.until(lambda: host.ready() or None, "the host's readiness")
            doc = host.until(lambda: host.console_file, "its console file")
            host.until(lambda: _rest(doc, "GET", "/api/v1/plugins/greeter-rust") == 200 or None,
                       "the greeter's load")
            handlers = ["greet", "\ud800", "g" * 20_000, "gr\udfffeet"]
            per = 10
            answers: dict[str, list[int]] = {h: [] for h in handlers}
            odd: list[int] = []
            gate = threading.Barrier(len(handlers), timeout=60)

            def invokes(handler: str) -> None:
                gate.wait()
                for i in range(per):
                    answers[handler].append(_rest(
                        doc, "POST", "/api/v1/plugins/greeter-rust/invoke",
                        {"handler": handler, "input": json.dumps({"name": f"n{i}"})}))
                    odd.append(_rest(doc, "GET", "/api/v1/plugins/%ED%A0%80%FF"))

            workers = [threading.Thread(target=invokes, args=(h,)) for h in handlers]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            assert answers["greet"] == [200] * per and answers["g" * 20_000] == [404] * per
            assert answers["\ud800"] == answers["gr\udfffeet"] == [400] * per
            assert odd == [404] * 40
            total = per * len(handlers)

            def arrived() -> tuple[list[Any], list[Any], list[Any]] | None:
                with receiver.lock:
                    spans = list(receiver.spans)
                posts = [s for s in spans if s.name == "POST /api/v1/plugins/{name}/invoke"]
                calls = [s for s in spans if s.name.startswith("call greeter-rust/")]
                gets = [s for s in spans if s.name == "GET /api/v1/plugins/{name}"
                        and "\ufffd" in s.attributes.get("url.path", "")]
                if min(len(posts), 2 * len(calls), len(gets)) < total:
                    return None
                return posts, calls, gets

            posts, calls, gets = host.until(arrived, "every request's and call's span")
    assert len(posts) == 2 * len(calls) == len(gets) == total
    assert {g.attributes["url.path"] for g in gets} == {"/api/v1/plugins/\ufffd\ufffd\ufffd\ufffd"}
    refused = {p.span_id for p in posts if p.attributes["http.response.status_code"] == 400}
    assert len(refused) == total // 2
    assert {c.parent_id for c in calls} == {p.span_id for p in posts} - refused
    names = {c.name for c in calls}
    assert names == {"call greeter-rust/greet", "call greeter-rust/" + "g" * 20_000}
