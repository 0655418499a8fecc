"""The deadline's door: one function arms a call's epoch deadline in Python
(``sandbox/deadline.py``: ``arm``) and one in C (``sandbox/_deadline.h``: ``deadline_arm``),
both by one rule (specs/host.md, "Deadlines"): a deadline ``ticks`` from now is armed
``ticks + owed`` past the engine's epoch, every tick a late ticker owes counted.

Two kinds of test. The scans fail when any other module arms a deadline or reads the ticks
owed, as ``test_wasmtime.py`` pins wasmtime's private names to their door. The lanes: every
way a call or a start arms its deadline (core calls, with and without the GIL held, metered,
starts, Extism, WASI commands, every component lane) is run with its deadline armed while the
ticker is held back, and must run its full deadline: armed from the epoch alone ("epoch + N"),
it ends early by the lag. A contract entry (tests/callpath_contract.py): both call paths.
"""

from __future__ import annotations

import ast
import io
import re
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import omnicore
from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import DeadlineExceeded, PluginError, PluginLoadError
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
from omnicore.sandbox.command import Command, CommandModule, run_command
from tests.component_fixtures import wat_component, wat_plugin
from tests.guest_wat import ALLOC
from tests.sandbox_fixtures import c_ticker_held_back
from tests.waiting import eventually

PACKAGE = Path(omnicore.__file__).parent
SANDBOX = PACKAGE / "sandbox"

# -- no other module arms a deadline --------------------------------------------------------

#: The Python names that arm a store's deadline or read the ticks owed.
ARMING = frozenset(("set_epoch_deadline", "epoch_and_owed", "ticks_from_now"))
#: Where they may be used: the door, and the engine's own reading (its C ticker's) which only
#: the door calls.
PY_ALLOWED = {"sandbox/deadline.py": None, "sandbox/engine.py": "epoch_and_owed"}


def arming_uses(source: str, inside: str | None = None) -> list[str]:
    """Where ``source`` arms a deadline or reads the ticks owed (line: name): an attribute
    or a name of :data:`ARMING` read, or imported. ``inside``: a function whose body is left
    out (the engine's reader)."""
    tree = ast.parse(source)
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == inside:
            skip.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Attribute) and node.attr in ARMING:
            found.append((node.lineno, node.attr))
        elif isinstance(node, ast.Name) and node.id in ARMING \
                and isinstance(node.ctx, ast.Load):
            found.append((node.lineno, node.id))
        elif isinstance(node, ast.ImportFrom):
            found += [(node.lineno, a.name) for a in node.names if a.name in ARMING]
    return [f"{line}: {name}" for line, name in sorted(found)]


#: The C door's names: wasmtime's setter as every file binds it, the clock's reading (the
#: ticks owed), and the due time it reads them from.
C_ARMING = re.compile(r"\b(set_deadline|deadline_clock)\s*\(|\bdue_ns\b")
#: _epoch.c is the ticker (it keeps due_ns) and answers the Python door's reading
#: (Ticker.epoch_and_owed, through deadline_clock); _epoch.h declares due_ns.
C_ALLOWED = {"_deadline.h": set(), "_epoch.c": {"due_ns", "deadline_clock"},
             "_epoch.h": {"due_ns"}}


