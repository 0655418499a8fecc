"""Attacks on the spans made in C (issue 62): _otlpenc.PluginCalls (a plugin call's span),
_otlpenc.server_span (a request's) and _otlpenc.log_ids / count, as a hostile plugin, a
hostile HTTP client or a careless embedder would drive them. Held to their Python twins
(_sdk.PYTHON_PLUGIN_CALL, asgi.ServerSpan, _sdk.PYTHON_TWINS) where both can run the same
case; every error path run thousands of times in a fresh ``-X dev`` interpreter with nothing
leaked (tracemalloc), nothing held (weak references) and nothing left current; many threads
at once on shared versions; and a real ``omnicore run`` host answering hostile requests
(garbled, duplicated and oversized trace headers, thousands of headers), every span it
exports parented as its request said. The twins' own equality tests are
test_call_span_twins.py's and test_server_span_twins.py's."""

from __future__ import annotations

import contextvars
import json
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from omnicore.plugins.breaker import CircuitBreaker
from omnicore.telemetry import _otlp, _sdk
from omnicore.telemetry._spans import CURRENT
from omnicore.telemetry.asgi import ServerSpan, request_spans
from tests.hosts import Host
from tests.telemetry.receiver import receiving

pytestmark = pytest.mark.skipif(not _otlp.AVAILABLE, reason="the C extension is not built")

ROOT = Path(__file__).resolve().parents[2]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"
TWINS = ["c", "python"]
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


# ---- helpers (the shapes test_call_span_twins.py and test_server_span_twins.py use) --------

class Usage:
    def __init__(self, fuel: int | None, memory: int) -> None:
        self.fuel, self.memory_bytes = fuel, memory


class Runtime:
    def __init__(self, fuel_enabled: bool = False, memory: int = 4096) -> None:
        self.fuel_enabled = fuel_enabled
        self.memory = memory
        self.reads = 0

    def usage(self) -> Usage:
        self.reads += 1
        return Usage(0 if self.fuel_enabled else None, self.memory)


def entry(name: str = "p", runtime: Any = None) -> Any:
    made = SimpleNamespace(module=None, runtime=runtime or Runtime(), spans={},
                           memory_read=None)
    return SimpleNamespace(name=name, version=made, breaker=CircuitBreaker(name))


def call_twin(name: str) -> Any:
    return _sdk.plugin_call if name == "c" else _sdk.PYTHON_PLUGIN_CALL


def server_twin(name: str) -> Any:
    return request_spans() if name == "c" else ServerSpan


def comparable(record: Any) -> tuple[Any, ...]:
    (_trace, _span, parent, name, kind, start, end, own, shared, status, description, flags,
     remote, state) = record
    assert 0 < start <= end
    return (parent, name, kind, own, shared, status, description, flags, remote, state)


def raising(exc: BaseException) -> Any:
    def body(*_: Any, **__: Any) -> bytes:
        raise exc
    return body


def outcome(f: Any, *args: Any) -> tuple[str, Any]:
    """What calling ``f`` did: ("ok", its result) or ("raised", the error's class)."""
    try:
        return "ok", f(*args)
    except BaseException as exc:  # (KeyboardInterrupt is a case)
        return "raised", type(exc)


def scope(headers: Any = None) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": "/api/x", "scheme": "http",
            "headers": [(b"host", b"h")] if headers is None else headers}


