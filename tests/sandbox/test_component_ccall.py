"""The C component call path (sandbox/_compcall.c, bound in sandbox/component/flatcall.py)
against the Python one, on the component of test_component_canon.py.

A scalar export's call takes JSON in and out in C (``Face.call_json``): it must give every
input exactly the answer the Python path gives — the same JSON bytes, or the same refusal in
the same words (the C parser hands back whatever is not plainly the arguments, and Python
answers it). Hypothesis writes the inputs: plain arrays of values of each type, the same
values written other ways (spaces, exponents, ``-0``, escapes, an object of the named
argument), values out of range or of another type, and arbitrary text.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import DeadlineExceeded, OmniError, OutputTooLarge, Trap
from omnicore.sandbox import PluginModule
from omnicore.sandbox.component import ComponentModule, ComponentRuntime, hostcalls
from omnicore.sandbox.component.canonabi import Ty, flatten
from omnicore.sandbox.component.flatcall import COMPCALL
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from tests.sandbox.test_component_canon import (
    LIMITS,
    REC5,
    SCALARS,
    TYPES,
    _values,
    component_wat,
)

#: The types call_json serves (enums and flags flatten to one value but are not scalars).
_LANE = [t for t in SCALARS if t[0] not in ("enum", "flags")]


#: No deadline test here: a loaded machine must not end a call that compares answers.
_LIMITS = Limits(timeout_ms=10_000, max_memory_bytes=LIMITS["max_memory_bytes"], pool_size=1)


@pytest.fixture(scope="module")
def canon(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[SandboxEngine, ComponentModule]]:
    """test_component_canon.py's component, loaded."""
    src = tmp_path_factory.mktemp("ccall") / "canon.wat"
    src.write_text(component_wat())
    out = src.with_suffix(".wasm")
    tool = shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")
    done = subprocess.run([tool, "parse", str(src), "-o", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"wasm-tools parse failed:\n{done.stderr}"
    with SandboxEngine() as engine:
        module = PluginModule.load(engine, out)
        assert isinstance(module, ComponentModule)
        yield engine, module


@pytest.fixture(scope="module")
def paths(canon: tuple[SandboxEngine, ComponentModule]
          ) -> Iterator[tuple[ComponentRuntime, ComponentRuntime]]:
    engine, module = canon
    """The same faces twice: JSON through C where it can, and always through Python."""
    with ComponentRuntime(engine, module, _LIMITS) as lane, \
            ComponentRuntime(engine, module, _LIMITS) as python:
        python._lanes = {}
        python._c_lane = None
        yield lane, python


def _outcome(rt: ComponentRuntime, export: str, data: bytes) -> Any:
    try:
        return rt.call(export, data)
    except OmniError as exc:
        return type(exc).__name__, str(exc)


def _texts(t: Ty) -> st.SearchStrategy[bytes]:
    """JSON texts of a call of ``id-N: func(x: t) -> t``, plain and otherwise."""
    plain = _values(t).map(lambda v: json.dumps([v]).encode())
    spaced = _values(t).map(lambda v: f' [ {json.dumps(v)}\n]\t'.encode())
    named = _values(t).map(lambda v: json.dumps({"x": v}).encode())
    numbers = st.sampled_from([
        b"[-0]", b"[0]", b"[-0.0]", b"[1e2]", b"[1E+2]", b"[1.0]", b"[01]", b"[-]", b"[1.]",
        b"[.5]", b"[1e400]", b"[-1e400]", b"[NaN]", b"[Infinity]", b"[3.4028234663852886e38]",
        b"[3.5e38]", b"[-3.5e38]", b"[128]", b"[-129]", b"[255]", b"[256]", b"[-1]",
        b"[65536]", b"[4294967296]", b"[-2147483649]", b"[9223372036854775808]",
        b"[-9223372036854775808]", b"[-9223372036854775809]", b"[18446744073709551615]",
        b"[18446744073709551616]", b"[123456789012345678901234]", b"[true]", b"[false]",
        b"[null]", b"[]", b"", b"  ", b"[1,2]", b"[1,]", b"[1", b"1", b"[[1]]", b'["a"]',
        b'["\\u0041"]', b'["\\ud800"]', b'["ab"]', b'[""]', b'["\xc3\xa9"]', b'["\xed\xa0\x80"]',
        b'["\xf0\x9f\x98\x80"]', b'["\xc0\x80"]', b'["\xff"]', b'["\x01"]', b'["\\""]',
        b"[1]x", b"\xef\xbb\xbf[1]", b"[\x0c1]", b"[1] "])
    noise = st.binary(max_size=12).map(lambda b: b"[" + b)
    return st.one_of(plain, spaced, named, numbers, noise)


@pytest.mark.parametrize("t", _LANE, ids=[str(t[0]) for t in _LANE])
def test_json_through_c_answers_as_python_does(
        paths: tuple[ComponentRuntime, ComponentRuntime], t: Ty) -> None:
    export = f"id-{TYPES.index(t)}"
    lane, python = paths

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_texts(t))
    def check(data: bytes) -> None:
        assert _outcome(lane, export, data) == _outcome(python, export, data), data

    check()


def _float_texts() -> list[bytes]:
    """Floats where the C lane's shortcuts end (15 significant digits, exponents of 22,
    1e-4 and 1e15, round-trip ties) and random ones: bits, short decimals, long ones."""
    import random
    import struct
    rnd = random.Random(47)
    values = ["0.5", "-0.5", "0.1", "0.3", "1e-4", "9.999999999999999e-05", "1e15",
              "999999999999999.9", "123456789012345.6", "123456789012345", "1234567890123456",
              "0.000123456789012345", "1e22", "1e23", "1e-22", "1e-23", "5e-324",
              "1.7976931348623157e308", "2.2250738585072014e-308", "0.30000000000000004",
              "100000000000000.0", "-0.0", "0.0", "1.5e-3", "12.5E+1", "3.4028234663852886e38"]
    for _ in range(400):
        x = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        values.append(repr(x))
        values.append(repr(round(rnd.uniform(-1e6, 1e6), rnd.randint(0, 12))))
        values.append(f"{rnd.randint(1, 10**15)}e{rnd.randint(-25, 25)}")
        values.append(f"{rnd.random() * 10 ** rnd.randint(-5, 16):.{rnd.randint(1, 17)}g}")
    return [f"[{v}]".encode() for v in values if v not in ("nan", "inf", "-inf")]


@pytest.mark.parametrize("name", ["f32", "f64"])
def test_floats_through_c_read_and_write_as_python(
        paths: tuple[ComponentRuntime, ComponentRuntime], name: str) -> None:
    """The C lane reads a float without strtod and writes it without dtoa where that is
    exact: its answers are still Python's (json.loads, repr) for every text."""
    export = f"id-{TYPES.index((name,))}"
    lane, python = paths
    for data in _float_texts():
        assert _outcome(lane, export, data) == _outcome(python, export, data), data


def test_scalar_exports_take_the_c_lane(paths: tuple[ComponentRuntime, ComponentRuntime]
                                        ) -> None:
    lane, _python = paths
    if os.environ.get("OMNICORE_CALLPATH") == "python":
        assert COMPCALL is None  # the fallback runs without the extension
    if COMPCALL is None:
        assert lane._lanes == {}
        return
    # Every canonical export: scalars and strings by the scalar lane, the rest by its plan
    # (sandbox/_compvalue.c).
    assert set(lane._lanes) == set(lane._canon)
    u32 = f"id-{TYPES.index(('u32',))}"
    assert lane.call(u32, b"[4294967295]") == b"4294967295"
    inst = lane._pool.acquire(u32)
    try:
        face = inst.canon[u32].c
        assert face.call_json(b"[7]", -1) == b"7"
        # Not plainly the arguments: handed back before anything runs.
        for odd in (b"[7.0]", b'{"x": 7}', b"[4294967296]", b"[07]", b"[7,]"):
            assert face.call_json(odd, -1) is NotImplemented, odd
    finally:
        lane._pool.release(inst, True)


def test_each_call_gets_its_own_deadline(canon: tuple[SandboxEngine, ComponentModule]
                                         ) -> None:
    """The C face re-arms the deadline only when the epoch moved since it last armed it: a
    call long after the last one, and calls in a row for longer than the timeout, still get
    the whole timeout each; a spinning call still ends at it, and the next call runs."""
    engine, module = canon
    u32 = f"id-{TYPES.index(('u32',))}"
    # 400 ms, not less: at a load average of 23 a trivial call was descheduled past 100 ms.
    with ComponentRuntime(engine, module, Limits(timeout_ms=400, pool_size=1)) as rt:
        assert rt.call(u32, b"[1]") == b"1"
        time.sleep(0.5)
        assert rt.call(u32, b"[2]") == b"2"
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            assert rt.call(u32, b"[3]") == b"3"
        with pytest.raises(DeadlineExceeded):
            rt.call("spin", b"[1]")
        assert rt.call(u32, b"[4]") == b"4"


def _typed_texts(t: Ty) -> st.SearchStrategy[bytes]:
    """JSON texts of one argument of ``t``: plain, spaced, and written otherwise (record
    fields reordered or missing or extra, a variant's case twice, values of another type)."""
    values = _values(t)
    plain = values.map(lambda v: json.dumps([v]).encode())
    utf8 = values.map(lambda v: json.dumps([v], ensure_ascii=False).encode())
    spaced = values.map(lambda v: json.dumps([v], indent=1).encode())
    reordered = values.map(lambda v: json.dumps(
        [dict(reversed(v.items())) if isinstance(v, dict) else v]).encode())
    extra = values.map(lambda v: json.dumps(
        [{**v, "zz": 1} if isinstance(v, dict) else [v]]).encode())
    return st.one_of(plain, utf8, spaced, reordered, extra, st.sampled_from(_ODD))


#: JSON texts a plan must leave to Python or take as Python would, for every type.
_ODD = [
    b"[null]", b"[[]]", b"[{}]", b'[{"a": null, "a": null}]', b'[{"ok": 1, "err": 2}]',
    b'[{"ok": null}]', b'[{"err": null}]', b'[["x", "x"]]', b'[["f1", "f0"]]',
    b'["red"]', b'["pink"]', b'[["a\\u0041"]]', b'["\\u00e9"]', b"[[1, 2, 3]]",
    b'[{"id": 1}]', b"[[1.5]]", b"[[-1]]", b"[[256]]", b"[1]", b'[""]', b"[]",
    # list<u8>'s own loop: what it takes, and the spellings it leaves to Python
    b"[[0, 255, 7]]", b"[[ 1 , 2 ]]", b"[[-0]]", b"[[01]]", b"[[0255]]", b"[[1e2]]",
    b"[[1.0]]", b"[[1 2]]", b"[[1,]]", b"[[,1]]", b"[[1]", b"[[1000]]"
]


def _type_exports(n: int) -> list[tuple[str, Any]]:
    """The exports of TYPES[n] in test_component_canon's component, each with how its
    argument JSON becomes the call's JSON: id-N / flat-N take it alone, echo-N with 16
    u64 beside it (the parameters spilled to memory, the result through a return area)."""
    flat = len(flatten(TYPES[n]))
    out: list[tuple[str, Any]] = []
    if flat == 1:
        out.append((f"id-{n}", lambda d: d))
    else:
        out.append((f"echo-{n}", lambda d: d[:-1] + b", " + json.dumps([0] * 16).encode()
                    + b"]" if d.rstrip().endswith(b"]") else d))
    if flat <= 16:
        out.append((f"flat-{n}", lambda d: d))
    return out


@pytest.mark.parametrize("n", range(len(TYPES)), ids=[repr(t)[:40] for t in TYPES])
def test_every_type_through_c_answers_as_python_does(
        paths: tuple[ComponentRuntime, ComponentRuntime], n: int) -> None:
    """Every type's exports through its C plan (sandbox/_compvalue.c) against canonabi.py's
    lowering and lifting: the same JSON bytes or the same refusal in the same words."""
    lane, python = paths
    exports = _type_exports(n)

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_typed_texts(TYPES[n]))
    def check(data: bytes) -> None:
        for export, make in exports:
            call = make(data)
            assert _outcome(lane, export, call) == _outcome(python, export, call), \
                (export, call)

    check()


