"""omnicore's own spans and their OTLP bytes (omnicore.telemetry._spans, ._otlp): what the
exporter sends decodes, with opentelemetry-proto, to the very message the SDK's encoder makes
of the same spans; sampling and W3C trace context as the specification says."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import sampling
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from omnicore.telemetry import Settings, _otlp, _sdk, _spans
from omnicore.telemetry._spans import Parent, Sampler, Span, parse_traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def _made(name: str, kind: int, attributes: dict[str, Any], parent: Span | Parent | None,
          error: str | None = None) -> Span:
    s = _spans.new_span(name, kind, attributes, parent, Sampler(1.0, True))
    if error:
        s.set_error(error, error)
    s.end_ns = s.start_ns + 1234
    return s


def test_the_c_encoder_is_built() -> None:
    """A checkout set up by scripts/dev (and CI) has the C span encoder: one that failed to
    build or to load fails here, not silently on the SDK's slower encoder (setup.py builds it
    as optional, for a machine without a compiler)."""
    assert _otlp.AVAILABLE, "the C span encoder is not built: run scripts/dev setup"


def test_the_bytes_decode_to_what_the_sdks_encoder_makes_of_the_same_spans() -> None:
    remote = parse_traceparent(f"00-{TRACE}-00f067aa0ba902b7-01", "vendor=abc,other=x")
    assert remote is not None
    root = _made("POST /api/v1/plugins/{name}/invoke", _spans.SERVER,
                 {"http.request.method": "POST", "http.response.status_code": 200,
                  "url.path": "/api/v1/plugins/greeter/invoke"}, remote)
    call = _made("call greeter/greet", _spans.INTERNAL, {
        "omnicore.plugin.name": "greeter", "omnicore.plugin.input_bytes": 15,
        "omnicore.plugin.memory_bytes": 1 << 40, "ratio": 0.25, "ok": True, "flag": False,
        "one": 1, "zero": 0, "negative": -5, "raw": b"\x00\x01", "list": ["a", "b"],
        "ints": [1, 2, 3], "skipped": None, "unicode": "héllo ☃"}, root, error="GuestError")
    local = _made("SELECT orders", _spans.CLIENT, {"db.system": "postgresql"}, call)
    fresh = _made("job greeter/greet", _spans.CONSUMER, {}, None)
    producer = _made("publish notes.saved", _spans.PRODUCER, {"one": True}, fresh)
    spans = [root, call, local, fresh, producer]

    resource = Resource.create({"service.name": "shop", "service.instance.id": "i-1"})
    scope = InstrumentationScope("omnicore", "1.2.3")
    encoded_resource, encoded_scope = _otlp.scope(resource.attributes, "omnicore", "1.2.3")
    ours = ExportTraceServiceRequest.FromString(
        _otlp.request(encoded_resource, encoded_scope, map(_spans.record, spans)))
    theirs = encode_spans(_sdk.readable([_spans.record(s) for s in spans], resource, scope))
    # The SDK leaves the trace flags out of Span.flags (the specification puts them in its
    # low byte, as omnicore does): set apart, then the messages are equal field for field.
    got = [s.flags for s in ours.resource_spans[0].scope_spans[0].spans]
    assert got == [0x301, 0x101, 0x101, 0x101, 0x101]  # sampled; the first's parent remote
    for message in (ours, theirs):
        for s in message.resource_spans[0].scope_spans[0].spans:
            s.flags &= ~0xFF
    assert ours == theirs
    call_pb = ours.resource_spans[0].scope_spans[0].spans[1]
    assert call_pb.status.code == 2 and call_pb.status.message == "GuestError"
    assert call_pb.trace_id.hex() == TRACE
    assert call_pb.parent_span_id == root.span_id.to_bytes(8, "big")
    assert ours.resource_spans[0].scope_spans[0].spans[0].trace_state == "vendor=abc,other=x"


def test_shared_attributes_are_encoded_once_and_decode_as_the_sdks() -> None:
    """A span's ``shared`` attributes (one mapping many spans hold: a plugin version's, a
    route's) come before its own, as the SDK's encoder writes the merged attributes; a
    mapping made later at a freed one's address is not taken for it."""
    shared = {"omnicore.plugin.name": "greeter", "omnicore.plugin.digest": "sha256:ab",
              "skipped": None}
    spans = []
    for n in (15, 16):
        s = _made("call greeter/greet", _spans.INTERNAL, {"omnicore.plugin.input_bytes": n},
                  None)
        s.shared = shared
        spans.append(s)
    resource = Resource.create({"service.name": "shop"})
    encoded_resource, encoded_scope = _otlp.scope(resource.attributes, "omnicore", "1")
    ours = ExportTraceServiceRequest.FromString(
        _otlp.request(encoded_resource, encoded_scope, map(_spans.record, spans)))
    theirs = encode_spans(_sdk.readable([_spans.record(s) for s in spans], resource,
                                        InstrumentationScope("omnicore", "1")))
    for message in (ours, theirs):
        for s in message.resource_spans[0].scope_spans[0].spans:
            s.flags &= ~0xFF
    assert ours == theirs
    keys = [a.key for a in ours.resource_spans[0].scope_spans[0].spans[1].attributes]
    assert keys == ["omnicore.plugin.name", "omnicore.plugin.digest",
                    "omnicore.plugin.input_bytes"]
    for _ in range(50):  # new mappings, some at addresses freed ones had: each its own bytes
        other = {"omnicore.plugin.name": f"p{_}"}
        s = _made("x", _spans.INTERNAL, {}, None)
        s.shared = other
        decoded = ExportTraceServiceRequest.FromString(
            _otlp.request(b"", b"", [_spans.record(s)]))
        value = decoded.resource_spans[0].scope_spans[0].spans[0].attributes[0].value
        assert value.string_value == f"p{_}"
        del other, s


