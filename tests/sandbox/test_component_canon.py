"""The host's canonical ABI (sandbox/component/canonabi.py, flatcall.py) against wasmtime's
value API: every WIT type the flat path carries, random values (hypothesis), the same JSON
answers, the same realloc and post-return calls, the same failures.

The component is written here as WAT (assembled by wasm-tools, which checks every core
signature against its WIT type) with, for each type T:

* ``id-N: func(x: T) -> T`` when T is one core value: the core function returns its
  parameter (flat lowering and lifting of scalars, enums, flags);
* ``echo-N: func(x: T, pad: P) -> T`` where P spills the parameters to memory: the core
  function returns the address of its parameters, where T sits first, as its return area
  (``store`` by the caller, ``load`` of the result);
* ``flat-N: func(x: T) -> list<u64>`` when T fits in registers: the core function answers
  its own core parameters (what lowering handed it, pointers from realloc included).

Each path runs on its own runtime with the same calls. The guest's bump allocator starts over
in each post-return, so both see the same addresses only if both call realloc alike and both
ran the previous call's post-return.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnicore.errors import (
    DeadlineExceeded,
    MemoryLimitExceeded,
    OutputTooLarge,
    PluginCallError,
    Trap,
)
from omnicore.sandbox import PluginModule
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.sandbox.component.canonabi import Ty, flatten
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits

U8, U32, U64, F32, F64, STR = ("u8",), ("u32",), ("u64",), ("f32",), ("f64",), ("string",)
REC5 = ("record", ("id", "name", "score", "ok", "tag"), (U32, STR, F64, ("bool",), U8))
VARIANT = ("variant", ("a", "b", "c", "d"), (F32, U64, None, STR))
ENUM = ("enum", ("red", "green", "blue"))
FLAGS = ("flags", tuple(f"f{i}" for i in range(10)))
SCALARS = [("bool",), ("s8",), U8, ("s16",), ("u16",), ("s32",), U32, ("s64",), U64, F32,
           F64, ("char",), ENUM, FLAGS, ("flags", ("x", "y", "z"))]
TYPES: list[Ty] = [
    *SCALARS, STR, ("list", U32), ("list", U8), ("list", STR), ("list", ("s16",)), REC5,
    ("tuple", (U8, F64, STR)), ("option", U32), ("option", STR), ("result", U32, STR),
    ("result", None, U8), ("result", None, None), VARIANT, ("list", REC5),
    ("list", VARIANT), ("option", REC5),
    ("record", ("inner", "pair", "maybe"), (REC5, ("tuple", (("char",), ("s64",))),
                                            ("option", ENUM))),
    ("variant", ("x", "y"), (("tuple", (F32, F32)), ("list", U8))),
    # Joined slots: small signed integers and an f32 beside an i64, an f64 beside a pointer.
    ("variant", ("p", "q", "r", "s"), (("s8",), ("s64",), F32, ("s32",))),
    ("result", F64, ("tuple", (STR, ("s16",)))), ("list", ("list", ("char",))),
    ("tuple", (F32,) * 17),
    # A discriminant of two bytes (flags stop at 32: wasmtime refuses more).
    ("list", ("enum", tuple(f"e{i}" for i in range(300)))),
]
PAD = ("tuple", (U64,) * 16)


def _wit(t: Ty, defs: dict[Ty, str], lines: list[str]) -> str:
    """The WAT reference of ``t``; named types are defined and exported once."""
    k = t[0]
    if len(t) == 1:
        return k
    if k == "list":
        return f"(list {_wit(t[1], defs, lines)})"
    if k == "option":
        return f"(option {_wit(t[1], defs, lines)})"
    if k == "tuple":
        return "(tuple " + " ".join(_wit(e, defs, lines) for e in t[1]) + ")"
    if k == "result":
        ok = f" {_wit(t[1], defs, lines)}" if t[1] else ""
        err = f" (error {_wit(t[2], defs, lines)})" if t[2] else ""
        return f"(result{ok}{err})"
    if t in defs:
        return defs[t]
    if k == "record":
        body = " ".join(f'(field "{n}" {_wit(f, defs, lines)})'
                        for n, f in zip(*t[1:], strict=True))
    elif k == "variant":
        body = " ".join(f'(case "{n}"' + (f" {_wit(f, defs, lines)})" if f else ")")
                        for n, f in zip(*t[1:], strict=True))
    else:
        body = " ".join(f'"{n}"' for n in t[1])
    n = len(defs)
    lines.append(f"(type $d{n} ({k} {body}))")
    lines.append(f'(export $t{n} "t{n}" (type $d{n}))')
    defs[t] = f"$t{n}"
    return defs[t]


def _widen(core: str, i: int) -> str:
    """Core parameter ``i`` as an i64 (its bits)."""
    return {"i32": f"(i64.extend_i32_u (local.get {i}))", "i64": f"(local.get {i})",
            "f32": f"(i64.extend_i32_u (i32.reinterpret_f32 (local.get {i})))",
            "f64": f"(i64.reinterpret_f64 (local.get {i}))"}[core]


MALFORMED = """
    (func (export "bad-utf8") (result i32)
      (i32.store8 (i32.const 2000) (i32.const 0xff))
      (i32.store (i32.const 1200) (i32.const 2000)) (i32.store (i32.const 1204) (i32.const 1))
      (i32.const 1200))
    (func (export "bad-disc") (result i32) (i32.const 9))
    (func (export "bad-char") (result i32) (i32.const 0xd800))
    (func (export "bad-option") (result i32)
      (i32.store (i32.const 1200) (i32.const 2)) (i32.const 1200))
    (func (export "past-memory") (result i32)
      (i32.store (i32.const 1200) (i32.const 0x3fff0))
      (i32.store (i32.const 1204) (i32.const 100)) (i32.const 1200))
    (func (export "misaligned-list") (result i32)
      (i32.store (i32.const 1200) (i32.const 2002))
      (i32.store (i32.const 1204) (i32.const 1)) (i32.const 1200))
    (func (export "misaligned-ret") (result i32) (i32.const 1202))
    (func (export "odd-bool") (result i32) (i32.const 2))
    (func (export "odd-int") (result i32) (i32.const 0x1ff80))
    (func (export "odd-flags") (result i32) (i32.const 0xff))
    (func (export "far-realloc") (param i32 i32 i32 i32) (result i32) (i32.const 0xfffffff0))
    (func (export "odd-realloc") (param i32 i32 i32 i32) (result i32) (i32.const 4097))
    (func (export "take") (param i32 i32) (result i32) (local.get 1))
    (func (export "spin") (param i32) (result i32) (loop (br 0)) (i32.const 0))
    (func (export "grow") (param i32) (result i32)
      (if (i32.lt_s (memory.grow (local.get 0)) (i32.const 0)) (then unreachable))
      (local.get 0))