def test_odd_spellings_answer_as_python_does(
        paths: tuple[ComponentRuntime, ComponentRuntime]) -> None:
    """Each of the odd texts, for every type: the same bytes or the same words."""
    lane, python = paths
    for n in range(len(TYPES)):
        for export, make in _type_exports(n):
            for data in _ODD:
                call = make(data)
                assert _outcome(lane, export, call) == _outcome(python, export, call), \
                    (export, call)


def test_plans_take_plain_json_and_hand_back_the_rest(
        paths: tuple[ComponentRuntime, ComponentRuntime]) -> None:
    """A record's plan takes its fields in their declared order and lowers in C; anything
    else (fields reordered, an escape in a string) is handed back before anything runs."""
    lane, _python = paths
    if COMPCALL is None:
        return
    n = TYPES.index(REC5)
    export = f"echo-{n}"
    pad = b", [" + b",".join([b"0"] * 16) + b"]]"
    inst = lane._pool.acquire(export)
    try:
        bound = inst.canon.get(export) or inst.bound(export, lane._canon[export][0],
                                                     lane._ticks, lane.engine.c_clock)
        face = bound.c
        rec = b'{"id": 7, "name": "omnicore", "score": 0.5, "ok": true, "tag": 3}'
        assert face.call_json(b"[" + rec + pad, -1) == rec.replace(b" ", b"")
        for odd in (b'[{"name": "x", "id": 7, "score": 0.5, "ok": true, "tag": 3}]',
                    b'[{"id": 7, "name": "\\u0041", "score": 0.5, "ok": true, "tag": 3}]',
                    b'[{"id": 7, "name": "x", "score": 0.5, "ok": true}]',
                    b'[{"id": 7, "name": "x", "score": 0.5, "ok": true, "tag": 256}]'):
            assert face.call_json(odd[:-1] + pad, -1) is NotImplemented, odd
    finally:
        lane._pool.release(inst, True)