def test_a_key_a_span_shares_is_sent_once_after_spans_that_set_only_others() -> None:
    """The encoder remembers which of spans' own keys a cached shared mapping does not set
    (a key looked up once, not span after span): a later span of the same mapping that sets
    one of its keys still has it sent once, its own value in the shared one's place, and a new
    mapping at a freed one's address starts from nothing."""
    for round_ in range(20):
        shared = {"omnicore.plugin.name": f"p{round_}", "omnicore.plugin.handler": "h"}
        spans = []
        for own in ({"a": 1, "b": "x"}, {"a": 2}, {"b": "y", "omnicore.plugin.handler": "mine"},
                    {"a": 3, "omnicore.plugin.name": "other"}):
            s = _made("call p/h", _spans.INTERNAL, dict(own), None)
            s.shared = shared
            spans.append(s)
        decoded = ExportTraceServiceRequest.FromString(
            _otlp.request(b"", b"", map(_spans.record, spans)))
        got = [[(a.key, a.value.string_value or a.value.int_value) for a in s.attributes]
               for s in decoded.resource_spans[0].scope_spans[0].spans]
        name = ("omnicore.plugin.name", f"p{round_}")
        assert got == [
            [name, ("omnicore.plugin.handler", "h"), ("a", 1), ("b", "x")],
            [name, ("omnicore.plugin.handler", "h"), ("a", 2)],
            [name, ("omnicore.plugin.handler", "mine"), ("b", "y")],
            [("omnicore.plugin.name", "other"), ("omnicore.plugin.handler", "h"), ("a", 3)]]
        del shared, spans, s


def test_encoded_attributes_are_told_apart_by_type_though_equal() -> None:
    """1 == True and hash alike: the cache of encoded attributes must not mix them."""
    spans = [_made("a", _spans.INTERNAL, {"k": 1}, None),
             _made("b", _spans.INTERNAL, {"k": True}, None),
             _made("c", _spans.INTERNAL, {"k": 1}, None)]
    res, scope = _otlp.scope({"service.name": "x"}, "omnicore", None)
    decoded = ExportTraceServiceRequest.FromString(
        _otlp.request(res, scope, map(_spans.record, spans)))
    values = [s.attributes[0].value for s in decoded.resource_spans[0].scope_spans[0].spans]
    assert [v.WhichOneof("value") for v in values] == ["int_value", "bool_value", "int_value"]


