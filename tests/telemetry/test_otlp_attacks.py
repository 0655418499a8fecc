"""Hostile inputs to the C encoder of spans (omnicore.telemetry._otlpenc, via ._otlp): what a
plugin, a request or a careless caller can put in a span's name, attributes, status and trace
state. Every encoding that succeeds decodes (opentelemetry-proto) to what the SDK's encoder
makes of the same spans; what cannot be encoded is a Python exception, never a crash, a leak
or a reference lost."""

from __future__ import annotations

import enum
import gc
import math
import struct
import subprocess
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from omnicore.telemetry import _otlp, _sdk, _spans
from omnicore.telemetry._spans import Sampler, Span

pytestmark = pytest.mark.skipif(not _otlp.AVAILABLE, reason="the C encoder is not built")

RESOURCE = Resource.create({"service.name": "shop"})
SCOPE = InstrumentationScope("omnicore", "1")
ENCODED = _otlp.scope(RESOURCE.attributes, "omnicore", "1") if _otlp.AVAILABLE else (b"", b"")
MASK64 = (1 << 64) - 1


def _made(name: Any, attributes: dict[Any, Any], error: Any = None,
          shared: Mapping[Any, Any] | None = None) -> Span:
    s = _spans.new_span(name, _spans.INTERNAL, attributes, None, Sampler(1.0, True))
    if error is not None:
        s.set_error("E", error)
    s.shared = shared
    s.end_ns = s.start_ns + 10
    return s


def _ours(spans: list[Span]) -> ExportTraceServiceRequest:
    return _flagless(ExportTraceServiceRequest.FromString(
        _otlp.request(*ENCODED, [_spans.record(s) for s in spans])))


def _theirs(spans: list[Span]) -> ExportTraceServiceRequest:
    return _flagless(encode_spans(_sdk.readable([_spans.record(s) for s in spans], RESOURCE,
                                                SCOPE)))


