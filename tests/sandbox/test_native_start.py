"""Starting an instance in C (``_callpath.Instance``) fails exactly as the Python steps do.

On the C call path, RawInstance makes its store, instantiates, looks up its exports, runs
``_initialize`` and allocates the input block in C; the Python path (``OMNICORE_CALLPATH=
python``, metered instances) does the same through ctypes. Each test starts the same module
both ways in one process (the Python way by hiding the C module from fastcall) and compares
what failed, where, and the message; then checks a failing start leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import wasmtime

from omnicore.errors import Trap
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine, fastcall
from omnicore.sandbox.fastcall import GuestFailure, RawInstance
from tests.sandbox_fixtures import compile_wat

PATHS = ["python", pytest.param("native", marks=pytest.mark.native)]

_ALLOC = '(func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))'
_REST = """
  (func (export "omni_free") (param i32 i32))
  (func (export "h") (param i32 i32) (result i64) (i64.const 0))"""
_MEMORY = '(memory (export "memory") 2)'

#: One module per way a start can fail; (name, WAT body, RawInstance keyword overrides).
BROKEN: dict[str, tuple[str, dict[str, int]]] = {
    "start function traps": (f"{_MEMORY} {_ALLOC} (func $s unreachable) (start $s)", {}),
    "_initialize traps": (f'{_MEMORY} {_ALLOC} (func (export "_initialize") unreachable)', {}),
    "_initialize overflows its stack": (
        f'{_MEMORY} {_ALLOC} (func $r (export "_initialize") call $r)', {}),
    "omni_alloc traps": (
        f'{_MEMORY} (func (export "omni_alloc") (param i32) (result i32) unreachable)', {}),
    "omni_alloc block past the end": (
        f'{_MEMORY} (func (export "omni_alloc") (param i32) (result i32) (i32.const 70000))',
        {}),
    "omni_alloc block at the top of the address space": (
        f'{_MEMORY} (func (export "omni_alloc") (param i32) (result i32) (i32.const -8))', {}),
    "omni_alloc returns 0": (
        f'{_MEMORY} (func (export "omni_alloc") (param i32) (result i32) (i32.const 0))', {}),
    "no memory export": (f"(memory 1) {_ALLOC}", {}),
    "'memory' is a function": (
        f'(memory 1) {_ALLOC} (func (export "memory"))', {}),
    "no omni_alloc": (_MEMORY, {}),
    "omni_alloc is a global": (f'{_MEMORY} (global (export "omni_alloc") i32 (i32.const 1))',
                               {}),
    "memory over the limit": ('(memory (export "memory") 8) ' + _ALLOC,
                              {"memory_limit": 4 * 65536}),
    "table over the limit": (f"{_MEMORY} {_ALLOC} (table 10 funcref)",
                             {"table_elements": 5}),
    "input block larger than memory": (
        f'{_MEMORY} (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))',
        {"input_cap": 1 << 20}),
}


_FAILED = "GuestFailure"
#: What each start raises, and at which stage (GuestFailure.stage).
EXPECTED: dict[str, tuple[str, str | None]] = {
    "start function traps": (_FAILED, "instantiate"),
    "_initialize traps": (_FAILED, "_initialize"),
    "_initialize overflows its stack": (_FAILED, "_initialize"),
    "omni_alloc traps": (_FAILED, "omni_alloc"),
    "omni_alloc block past the end": (_FAILED, "omni_alloc"),
    "omni_alloc block at the top of the address space": (_FAILED, "omni_alloc"),
    "omni_alloc returns 0": ("MemoryError", None),
    "no memory export": ("ValueError", None),
    "'memory' is a function": ("ValueError", None),
    "no omni_alloc": ("ValueError", None),
    "omni_alloc is a global": ("ValueError", None),
    "memory over the limit": (_FAILED, "instantiate"),
    "table over the limit": (_FAILED, "instantiate"),
    "input block larger than memory": (_FAILED, "omni_alloc"),
}


@pytest.fixture(scope="module", params=["default", "pooling"])
def engine(request: pytest.FixtureRequest) -> Iterator[SandboxEngine]:
    with SandboxEngine(epoch_tick_ms=5, pooling=request.param == "pooling") as eng:
        yield eng


def _pre(engine: SandboxEngine, body: str) -> wasmtime.InstancePre:
    module = wasmtime.Module(engine.wasmtime, f"(module {body} {_REST})")
    return wasmtime.Linker(engine.wasmtime).instantiate_pre(module)


def _start(engine: SandboxEngine, pre: wasmtime.InstancePre, path: str,
           live: dict[int, RawInstance], monkeypatch: pytest.MonkeyPatch,
           **overrides: int) -> RawInstance:
    kw: dict[str, int] = {"memory_limit": 16 * 65536, "input_cap": 65536,
                          "table_elements": 100, **overrides}
    with monkeypatch.context() as m:
        if path == "python":
            m.setattr(fastcall, "_callpath", None)
        return RawInstance(engine.wasmtime, pre, deadline_ticks=1000, fuel=None, wasi=None,
                           live=live, tables=4, handler="h", **kw)


def _outcome(exc: BaseException) -> tuple[str, str | None, object, str]:
    stage = exc.stage if isinstance(exc, GuestFailure) else None
    code = exc.code if isinstance(exc, GuestFailure) else None
    return type(exc).__name__, stage, code, str(exc)


@pytest.mark.native  # compares with the C start: deselected on the Python path's run
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_every_failing_start_fails_alike_on_both_paths(
        engine: SandboxEngine, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    body, overrides = BROKEN[case]
    pre = _pre(engine, body)
    outcomes = []
    for path in ("python", "native"):
        live: dict[int, RawInstance] = {}
        with pytest.raises((GuestFailure, ValueError, MemoryError)) as info:
            _start(engine, pre, path, live, monkeypatch, **overrides)
        outcomes.append(_outcome(info.value))
        del info
        assert live == {}  # the failed instance is not left where host functions look
    assert outcomes[0] == outcomes[1]
    kind, stage, _, message = outcomes[1]
    assert (kind, stage) == EXPECTED[case]
    if case in ("no memory export", "'memory' is a function"):
        assert message == "the module does not export 'memory'"
    if case in ("no omni_alloc", "omni_alloc is a global"):
        assert message == "the module does not export omni_alloc"
    if case == "omni_alloc returns 0":
        assert message == "omni_alloc(65536) returned 0"
    if "block" in case:
        assert "returned an out-of-bounds block" in message
    if case == "memory over the limit":
        assert "memory minimum size" in message


@pytest.mark.parametrize("path", PATHS)
def test_a_healthy_start_gives_the_same_instance(
        engine: SandboxEngine, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    live: dict[int, RawInstance] = {}
    pre = _pre(engine, f'(memory (export "memory") 3) {_ALLOC}')
    inst = _start(engine, pre, path, live, monkeypatch, input_cap=70_000)
    try:
        assert live == {inst.ctx: inst}
        assert (inst.buf, inst.cap) == (1024, 131072)
        assert inst.func("h") is not None and inst.func("nope") is None
        assert inst.memory.size == 3 * 65536
        assert (inst.slot is None) == (path == "python")
        if inst.slot is not None:
            assert (inst.slot.buf, inst.slot.cap) == (inst.buf, inst.cap)
    finally:
        inst.close()
    assert live == {}
    with pytest.raises(AttributeError):
        inst.memory  # noqa: B018 (a closed instance's memory must not be read)


@pytest.mark.parametrize("path", PATHS)
def test_failing_starts_leave_no_instance_behind(
        path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pooling allocator holds 512 instances and memories: had any failed start kept its
    # store, the healthy start after 600 of each kind would find the pool exhausted. The
    # exceptions are kept, as a log or an error report may keep them: their frames hold the
    # half-made instances, so only freeing at the failure itself passes.
    kept: list[BaseException] = []
    with SandboxEngine(epoch_tick_ms=5, pooling=True) as engine:
        live: dict[int, RawInstance] = {}
        for case in ("_initialize traps", "omni_alloc traps", "omni_alloc block past the end",
                     "omni_alloc returns 0", "no omni_alloc", "start function traps",
                     "input block larger than memory"):
            body, overrides = BROKEN[case]
            pre = _pre(engine, body)
            for _ in range(600):
                with pytest.raises((GuestFailure, ValueError, MemoryError)) as info:
                    _start(engine, pre, path, live, monkeypatch, **overrides)
                kept.append(info.value)
            assert live == {}, case
        inst = _start(engine, _pre(engine, f"{_MEMORY} {_ALLOC}"), path, live, monkeypatch)
        inst.close()


def test_per_call_traps_by_the_thousand_keep_nothing() -> None:
    # Every call gets a fresh instance and traps: each must be freed (pool count, live map,
    # the pooling allocator's 512 slots) or the calls after the first 512 could not start.
    with SandboxEngine(epoch_tick_ms=5, pooling=True) as engine:
        module = PluginModule.load(engine, compile_wat("unreachable"), "unreachable")
        from omnicore.capabilities.builtin import builtin_registry
        with PluginRuntime(engine, module, builtin_registry(),
                           limits=Limits(isolation="per-call")) as rt:
            handler = next(h for h in rt.handlers if h != "ok") if len(rt.handlers) > 1 \
                else rt.handlers[0]
            for _ in range(2000):
                with pytest.raises(Trap):
                    rt.call(handler, b"x")
            assert rt._live == {}
            stats = rt.stats()
            assert (stats["live"], stats["discarded"], stats["created"]) == (0, 2000, 2001)