def c_code(source: str) -> str:
    """``source`` without its comments and string literals (line breaks kept)."""
    def blank(m: re.Match[str]) -> str:
        return re.sub(r"[^\n]", " ", m.group(0))

    return re.sub(r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"', blank, source, flags=re.S)


def c_arming_uses(source: str, allowed: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    code = c_code(source)
    found = []
    for m in C_ARMING.finditer(code):
        name = m.group(1) or "due_ns"
        if name not in allowed:
            found.append(f"{code.count(chr(10), 0, m.start()) + 1}: {name}")
    return found


def test_the_scans_see_arms_not_words() -> None:
    assert arming_uses(textwrap.dedent('''
        # store.set_epoch_deadline(3) in a comment
        """engine.epoch_and_owed() in a docstring"""
        set_epoch_deadline = bind("wasmtime_context_set_epoch_deadline")
        arm(engine, store, ticks)
        def epoch_and_owed(self): return self.clock.epoch_and_owed()
        ''')) == ["6: epoch_and_owed"]
    assert arming_uses(textwrap.dedent('''
        from omnicore.sandbox._wasmtime import set_epoch_deadline as _set
        store.set_epoch_deadline(engine.ticks_from_now(ticks))
        epoch, owed = self.engine.epoch_and_owed()
        f = getattr(x, "y") or epoch_and_owed
        ''')) == ["2: set_epoch_deadline", "3: set_epoch_deadline", "3: ticks_from_now",
                  "4: epoch_and_owed", "5: epoch_and_owed"]
    # The component face reverted to "epoch + N", and the core slot reading the clock itself.
    assert c_arming_uses(textwrap.dedent('''
        /* set_deadline(ctx, ticks) in a comment; "due_ns" */
        typedef void (*set_deadline_fn)(void *ctx, uint64_t ticks);
        set_deadline = (set_deadline_fn)p[2];
        if (e < 0 || e != self->armed) {
            set_deadline(self->ctx, self->ticks);
        }
        int64_t due = atomic_load(&w->clock->due_ns);
        deadline_clock(w->clock, &counter, &owed);
        ''')) == ["6: set_deadline", "8: due_ns", "9: deadline_clock"]


def test_only_the_door_arms_a_deadline_in_python() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in PY_ALLOWED and PY_ALLOWED[rel] is None:
            continue
        uses = arming_uses(path.read_text(), PY_ALLOWED.get(rel))
        if uses:
            offenders[rel] = uses
    assert offenders == {}, "arm deadlines through omnicore.sandbox.deadline.arm"
    assert arming_uses((SANDBOX / "deadline.py").read_text()) != []  # the scan sees the door


def test_only_the_door_arms_a_deadline_in_c() -> None:
    sources = sorted([*SANDBOX.glob("*.c"), *SANDBOX.glob("*.h")])
    assert {p.name for p in sources} >= {"_callpath.c", "_instantiate.c", "_compcall.c",
                                          "_complane.c", "_epoch.c", "_deadline.h"}
    offenders = {}
    for path in sources:
        if path.name == "_deadline.h":
            continue
        uses = c_arming_uses(path.read_text(), C_ALLOWED.get(path.name, set()))
        if uses:
            offenders[path.name] = uses
    assert offenders == {}, "arm deadlines through deadline_arm (sandbox/_deadline.h)"
    door = (SANDBOX / "_deadline.h").read_text()
    assert c_arming_uses(door) != []  # the scan sees the door
    for name in ("_callpath.c", "_instantiate.c", "_compcall.h"):
        assert '#include "_deadline.h"' in (SANDBOX / name).read_text(), name


# -- every lane runs its full deadline while the ticker is held back --------------------------

TIMEOUT_MS = 300


class _HeldStop:
    """The Python ticker's stop event (``SandboxEngine._stop``, whose ``wait`` paces the
    thread) holding the thread back until ``until``: as the C ticker's ``pause`` does."""

    def __init__(self, stop: threading.Event, until: float) -> None:
        self.stop, self.until = stop, until

    def wait(self, timeout: float) -> bool:
        left = self.until - time.monotonic()
        if left > 0 and self.stop.wait(left):
            return True
        return self.stop.wait(timeout)

    def set(self) -> None:
        self.stop.set()


@contextmanager
def ticker_held_back(engine: SandboxEngine, for_s: float = 0.35,
                     behind_s: float = 0.1) -> Iterator[None]:
    """The engine's ticker held back for ``for_s``, entered once it is ``behind_s`` late:
    deadlines armed in the body are armed while it owes those ticks, and it adds them all at
    once when it runs again. The C ticker: ``Ticker.pause``
    (tests/sandbox_fixtures.c_ticker_held_back). The Python one: its thread's wait held."""
    if engine.clock is not None:
        with c_ticker_held_back(engine, for_s, behind_s):
            yield
        return
    behind = int(behind_s * 1000 / engine.epoch_tick_ms)
    stop = engine._stop
    for _ in range(10):
        engine._stop = _HeldStop(stop, time.monotonic() + for_s)  # type: ignore[assignment]
        try:
            eventually(lambda: engine.epoch_and_owed()[1] >= behind
                       or time.monotonic() > engine._stop.until,  # type: ignore[attr-defined]
                       f"the ticker {behind_s} s behind", timeout=30, every=0.002)
            if engine.epoch_and_owed()[1] >= behind:
                yield
                return
        finally:
            engine._stop = stop
    raise AssertionError(f"never saw the ticker {behind_s} s behind in ten holds")


#: ``run`` loops when given input. Calls with none are quick, so the C slot holds the GIL for
#: the next (_epoch.c) and its deadline callback keeps the deadline.
RUNS_ON_INPUT = f"""(module (memory (export "memory") 2) {ALLOC}
  (func (export "run") (param i32 i32) (result i64)
    (if (local.get 1) (then (loop $l (br $l))))
    (i64.const 0)))"""

#: Every instance's start function loops.
START_LOOPS = f"""(module (memory (export "memory") 2) {ALLOC}
  (func $start (loop $l (br $l)))
  (start $start)
  (func (export "run") (param i32 i32) (result i64) (i64.const 0)))"""

EXTISM_RUNS_ON_INPUT = """(module
  (import "extism:host/env" "input_length" (func $len (result i64)))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (if (i64.ne (call $len) (i64.const 0)) (then (loop $l (br $l))))
    (i32.const 0)))"""

EXTISM_START_LOOPS = """(module
  (import "extism:host/env" "input_length" (func $len (result i64)))
  (memory (export "memory") 1)
  (func $start (loop $l (br $l)))
  (start $start)
  (func (export "run") (result i32) (i32.const 0)))"""

COMMAND_LOOPS = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"""


# Each makes its runtime from a module compiled beforehand (a start's lane times the start, not
# the compilation), appended to ``made``.

def _core(engine: SandboxEngine, wat: str, made: list[Any]) -> Callable[[], PluginRuntime]:
    module = PluginModule.load(engine, bytes(wasmtime.wat2wasm(wat)))

    def start() -> PluginRuntime:
        rt = PluginRuntime(engine, module, builtin_registry(),  # type: ignore[arg-type]
                           limits=Limits(timeout_ms=TIMEOUT_MS))
        made.append(rt)
        return rt
    return start


def _extism(engine: SandboxEngine, wat: str, made: list[Any]) -> Callable[[], Any]:
    from omnicore.extism import ExtismRuntime

    module = PluginModule.load(engine, bytes(wasmtime.wat2wasm(wat)), "spin")

    def start() -> Any:
        made.append(ExtismRuntime(engine, module, builtin_registry(),  # type: ignore[arg-type]
                                  limits=Limits(timeout_ms=TIMEOUT_MS)))
        return made[-1]
    return start


def _component(engine: SandboxEngine, source: str | Path, made: list[Any],
               **kw: Any) -> Callable[[], Any]:
    from omnicore.sandbox.component import ComponentRuntime

    module = PluginModule.load(engine, source if isinstance(source, Path)
                               else wat_component(source))

    def start() -> Any:
        made.append(ComponentRuntime(engine, module,  # type: ignore[arg-type]
                                     Limits(timeout_ms=TIMEOUT_MS), **kw))
        return made[-1]
    return start


#: Each lane: set up (on ``engine``, what it makes appended to ``made``) and answer the call
#: to time, which must end at its deadline.
Lane = Callable[[SandboxEngine, list[Any], Path], Callable[[], object]]


def core_call(engine: SandboxEngine, made: list[Any], _tmp: Path) -> Callable[[], object]:
    rt = _core(engine, RUNS_ON_INPUT, made)()
    return lambda: rt.call("run", b"x")  # its first call: never seen quick


def core_call_holding_the_gil(engine: SandboxEngine, made: list[Any],
                              _tmp: Path) -> Callable[[], object]:
    rt = _core(engine, RUNS_ON_INPUT, made)()
    for _ in range(20):  # seen quick: the C slot holds the GIL for the next call
        assert rt.call("run", b"") == b""
    return lambda: rt.call("run", b"x")


def core_start(engine: SandboxEngine, made: list[Any], _tmp: Path) -> Callable[[], object]:
    return _core(engine, START_LOOPS, made)


def core_metered_call(engine: SandboxEngine, made: list[Any],
                      _tmp: Path) -> Callable[[], object]:
    assert engine.fuel  # (the test makes a metered engine for this lane)
    rt = _core(engine, RUNS_ON_INPUT, made)()
    return lambda: rt.call("run", b"x")


def extism_call(engine: SandboxEngine, made: list[Any], _tmp: Path) -> Callable[[], object]:
    rt = _extism(engine, EXTISM_RUNS_ON_INPUT, made)()
    for _ in range(20):
        rt.call("run", b"")
    return lambda: rt.call("run", b"x")


def extism_start(engine: SandboxEngine, made: list[Any], _tmp: Path) -> Callable[[], object]:
    return _extism(engine, EXTISM_START_LOOPS, made)


def wasi_command(engine: SandboxEngine, _made: list[Any], _tmp: Path) -> Callable[[], object]:
    module = CommandModule.load(engine, bytes(wasmtime.wat2wasm(COMMAND_LOOPS)), "spin")
    command = Command(limits=Limits(timeout_ms=TIMEOUT_MS))
    return lambda: run_command(engine, module, command, io.BytesIO(), io.BytesIO())


def component_call_c_lane(engine: SandboxEngine, made: list[Any],
                          _tmp: Path) -> Callable[[], object]:
    rt = _component(engine, "spin-when", made)()
    for _ in range(3):  # its face bound: the C lane (where built) serves the next call
        assert rt.call("spin-when", b"[0]") == b"0"
    return lambda: rt.call("spin-when", b"[1]")


def component_call_first(engine: SandboxEngine, made: list[Any],
                         _tmp: Path) -> Callable[[], object]:
    rt = _component(engine, "limits", made)()
    return lambda: rt.call("spin", b"[]")  # its face bound by this call, then armed


def component_start(engine: SandboxEngine, made: list[Any], _tmp: Path) -> Callable[[], object]:
    return _component(engine, "start-loop", made)


def component_byte_face(engine: SandboxEngine, made: list[Any],
                        _tmp: Path) -> Callable[[], object]:
    rt = _component(engine, wat_plugin("spin-bytes", {"name": "spin", "handlers": ["spin"]}),
                    made)()
    for _ in range(3):
        assert rt.call("spin", b"") == b""
    return lambda: rt.call("spin", b"x")


def component_with_a_descriptor_watch(engine: SandboxEngine, made: list[Any],
                                      tmp: Path) -> Callable[[], object]:
    rt = _component(engine, "spin-when", made, registry=builtin_registry(),
                    grants={"fs": {"dirs": [{"path": str(tmp), "guest": "/d"}]}})()
    inst = rt._pool.acquire("spin-when")
    watched = inst.watch is not None
    rt._pool.release(inst, True)
    assert watched, "the fs grant's directories are watched"
    assert rt.call("spin-when", b"[0]") == b"0"
    return lambda: rt.call("spin-when", b"[1]")


LANES: dict[str, Lane] = {
    "core call": core_call,
    "core call holding the GIL": core_call_holding_the_gil,
    "core instance start": core_start,
    "core metered call": core_metered_call,
    "Extism call": extism_call,
    "Extism instance start": extism_start,
    "WASI command": wasi_command,
    "component call, C lane": component_call_c_lane,
    "component call binding its face": component_call_first,
    "component byte face": component_byte_face,
    "component instance start": component_start,
    "component with a descriptor watch": component_with_a_descriptor_watch,
}


@pytest.mark.parametrize("lane", list(LANES))
def test_a_deadline_armed_while_the_ticker_is_held_back_runs_in_full(
        lane: str, tmp_path: Path) -> None:
    # A loaded machine deschedules the ticker's thread (or, for the Python ticker, keeps the
    # GIL from it); when it runs again it adds every period it missed at once. Here it owes
    # 100 ms or more when the lane arms a 300 ms deadline: armed from the epoch alone, the
    # call ends when the ticker catches up, 100 ms or more early; counted with the ticks owed
    # (the door), it runs its full 300 ms.
    made: list[Any] = []
    with SandboxEngine(epoch_tick_ms=5, fuel=lane == "core metered call") as engine:
        try:
            run = LANES[lane](engine, made, tmp_path)
            with ticker_held_back(engine), pytest.raises(PluginError) as info:
                start = time.monotonic()
                try:
                    run()
                finally:
                    ran = time.monotonic() - start
        finally:
            for rt in reversed(made):
                rt.close()
    assert isinstance(info.value, (DeadlineExceeded, PluginLoadError)), info.value
    assert "deadline" in str(info.value), info.value
    assert ran > TIMEOUT_MS / 1000 - 0.005, f"ended {TIMEOUT_MS / 1000 - ran:.3f} s early"
    assert ran < TIMEOUT_MS / 1000 + 1.5, f"ended {ran - TIMEOUT_MS / 1000:.3f} s late"
