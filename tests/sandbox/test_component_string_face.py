"""A string parameter its face keeps (issue 67, item 3; sandbox/component/canonplan.py).

A function whose parameters are all scalars and strings and whose result is one too keeps
each ``string`` parameter a ``string`` on its canonical face: wasmtime lowers it within the
face's own call (through the lift's ``realloc``), where the host lowered it with a call of the
realloc face of its own first. A 1 KiB string round trip was two component calls (0.14 of
wasmtime-py's call in bench/bench_components.py, every other row under 0.10); it is one.
Strings inside other values, and functions with any other parameter or result, keep the
host's lowering (the canonical ABI's order of ``realloc`` calls). Answers and failures are
held to wasmtime's value API by test_component_canon.py, on both call paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from omnicore.capabilities.builtin import builtin_registry
from omnicore.sandbox import Limits, PluginModule, SandboxEngine
from omnicore.sandbox._wasmtime import CAPI
from omnicore.sandbox.component import ComponentRuntime, canonplan
from omnicore.sandbox.component.flatcall import COMPCALL
from tests.component_fixtures import wat_component


@pytest.fixture
def bench() -> Iterator[ComponentRuntime]:
    with SandboxEngine(epoch_tick_ms=5) as engine:
        module = PluginModule.load(engine, wat_component("bench"), "bench")
        with ComponentRuntime(engine, module, Limits(),  # type: ignore[arg-type]
                              registry=builtin_registry()) as rt:
            yield rt


def test_plain_signatures_keep_their_string_parameters() -> None:
    planned = canonplan.plan(wat_component("bench").read_bytes())
    assert planned["echo-string"][0].core_params == ("string",)
    assert planned["echo32"][0].core_params == ("i32",)
    # A list<u8>, and a string inside a record: the host lowers them.
    assert planned["echo-bytes"][0].core_params == ("i32", "i32")
    record = canonplan.plan(wat_component("bench-record").read_bytes())["echo-record"][0]
    assert "string" not in record.core_params
    # Only plain signatures, unspilled.
    s, u = ("string",), ("u32",)
    assert canonplan.face_params((s, u), s, ("i32", "i32", "i32")) == ("string", "i32")
    assert canonplan.face_params((s,), ("list", u), ("i32", "i32")) == ("i32", "i32")
    assert canonplan.face_params((u,), u, ("i32",)) == ("i32",)
    many = (s,) * 9
    assert canonplan.face_params(many, u, ("i32",)) == ("i32",)


def test_a_string_round_trip_is_one_component_call(bench: ComponentRuntime,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for text in ("x" * 1024, "", "é \u2603 \U0001f600", 'a "quoted"\n\\ line'):
        arg = json.dumps([text], ensure_ascii=False).encode()
        assert json.loads(bench.call("echo-string", arg)) == text
    if COMPCALL is not None:
        return  # the C face's calls are C's (the face is the plan's: checked above)
    calls: list[Any] = []
    real = CAPI.wasmtime_component_func_call

    def counted(*args: Any) -> Any:
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(CAPI, "wasmtime_component_func_call", counted)
    assert bench.call("echo-string", b'["' + b"x" * 1024 + b'"]') == b'"' + b"x" * 1024 + b'"'
    assert len(calls) == 1, "the string lowered through a realloc call of its own"


@pytest.mark.native  # the C face's own checks
def test_the_c_face_takes_a_kept_string_as_utf8_bytes_only(bench: ComponentRuntime) -> None:
    assert COMPCALL is not None
    inst = bench._pool.acquire("echo-string")
    try:
        bound = inst.canon.get("echo-string") or inst.bound(
            "echo-string", bench._canon["echo-string"][0], bench._ticks,
            bench.engine.c_clock)
        face = bound.c
        # wasmtime aborts the process on a string that is not UTF-8: refused before.
        for bad in (b"\xff", b"a\xc3", b"\xed\xa0\x80", b"\xc0\xaf"):
            with pytest.raises(ValueError, match="not UTF-8"):
                face.call_core([bad], -1)
        with pytest.raises(TypeError):
            face.call_core(["text"], -1)
        area = face.call_core(["é!".encode()], -1)
        face.post_core()
        assert isinstance(area, int)
    finally:
        bench._pool.release(inst, True)