"""

MALFORMED_LIFTS = """
  (func (export "bad-utf8") (result string) (canon lift (core func $i "bad-utf8") (memory $mem)))
  (func (export "bad-enum") (result $E) (canon lift (core func $i "bad-disc")))
  (func (export "bad-char") (result char) (canon lift (core func $i "bad-char")))
  (func (export "bad-option") (result (option u32))
    (canon lift (core func $i "bad-option") (memory $mem)))
  (func (export "past-memory") (result (list u32))
    (canon lift (core func $i "past-memory") (memory $mem)))
  (func (export "misaligned-list") (result (list u32))
    (canon lift (core func $i "misaligned-list") (memory $mem)))
  (func (export "misaligned-ret") (result (tuple u32 u32))
    (canon lift (core func $i "misaligned-ret") (memory $mem)))
  (func (export "odd-bool") (result bool) (canon lift (core func $i "odd-bool")))
  (func (export "odd-u8") (result u8) (canon lift (core func $i "odd-int")))
  (func (export "odd-s16") (result s16) (canon lift (core func $i "odd-int")))
  (func (export "odd-flags") (result $F) (canon lift (core func $i "odd-flags")))
  (func (export "far-realloc") (param "s" string) (result u32)
    (canon lift (core func $i "take") (memory $mem) (realloc (core func $i "far-realloc"))))
  (func (export "odd-realloc") (param "l" (list u32)) (result u32)
    (canon lift (core func $i "take") (memory $mem) (realloc (core func $i "odd-realloc"))))
  (func (export "spin") (param "x" u32) (result u32) (canon lift (core func $i "spin")))
  (func (export "grow") (param "pages" u32) (result u32) (canon lift (core func $i "grow")))