@pytest.mark.parametrize("export, data", [
    ("bad-utf8", b"[]"), ("bad-char", b"[]"), ("far-realloc", b'["hello"]'),
    ("odd-bool", b"[]"), ("odd-u8", b""), ("odd-s16", b"[ ]"), ("spin", b"[1]"),
    ("bad-enum", b"[]"), ("bad-option", b"[]"), ("past-memory", b"[]"),
    ("misaligned-list", b"[]"), ("misaligned-ret", b"[]"), ("odd-realloc", b"[[1, 2]]"),
    ("odd-flags", b"[]"),
])
def test_malformed_answers_fail_in_the_same_words(
        paths: tuple[ComponentRuntime, ComponentRuntime], export: str, data: bytes) -> None:
    """What the guest hands back wrongly (a string that is not UTF-8, a char past Unicode, a
    realloc answer past memory) traps through C with the Python path's verdict and words."""
    lane, python = paths
    if export == "spin":  # the deadline, with a timeout a loaded machine still passes
        return
    assert _outcome(lane, export, data) == _outcome(python, export, data)


@pytest.fixture(scope="module")
def strings() -> Iterator[tuple[ComponentRuntime, ComponentRuntime]]:
    """The bench component's ``echo-string: func(s: string) -> string``, twice as above."""
    from tests.component_fixtures import wat_component

    with SandboxEngine() as engine:
        module = PluginModule.load(engine, wat_component("bench"), "bench")
        assert isinstance(module, ComponentModule)
        with ComponentRuntime(engine, module, _LIMITS, registry=builtin_registry()) as lane, \
                ComponentRuntime(engine, module, _LIMITS, registry=builtin_registry()) as python:
            python._lanes = {}
            python._c_lane = None
            yield lane, python


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
#: Longer text, mostly ASCII, with what needs escaping or is not ASCII anywhere in it: the C
#: lane scans strings eight bytes at a time, and a flagged byte may sit at any offset.
_LONG = st.text(st.sampled_from('abcdefgh "\\\x01\x1f\x7f\x80é€😀'), min_size=8, max_size=120)
_BYTES = st.lists(st.sampled_from(b'ab "\\\x01\x7f\x80\xc3\xa9\xed\xa0\xf0\x9f\xff'),
                  min_size=8, max_size=64).map(bytes)


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(
    _TEXT.map(lambda v: json.dumps([v], ensure_ascii=False).encode()),
    _TEXT.map(lambda v: json.dumps([v]).encode()),  # \\u escapes: handed to Python
    _TEXT.map(lambda v: json.dumps({"s": v}).encode()),
    st.binary(max_size=16).map(lambda b: b'["' + b + b'"]'),
    _LONG.map(lambda v: json.dumps([v], ensure_ascii=False).encode()),
    _BYTES.map(lambda b: b'["' + b + b'"]'),
    st.sampled_from([b'["\\ud800"]', b'["a\\"b"]', b'["\x7f\x1f"]', b'[""]', b'[1]', b"[]",
                     b'["\xed\xa0\x80"]', b'["\xf4\x90\x80\x80"]', b'["\xe0\x80\x80"]'])))
