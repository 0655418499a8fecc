"""Host callbacks read flat (sandbox/component/hostflat.py) against the codecs' reading
(sandbox/component/values.py): the same arguments reach the host function, the same answers
and the same traps and refusals come back, malformed arguments included.

Two levels: the readers alone on C values the codecs wrote (every scalar, strings, enums,
byte lists; hypothesis values), and a WAT component whose exports hand raw core values
(addresses, lengths, out-of-range discriminants, invalid UTF-8, code points that are not
scalar values) to a probe capability's imports, run on one runtime whose callbacks read flat
and one whose callbacks read through the codecs.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnicore.cli import main
from omnicore.errors import OmniError
from omnicore.sandbox import PluginModule
from omnicore.sandbox._wasmtime import CAPI
from omnicore.sandbox.capability import Capability, CapabilityRegistry, WitFunction
from omnicore.sandbox.component import ComponentModule, ComponentRuntime, hostcalls, hostflat
from omnicore.sandbox.component.values import (
    Codec,
    _Bool,
    _Bytes,
    _Char,
    _Enum,
    _Float,
    _Int,
    _String,
    delete,
)
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.guestmem import HostTrap
from omnicore.sandbox.limits import Limits
from tests.component_fixtures import OUT

LEVELS = ["trace", "debug", "info", "warn", "error"]
INTS = [("s8", True, 8), ("u8", False, 8), ("s16", True, 16), ("u16", False, 16),
        ("s32", True, 32), ("u32", False, 32), ("s64", True, 64), ("u64", False, 64)]


def _codecs() -> list[tuple[Codec, st.SearchStrategy[Any]]]:
    out: list[tuple[Codec, st.SearchStrategy[Any]]] = [
        (_Bool(), st.booleans()),
        (_Float("f64"), st.floats()),
        (_Float("f32"), st.floats(width=32)),
        (_Char(), st.characters(exclude_categories=["Cs"])),
        (_String(), st.text()),
        (_Enum(LEVELS), st.sampled_from(LEVELS)),
        (_Bytes(_Int("u8", False, 8)), st.lists(st.integers(0, 255), max_size=64)),
    ]
    for name, signed, bits in INTS:
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
        out.append((_Int(name, signed, bits), st.integers(lo, hi)))
    return out


CODECS = _codecs()


def _by_codecs(codecs: list[Codec], args: Any) -> list[Any]:
    return [hostcalls._lift(c, args[i]) for i, c in enumerate(codecs)]


def _same(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        or (x == y and type(x) is type(y)) for x, y in zip(a, b, strict=True))


@st.composite
def _signature(draw: st.DrawFn) -> tuple[list[Codec], list[Any]]:
    picks = draw(st.lists(st.sampled_from(range(len(CODECS))), max_size=8))
    return [CODECS[i][0] for i in picks], [draw(CODECS[i][1]) for i in picks]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_signature())
def test_the_flat_reader_gives_what_the_codecs_give(sig: tuple[list[Codec], list[Any]]) -> None:
    codecs, values = sig
    n = len(codecs)
    vals = (CAPI.wasmtime_component_val_t * max(n, 1))()
    for codec, value, c in zip(codecs, values, vals, strict=False):
        codec.lower(value, c)
    try:
        read = hostflat.reader(tuple(c.canon() for c in codecs))
        assert read is not None
        args = ctypes.cast(vals, ctypes.POINTER(CAPI.wasmtime_component_val_t))
        assert _same(read(ctypes.addressof(vals)), _by_codecs(codecs, args))
    finally:
        for c in list(vals)[:n]:
            delete(c)


@pytest.mark.parametrize("raw", [b"\xff", b"ab\xc3", b"\xed\xa0\x80", b"ok\x00\xf4\x90\x80\x80"])
def test_a_string_that_is_not_utf8_fails_alike(raw: bytes) -> None:
    # wasmtime checks the guest's strings before a callback; were one to slip through, both
    # readings refuse it with the same exception and words.
    vals = (CAPI.wasmtime_component_val_t * 1)()
    buf = ctypes.create_string_buffer(raw, len(raw))
    vals[0].kind = CAPI.WASMTIME_COMPONENT_STRING
    vals[0].of.string.size = len(raw)
    vals[0].of.string.data = ctypes.cast(buf, type(vals[0].of.string.data))
    read = hostflat.reader((("string",),))
    assert read is not None
    args = ctypes.cast(vals, ctypes.POINTER(CAPI.wasmtime_component_val_t))
    with pytest.raises(UnicodeDecodeError) as flat:
        read(ctypes.addressof(vals))
    with pytest.raises(UnicodeDecodeError) as codec:
        _by_codecs([_String()], args)
    assert str(flat.value) == str(codec.value)


def test_what_the_reader_does_not_carry_keeps_the_codecs() -> None:
    assert hostflat.reader((("option", ("string",)),)) is None
    assert hostflat.reader((("list", ("u32",)),)) is None
    assert hostflat.reader((("record", ("a",), (("u8",),)),)) is None
    assert hostflat.writer(("u32",)) is None and hostflat.writer(("bool",)) is not None


# -- through a component ---------------------------------------------------------------------

_ERROR = WitFunction.ERROR
_LEVEL = f"enum {{ {', '.join(LEVELS)} }}"
WAT = """
(component
  (type $level (enum "trace" "debug" "info" "warn" "error"))
  (type $error (enum "not-found" "denied" "invalid" "quota" "unavailable" "too-large"))
  (import "omnicore:plugin/probe@1.0.0" (instance $p
    (export "level" (type $lv (eq $level)))
    (export "error" (type $er (eq $error)))
    (export "text" (func (param "level" $lv) (param "message" string)))
    (export "get" (func (param "key" string) (result (option string))))
    (export "put" (func (param "key" string) (param "value" (list u8))
                        (result (result (error $er)))))
    (export "scalars" (func (param "a" u8) (param "b" s16) (param "c" u32) (param "d" s64)
                            (param "e" f32) (param "f" f64) (param "g" char) (param "h" bool)
                            (result bool)))))
  (core module $mm
    (memory (export "memory") 1)
    (global $top (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
      (if (i32.gt_u (i32.add (local.get $at) (local.get 3)) (i32.const 65536))
        (then (local.set $at (i32.const 1024))))
      (global.set $top (i32.add (local.get $at) (local.get 3)))
      local.get $at))
  (core instance $mi (instantiate $mm))
  (alias core export $mi "memory" (core memory $mem))
  (alias core export $mi "realloc" (core func $realloc))
  (core func $text (canon lower (func $p "text") (memory $mem)))
  (core func $get (canon lower (func $p "get") (memory $mem) (realloc $realloc)))
  (core func $put (canon lower (func $p "put") (memory $mem)))
  (core func $scalars (canon lower (func $p "scalars")))
  (core instance $pi (export "text" (func $text)) (export "get" (func $get))
                     (export "put" (func $put)) (export "scalars" (func $scalars)))
  (core module $m
    (import "mem" "memory" (memory 1))
    (import "p" "text" (func $text (param i32 i32 i32)))
    (import "p" "get" (func $get (param i32 i32 i32)))
    (import "p" "put" (func $put (param i32 i32 i32 i32 i32)))
    (import "p" "scalars" (func $scalars (param i32 i32 i32 i64 f32 f64 i32 i32) (result i32)))
    (func (export "stash") (param i32 i32) (result i32) local.get 0)
    (func (export "peek") (param i32 i32) (result i32)
      (i32.store (i32.const 32) (local.get 0))
      (i32.store (i32.const 36) (local.get 1))
      i32.const 32)
    (func (export "text") (param i32 i32 i32)
      (call $text (local.get 0) (local.get 1) (local.get 2)))
    (func (export "get") (param i32 i32) (result i32)
      (i64.store (i32.const 16) (i64.const 0))
      (i32.store (i32.const 24) (i32.const 0))
      (call $get (local.get 0) (local.get 1) (i32.const 16))
      i32.const 16)
    (func (export "put") (param i32 i32 i32 i32) (result i32)
      (i32.store (i32.const 48) (i32.const 0))
      (call $put (local.get 0) (local.get 1) (local.get 2) (local.get 3) (i32.const 48))
      i32.const 48)
    (func (export "scalars") (param i32 i32 i32 i64 f32 f64 i32 i32) (result i32)
      (call $scalars (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4)
                     (local.get 5) (local.get 6) (local.get 7))))
  (core instance $i (instantiate $m (with "mem" (instance $mi)) (with "p" (instance $pi))))
  (func (export "stash") (param "data" (list u8)) (result u32)
    (canon lift (core func $i "stash") (memory $mem) (realloc $realloc)))
  (func (export "peek") (param "at" u32) (param "len" u32) (result (list u8))
    (canon lift (core func $i "peek") (memory $mem) (realloc $realloc)))
  (func (export "text") (param "level" u32) (param "at" u32) (param "len" u32)
    (canon lift (core func $i "text")))
  (func (export "get") (param "at" u32) (param "len" u32) (result (tuple u8 u32 u32))
    (canon lift (core func $i "get") (memory $mem)))
  (func (export "put") (param "kat" u32) (param "klen" u32) (param "vat" u32)
                       (param "vlen" u32) (result (tuple u8 u8))
    (canon lift (core func $i "put") (memory $mem)))
  (func (export "scalars") (param "a" u32) (param "b" u32) (param "c" u32) (param "d" u64)
                           (param "e" f32) (param "f" f64) (param "g" u32) (param "h" u32)
                           (result bool)
    (canon lift (core func $i "scalars")))
)
"""


class _Probe:
    """What the probe's host functions were handed, and their answers (pure functions of it)."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []

    def text(self, _ctx: Any, level: str, message: str) -> None:
        self.seen.append(("text", level, message))
        if message == "refuse":
            raise HostTrap("refused on purpose")
        if message == "fail":
            raise ValueError("failed on purpose")

    def get(self, _ctx: Any, key: str) -> str | None:
        self.seen.append(("get", key))
        return None if key.startswith("x") else key.upper()

    def put(self, _ctx: Any, key: str, value: bytes) -> dict[str, Any]:
        self.seen.append(("put", key, value))
        return {"ok": None} if value else {"err": "invalid"}

    def scalars(self, _ctx: Any, *values: Any) -> Any:
        self.seen.append(("scalars", *values))
        return values[0] > 100 if values[1] >= 0 else "not a bool"  # the codec's conversion


def _registry(probe: _Probe) -> CapabilityRegistry:
    return CapabilityRegistry([Capability("probe", [], wit=[
        WitFunction("text", f"func(level: {_LEVEL}, message: string)", probe.text),
        WitFunction("get", "func(key: string) -> option<string>", probe.get),
        WitFunction("put", f"func(key: string, value: list<u8>) -> result<_, {_ERROR}>",
                    probe.put),
        WitFunction("scalars", "func(a: u8, b: s16, c: u32, d: s64, e: f32, f: f64, g: char, "
                    "h: bool) -> bool", probe.scalars),
    ])])


def _component() -> Path:
    """WAT assembled by wasm-tools, cached by its digest (test workers may race: each writes
    its own temporary files and renames into place)."""
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"hostflat-{hashlib.sha256(WAT.encode()).hexdigest()[:12]}.wasm"
    if out.is_file():
        return out
    src, tmp = out.with_suffix(f".{os.getpid()}.wat"), out.with_suffix(f".{os.getpid()}.tmp")
    src.write_text(WAT)
    tool = shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")
    done = subprocess.run([tool, "parse", str(src), "-o", str(tmp)], capture_output=True,
                          text=True, timeout=120)
    src.unlink()
    assert done.returncode == 0, done.stderr
    tmp.replace(out)
    return out


class _Side:
    def __init__(self, engine: SandboxEngine, module: ComponentModule, flat: bool) -> None:
        self.probe = _Probe()
        hostcalls._flat_arguments = flat
        try:
            self.rt = ComponentRuntime(engine, module, Limits(), registry=_registry(self.probe),
                                       grants=["probe"])
        finally:
            hostcalls._flat_arguments = True
        self.flat = flat

    def call(self, export: str, args: list[Any]) -> tuple[str, Any]:
        try:
            return "ok", json.loads(self.rt.call(export, json.dumps(args).encode()))
        except OmniError as exc:
            return type(exc).__name__, str(exc)


@pytest.fixture(scope="module")
def sides() -> Iterator[tuple[_Side, _Side]]:
    engine = SandboxEngine()
    module = PluginModule.load(engine, _component(), "hostflat")
    assert isinstance(module, ComponentModule)
    flat, codecs = _Side(engine, module, True), _Side(engine, module, False)
    yield flat, codecs
    flat.rt.close()
    codecs.rt.close()
    engine.close()


def _both(sides: tuple[_Side, _Side], export: str, args: list[Any]) -> tuple[str, Any]:
    flat, codecs = sides
    a, b = flat.call(export, args), codecs.call(export, args)
    assert a == b, (export, args)
    assert _same(list(flat.probe.seen), list(codecs.probe.seen))
    return a


def _stash(sides: tuple[_Side, _Side], data: bytes) -> int:
    verdict, at = _both(sides, "stash", [list(data)])
    assert verdict == "ok"
    return int(at)


def test_the_flat_callbacks_are_the_ones_linked(sides: tuple[_Side, _Side]) -> None:
    for side in sides:
        bound = {b.label: b.flat is not None for b in hostcalls._BOUND.values()
                 if getattr(b.impl, "__self__", None) is side.probe}
        assert bound == {f"omnicore:plugin/probe@1.0.0#{f}": side.flat
                         for f in ("text", "get", "put", "scalars")}


@settings(max_examples=120, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(level=st.integers(0, 7), data=st.binary(max_size=40) | st.text(max_size=20).map(str.encode)
       | st.sampled_from([b"refuse", b"fail"]), shift=st.sampled_from([0, 0, 0, 1, 70000]),
       extra=st.sampled_from([0, 0, 1, 1 << 20]))
def test_text_strings_and_enums_alike(sides: tuple[_Side, _Side], level: int, data: bytes,
                                      shift: int, extra: int) -> None:
    at = _stash(sides, data) if data else 0
    _both(sides, "text", [level, at + shift, len(data) + extra])


@settings(max_examples=80, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.text(max_size=12).map(str.encode) | st.binary(max_size=8),
       value=st.binary(max_size=40), past=st.booleans())
def test_get_and_put_alike(sides: tuple[_Side, _Side], key: bytes, value: bytes,
                           past: bool) -> None:
    kat = _stash(sides, key) if key else 0
    vat = _stash(sides, value) if value else 0
    verdict, got = _both(sides, "get", [kat, len(key) + (70000 if past else 0)])
    if verdict == "ok" and got[0] == 1:
        _both(sides, "peek", [got[1], got[2]])
    _both(sides, "put", [kat, len(key), vat if not past else 1 << 31, len(value)])


@settings(max_examples=150, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a=st.integers(0, 2**32 - 1), b=st.integers(0, 2**32 - 1), c=st.integers(0, 2**32 - 1),
       d=st.integers(0, 2**64 - 1), e=st.floats(width=32, allow_nan=False),
       f=st.floats(allow_nan=False),
       g=st.integers(0, 0x10FFFF) | st.integers(0xD800, 0xDFFF) | st.integers(0, 2**32 - 1),
       h=st.integers(0, 2**32 - 1))
def test_scalars_alike(sides: tuple[_Side, _Side], a: int, b: int, c: int, d: int, e: float,
                       f: float, g: int, h: int) -> None:
    _both(sides, "scalars", [a, b, c, d, e, f, g, h])


def test_inspect_says_each_exports_path(tmp_path: Path) -> None:
    path = tmp_path / "hostflat.wasm"
    path.write_bytes(_component().read_bytes())
    done = CliRunner().invoke(main, ["inspect", str(path), "--grant", "probe"])
    assert "  stash (func func(data: list<u8>) -> u32)  [flat]" in done.output
    report = json.loads(CliRunner().invoke(main, ["inspect", "--json", str(path)]).output)
    assert {e["name"]: e["path"] for e in report["exports"]}["stash"] == "flat"