@pytest.mark.parametrize("header", [
    None, "", "garbage", f"00-{TRACE}-00f067aa0ba902b7", f"00-{'0' * 32}-00f067aa0ba902b7-01",
    f"00-{TRACE}-{'0' * 16}-01", f"ff-{TRACE}-00f067aa0ba902b7-01",
    f"00-{TRACE.upper()}-00f067aa0ba902b7-01", f"00-{TRACE}-00f067aa0ba902b7-01-extra",
    f"00-{TRACE}x-00f067aa0ba902b7-01", f"0-{TRACE}-00f067aa0ba902b7-01"])
def test_a_malformed_traceparent_is_ignored(header: str | None) -> None:
    assert parse_traceparent(header) is None


def test_a_traceparent_of_a_later_version_is_read_by_its_first_fields() -> None:
    found = parse_traceparent(f"01-{TRACE}-00f067aa0ba902b7-03-what-comes")
    assert found is not None and found.flags == 1 and f"{found.trace_id:032x}" == TRACE


def test_the_samplers_decide_as_the_sdks_do() -> None:
    # The same trace ids, the SDK's TraceIdRatioBased and omnicore's: the same decisions.
    import random

    rng = random.Random(7)
    ids = [rng.getrandbits(128) for _ in range(2000)]
    for ratio in (0.0, 0.1, 0.5, 1.0):
        sdk = sampling.TraceIdRatioBased(ratio)
        ours = Sampler.named("traceidratio", ratio)
        for trace_id in ids:
            kept = sdk.should_sample(None, trace_id, "x").decision.is_sampled()
            assert ours.keeps(trace_id, None) is kept
    sampled = Parent(1, 2, 1, None)
    unsampled = Parent(1, 2, 0, None)
    based = Sampler.named("parentbased_always_off", None)
    assert based.keeps(5, sampled) and not based.keeps(5, unsampled) and not based.keeps(5, None)
    assert Sampler.named("always_on", None).keeps(5, unsampled)  # not parent-based


@pytest.mark.parametrize(("environ", "ratio", "parent_based"), [
    ({}, 1.0, True),
    ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}, 0.25, False),
    ({"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"},
     1.0, True),  # out of range: the default
    ({"OTEL_TRACES_SAMPLER": "always_off"}, 0.0, False),
    ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, 1.0, True),  # not one omnicore knows
])
def test_the_sampler_comes_from_the_variables_where_the_file_is_silent(
        environ: dict[str, str], ratio: float, parent_based: bool) -> None:
    found = _sdk.sampler_of(Settings(service_name="x"), environ)
    assert (found.ratio, found.parent_based) == (ratio, parent_based)
    file = _sdk.sampler_of(Settings(service_name="x", sampler="traceidratio", sampler_arg=0.5),
                           environ)
    assert (file.ratio, file.parent_based) == (0.5, False)


def test_odd_values_decode_as_the_sdks_encoder_makes_them() -> None:
    """The C encoder's other paths (omnicore.telemetry._otlpenc): lengths of two bytes and
    more, non-ASCII text, a str subclass, the lowest int, tuples and empty arrays, a span's
    error without a description."""

    class Name(str):
        pass

    root = _made("x" * 200, _spans.SERVER, {
        "long": "é" * 300, "tuple": (1.5, 2.5), "sub": Name("n"), "low": -(1 << 63),
        "high": (1 << 63) - 1, "empty": [], "bools": [True, False], "texts": ("a", "☃" * 70),
        "raw": bytes(range(256))}, None)
    root.set_error("Timeout")
    child = _made("y", _spans.INTERNAL, {f"k{i}": i for i in range(40)}, root)
    spans = [root, child]
    resource = Resource.create({"service.name": "shop", "big": "r" * 500})
    scope = InstrumentationScope("omnicore", None)
    encoded_resource, encoded_scope = _otlp.scope(resource.attributes, "omnicore", None)
    ours = ExportTraceServiceRequest.FromString(
        _otlp.request(encoded_resource, encoded_scope, iter([_spans.record(s) for s in spans])))
    theirs = encode_spans(_sdk.readable([_spans.record(s) for s in spans], resource, scope))
    for message in (ours, theirs):
        for s in message.resource_spans[0].scope_spans[0].spans:
            s.flags &= ~0xFF
    assert ours == theirs


