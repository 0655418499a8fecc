"""A span's context and its ended record, made in C (omnicore.telemetry._otlpenc's Parent,
context and ended) where the extension is built: held to their Python twins in _spans, which a
host without a compiler runs. Every request and plugin call makes a context, traced or not."""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import pytest

from omnicore.telemetry import _spans
from omnicore.telemetry._spans import PYTHON_TWINS, Sampler

py_parent: Any = PYTHON_TWINS["Parent"]
py_context: Any = PYTHON_TWINS["new_context"]
py_ended: Any = PYTHON_TWINS["ended"]
LOW = (1 << 64) - 1

SAMPLERS = [Sampler.named(name, arg) for name, arg in [
    ("always_on", None), ("always_off", None), ("traceidratio", 0.5),
    ("parentbased_always_on", None), ("parentbased_always_off", None),
    ("parentbased_traceidratio", 0.5)]]


def _parents() -> list[Any]:
    """Every kind of parent a context is made under: none, remote ones (sampled or not, with a
    trace state), this process's contexts (C and Python) and a Span."""
    on = Sampler(1.0, True)
    made = _spans.new_context(None, on)
    return [None, _spans.Parent(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0xF067AA0BA902B7, 1, "k=v"),
            _spans.Parent((1 << 127) | 5, 7, 0, None), made, py_parent(1 << 100, 9, 1, None, False),
            _spans.new_span("s", _spans.INTERNAL, None, made, on)]


def test_the_c_twins_are_the_ones_used() -> None:
    """A checkout set up by scripts/dev builds the extension (test_otlp.py's
    test_the_c_encoder_is_built): its contexts are the C ones."""
    from omnicore.telemetry import _otlpenc

    assert _spans.Parent is _otlpenc.Parent and _spans.new_context is _otlpenc.context
    assert _spans.ended is _otlpenc.ended


@pytest.mark.parametrize("sampler", SAMPLERS, ids=lambda s: f"{s.ratio}-{s.parent_based}")
@pytest.mark.parametrize("twin", ["c", "python"])
def test_a_context_carries_its_parents_trace_and_is_kept_as_the_sampler_says(
        sampler: Sampler, twin: str) -> None:
    make = _spans.new_context if twin == "c" else py_context
    for parent in _parents():
        for _ in range(200):
            c = make(parent, sampler)
            assert 0 < c.trace_id < 1 << 128 and 0 < c.span_id <= LOW
            assert (c.remote, c.attributes) == (False, None)
            if parent is None:
                assert c.state is None
                assert c.flags == int(sampler.keeps(c.trace_id, None))
            else:
                assert (c.trace_id, c.state) == (parent.trace_id, parent.state)
                assert c.span_id != parent.span_id
                assert c.flags == int(sampler.keeps(c.trace_id, parent))
            assert type(c.flags) is int


def test_ids_are_drawn_from_the_whole_range_and_never_repeat() -> None:
    on = Sampler(1.0, True)
    made = [_spans.new_context(None, on) for _ in range(50_000)]
    assert len({c.trace_id for c in made}) == len({c.span_id for c in made}) == 50_000
    assert max(c.trace_id for c in made).bit_length() == 128
    assert max(c.span_id for c in made).bit_length() == 64
    assert max(c.trace_id & LOW for c in made).bit_length() == 64
    half = Sampler(0.5, False)
    kept = sum(_spans.new_context(None, half).flags for _ in range(20_000))
    assert 9_400 < kept < 10_600  # (binomial: 10,000, sd 71)


def test_a_forked_child_draws_ids_of_its_own() -> None:
    """The generator is reseeded in a forked child: else a child and its parent (a
    pre-forking server's workers) would draw the same ids, one after the other."""
    on = Sampler(1.0, True)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            c = _spans.new_context(None, on)
            os.write(write, f"{c.trace_id} {c.span_id}".encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = tuple(int(n) for n in os.read(read, 200).split())
    os.close(read)
    c = _spans.new_context(None, on)
    assert child[0] != c.trace_id and child[1] != c.span_id


@pytest.mark.parametrize("twin", ["c", "python"])
def test_a_span_ended_from_its_context_is_the_record_the_queue_holds(twin: str) -> None:
    end = _spans.ended if twin == "c" else py_ended
    on = Sampler(1.0, True)
    shared = {"http.route": "/x"}
    for parent in _parents():
        context = _spans.new_context(parent, on)
        attributes = {"url.path": "/x"}
        before = time.time_ns()
        r = end(context, parent, "GET /x", _spans.SERVER, 5, attributes, shared, _spans.ERROR,
                "E")
        after = time.time_ns()
        if parent is None:
            parent_id, remote = 0, False
        else:
            parent_id = parent.span_id
            remote = parent.remote if isinstance(parent, (_spans.Parent, py_parent)) else False
        assert before <= r[6] <= after
        assert r[:6] + r[7:] == (
            context.trace_id, context.span_id, parent_id, "GET /x", _spans.SERVER, 5,
            attributes, shared, _spans.ERROR, "E", context.flags, remote, context.state)
        assert r[7] is attributes and r[8] is shared


def test_a_context_is_a_parent_whose_fields_are_read_and_written_by_name() -> None:
    p = _spans.Parent(1, 2, 1, "a=b")
    assert (p.trace_id, p.span_id, p.flags, p.state, p.remote, p.attributes) == \
        (1, 2, 1, "a=b", True, None)
    p.attributes = {"omnicore.plugin.host_calls.kv": 1}
    assert p.attributes == {"omnicore.plugin.host_calls.kv": 1}
    q = _spans.Parent(trace_id=3, span_id=4, flags=0, state=None, remote=False,
                      attributes={"a": 1})
    assert (q.remote, q.attributes) == (False, {"a": 1})
    with pytest.raises(TypeError):
        _spans.Parent(1, 2)
    with pytest.raises(AttributeError):
        p.other = 1  # type: ignore[attr-defined]


def test_a_context_held_in_a_cycle_is_collected() -> None:
    p = _spans.Parent(1, 2, 1, None)
    p.attributes = {"self": p}
    seen = id(p)
    del p
    gc.collect()
    assert not any(id(o) == seen and type(o) is _spans.Parent for o in gc.get_objects())