"""


def component_wat() -> str:
    defs: dict[Ty, str] = {}
    types: list[str] = []
    core: list[str] = []
    lifts: list[str] = []
    enum_ref = _wit(ENUM, defs, types)
    flags_ref = _wit(("flags", ("x", "y", "z")), defs, types)
    posts: set[str] = set()
    for n, t in enumerate(TYPES):
        ref = _wit(t, defs, types)
        flat = flatten(t)
        opts = '(memory $mem) (realloc $realloc)'
        if len(flat) == 1:
            c = flat[0]
            core.append(f'(func (export "id-{n}") (param {c}) (result {c}) local.get 0)')
            posts.add(c)
            lifts.append(f'(func (export "id-{n}") (param "x" {ref}) (result {ref}) '
                         f'(canon lift (core func $i "id-{n}") {opts} '
                         f'(post-return (core func $i "post-{c}"))))')
        else:
            core.append(f'(func (export "echo-{n}") (param i32) (result i32) local.get 0)')
            lifts.append(f'(func (export "echo-{n}") (param "x" {ref}) '
                         f'(param "pad" {_wit(PAD, defs, types)}) (result {ref}) '
                         f'(canon lift (core func $i "echo-{n}") {opts} '
                         f'(post-return (core func $i "post-i32"))))')
        if len(flat) <= 16:
            params = " ".join(flat)
            stores = "\n      ".join(
                f"(i64.store (i32.const {1024 + 8 * i}) {_widen(c, i)})"
                for i, c in enumerate(flat))
            core.append(f'(func (export "flat-{n}") (param {params}) (result i32)\n      '
                        f'{stores}\n      (i32.store (i32.const 1200) (i32.const 1024))\n'
                        f'      (i32.store (i32.const 1204) (i32.const {len(flat)}))\n'
                        f'      (i32.const 1200))')
            lifts.append(f'(func (export "flat-{n}") (param "x" {ref}) (result (list u64)) '
                         f'(canon lift (core func $i "flat-{n}") {opts} '
                         f'(post-return (core func $i "post-i32"))))')
    posts.add("i32")
    post_funcs = "\n    ".join(
        f'(func (export "post-{c}") (param {c}) (global.set $top (i32.const 4096)))'
        for c in sorted(posts))
    body = "\n    ".join(core)
    return f"""(component
  {chr(10).join('  ' + line for line in types)}
  (core module $m
    (memory (export "memory") 4)
    (global $top (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $top) (i32.sub (local.get 2) (i32.const 1)))
                              (i32.sub (i32.const 0) (local.get 2))))
      (if (i32.gt_u (i32.add (local.get $at) (local.get 3)) (i32.const 200000))
        (then (local.set $at (i32.const 4096))))
      (global.set $top (i32.add (local.get $at) (local.get 3)))
      local.get $at)
    {post_funcs}
    {body}
    {MALFORMED}
  )
  (core instance $i (instantiate $m))
  (alias core export $i "realloc" (core func $realloc))
  (alias core export $i "memory" (core memory $mem))
  {chr(10).join('  ' + line for line in lifts)}
  {MALFORMED_LIFTS.replace("$E", enum_ref).replace("$F", flags_ref)}
)
"""


@pytest.fixture(scope="module")
def component(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("canon") / "canon.wat"
    src.write_text(component_wat())
    out = src.with_suffix(".wasm")
    tool = shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")
    done = subprocess.run([tool, "parse", str(src), "-o", str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"wasm-tools parse failed:\n{done.stderr}"
    return out


@pytest.fixture(scope="module")
def engine() -> Iterator[SandboxEngine]:
    with SandboxEngine() as eng:
        yield eng


@pytest.fixture(scope="module")
def module(engine: SandboxEngine, component: Path) -> ComponentModule:
    loaded = PluginModule.load(engine, component)
    assert isinstance(loaded, ComponentModule)
    return loaded


LIMITS = {"timeout_ms": 300, "max_memory_bytes": 8 * 2**20, "pool_size": 1}


@pytest.fixture(scope="module")
def both(engine: SandboxEngine, module: ComponentModule
         ) -> Iterator[tuple[ComponentRuntime, ComponentRuntime]]:
    """The flat path and wasmtime's value API (the same module without its flat faces)."""
    slow = dataclasses.replace(module, flat={})
    with ComponentRuntime(engine, module, Limits(**LIMITS)) as flat, \
            ComponentRuntime(engine, slow, Limits(**LIMITS)) as value:
        yield flat, value