def test_an_unpaired_surrogate_is_sent_replaced() -> None:
    """Text Python holds but UTF-8 cannot (a lone surrogate, from a guest's bytes decoded with
    surrogateescape) is sent with '?' in its place, never an export's failure."""
    s = _made("a\udc80b", _spans.INTERNAL, {"k": "x\ud800y"}, None)
    decoded = ExportTraceServiceRequest.FromString(
        _otlp.request(b"", b"", [_spans.record(s)]))
    span = decoded.resource_spans[0].scope_spans[0].spans[0]
    assert span.name == "a?b" and span.attributes[0].value.string_value == "x?y"


def test_an_array_holding_itself_is_an_error_not_a_crash() -> None:
    looped: list[Any] = [1]
    looped.append(looped)
    s = _made("x", _spans.INTERNAL, {"k": looped}, None)
    with pytest.raises(RecursionError):
        _otlp.request(b"", b"", [_spans.record(s)])


def test_spans_queued_as_their_bytes_make_the_same_request_as_their_records() -> None:
    """On the OTLP path a span's record is encoded as it is queued (``Batcher(encode=True)``:
    its bytes wait for the batch, not it): a request of those bytes, or of records and bytes
    mixed (a job's ``Span`` is queued as its record), is the request of the records, byte for
    byte; the sink queues ``span(record)`` and nothing else, and drops past its cap as
    before."""
    from omnicore.telemetry import _otlpenc

    remote = parse_traceparent(f"00-{TRACE}-00f067aa0ba902b7-01", "vendor=abc")
    root = _made("POST /x", _spans.SERVER, {"url.path": "/x", "n": 1, "list": ["a", 2]},
                 remote)
    call = _made("call greeter/greet", _spans.INTERNAL, {"big": "é" * 5000}, root,
                 error="Trap")  # past the encoder's first 512 bytes
    call.shared = {"omnicore.plugin.name": "greeter", "omnicore.plugin.input_bytes": 3}
    plain = _made("job", _spans.CONSUMER, {}, None)
    records = [_spans.record(s) for s in (root, call, plain)]
    resource, scope = _otlp.scope({"service.name": "shop"}, "omnicore", "1")
    whole = _otlp.request(resource, scope, records)
    encoded = [_otlpenc.span(r) for r in records]
    assert _otlp.request(resource, scope, encoded) == whole
    assert _otlp.request(resource, scope, [encoded[0], records[1], encoded[2]]) == whole
    decoded = ExportTraceServiceRequest.FromString(whole).resource_spans[0].scope_spans[0]
    assert [s.name for s in decoded.spans] == ["POST /x", "call greeter/greet", "job"]

    batcher = _spans.Batcher(lambda batch: None, max_queue=2, batch=100, delay_s=3600,
                             encode=True)
    try:
        assert batcher.sink.encode  # type: ignore[attr-defined]
        for r in records:
            batcher.sink(r)
        assert list(batcher.queue) == encoded[:2] and batcher.dropped == 1
    finally:
        batcher.shutdown()


def test_the_otlp_path_queues_bytes_and_another_exporter_records(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where spans go to the SDK's OTLP/HTTP exporter (the C encoder's path) they are queued
    as their bytes; an exporter of another kind is handed ``ReadableSpan``s, so its queue
    holds records."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from omnicore import telemetry

    settings = Settings(service_name="t", traces_endpoint="http://127.0.0.1:9/v1/traces")
    try:
        telemetry.start(settings, "t")
        assert _sdk._batcher is not None and _sdk._batcher.sink.encode  # type: ignore[attr-defined]
        telemetry.reset()
        memory = InMemorySpanExporter()
        telemetry.start(settings, "t", exporter=memory)
        assert _sdk._batcher is not None and not _sdk._batcher.sink.encode  # type: ignore[attr-defined]
    finally:
        telemetry.reset()