def _flagless(message: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    for s in message.resource_spans[0].scope_spans[0].spans:
        s.flags &= ~0xFF
    return message


def _same_as_sdk(spans: list[Span]) -> None:
    ours, theirs = _ours(spans), _theirs(spans)
    # serialized deterministically: a NaN is equal to itself bit for bit, not by ==
    assert ours.SerializeToString(deterministic=True) == \
        theirs.SerializeToString(deterministic=True)


def _one_value(value: Any) -> Any:
    decoded = _ours([_made("x", {"k": value})])
    return decoded.resource_spans[0].scope_spans[0].spans[0].attributes[0].value


def _record(**changes: Any) -> tuple[Any, ...]:
    fields = ["trace_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns",
              "attributes", "shared", "status", "description", "flags", "remote", "state"]
    base = dict(zip(fields, (1, 2, 0, "n", 1, 0, 1, {}, None, 0, None, 1, False, None),
                    strict=True))
    base.update(changes)
    return tuple(base[f] for f in fields)


def _in_child(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter (-X dev): a crash is its exit, not pytest's."""
    return subprocess.run([sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


# ---- equal to the SDK's encoder -----------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
_scalar = st.one_of(_text, st.booleans(), st.integers(-(1 << 63), (1 << 63) - 1),
                    st.floats(allow_nan=True, allow_infinity=True), st.binary(max_size=300))
_value = st.one_of(_scalar, st.lists(_scalar, max_size=20),
                   st.lists(_scalar, max_size=5).map(tuple),
                   st.lists(st.lists(_scalar, max_size=4), max_size=4),
                   st.binary(max_size=40).map(bytearray))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=_text, own=st.dictionaries(_text, st.one_of(_value, st.none()), max_size=12),
       shared=st.one_of(st.none(), st.dictionaries(_text, _value, max_size=6)),
       error=st.one_of(st.none(), _text),
       state=st.one_of(st.none(), st.from_regex(r"\A[a-z][a-z0-9_*/-]{0,20}=[!-+\--<>-~]{1,30}\Z")))
def test_any_span_of_plain_values_decodes_as_the_sdks(
        name: str, own: dict[str, Any], shared: dict[str, Any] | None, error: str | None,
        state: str | None) -> None:
    if shared:  # (a key in both: test_a_key_both_shared_and_own_is_sent_once)
        shared = {k: v for k, v in shared.items() if k != "error.type"}  # set by set_error
        own = {k: v for k, v in own.items() if k not in shared}
    s = _made(name, own, error, shared)
    s.state = state
    _same_as_sdk([s])


def test_a_key_both_shared_and_own_is_sent_once() -> None:
    """OTLP's keys are unique in a span: the SDK sends the merged attributes (own over
    shared)."""
    _same_as_sdk([_made("x", {"omnicore.plugin.name": "own"},
                        shared={"omnicore.plugin.name": "shared", "other": 1})])


@pytest.mark.parametrize("header", [
    "garbage", "=x", "k=v,UPPER=1", "a=" + "v" * 300, "k=v,bad key=1", "k=v,k=w"])
def test_an_incoming_tracestate_is_sent_as_the_sdk_sends_it(header: str) -> None:
    """A request's ``tracestate`` header (any ASCII up to 512): the SDK's TraceState drops
    what is not a W3C list-member."""
    parent = _spans.parse_traceparent(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", header)
    assert parent is not None
    s = _spans.new_span("x", _spans.SERVER, {}, parent, Sampler(1.0, True))
    s.end_ns = s.start_ns + 1
    _same_as_sdk([s])


@pytest.mark.parametrize("value", [
    math.nan, -math.nan, math.inf, -math.inf, -0.0, 5e-324, sys.float_info.max,
    struct.unpack("<d", b"\x01\x00\x00\x00\x00\x00\xf8\x7f")[0]])  # a NaN with a payload
def test_odd_floats_keep_their_bits(value: float) -> None:
    _same_as_sdk([_made("x", {"k": value, "a": [value, 1.0]})])
    got = _one_value(value).double_value
    assert struct.pack("<d", got) == struct.pack("<d", value)


@pytest.mark.parametrize("value", [
    True, False, 0, 1, -1, 1 << 63, (1 << 64) - 1, 1 << 64, (1 << 200) + 7, -(1 << 64) - 3,
    -(1 << 300)])
def test_ints_are_their_low_64_bits_and_bools_stay_bools(value: int) -> None:
    got = _one_value(value)
    if isinstance(value, bool):
        assert got.WhichOneof("value") == "bool_value" and got.bool_value is value
        return
    low = value & MASK64
    assert got.WhichOneof("value") == "int_value"
    assert got.int_value == (low - (1 << 64) if low >> 63 else low)


def test_int_and_float_subclasses_and_int_enums_decode_as_the_sdks() -> None:
    class Code(enum.IntEnum):
        OK = 200

    class F(float):
        pass

    class B(bytes):
        pass

    _same_as_sdk([_made("x", {"code": Code.OK, "f": F(1.5), "b": B(b"\xff\x00"),
                              "r": range(5), "mv": memoryview(b"ab"), "ba": bytearray(b"\x00z")})])


def test_a_str_valued_enum_is_sent_as_its_value_as_the_sdk_sends_it() -> None:
    """A ``(str, Enum)`` member is a str whose str() is not its text: the SDK sends its text."""

    class Method(str, enum.Enum):  # noqa: UP042 (not StrEnum: its str() is its text)
        POST = "POST"

    _same_as_sdk([_made("x", {"http.request.method": Method.POST})])


def test_a_str_subclass_with_its_own_str_is_sent_as_its_text() -> None:
    class Shouting(str):
        def __str__(self) -> str:
            return self.upper()

    _same_as_sdk([_made("x", {"k": Shouting("quiet"), "a": [Shouting("in")]})])


def test_none_inside_an_array_is_an_empty_value_as_the_sdk_sends_it() -> None:
    _same_as_sdk([_made("x", {"k": ["a", None, "b"]})])


def test_a_mapping_value_is_a_key_value_list_as_the_sdk_sends_it() -> None:
    _same_as_sdk([_made("x", {"k": {"a": 1, "b": "c"}})])


def test_non_bmp_text_and_long_lengths_decode_as_the_sdks() -> None:
    big = "\U0001F600" * 50_000 + "é" * 127 + "a"
    state = "vendor=v,k=" + "v" * 200
    s = _made(big, {"e" * 129: big, "": "", "k": ["\U0010FFFF" * 40] * 3}, error=big)
    s.state = state
    _same_as_sdk([s, _made("", {})])


def test_ten_megabyte_strings_decode_as_the_sdks() -> None:
    ten = "x" * (10 << 20)
    wide = "☃" * (4 << 20)
    _same_as_sdk([_made(ten, {"a": ten, "b": wide, "c": [ten, b"\x00" * (10 << 20)]},
                        error=wide)])


def test_unpaired_surrogates_anywhere_are_sent_replaced() -> None:
    s = _made("n\udfff", {"k\ud800": ["a\udc80", "\ud83d"], "v": "\udcff" * 200},
              error="d\ud800")
    s.state = "t=\udc00"
    span = _ours([s]).resource_spans[0].scope_spans[0].spans[0]
    assert span.name == "n?" and span.trace_state == "t=?"
    assert span.status.message == "d?"
    first, second = span.attributes[:2]
    assert first.key == "k?"
    assert [v.string_value for v in first.value.array_value.values] == ["a?", "?"]
    assert second.value.string_value == "?" * 200


def test_keys_that_are_not_str_are_sent_as_their_str() -> None:
    span = _ours([_made(7, {1: "a", None: "b", (1, 2): "c", b"k": "d"})])
    span_pb = span.resource_spans[0].scope_spans[0].spans[0]
    assert span_pb.name == "7"
    assert [a.key for a in span_pb.attributes] == ["1", "None", "(1, 2)", "b'k'"]


# ---- errors, never crashes ----------------------------------------------------------------

@pytest.mark.parametrize("record", [
    (), (1,), _record()[:13], (*_record(), None), list(_record()), None, "x" * 14, b"x" * 14,
    _record(trace_id=None), _record(trace_id=1.0), _record(trace_id="1"),
    _record(span_id=None), _record(parent_id=2.5), _record(kind="1"), _record(start_ns=None),
    _record(end_ns=[1]), _record(flags=None), _record(status=None), _record(status="2"),
    _record(status=1 << 80), _record(attributes=None), _record(attributes=[("k", 1)]),
    _record(attributes=5), _record(shared=[1, 2]), _record(shared="ab"),
])
def test_a_malformed_record_raises(record: Any) -> None:
    with pytest.raises((TypeError, ValueError, OverflowError, AttributeError)):
        _otlp.request(b"", b"", [record])


def test_odd_but_well_typed_fields_are_encoded_by_their_ints_and_truth() -> None:
    class Truthy:
        def __bool__(self) -> bool:
            raise RuntimeError("no truth")

    with pytest.raises(RuntimeError, match="no truth"):
        _otlp.request(b"", b"", [_record(remote=Truthy())])
    with pytest.raises(RuntimeError, match="no truth"):
        _otlp.request(b"", b"", [_record(state=Truthy())])
    with pytest.raises(RuntimeError, match="no truth"):
        _otlp.request(b"", b"", [_record(status=2, description=Truthy())])
    decoded = ExportTraceServiceRequest.FromString(_otlp.request(b"", b"", [_record(
        trace_id=-1, span_id=-1, parent_id=1 << 70, kind=-1, start_ns=-(1 << 65),
        flags=(1 << 40) | 0xFF)]))
    span = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == b"\xff" * 16 and span.span_id == b"\xff" * 8
    assert span.parent_span_id == b"" and span.flags == 0x1FF  # low 64 bits 0: no parent


def test_bad_arguments_and_failing_iterables_raise() -> None:
    for resource, scope in ((None, b""), (b"", "s"), (memoryview(b"abcd")[::2], b"")):
        with pytest.raises(TypeError):
            _otlp.request(resource, scope, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _otlp.request(b"", b"", 5)  # type: ignore[arg-type]

    def failing() -> Iterator[Any]:
        yield _record()
        raise KeyError("midway")

    with pytest.raises(KeyError, match="midway"):
        _otlp.request(b"", b"", failing())

    class Bad(Mapping[str, Any]):
        def __getitem__(self, k: str) -> Any:
            raise KeyError(k)

        def __iter__(self) -> Iterator[str]:
            return iter(["a"])

        def __len__(self) -> int:
            return 1

    with pytest.raises(KeyError):
        _otlp.request(b"", b"", [_record(attributes=Bad())])

    class Unprintable:
        def __str__(self) -> str:
            raise ValueError("no str")

    with pytest.raises(ValueError, match="no str"):
        _otlp.request(b"", b"", [_record(attributes={"k": Unprintable()})])
    with pytest.raises(ValueError, match="no str"):
        _otlp.request(b"", b"", [_record(attributes={Unprintable(): 1})])
    with pytest.raises(ValueError, match="no str"):
        _otlp.request(b"", b"", [_record(name=Unprintable())])


def test_deep_and_self_holding_arrays_are_recursion_errors() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    looped: list[Any] = ["a"]
    looped.append(("b", looped))
    for value in (deep, looped):
        with pytest.raises(RecursionError):
            _otlp.request(b"", b"", [_record(attributes={"k": value})])
    # and the encoder is whole afterwards
    _same_as_sdk([_made("after", {"k": [1, [2, [3]]]})])


def test_a_list_emptied_while_one_of_its_items_is_encoded_is_not_a_crash() -> None:
    """An item's str() (Python code, in the middle of the array) empties the list: the
    encoder still holds the list's old length."""
    result = _in_child("""
        from omnicore.telemetry import _otlpenc
        items = []
        class Evil:
            def __str__(self):
                items.clear()
                return "e"
        items.extend([Evil(), object(), object(), "x"])
        record = (1, 2, 0, "n", 1, 0, 1, {"k": items}, None, 0, None, 1, False, None)
        try:
            _otlpenc.request(b"", b"", [record])
        except Exception as e:
            print("raised", type(e).__name__)
        print("survived")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout


def test_attributes_mutated_while_encoded_are_not_a_crash() -> None:
    """A value's str() adds to and removes from the very dict being encoded, and the shared
    mapping: a Python exception or some bytes, never a crash."""
    result = _in_child("""
        from omnicore.telemetry import _otlpenc
        attrs, shared = {}, {}
        class Grow:
            n = 0
            def __str__(self):
                Grow.n += 1
                if Grow.n < 500:
                    attrs[f"k{Grow.n}"] = Grow()
                    attrs.pop(f"k{Grow.n - 1}", None)
                    shared.clear()
                    shared.update({f"s{i}": Grow() for i in range(3)})
                return "g"
        attrs["a"] = Grow()
        shared["s"] = Grow()
        for i in range(20):
            record = (1, 2, 0, "n", 1, 0, 1, attrs, shared, 0, None, 1, False, None)
            try:
                _otlpenc.request(b"", b"", [record])
            except Exception as e:
                print("raised", type(e).__name__)
        print("survived")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout


# ---- references, memory, the shared cache, threads -----------------------------------------

def test_no_reference_is_lost_or_kept_by_many_encodes() -> None:
    class Obj:
        def __str__(self) -> str:
            return "obj"

    key, text, obj, big = "k" + "x" * 10, "é" + "y" * 10, Obj(), 1 << 100
    items = [text, 1.5, obj]
    shared = {"s": text}
    own = {key: text, "o": obj, "l": items, "big": big, "none": None, "t": (text, obj)}
    name, state, description = "n" + "z" * 10, "st=" + "w" * 10, "d" + "v" * 10
    record = _record(name=name, attributes=own, shared=shared, state=state, status=2,
                     description=description)
    watched = (key, text, obj, big, items, shared, own, name, state, description, record)
    failing = _record(attributes={**own, "r": _Raises()}, shared=shared)
    _otlp.request(b"", b"", [record])  # the shared mapping cached once (one reference)
    gc.collect()
    before = [sys.getrefcount(o) for o in watched]
    for _ in range(2000):
        _otlp.request(b"", b"", [record, record])
        _otlp.attributes(b"\x0a", own)
    for _ in range(2000):
        with pytest.raises(ValueError):
            _otlp.request(b"", b"", [record, failing])
    gc.collect()
    assert [sys.getrefcount(o) for o in watched] == before


class _Raises:
    def __str__(self) -> str:
        raise ValueError("no")


def test_memory_is_flat_over_a_hundred_thousand_encodes() -> None:
    spans = [_spans.record(_made("call p/h", {"i": i, "t": "é" * 20, "a": [1, "x", 2.5],
                                              "obj": _Raises if i == 99 else i},
                                 error="E" if i % 2 else None, shared={"p": "x"}))
             for i in range(4)]
    tracemalloc.start()
    try:
        for _ in range(5_000):
            _otlp.request(*ENCODED, spans)
        gc.collect()
        first = tracemalloc.get_traced_memory()[0]
        for _ in range(100_000):
            _otlp.request(*ENCODED, spans)
            try:
                _otlp.request(b"", b"", [_record(attributes={"r": _Raises()})])
            except ValueError:
                pass
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - first
    finally:
        tracemalloc.stop()
    assert growth < 64 * 1024, growth


def test_shared_mappings_at_reused_addresses_are_each_their_own() -> None:
    """Thousands of shared mappings made and freed (their addresses taken again, the cache's
    256 slots collide): each span carries its own mapping's attributes, and the cache keeps
    no more than its slots' mappings alive."""
    import weakref

    class D(dict):  # type: ignore[type-arg]
        pass

    refs = []
    for i in range(5000):
        shared = D({"p": f"v{i}", "n": i})
        refs.append(weakref.ref(shared))
        got = _ours([_made("x", {"own": i}, shared=shared)])
        attrs = got.resource_spans[0].scope_spans[0].spans[0].attributes
        assert [(a.key, a.value.WhichOneof("value")) for a in attrs] == \
            [("p", "string_value"), ("n", "int_value"), ("own", "int_value")]
        assert attrs[0].value.string_value == f"v{i}" and attrs[1].value.int_value == i
        del shared
    gc.collect()
    assert sum(r() is not None for r in refs) <= 256


def test_concurrent_encodes_give_each_thread_its_own_bytes() -> None:
    threads_n, rounds = 4, 300
    sets = []
    for t in range(threads_n):
        shared = {"thread": t, "name": f"plugin-{t}" * (t + 1)}
        sets.append([_spans.record(_made(f"span {t}/{i}", {
            "i": i, "obj": _Slow(t), "text": "☃" * (50 * t + i)}, shared=shared))
            for i in range(5)])
    expected = [_otlp.request(*ENCODED, s) for s in sets]
    barrier = threading.Barrier(threads_n)
    wrong: list[int] = []

    def run(t: int) -> None:
        barrier.wait()
        for _ in range(rounds):
            if _otlp.request(*ENCODED, sets[t]) != expected[t]:
                wrong.append(t)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads_n)]
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch in the middle of encodes
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(switch)
    assert wrong == []


class _Slow:
    """A value whose str() is Python code, where another thread may take the GIL."""

    def __init__(self, t: int) -> None:
        self.t = t

    def __str__(self) -> str:
        return "".join(str(self.t) for _ in range(20))


def test_bytes_that_are_not_one_encoded_span_are_refused() -> None:
    """A queue item that is bytes is put into the request as it is, so it must be one whole
    span field as ``span()`` makes it: its tag, and a length that is exactly the rest."""
    from omnicore.telemetry import _otlpenc

    good = _otlpenc.span(_record(attributes={"k": "v" * 300}))  # a two-byte length
    assert good[0] == 0x12 and good[1] & 0x80
    for bad in (b"", b"\x12", good[:-1], good + b"\x00", b"\x0a" + good[1:],
                b"\x12\xff\xff\xff\xff\xff\x01", b"\x12\x80", b"\x12\x05abc",
                b"\x12\x00\x00"):
        with pytest.raises(ValueError, match="one ScopeSpans span field"):
            _otlp.request(b"", b"", [bad])
    assert _otlp.request(b"", b"", [b"\x12\x00"])  # an empty span: well framed
    with pytest.raises(TypeError):
        _otlp.request(b"", b"", [bytearray(good)])  # (not bytes: taken for a record)


def test_a_span_that_cannot_be_encoded_as_it_is_queued_is_dropped_not_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    """On the OTLP path a record is encoded where its span ends, on a request's or a plugin
    call's path: a span whose attributes cannot be encoded is dropped there and counted, with
    a warning naming why, and the caller goes on; the spans around it are queued."""
    from omnicore.telemetry._spans import Batcher

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no str")

    looped: list[Any] = []
    looped.append(looped)
    batcher = Batcher(lambda batch: None, max_queue=10, batch=10, delay_s=3600, encode=True)
    try:
        with caplog.at_level("WARNING", logger="omnicore.telemetry"):
            batcher.sink(_record(name="before"))
            batcher.sink(_record(attributes={"k": looped}))
            batcher.sink(_record(attributes={"k": Unprintable()}))
            batcher.sink(_record(name="after"))
        assert batcher.dropped == 2 and len(batcher.queue) == 2
        assert [b"before" in q and b"after" not in q for q in batcher.queue] == [True, False]
        assert "could not be encoded" in caplog.text
    finally:
        batcher.shutdown()