def in_child(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter (-X dev): a crash is its exit, not pytest's."""
    return subprocess.run([sys.executable, "-X", "dev", "-c", textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


# ---- a plugin call's span: the twins on hostile calls ------------------------------------

def test_a_body_that_calls_plugin_call_again_nests_the_same_in_both(queued: list[Any]) -> None:
    """Reentrancy: a call whose body makes a call (a plugin calling a plugin) and one whose
    inner call raises: the inner span is the outer's child, the same records from both
    twins, nothing current after either."""
    records: dict[str, list[Any]] = {}
    for name in TWINS:
        f = call_twin(name)
        inner = entry("inner")

        def outer_body(*_: Any, f: Any = f, inner: Any = inner, **__: Any) -> bytes:
            assert f(lambda *a, **k: b"in", inner, "h", b"x", None) == b"in"
            with pytest.raises(KeyError):
                f(raising(KeyError("k")), inner, "h", b"x", None)
            return b"out"

        assert f(outer_body, entry("outer"), "h", b"xy", None) == b"out"
        assert CURRENT.get() is None
        ok, failed, outer = queued
        assert ok[2] == failed[2] == outer[1] and ok[0] == failed[0] == outer[0]
        records[name] = [comparable(r)[1:] for r in queued]
        queued.clear()
    assert records["c"] == records["python"]


def test_many_threads_calling_on_shared_versions_keep_names_bounded_and_nothing_current(
        queued: list[Any]) -> None:
    """Eight threads at once, 600 calls each, on two versions shared by all, each call a new
    handler name (a caller chooses handlers): every call answered and its span queued, the
    versions' span names bounded at 4,096, their memory readings always a (time, bytes)
    pair, and nothing current on any thread after."""
    shared = [entry("a"), entry("b")]
    threads, per = 8, 600
    gate = threading.Barrier(threads, timeout=60)
    errors: list[BaseException] = []
    left: list[Any] = []

    def calls(t: int) -> None:
        try:
            gate.wait()
            for i in range(per):
                e = shared[i % 2]
                got = _sdk.plugin_call(lambda *a, **k: b"ok", e, f"h{t}-{i}", b"d", None)
                assert got == b"ok"
                read = e.version.memory_read
                assert isinstance(read, tuple) and len(read) == 2 and read[1] == 4096
            left.append(CURRENT.get())
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=calls, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert left == [None] * threads
    assert len(queued) == threads * per
    assert all(len(e.version.spans) <= _sdk._CALLS_MAX for e in shared)
    assert sum(len(e.version.spans) for e in shared) > 0


def test_a_call_whose_error_cannot_be_classed_is_still_an_error_span(
        queued: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(_sdk, "PluginError")
    records = {}
    for name in TWINS:
        with pytest.raises(NameError) as got:
            call_twin(name)(raising(ValueError("v")), entry(), "h", b"", None)
        assert isinstance(got.value.__context__, ValueError)
        assert CURRENT.get() is None
        (record,) = queued
        queued.clear()
        records[name] = comparable(record)
    assert records["python"][5:7] == (2, "ValueError")
    assert records["c"] == records["python"]


def test_a_ttl_that_is_not_a_number_is_read_as_the_python_twin_reads_it(
        queued: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sdk, "MEMORY_TTL_S", "1")
    records = {}
    for name in TWINS:
        assert call_twin(name)(lambda *a, **k: b"", entry(), "h", b"", None) == b""
        (record,) = queued
        queued.clear()
        records[name] = comparable(record)
    assert records["python"][3]["omnicore.plugin.memory_bytes"] == 4096
    assert records["c"] == records["python"]


def test_an_error_raised_while_the_span_ends_makes_no_context_cycle(
        queued: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    got = {}
    for name in TWINS:
        again = RuntimeError("raised again")

        def body(*_: Any, again: BaseException = again, **__: Any) -> bytes:
            try:
                raise again
            except RuntimeError:
                raise ValueError("the call's") from None

        monkeypatch.setattr(_sdk, "queue", raising(again))
        with pytest.raises(RuntimeError) as caught:
            call_twin(name)(body, entry(), "h", b"", None)
        assert caught.value is again and isinstance(again.__context__, ValueError)
        got[name] = again.__context__.__context__
        assert CURRENT.get() is None
    assert got == {"c": None, "python": None}


@pytest.mark.parametrize("memory_read", [("soon", 1), (0.0,), "garbage", (float("inf"), -5)])
def test_a_version_holding_a_garbage_memory_reading_still_answers_its_calls(
        queued: list[Any], memory_read: Any) -> None:
    """Version.memory_read overwritten with garbage (a careless embedder, a version object
    reused): every call still returns its result, its span is queued and nothing stays
    current; memory_bytes, if recorded, is an int."""
    for name in TWINS:
        e = entry()
        e.version.memory_read = memory_read
        assert call_twin(name)(lambda *a, **k: b"r", e, "h", b"", None) == b"r"
        (record,) = queued
        queued.clear()
        memory = record[7].get("omnicore.plugin.memory_bytes")
        assert memory is None or isinstance(memory, int)
        assert CURRENT.get() is None


@pytest.mark.parametrize("case", ["usage-exception", "usage-baseexception", "call-of-int",
                                  "call-of-three", "queue-raises", "breaker-raises",
                                  "len-raises", "otel-unset"])
def test_failures_while_the_call_ends_raise_as_python_raises_them_in_both(
        queued: list[Any], monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    """What can fail around a call, each the same from both twins: the same result or error
    class, the call's error as the new one's context, the same records queued, nothing
    current after."""
    def make() -> Any:
        e = entry()
        if case == "usage-exception":
            e.version.runtime.usage = raising(RuntimeError("closed"))
        elif case == "usage-baseexception":
            e.version.runtime.usage = raising(KeyboardInterrupt())
        elif case == "breaker-raises":
            e.breaker = SimpleNamespace()  # (no state)
        return e

    if case == "call-of-int":
        monkeypatch.setattr(_sdk, "_call_of", lambda *a: 5)
    elif case == "call-of-three":
        monkeypatch.setattr(_sdk, "_call_of", lambda *a: ("n", {}, 3))
    elif case == "queue-raises":
        monkeypatch.setattr(_sdk, "queue", raising(MemoryError()))
    elif case == "otel-unset":
        monkeypatch.setattr(_sdk, "_OTEL_CONTEXT", contextvars.ContextVar("unset"))
    body = (lambda *a, **k: 7) if case == "len-raises" else raising(ValueError("call"))
    seen = {}
    for name in TWINS:
        e = make()
        if case in ("call-of-int", "call-of-three"):
            e.version = None  # (no version: _call_of itself asked)
        try:
            call_twin(name)(body, e, "h", b"", None)
            got: tuple[Any, ...] = ("ok",)
        except BaseException as exc:
            got = (type(exc), type(exc.__context__))
        assert CURRENT.get() is None
        seen[name] = (got, [comparable(r)[1:] for r in queued])
        queued.clear()
    assert seen["c"] == seen["python"]


# ---- log_ids and count on hostile current contexts ---------------------------------------

@pytest.mark.parametrize("current", [
    SimpleNamespace(flags=1, trace_id=-1, span_id=1, attributes={}),
    SimpleNamespace(flags=1, trace_id=1 << 128, span_id=1, attributes={}),
    SimpleNamespace(flags=1, trace_id=(1 << 128) - 1, span_id=(1 << 64) - 1, attributes={}),
    SimpleNamespace(flags=1, trace_id=1, span_id=1 << 64, attributes={}),
    SimpleNamespace(flags=1, trace_id=True, span_id=0, attributes=None),
    SimpleNamespace(flags=1, trace_id=5, span_id=6, attributes={"c": "text"}),
    SimpleNamespace(flags=1, trace_id=5, span_id=6, attributes=[]),
    SimpleNamespace(flags=0, trace_id=5, span_id=6, attributes={"c": 1}),
])
def test_log_ids_and_count_on_out_of_range_ids_and_odd_attributes_match_python(
        current: Any) -> None:
    """Ids negative, of 129 bits, the largest that fit, a bool; attributes holding text, a
    list, none: log_ids and count give the same text, count the same, or raise the same
    class as their Python twins."""
    token = CURRENT.set(current)
    try:
        got = {}
        for name in TWINS:
            ids = _sdk.log_ids if name == "c" else _sdk.PYTHON_TWINS["log_ids"]
            count = _sdk.count if name == "c" else _sdk.PYTHON_TWINS["count"]
            before = dict(current.attributes) if isinstance(current.attributes, dict) else None
            got[name] = (outcome(ids), outcome(count, "c"),
                         dict(current.attributes) if isinstance(current.attributes, dict)
                         else None)
            if before is not None:
                current.attributes.clear()
                current.attributes.update(before)
        assert got["c"] == got["python"]
    finally:
        CURRENT.reset(token)


@pytest.mark.parametrize("current", [SimpleNamespace(flags=(1 << 64) | 1, attributes={}),
                                     SimpleNamespace(flags=0)])
def test_count_on_wide_flags_or_a_sampled_out_span_without_attributes_matches_python(
        current: Any) -> None:
    token = CURRENT.set(current)
    try:
        assert outcome(_sdk.count, "c")[0] == outcome(_sdk.PYTHON_TWINS["count"], "c")[0] == "ok"
    finally:
        CURRENT.reset(token)


# ---- a request's span: the twins on hostile requests and messages -------------------------

class Sent(list[Any]):
    def __call__(self, message: Any) -> str:
        self.append((message, CURRENT.get()))
        return "awaitable"


def raising_headers(after: int) -> Iterator[Any]:
    for i in range(after):
        yield (b"x-%d" % i, b"v")
    raise OSError("midway")


@pytest.mark.parametrize("case", [
    "duplicate-traceparent", "garbled-traceparent", "traceparent-str", "tracestate-str",
    "tracestate-only", "10000-headers", "iterator-raises", "not-a-list", "header-not-a-pair",
    "high-latin1", "long-traceparent", "no-method"])
def test_hostile_request_headers_begin_the_same_span_or_raise_the_same_in_both(
        queued: list[Any], case: str) -> None:
    """Headers a client or a careless server hands over: a request's span begins with the
    same parent and record from both twins, or both raise the same class and leave nothing
    current; the first of two traceparents is the one continued."""
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    headers: dict[str, Any] = {
        "duplicate-traceparent": [(b"traceparent", PARENT.encode()),
                                  (b"traceparent", other.encode())],
        "garbled-traceparent": [(b"traceparent", b"00-zz-\xff\x00-01")],
        "traceparent-str": [(b"traceparent", PARENT)],
        "tracestate-str": [(b"traceparent", PARENT.encode()), (b"tracestate", "a=b")],
        "tracestate-only": [(b"tracestate", b"a=b")],
        "10000-headers": [(b"x-%d" % i, b"v" * 20) for i in range(10_000)]
        + [(b"traceparent", PARENT.encode()), (b"tracestate", b"k=v")],
        "iterator-raises": None,
        "not-a-list": 42,
        "header-not-a-pair": [b"traceparent"],
        "high-latin1": [(b"traceparent", PARENT.encode() + b"\xe9\xff")],
        "long-traceparent": [(b"traceparent", PARENT.encode() * 500)],
        "no-method": [(b"traceparent", PARENT.encode())],
    }
    got: dict[str, tuple[Any, ...]] = {}
    for name in TWINS:
        s = scope(raising_headers(50) if case == "iterator-raises" else headers[case])
        if case == "no-method":
            del s["method"]
        sent = Sent()
        try:
            span = server_twin(name)(s, sent)
        except BaseException as exc:
            assert CURRENT.get() is None
            got[name] = ("raised", type(exc))
            continue
        inside = CURRENT.get()
        assert inside is not None
        span({"type": "http.response.start", "status": 200})
        span({"type": "http.response.body", "body": b"x"})
        span.end(None)
        assert CURRENT.get() is None
        (record,) = queued
        queued.clear()
        got[name] = ("ok", inside.trace_id if record[12] else None, comparable(record)[1:])
    assert got["c"] == got["python"]
    if case == "duplicate-traceparent":
        assert got["c"][1] == int(TRACE, 16)


@pytest.mark.parametrize("header", [(b"traceparent", PARENT.encode(), b"x"),
                                    [b"traceparent"]])
def test_a_traceparent_header_that_is_not_a_pair_is_refused_as_in_python(
        queued: list[Any], header: Any) -> None:
    got = {}
    for name in TWINS:
        got[name] = outcome(server_twin(name), scope([header]), Sent())
        if got[name][0] == "ok":
            got[name][1].end(None)
            got[name] = ("ok", None)
        assert CURRENT.get() is None
    assert got["c"] == got["python"] == ("raised", ValueError)


def test_a_status_past_long_max_is_taken_as_python_takes_it(queued: list[Any]) -> None:
    got = {}
    for name in TWINS:
        span = server_twin(name)(scope(), Sent())
        got[name] = outcome(span, {"type": "http.response.start", "status": 1 << 70})[0]
        span.end(None)
        assert CURRENT.get() is None
    assert got == {"c": "ok", "python": "ok"}
    assert [r[9] for r in queued] == [2, 2]  # (ERROR: a status past 500)


class BadTruth:
    def __bool__(self) -> bool:
        raise RuntimeError("no truth")


@pytest.mark.parametrize("messages", [
    [42],
    [{"status": 200}],
    [{"type": "http.response.start", "status": "abc"}],
    [{"type": "http.response.start", "status": "404"}],
    [{"type": "http.response.start", "status": 200.9}],
    [{"type": "http.response.start"}],
    [{"type": "http.response.start", "status": -1}],
    [{"type": "http.response.body", "more_body": BadTruth()}],
    [{"type": 5}, {"type": "http.response.body"}],
    [{"type": "http.response.body", "body": b"a", "more_body": True},
     {"type": "http.response.body"}, {"type": "http.response.body"}],
    [{"type": "websocket.send"}, {"type": "http.response.start", "status": 599},
     {"type": "http.response.body"}],
])
def test_hostile_response_messages_are_handed_on_or_refused_the_same_in_both(
        queued: list[Any], messages: list[Any]) -> None:
    """Messages an app hands its send (not dicts, no type, a status that is text, a float, a
    negative, missing; a more_body whose truth test raises; messages after the last): each
    handed on or refused with the same class by both twins, the same record, and nothing
    current after end."""
    got = {}
    for name in TWINS:
        sent = Sent()
        span = server_twin(name)(scope(), sent)
        results = [outcome(span, m) for m in messages]
        span.end(None)
        assert CURRENT.get() is None
        got[name] = (results, [m for m, _ in sent], [comparable(r)[1:] for r in queued],
                     span.status)
        queued.clear()
    assert got["c"] == got["python"]


def test_a_more_body_that_cannot_be_tested_after_the_last_message_raises_as_in_python(
        queued: list[Any]) -> None:
    got = {}
    for name in TWINS:
        span = server_twin(name)(scope(), Sent())
        span({"type": "http.response.body"})
        got[name] = outcome(span, {"type": "http.response.body", "more_body": BadTruth()})
        span.end(None)
    assert got["c"] == got["python"]


def test_end_twice_send_after_end_and_a_nested_request_are_the_same_in_both(
        queued: list[Any]) -> None:
    """A request inside a request (an app calling its own ASGI app) is its child; end called
    twice queues once; a message sent after end is handed on, leaving nothing current; a
    queue that raises at end raises from end, once."""
    got = {}
    for name in TWINS:
        outer = server_twin(name)(scope(), Sent())
        outer_context = CURRENT.get()
        inner = server_twin(name)(scope(), Sent())
        inner_context = CURRENT.get()
        assert inner_context is not None and outer_context is not None
        assert inner_context.trace_id == outer_context.trace_id
        inner({"type": "http.response.start", "status": 201})
        inner({"type": "http.response.body"})
        inner.end(None)
        assert CURRENT.get() is outer_context
        inner.end(ValueError("again"))
        outer({"type": "http.response.start", "status": 200})
        outer.end(KeyboardInterrupt())
        assert outer({"type": "http.response.body"}) == "awaitable"
        assert CURRENT.get() is None
        first, second = queued
        assert first[2] == second[1]
        got[name] = [comparable(r)[1:] for r in queued]
        queued.clear()
    assert got["c"] == got["python"]


def test_a_last_message_sent_from_another_thread_leaves_nothing_current_anywhere(
        queued: list[Any]) -> None:
    """The last message sent from another thread (a careless embedder's executor): that
    thread's context is set back to nothing, the request's own reset at end, in both."""
    got = {}
    for name in TWINS:
        span = server_twin(name)(scope(), Sent())
        there: list[Any] = []

        def send_last(s: Any = span, seen: list[Any] = there) -> None:
            seen.append(outcome(s, {"type": "http.response.body"}))
            seen.append(CURRENT.get())

        worker = threading.Thread(target=send_last)
        worker.start()
        worker.join()
        assert CURRENT.get() is not None  # (still the request's, here)
        span.end(None)
        assert CURRENT.get() is None
        got[name] = (there, len(queued))
        queued.clear()
    assert got["c"] == got["python"] == ([("ok", "awaitable"), None], 1)


def test_a_span_never_ended_is_collected_with_what_it_holds(queued: list[Any]) -> None:
    """A span dropped without end (an app that never returns, a careless embedder): the C
    one is collected with its scope and send, as the Python one is, queueing nothing."""
    import gc
    import weakref

    for name in TWINS:
        ctx = contextvars.copy_context()

        def begin_and_drop(twin: str = name) -> tuple[Any, Any]:
            class Send:
                def __call__(self, m: Any) -> None:
                    return None

            class Scope(dict[str, Any]):
                pass

            s, send = Scope(scope()), Send()
            server_twin(twin)(s, send)
            return weakref.ref(s), weakref.ref(send)

        refs = ctx.run(begin_and_drop)
        del ctx
        gc.collect()
        assert [r() for r in refs] == [None, None]
        assert CURRENT.get() is None and queued == []


def test_a_half_built_span_found_by_a_hook_refuses_sends_and_ends_as_nothing(
        queued: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A parse_traceparent hook (an embedder's) that finds the C span being built through
    the garbage collector and drives it: a send is refused (TypeError, not a crash through a
    NULL vectorcall), end() queues nothing, its status is 0; the request then begins, ends
    and queues its span as any other, nothing current after."""
    import gc

    kind = type(server_twin("c")(scope(), Sent()))
    CURRENT.set(None)
    real = vars(_sdk)["parse_traceparent"]
    seen: list[Any] = []

    def hook(text: str, state: str | None) -> Any:
        for o in gc.get_objects():
            if type(o) is kind:
                seen.append((outcome(o, {"type": "http.response.body"}),
                             outcome(o.end, None), o.status))
        return real(text, state)

    monkeypatch.setattr(_sdk, "parse_traceparent", hook)
    span = server_twin("c")(scope([(b"traceparent", PARENT.encode())]), Sent())
    assert seen == [(("raised", TypeError), ("ok", None), 0)] and queued == []
    span({"type": "http.response.start", "status": 200})
    span.end(None)
    assert CURRENT.get() is None and len(queued) == 1 and queued[0][2] == 0x00F067AA0BA902B7


def test_a_malformed_traceparent_with_current_not_a_contextvar_keeps_none_s_references(
) -> None:
    done = in_child("""
        import sys
        from omnicore import telemetry
        from omnicore.telemetry import Settings, _sdk
        from omnicore.telemetry.asgi import request_spans
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        telemetry.start(Settings(service_name="t"), "i", InMemorySpanExporter())
        begin = request_spans()
        real, _sdk.CURRENT = _sdk.CURRENT, object()
        scope = {"type": "http", "method": "GET", "path": "/",
                 "headers": [(b"traceparent", b"garbled")]}
        before = sys.getrefcount(None)
        for _ in range(10_000):
            try:
                begin(scope, print)
            except TypeError:
                pass
        lost = before - sys.getrefcount(None)
        _sdk.CURRENT = real
        telemetry.reset()
        print("LOST", lost)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "LOST 0" in done.stdout, done.stdout


# ---- every error path, thousands of times, in a fresh -X dev interpreter ------------------

LEAKS = """
import contextvars, gc, sys, threading, tracemalloc, weakref
from types import SimpleNamespace
from omnicore import telemetry
from omnicore.plugins.breaker import CircuitBreaker
from omnicore.telemetry import Settings, _sdk
from omnicore.telemetry._spans import CURRENT
from omnicore.telemetry.asgi import request_spans
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

telemetry.start(Settings(service_name="t"), "i", InMemorySpanExporter())
queued = []
def keep(r):
    if len(queued) > 100:
        queued.clear()
    queued.append(r)
_sdk.queue = keep
call = _sdk.plugin_call
begin = request_spans()
PARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

class Usage:
    def __init__(self, fuel, memory):
        self.fuel, self.memory_bytes = fuel, memory

class Runtime:
    def __init__(self, fuel_enabled=False, usage_error=None):
        self.fuel_enabled, self.usage_error = fuel_enabled, usage_error
    def usage(self):
        if self.usage_error is not None:
            raise self.usage_error
        return Usage(1 if self.fuel_enabled else None, 4096)

class NoLen:
    pass

class Breaker:
    @property
    def state(self):
        raise RuntimeError("breaker")

def entry(**runtime):
    v = SimpleNamespace(module=None, runtime=Runtime(**runtime), spans={}, memory_read=None)
    return SimpleNamespace(name="p", version=v, breaker=CircuitBreaker("p"))

def body_ok(*a, **k):
    return b"ok"

def raiser(exc):
    def body(*a, **k):
        raise exc
    return body

class Swap:
    "a name of _sdk rebound for one case"
    def __init__(self, **names):
        self.names = names
    def __enter__(self):
        self.old = {k: _sdk.__dict__.get(k, Swap) for k in self.names}
        for k, v in self.names.items():
            if v is Swap:
                _sdk.__dict__.pop(k, None)
            else:
                _sdk.__dict__[k] = v
    def __exit__(self, *a):
        for k, v in self.old.items():
            if v is Swap:
                _sdk.__dict__.pop(k, None)
            else:
                _sdk.__dict__[k] = v

def call_case(body, e=None, data=b"abc", **swap):
    e = e or entry()
    with Swap(**swap):
        try:
            call(body, e, "h", data, None)
        except BaseException:
            pass
    assert CURRENT.get() is None

def calls():
    call_case(body_ok)
    call_case(raiser(ValueError("v")))
    call_case(raiser(KeyboardInterrupt()))
    call_case(lambda *a, **k: NoLen())
    call_case(body_ok, data=NoLen())
    call_case(body_ok, e=SimpleNamespace(name="p", version=None, breaker=Breaker()))
    call_case(raiser(ValueError("v")), e=entry(usage_error=RuntimeError("closed")))
    call_case(body_ok, e=entry(usage_error=KeyboardInterrupt()))
    call_case(body_ok, e=entry(fuel_enabled=True))
    e = entry(fuel_enabled=True); e.version.runtime.usage_error = None
    call_case(raiser(OSError("o")), e=e)
    call_case(body_ok, _call_of=lambda *a: 5)
    call_case(raiser(ValueError("v")), _call_of=lambda *a: ("n", {}, 3))
    call_case(body_ok, queue=raiser(MemoryError()))
    call_case(raiser(ValueError("v")), PluginError=Swap)
    call_case(body_ok, MEMORY_TTL_S="x")
    call_case(body_ok, MEMORY_TTL_S=Swap)
    e = entry(); e.version.memory_read = ("x", 1)
    call_case(body_ok, e=e)
    e = entry(); e.version.memory_read = (0.0, NoLen())
    call_case(body_ok, e=e)
    call_case(body_ok, _OTEL_CONTEXT=contextvars.ContextVar("unset"))
    call_case(body_ok, _sampler=None)
    call_case(body_ok, _outer=raiser(RuntimeError("outer")))
    call_case(body_ok, CURRENT=Swap)
    # sampled out, the body raising
    from omnicore.telemetry._spans import Sampler
    call_case(raiser(ValueError("v")), _sampler=Sampler(0.0, True))
    # reentrant
    call_case(lambda *a, **k: call(raiser(ValueError("in")), entry(), "i", b"", None))

def raising_headers():
    yield (b"x", b"y")
    raise OSError("midway")

class BadTruth:
    def __bool__(self):
        raise RuntimeError("truth")

def request(headers, messages=(), error=None, end=True, **swap):
    s = {"type": "http", "method": "GET", "path": "/p", "headers": headers}
    with Swap(**swap):
        try:
            span = begin(s, lambda m: None)
        except BaseException:
            assert CURRENT.get() is None
            return
        for m in messages:
            try:
                span(m)
            except BaseException:
                pass
        if end:
            try:
                span.end(error)
            except BaseException:
                pass
            try:
                span.end(error)
            except BaseException:
                pass
    if end:
        assert CURRENT.get() is None

def requests():
    start = {"type": "http.response.start", "status": 200}
    last = {"type": "http.response.body"}
    request([(b"traceparent", PARENT)], [start, last])
    request([(b"traceparent", PARENT), (b"tracestate", b"a=b")], [start, last], ValueError())
    request([(b"traceparent", b"garbled")], [start, last])
    request([(b"traceparent", "str")])
    request([(b"traceparent", PARENT), (b"tracestate", 5)])
    request(raising_headers())
    request(5)
    request([b"traceparent"])
    request([(b"traceparent", PARENT)], [42, {"type": "http.response.start", "status": "x"},
                                         {"type": "http.response.start", "status": 1 << 70},
                                         {"type": "http.response.body", "more_body": BadTruth()},
                                         last, last])
    request([(b"traceparent", PARENT)], [start, last], queue=raiser(MemoryError()))
    request([(b"traceparent", PARENT)], [start, last], served=lambda *a: 5)
    request([(b"traceparent", PARENT)], [start, last], served=Swap)
    request([], [start, last], parse_traceparent=Swap)
    request([(b"traceparent", PARENT)], [start, last], parse_traceparent=raiser(KeyError()))
    request([(b"traceparent", PARENT)], _sampler=None)
    request([], _OTEL_CONTEXT=contextvars.ContextVar("unset"))
    # never ended, in a context of its own
    contextvars.copy_context().run(request, [(b"traceparent", PARENT)], [start], end=False)
    # the last message from another thread
    s = {"type": "http", "method": "GET", "path": "/p", "headers": []}
    span = begin(s, lambda m: None)
    t = threading.Thread(target=span, args=(last,)); t.start(); t.join()
    span.end(None)
    assert CURRENT.get() is None

def ids():
    for current in (SimpleNamespace(flags=1, trace_id=-1, span_id=1, attributes={}),
                    SimpleNamespace(flags=1, trace_id=1 << 130, span_id=1, attributes={}),
                    SimpleNamespace(flags=1, trace_id=1.0, span_id=1, attributes={"c": "x"}),
                    SimpleNamespace(flags=1 << 70, trace_id=1, span_id=1, attributes=[]),
                    SimpleNamespace(flags=1, trace_id=1, span_id=1, attributes={})):
        token = CURRENT.set(current)
        for f in (_sdk.log_ids, lambda: _sdk.count("c")):
            try:
                f()
            except BaseException:
                pass
        CURRENT.reset(token)

kinds = {"calls": calls, "requests": requests, "ids": ids}
tracemalloc.start()
for name, run in kinds.items():
    for _ in range(300):
        run()
    queued.clear()
    gc.collect()
    before, nones = tracemalloc.get_traced_memory()[0], sys.getrefcount(None)
    for _ in range(3000):
        run()
    queued.clear()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    print("GREW", name, grown, sys.getrefcount(None) - nones)
telemetry.reset()
print("DONE")
"""


def test_every_error_path_thousands_of_times_leaks_nothing_and_does_not_crash() -> None:
    """Every hostile case above and more (a body raising, len() failing, usage() raising an
    Exception or a BaseException, _call_of not a pair, queue raising, names deleted from
    _sdk, a TTL not a number, garbage memory readings, headers that raise midway or are not
    pairs, messages that are not dicts, a status past LONG_MAX, end twice or never, the last
    message from another thread, ids out of range), 3,000 rounds each after a warm-up, in a
    fresh ``-X dev`` interpreter: it exits cleanly, its traced memory grows by less than 16
    bytes a round, and None keeps its references."""
    done = in_child(LEAKS)
    assert done.returncode == 0 and "DONE" in done.stdout, (done.stdout, done.stderr[-3000:])
    grew = {line.split()[1]: (int(line.split()[2]), int(line.split()[3]))
            for line in done.stdout.splitlines() if line.startswith("GREW")}
    assert set(grew) == {"calls", "requests", "ids"}
    # (a reference lost or kept each round would be thousands: a few are the interpreter's)
    assert all(memory < 3000 * 16 and abs(nones) < 100 for memory, nones in grew.values()), grew


# ---- a real host answering hostile requests ------------------------------------------------

def raw_request(url: str, token: str, path: str, headers: list[tuple[str, str]]) -> int:
    """One request over a socket of its own, headers as given (duplicates, garbage and all):
    its status, or 0 if the connection closed unanswered."""
    host, port = url.split("//", 1)[1].rstrip("/").split(":")
    lines = [f"GET {path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {token}",
             "Connection: close"] + [f"{k}: {v}" for k, v in headers]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection((host, int(port)), timeout=60) as s:
        s.sendall(raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    if not answer:
        return 0
    return int(answer.split(b" ", 2)[1])


def test_a_real_host_answers_hostile_trace_headers_and_parents_every_span_as_they_said(
        tmp_path: Path) -> None:
    """``omnicore run`` (tracing to the loopback receiver): requests with two traceparents,
    a garbled one, one of latin-1 bytes, one 4 KiB long, a tracestate alone, 400 headers,
    and a request with 10,000 headers: every request answered (the 10,000 refused by the
    server, not dropped); every span arrives, continuing the first valid traceparent's trace
    under its span, the others roots of their own; and a plain request after them is a root
    (nothing left current on the loop)."""
    other = f"00-{'1' * 32}-{'2' * 16}-01"
    cases: dict[str, list[tuple[str, str]]] = {
        "dup": [("traceparent", PARENT), ("traceparent", other)],
        "garbled": [("traceparent", "00-zz-zz-01")],
        "latin1": [("traceparent", PARENT + "\xe9\xff")],
        "long": [("traceparent", PARENT * 75)],
        "state-only": [("tracestate", "a=b")],
        "many": [(f"x-{i}", "v") for i in range(400)] + [("traceparent", PARENT)],
    }
    with receiving() as receiver:
        config = {"name": "cspans", "data_dir": "data"}
        host = Host(tmp_path / "app", config, [GREETER], data=tmp_path / "app" / "data")
        with host.start({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
                         "OTEL_BSP_SCHEDULE_DELAY": "50"}):
            host.until(lambda: host.ready() or None, "the host's readiness")
            doc = host.until(lambda: host.console_file, "its console file")
            statuses = {}
            for name, headers in cases.items():
                statuses[name] = raw_request(doc["url"], doc["token"], f"/api/v1/plugins/{name}",
                                             headers)
            huge = raw_request(doc["url"], doc["token"], "/api/v1/plugins/huge",
                               [(f"x-{i}", "v" * 8) for i in range(10_000)])
            plain = raw_request(doc["url"], doc["token"], "/api/v1/plugins/plain", [])
            assert statuses == {name: 404 for name in cases}
            assert huge in (400, 413, 431) and plain == 404

            def arrived() -> dict[str, Any] | None:
                with receiver.lock:
                    spans = [s for s in receiver.spans if s.kind == "server"]
                found = {s.attributes.get("url.path", "").rsplit("/", 1)[-1]: s for s in spans}
                wanted = [*cases, "plain"]
                return found if all(w in found for w in wanted) else None

            found = host.until(arrived, "every request's span")
    for name in ("dup", "many"):
        assert found[name].trace_id == TRACE and found[name].parent_id == "00f067aa0ba902b7"
    for name in ("garbled", "latin1", "long", "state-only", "plain"):
        assert found[name].parent_id == "" and found[name].trace_id != TRACE, name
    assert len({found[n].trace_id for n in ("garbled", "latin1", "long", "state-only",
                                            "plain")}) == 5
    assert "huge" not in found or found["huge"].parent_id == ""
    assert json.dumps(found["dup"].attributes)  # (plain values, as exported)
