"""A request's span made in C (omnicore.telemetry._otlpenc.server_span, issue 62) where the
extension is built, held to its Python twin (asgi.ServerSpan), which a host without a
compiler runs: for the same request and response, the same context made current (an
incoming traceparent and tracestate continued, a malformed one refused), the same messages
handed on, the same record queued (status, route, error class, never a header or a message),
the request's context current no more for its last message and set back in a copied
context (a streamed answer's task), and nothing left current after it ends. The console's
real requests are test_traces.py's, test_keepalive.py's and test_request_context_attacks.py's."""

from __future__ import annotations

import contextvars
from types import SimpleNamespace
from typing import Any

import pytest

from omnicore.telemetry import _sdk, _spans
from omnicore.telemetry._spans import CURRENT, Sampler
from omnicore.telemetry.asgi import ServerSpan, request_spans

TWINS = ["c", "python"]
PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def begin(twin: str) -> Any:
    return request_spans() if twin == "c" else ServerSpan


def scope(headers: list[Any] | None = None, route: Any = None, path: str = "/api/x") -> dict[
        str, Any]:
    out: dict[str, Any] = {"type": "http", "method": "POST", "path": path, "scheme": "https",
                           "headers": headers or [(b"host", b"h")]}
    if route is not None:
        out["route"] = route
    return out


class Sent(list[Any]):
    """A server's send: each message kept, with the span context current as it came."""

    def __call__(self, message: Any) -> str:
        self.append((message, CURRENT.get()))
        return "awaitable"


def comparable(record: Any) -> tuple[Any, ...]:
    (_trace, _span, parent, name, kind, start, end, own, shared, status, description, flags,
     remote, state) = record
    assert 0 < start <= end
    return (parent if remote else None, name, kind, own, shared, status, description, flags,
            remote, state)


def run(twin: str, s: dict[str, Any], messages: list[Any], error: BaseException | None = None
        ) -> tuple[Any, Sent]:
    sent = Sent()
    span = begin(twin)(s, sent)
    inside = CURRENT.get()
    for message in messages:
        assert span(message) == "awaitable"
    span.end(error)
    assert CURRENT.get() is None
    return inside, sent


def test_the_c_twin_is_the_one_the_middleware_uses() -> None:
    from omnicore.telemetry import _otlpenc

    assert request_spans().func is _otlpenc.server_span  # type: ignore[attr-defined]


START = {"type": "http.response.start", "status": 201, "headers": []}
BODY = {"type": "http.response.body", "body": b"{}"}


@pytest.mark.parametrize("headers", [
    None,
    [(b"traceparent", PARENT.encode()), (b"tracestate", b"a=1 , b=2")],
    [[b"tracestate", b"k=v"], [b"traceparent", PARENT.encode()], [b"traceparent", b"x"]],
    [(b"traceparent", b"00-zz-00f067aa0ba902b7-01")],
], ids=["none", "traceparent", "lists", "malformed"])
def test_a_request_is_the_same_span_from_both(queued: list[Any], headers: Any) -> None:
    route = SimpleNamespace(path="/api/{x}")
    first = next((v for k, v in headers or () if k == b"traceparent"), None)
    continued = first == PARENT.encode()
    records, insides = {}, {}
    for twin in TWINS:
        inside, sent = run(twin, scope(headers, route), [START, BODY])
        assert [m for m, _ in sent] == [START, BODY]
        # the request's context while it runs and for its first message; none for its last
        assert sent[0][1] is inside and sent[1][1] is None
        (record,) = queued
        queued.clear()
        assert record[1] == inside.span_id and inside.attributes is None
        records[twin] = comparable(record)
        insides[twin] = (inside.flags, inside.state,
                         inside.trace_id if continued else 0)
    assert records["c"] == records["python"] and insides["c"] == insides["python"]
    shared = records["c"][4]
    assert records["c"][1] == "POST /api/{x}" and shared["http.response.status_code"] == 201
    assert records["c"][3] == {"url.path": "/api/x"} and records["c"][5] == _spans.UNSET
    if continued:
        assert insides["c"][2] == 0x4BF92F3577B34DA6A3CE929D0E0E4736 and records["c"][8] is True
        assert records["c"][0] == 0x00F067AA0BA902B7
        assert insides["c"][1] == ("a=1,b=2" if headers[0][0] == b"traceparent" else "k=v")
    else:
        assert records["c"][0] is None and records["c"][8] is False