def test_strings_through_c_answer_as_python_does(
        strings: tuple[ComponentRuntime, ComponentRuntime], data: bytes) -> None:
    lane, python = strings
    assert _outcome(lane, "echo-string", data) == _outcome(python, "echo-string", data), data


def test_the_c_lane_takes_the_whole_call(canon: tuple[SandboxEngine, ComponentModule]
                                         ) -> None:
    """ComponentRuntime.call's hot path is one C call (sandbox/_complane.c): it answers as
    the Python path does, discards the instance after a trap, refuses an answer over the
    output limit, and leaves to Python (NotImplemented, nothing run) what it does not take."""
    engine, module = canon
    if COMPCALL is None:
        return
    rec = f"echo-{TYPES.index(REC5)}"
    pad = b", [" + b",".join([b"0"] * 16) + b"]]"
    value = b'{"id":7,"name":"x","score":0.5,"ok":true,"tag":3}'
    with ComponentRuntime(engine, module, Limits(max_output_bytes=40, pool_size=1)) as rt:
        lane = rt._c_lane
        assert lane is not None
        u32 = f"id-{TYPES.index(('u32',))}"
        assert rt.call(u32, b"[5]") == b"5"
        assert lane.call(u32, b"[6]") == b"6"
        assert lane.call(u32, b'{"x": 6}') is NotImplemented  # not plain: Python answers it
        assert rt.call(u32, b'{"x": 6}') == b"6"
        assert lane.call("no-such-export", b"[]") is NotImplemented
        assert lane.call(u32, bytearray(b"[6]")) is NotImplemented
        assert rt._pool.discarded == 0
        with pytest.raises(OutputTooLarge):
            rt.call(rec, b"[" + value + pad)
        assert rt._pool.discarded == 0  # the call itself ran well
        with pytest.raises(Trap, match="invalid enum discriminant"):
            rt.call("bad-enum", b"[]")
        assert rt._pool.discarded == 1
        inst = rt._pool.acquire(u32)  # none idle: the lane leaves the call to the pool
        try:
            assert lane.call(u32, b"[8]") is NotImplemented
        finally:
            rt._pool.release(inst, True)
        assert rt.call(u32, b"[9]") == b"9"
        # What host functions leave for the call's end (hostcalls.call_ends) runs once
        # after it, and the call's deadline is set for them (hostcalls.enter).
        ended: list[float] = []
        hostcalls.call_ends()["test"] = lambda: ended.append(hostcalls._CALL.deadline)
        before = time.monotonic()
        assert lane.call(u32, b"[10]") == b"10"
        assert len(ended) == 1 and before < ended[0] <= time.monotonic() + 1.0
        assert hostcalls._CALL.ends is None and hostcalls._CALL.refusal is None
        assert rt.call(u32, b"[11]") == b"11" and len(ended) == 1
