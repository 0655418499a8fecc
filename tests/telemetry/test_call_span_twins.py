"""A plugin call's span made in C (omnicore.telemetry._otlpenc.PluginCalls, issue 62) where
the extension is built, held to its Python twin (_sdk.PYTHON_PLUGIN_CALL), which a host
without a compiler runs: the same record queued for the same call, whatever the call does
(returns, raises a plugin's error or the host's, runs sampled out, under an outer span), the
same names read from the module (a test or a set-up that rebinds one is seen), and an error
raised while the span ends goes on with the call's own as its context, as Python's finally
block raises it. Real plugins' spans are tests/telemetry/test_plugin_span.py's."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from omnicore import telemetry
from omnicore.errors import GuestError
from omnicore.plugins.breaker import CircuitBreaker
from omnicore.telemetry import _sdk, _spans
from omnicore.telemetry._spans import CURRENT, Sampler

TWINS = ["c", "python"]


class Usage:
    def __init__(self, fuel: int | None, memory: int) -> None:
        self.fuel, self.memory_bytes = fuel, memory


class Runtime:
    """A runtime's counters as the span reads them: fuel burnt so far, its instances'
    memory; ``reads`` counts the readings."""

    def __init__(self, fuel_enabled: bool) -> None:
        self.fuel_enabled = fuel_enabled
        self.burnt = 0
        self.reads = 0
        self.closed = False

    def usage(self) -> Usage:
        if self.closed:
            raise RuntimeError("closed")
        self.reads += 1
        return Usage(self.burnt if self.fuel_enabled else None, 65536 * self.reads)


def entry(name: str = "p", *, fuel: bool = False, version: bool = True) -> Any:
    module = SimpleNamespace(sha256="ab" * 32, manifest={"version": "1.2.3"})
    made = SimpleNamespace(module=module, runtime=Runtime(fuel), spans={},
                           memory_read=None) if version else None
    return SimpleNamespace(name=name, version=made, breaker=CircuitBreaker(name))


def twin(name: str) -> Any:
    return _sdk.plugin_call if name == "c" else _sdk.PYTHON_PLUGIN_CALL


def comparable(record: Any) -> tuple[Any, ...]:
    """A record without what differs between two spans of the same call: ids and times."""
    (_trace, _span, parent, name, kind, start, end, own, shared, status, description, flags,
     remote, state) = record
    assert 0 < start <= end
    return (parent, name, kind, own, shared, status, description, flags, remote, state)


def test_the_c_twin_is_the_one_used() -> None:
    from omnicore.telemetry import _otlpenc

    assert isinstance(_sdk.plugin_call, _otlpenc.PluginCalls)
    assert _sdk.PYTHON_PLUGIN_CALL is not _sdk.plugin_call


def body_returning(out: bytes, seen: list[Any], burn: Any = None) -> Any:
    def body(e: Any, handler: str, data: bytes, run: Any, *, traced: bool) -> bytes:
        assert traced is True and run is None
        seen.append(CURRENT.get())
        if burn is not None:
            burn(e)
        return out
    return body


def test_a_call_that_returns_is_the_same_span_from_both(queued: list[Any]) -> None:
    records = {}
    for name in TWINS:
        seen: list[Any] = []
        e = entry()
        got = twin(name)(body_returning(b"12345", seen), e, "greet", b"abc", None)
        assert got == b"12345"
        (record,) = queued
        queued.clear()
        # what ran inside was the span's own context, holding its attributes
        assert seen[0].span_id == record[1] and seen[0].attributes is record[7]
        assert CURRENT.get() is None
        records[name] = comparable(record)
        assert e.version.spans["greet"][0] == "call p/greet"
    assert records["c"] == records["python"]
    own = records["c"][3]
    assert own["omnicore.plugin.input_bytes"] == 3 and own["omnicore.plugin.output_bytes"] == 5
    assert own["omnicore.plugin.outcome"] == "ok" and own["omnicore.plugin.breaker"] == "closed"
    assert own["omnicore.plugin.memory_bytes"] > 0 and "omnicore.plugin.fuel" not in own
    assert records["c"][4] == {"omnicore.plugin.name": "p", "omnicore.plugin.handler": "greet",
                               "omnicore.plugin.digest": "sha256:" + "ab" * 32,
                               "omnicore.plugin.version": "1.2.3"}


@pytest.mark.parametrize("name", TWINS)
def test_a_metered_call_carries_its_own_fuel(queued: list[Any], name: str) -> None:
    e = entry(fuel=True)

    def burn(e: Any) -> None:
        e.version.runtime.burnt += 700

    twin(name)(body_returning(b"", [], burn), e, "h", b"", None)
    twin(name)(body_returning(b"", [], burn), e, "h", b"", None)
    assert [r[7]["omnicore.plugin.fuel"] for r in queued] == [700, 700]


@pytest.mark.parametrize("raised, outcome", [(GuestError("the guest's own words"), "error"),
                                             (ValueError("a host's bug"), "host-error"),
                                             (KeyboardInterrupt(), "host-error")])
def test_a_call_that_raises_is_an_error_span_naming_its_class_alone(
        queued: list[Any], raised: BaseException, outcome: str) -> None:
    records = {}
    for name in TWINS:
        def body(*_: Any, traced: bool) -> bytes:
            raise raised

        with pytest.raises(type(raised)) as caught:
            twin(name)(body, entry(), "h", b"xy", None)
        assert caught.value is raised
        assert CURRENT.get() is None
        (record,) = queued
        queued.clear()
        records[name] = comparable(record)
    assert records["c"] == records["python"]
    own, status, description = records["c"][3], records["c"][5], records["c"][6]
    assert own["omnicore.plugin.outcome"] == outcome
    assert own["error.type"] == description == type(raised).__name__
    assert status == _spans.ERROR and "omnicore.plugin.output_bytes" not in own
    assert "words" not in repr(records["c"]) and "bug" not in repr(records["c"])


@pytest.mark.parametrize("name", TWINS)
def test_a_call_sampled_out_runs_in_its_context_and_queues_nothing(
        queued: list[Any], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sdk, "_sampler", Sampler(0.0, True))  # read on every call
    seen: list[Any] = []
    assert twin(name)(body_returning(b"ok", seen), entry(), "h", b"", None) == b"ok"
    assert queued == [] and seen[0].flags == 0 and seen[0].attributes is None
    assert CURRENT.get() is None

    def body(*_: Any, traced: bool) -> bytes:
        raise GuestError("no")

    with pytest.raises(GuestError):
        twin(name)(body, entry(), "h", b"", None)
    assert queued == [] and CURRENT.get() is None


@pytest.mark.parametrize("name", TWINS)
def test_a_call_inside_a_span_is_its_child(queued: list[Any], name: str) -> None:
    with telemetry.span("outer") as outer:
        twin(name)(body_returning(b"", []), entry(), "h", b"", None)
    (record,) = queued
    assert record[0] == outer.trace_id and record[2] == outer.span_id


@pytest.mark.parametrize("name", TWINS)
def test_a_call_of_no_version_is_a_span_without_a_digest(queued: list[Any], name: str) -> None:
    def body(*_: Any, traced: bool) -> bytes:
        raise LookupError("not callable")

    with pytest.raises(LookupError):
        twin(name)(body, entry(version=False), "h", b"", None)
    (record,) = queued
    assert record[8] == {"omnicore.plugin.name": "p", "omnicore.plugin.handler": "h"}
    assert "omnicore.plugin.memory_bytes" not in record[7]


@pytest.mark.parametrize("name", TWINS)
def test_an_error_while_the_span_ends_goes_on_with_the_calls_as_its_context(
        queued: list[Any], name: str) -> None:
    class Broken:
        @property
        def state(self) -> str:
            raise RuntimeError("the breaker")

    e = entry()
    e.breaker = Broken()
    with pytest.raises(RuntimeError) as caught:
        twin(name)(body_returning(b"x", []), e, "h", b"", None)
    assert str(caught.value) == "the breaker" and caught.value.__context__ is None
    assert CURRENT.get() is None and queued == []

    def body(*_: Any, traced: bool) -> bytes:
        raise GuestError("the call")

    with pytest.raises(RuntimeError) as caught:
        twin(name)(body, e, "h", b"", None)
    assert isinstance(caught.value.__context__, GuestError)
    assert CURRENT.get() is None


@pytest.mark.parametrize("name", TWINS)
def test_a_runtime_whose_counters_fail_makes_a_span_without_them(
        queued: list[Any], name: str) -> None:
    for fuel in (True, False):
        e = entry(fuel=fuel)

        def close(e: Any) -> None:
            e.version.runtime.closed = True

        assert twin(name)(body_returning(b"x", [], close), e, "h", b"", None) == b"x"
        (record,) = queued
        queued.clear()
        assert "omnicore.plugin.memory_bytes" not in record[7]
        assert "omnicore.plugin.fuel" not in record[7]
        assert record[7]["omnicore.plugin.outcome"] == "ok"


@pytest.mark.parametrize("name", TWINS)
def test_memory_is_read_at_most_once_a_ttl_per_runtime(
        queued: list[Any], name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sdk, "MEMORY_TTL_S", 3600.0)
    a, b = entry("a"), entry("b")
    for _ in range(5):
        for e in (a, b):
            twin(name)(body_returning(b"", []), e, "h", b"", None)
    assert a.version.runtime.reads == b.version.runtime.reads == 1
    assert {r[7]["omnicore.plugin.memory_bytes"] for r in queued} == {65536}
    monkeypatch.setattr(_sdk, "MEMORY_TTL_S", 0.0)  # read every time
    twin(name)(body_returning(b"", []), a, "h", b"", None)
    assert a.version.runtime.reads == 2 and queued[-1][7]["omnicore.plugin.memory_bytes"] == 131072


@pytest.mark.parametrize("name", TWINS)
def test_a_versions_span_names_are_bounded(queued: list[Any], name: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sdk, "_CALLS_MAX", 8)
    e = entry()
    for i in range(50):
        twin(name)(body_returning(b"", []), e, f"h{i}", b"", None)
    assert 0 < len(e.version.spans) <= 8
    assert [r[3] for r in queued] == [f"call p/h{i}" for i in range(50)]


@pytest.mark.parametrize("name", TWINS)
def test_both_twins_refuse_other_arguments(name: str) -> None:
    with pytest.raises(TypeError):
        twin(name)(lambda: b"")
    with pytest.raises(TypeError):
        twin(name)(lambda: b"", entry(), "h", b"", None, traced=True)


def contexts() -> list[Any]:
    """What can be current while a plugin runs: nothing, a call's context (recorded, with
    attributes; sampled out, without), a request's, an application's Span."""
    on, off = Sampler(1.0, True), Sampler(0.0, True)
    call = _spans.new_context(None, on)
    call.attributes = {"omnicore.plugin.host_calls.kv": 2}
    return [None, call, _spans.new_context(None, off), _spans.new_context(None, on),
            _spans.new_span("app", _spans.INTERNAL, {"k": "v"}, None, on),
            _spans.new_span("app", _spans.INTERNAL, {}, None, off),
            _spans.Parent((1 << 128) - 1, (1 << 64) - 1, 1, None, False, {})]


def test_a_log_lines_ids_are_the_same_from_both() -> None:
    py_log_ids = _sdk.PYTHON_TWINS["log_ids"]
    assert _sdk.log_ids is not py_log_ids
    for current in contexts():
        token = CURRENT.set(current)
        try:
            said = _sdk.log_ids()
            assert said == py_log_ids()
            if current is not None:
                assert said == (f" trace_id={current.trace_id:032x}"
                                f" span_id={current.span_id:016x}")
            else:
                assert said == ""
        finally:
            CURRENT.reset(token)


def test_a_host_call_is_counted_alike_by_both() -> None:
    py_count = _sdk.PYTHON_TWINS["count"]
    for c, py in [(a, b) for a, b in zip(contexts(), contexts(), strict=True)]:
        for current, counting in ((c, _sdk.count), (py, py_count)):
            token = CURRENT.set(current)
            try:
                counting("omnicore.plugin.host_calls.kv")
                counting("omnicore.plugin.host_calls.kv")
                counting("omnicore.plugin.host_calls.config")
            finally:
                CURRENT.reset(token)
        if c is None:
            continue
        assert c.attributes == py.attributes  # (ids aside, made alike)
        if c.flags and c.attributes is not None:
            assert c.attributes["omnicore.plugin.host_calls.config"] == 1
            assert c.attributes["omnicore.plugin.host_calls.kv"] >= 2
        else:
            assert not c.attributes or "omnicore.plugin.host_calls.config" not in c.attributes