def _values(t: Ty) -> st.SearchStrategy[Any]:
    """JSON values of ``t`` (the mapping of specs/components.md)."""
    k = t[0]
    ints = {"s8": 8, "s16": 16, "s32": 32, "s64": 64, "u8": 8, "u16": 16, "u32": 32, "u64": 64}
    if k in ints:
        bits = ints[k]
        if k[0] == "s":
            return st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        return st.integers(0, (1 << bits) - 1)
    if k == "bool":
        return st.booleans()
    if k in ("f32", "f64"):
        finite = st.floats(width=32 if k == "f32" else 64, allow_nan=False,
                           allow_infinity=False)
        return finite | st.sampled_from(["nan", "inf", "-inf"])
    if k == "char":
        return st.characters(blacklist_categories=("Cs",))
    if k == "string":
        return st.text(max_size=40)
    if k == "list":
        return st.lists(_values(t[1]), max_size=6)
    if k == "record":
        return st.fixed_dictionaries({n: _values(f) for n, f in zip(*t[1:], strict=True)})
    if k == "tuple":
        return st.tuples(*(_values(e) for e in t[1])).map(list)
    if k == "enum":
        return st.sampled_from(t[1])
    if k == "flags":
        return st.sets(st.sampled_from(t[1])).map(sorted)
    if k == "option":
        return st.none() | _values(t[1])
    cases = list(zip(t[1], t[2], strict=True)) if k == "variant" else [("ok", t[1]), ("err", t[2])]
    return st.one_of(*(st.builds(lambda p, n=n: {n: p}, _values(c) if c else st.none())
                       for n, c in cases))


def _outcome(rt: ComponentRuntime, export: str, args: list[Any]) -> Any:
    try:
        return rt.call(export, json.dumps(args).encode())
    except PluginCallError as exc:
        return type(exc)


def _same(both: tuple[ComponentRuntime, ComponentRuntime], export: str,
          args: list[Any]) -> Any:
    flat, value = both
    ours, theirs = _outcome(flat, export, args), _outcome(value, export, args)
    assert ours == theirs, (export, args)
    return ours


def test_every_supported_type_takes_the_flat_path(module: ComponentModule) -> None:
    paths = {e["name"]: e["path"] for e in module.describe()["exports"]}
    assert set(paths.values()) == {"flat"}, paths


@pytest.mark.parametrize("n", range(len(TYPES)), ids=[repr(t)[:40] for t in TYPES])
def test_random_values_round_trip_alike_on_both_paths(
        both: tuple[ComponentRuntime, ComponentRuntime], n: int) -> None:
    t = TYPES[n]
    flat = flatten(t)

    @settings(max_examples=40, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_values(t))
    def check(value: Any) -> None:
        if len(flat) == 1:
            _same(both, f"id-{n}", [value])
        else:
            _same(both, f"echo-{n}", [value, [0] * 16])
        if len(flat) <= 16:
            _same(both, f"flat-{n}", [value])

    check()


@pytest.mark.parametrize("export, args, verdict", [
    ("bad-utf8", [], Trap), ("bad-enum", [], Trap), ("bad-char", [], Trap),
    ("bad-option", [], Trap), ("past-memory", [], Trap), ("misaligned-list", [], Trap),
    ("misaligned-ret", [], Trap), ("far-realloc", ["hello"], Trap),
    ("odd-realloc", [[1, 2]], Trap), ("spin", [1], DeadlineExceeded),
    ("grow", [1000], MemoryLimitExceeded),
])
def test_malformed_values_trap_as_the_canonical_abi_says(
        both: tuple[ComponentRuntime, ComponentRuntime], export: str, args: list[Any],
        verdict: type[PluginCallError]) -> None:
    assert _same(both, export, args) is verdict
    # The failed instance was replaced: both keep serving.
    assert _same(both, "id-6", [7]) == b"7"


def test_lenient_values_lift_alike(both: tuple[ComponentRuntime, ComponentRuntime]) -> None:
    assert _same(both, "odd-bool", []) == b"true"
    assert json.loads(_same(both, "odd-flags", [])) == ["x", "y", "z"]
    # Integers are truncated to their width, not refused.
    assert _same(both, "odd-u8", []) == b"128"
    assert _same(both, "odd-s16", []) == b"-128"


def test_the_failure_names_the_plugin_and_export(
        both: tuple[ComponentRuntime, ComponentRuntime]) -> None:
    flat, value = both
    errors = []
    for rt in (flat, value):
        with pytest.raises(Trap) as info:
            rt.call("bad-enum", b"[]")
        errors.append(info.value)
    assert [(e.plugin, e.handler) for e in errors] == [("canon", "bad-enum")] * 2


def test_an_answer_over_the_output_limit_is_refused_alike(
        engine: SandboxEngine, module: ComponentModule) -> None:
    limits = Limits(**{**LIMITS, "max_output_bytes": 64})
    echo = f"echo-{TYPES.index(STR)}"
    with ComponentRuntime(engine, module, limits) as flat, \
            ComponentRuntime(engine, dataclasses.replace(module, flat={}), limits) as value:
        pair = (flat, value)
        assert _same(pair, echo, ["x" * 100, [0] * 16]) is OutputTooLarge
        assert _same(pair, echo, ["x" * 10, [0] * 16]) == b'"xxxxxxxxxx"'