@pytest.mark.parametrize("twin", TWINS)
def test_a_routes_name_is_made_once_then_read_from_the_table_without_a_call(
        queued: list[Any], twin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A route's span name and shared attributes are made once (``_sdk.served``) and read
    from ``_sdk._served`` by both twins; the C one reads the table itself (no Python frame a
    request, issue 62). Only a key not in it (another status) asks ``served``."""
    monkeypatch.setattr(_sdk, "_served", {})
    asked: list[tuple[Any, ...]] = []
    making = _sdk.served

    def served(*key: Any) -> Any:
        asked.append(key)
        return making(*key)

    monkeypatch.setattr(_sdk, "served", served)
    route = SimpleNamespace(path="/api/{x}")
    for status in (201, 201, 201, 404):
        run(twin, scope(route=route), [{**START, "status": status}, BODY])
    names = [(r[3], r[8]["http.response.status_code"]) for r in queued]
    assert names == [("POST /api/{x}", 201)] * 3 + [("POST /api/{x}", 404)]
    assert len({id(r[8]) for r in queued[:3]}) == 1  # one shared dict: encoded once
    if twin == "c":
        assert asked == [("POST", "https", "/api/{x}", 201), ("POST", "https", "/api/{x}", 404)]
    else:  # (the Python twin calls served, which reads the table)
        assert len(asked) == 4
    assert set(_sdk._served) == {("POST", "https", "/api/{x}", 201),
                                 ("POST", "https", "/api/{x}", 404)}


@pytest.mark.parametrize("error, status", [(None, 503), (ValueError("secret words"), 0),
                                           (KeyboardInterrupt(), 200)])
def test_a_failed_request_is_an_error_span_naming_the_class_alone(
        queued: list[Any], error: BaseException | None, status: int) -> None:
    records = {}
    for twin in TWINS:
        messages = [{"type": "http.response.start", "status": status}] if status else []
        run(twin, scope(), messages, error)
        (record,) = queued
        queued.clear()
        records[twin] = comparable(record)
    assert records["c"] == records["python"]
    assert records["c"][5] == _spans.ERROR
    if error is not None:
        assert records["c"][3]["error.type"] == records["c"][6] == type(error).__name__
    assert "secret" not in repr(records["c"])


@pytest.mark.parametrize("twin", TWINS)
def test_sampled_out_it_is_a_context_alone_and_queues_nothing(
        queued: list[Any], twin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sdk, "_sampler", Sampler(0.0, True))
    inside, sent = run(twin, scope(), [START, BODY])
    assert inside.flags == 0 and queued == [] and sent[0][1] is inside


@pytest.mark.parametrize("twin", TWINS)
def test_a_body_in_parts_keeps_the_context_until_its_last(queued: list[Any], twin: str) -> None:
    parts = [START, {"type": "http.response.body", "body": b"a", "more_body": True},
             {"type": "http.response.body", "body": b"b", "more_body": False}]
    inside, sent = run(twin, scope(), parts)
    assert [c for _, c in sent] == [inside, inside, None]


@pytest.mark.parametrize("twin", TWINS)
def test_a_last_message_sent_from_a_copied_context_sets_the_copy_back(
        queued: list[Any], twin: str) -> None:
    outer = _spans.new_context(None, Sampler(1.0, True))
    token = CURRENT.set(outer)
    try:
        sent = Sent()
        span = begin(twin)(scope(), sent)
        inside = CURRENT.get()
        assert inside.trace_id == outer.trace_id
        copy = contextvars.copy_context()  # (a streamed answer's task runs in one)
        copy.run(span, START)
        copy.run(span, BODY)
        assert sent[1][1] is outer and copy[CURRENT] is outer  # set back, in the copy
        assert CURRENT.get() is inside  # the request's own, until its end
        span.end(None)
        span.end(None)  # (once)
        assert CURRENT.get() is outer and len(queued) == 1
    finally:
        CURRENT.reset(token)


@pytest.mark.parametrize("twin", TWINS)
def test_what_is_not_a_response_message_is_handed_on(queued: list[Any], twin: str) -> None:
    odd = [{"type": "http.response.trailers"}, {"type": b"bytes"}, START, BODY]
    _, sent = run(twin, scope(), odd)
    assert [m for m, _ in sent] == odd


@pytest.mark.parametrize("twin", TWINS)
def test_a_request_without_its_headers_or_method_raises_and_leaves_nothing_current(
        queued: list[Any], twin: str) -> None:
    with pytest.raises(KeyError):
        begin(twin)({"type": "http", "path": "/"}, Sent())
    with pytest.raises(KeyError):
        begin(twin)({"type": "http", "path": "/", "headers": []}, Sent())
    assert CURRENT.get() is None and queued == []
