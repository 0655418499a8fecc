"""The deadline's door: one function arms a call's epoch deadline in Python
(``sandbox/deadline.py``: ``arm``) and one in C (``sandbox/_deadline.h``: ``deadline_arm``),
both by one rule (specs/host.md, "Deadlines"): a deadline ``ticks`` from now is armed
``ticks + owed`` past the engine's epoch, every tick a late ticker owes counted.

Two kinds of test. The scans fail when any other module arms a deadline or reads the ticks
owed, as ``test_wasmtime.py`` pins wasmtime's private names to their door. The lanes: every
way a call or a start arms its deadline (core calls, with and without the GIL held, metered,
starts and ``_initialize``; Extism calls and starts; WASI commands; the test host's programs;
every component lane: the C lane's scalars, strings and plans, a first call, named arguments,
Python's lowering, a metered call, the value API, a handler's bytes, starts, a descriptor
watch) is run with its ticker held back by a gate until the guest runs, owing more than the whole
deadline: the call must run its full deadline, where armed from the epoch alone ("epoch + N")
it ends as soon as the ticker is let go. A contract entry (tests/callpath_contract.py): both
call paths. A new lane gets its case in :data:`LANES`.
"""

from __future__ import annotations

import ast
import re
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

import omnicore
from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import DeadlineExceeded, PluginError, PluginLoadError
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
from omnicore.sandbox.capability import Capability, HostFunction, WitFunction
from omnicore.sandbox.command import Command, CommandModule, run_command
from tests.component_fixtures import wat_component, wat_plugin
from tests.guest_wat import ALLOC
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


# -- every lane runs its full deadline armed while the ticker is held back -------------------

#: The deadline of every lane's call.
TIMEOUT_MS = 200
#: How many ticks more than the deadline the held ticker owes when a lane arms it: an arm
#: that leaves them out ("epoch + N") is behind the epoch the ticker catches up to, and its
#: call ends as soon as the guest runs; counted (the door), the call runs its full deadline.
BEHIND = 10


class _HeldStop:
    """The Python ticker's stop event (``SandboxEngine._stop``, whose ``wait`` paces the
    thread) holding the thread until ``gate`` opens: as the C ticker's ``hold`` does."""

    def __init__(self, stop: threading.Event, gate: threading.Event) -> None:
        self.stop, self.gate = stop, gate

    def wait(self, timeout: float) -> bool:
        self.gate.wait()
        return self.stop.wait(timeout)

    def set(self) -> None:  # the engine closing
        self.gate.set()
        self.stop.set()


class Gate:
    """The ticker of ``engine`` held back from entry until the guest opens the gate (its
    first host call, ``omnicore:gate``'s ``open`` or a write: after its deadline was armed)
    or the block ends; entered once it owes ``behind`` ticks. The C ticker: ``Ticker.hold``
    and ``release``; the Python one: its thread's wait held on an event. Nothing here
    sleeps for a time that decides the outcome: the hold ends when the guest runs."""

    current: Gate | None = None

    def __init__(self, engine: SandboxEngine, behind: int) -> None:
        self.engine, self.behind = engine, behind
        self.opened = threading.Event()
        self.by_guest = False
        self._stop: Any = None

    def __enter__(self) -> Gate:
        engine = self.engine
        if engine.clock is not None:
            engine.clock.hold()
        else:
            self._stop = engine._stop
            engine._stop = _HeldStop(self._stop, self.opened)  # type: ignore[assignment]
        Gate.current = self
        try:
            eventually(lambda: engine.epoch_and_owed()[1] >= self.behind,
                       f"the held ticker {self.behind} ticks behind", timeout=60, every=0.002)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _release(self) -> None:
        if not self.opened.is_set():
            self.opened.set()
            if self.engine.clock is not None:
                self.engine.clock.release()

    def open(self) -> None:
        """The guest runs (its deadline armed): let the ticker catch up."""
        self.by_guest = True
        self._release()

    def __exit__(self, *_exc: object) -> None:
        Gate.current = None
        self._release()
        if self._stop is not None:
            self.engine._stop = self._stop
            self._stop = None


def _open_gate(*_args: Any) -> None:
    gate = Gate.current
    if gate is not None:
        gate.open()


#: ``omnicore:gate``: the guests' way to open the gate, for core modules (``open``) and
#: components (``omnicore:plugin/gate@1.0.0``'s ``open``).
GATE = Capability("gate", [HostFunction("open", (), (), _open_gate)], default_grant=True,
                  wit=[WitFunction("open", "func()", _open_gate)])


def _registry() -> Any:
    registry = builtin_registry()
    registry.add(GATE)
    return registry


#: ``run`` opens the gate and loops when given input; answers at once without.
RUNS_ON_INPUT = f"""(module (import "omnicore:gate" "open" (func $open))
  (memory (export "memory") 2) {ALLOC}
  (func (export "run") (param i32 i32) (result i64)
    (if (local.get 1) (then (call $open) (loop $l (br $l))))
    (i64.const 0)))"""

#: Every instance's start function opens the gate and loops.
START_LOOPS = f"""(module (import "omnicore:gate" "open" (func $open))
  (memory (export "memory") 2) {ALLOC}
  (func $start (call $open) (loop $l (br $l)))
  (start $start)
  (func (export "run") (param i32 i32) (result i64) (i64.const 0)))"""

#: Every instance's _initialize (a reactor's start, abi.md §2.1) opens the gate and loops.
INITIALIZE_LOOPS = f"""(module (import "omnicore:gate" "open" (func $open))
  (memory (export "memory") 2) {ALLOC}
  (func (export "_initialize") (call $open) (loop $l (br $l)))
  (func (export "run") (param i32 i32) (result i64) (i64.const 0)))"""

EXTISM_RUNS_ON_INPUT = """(module
  (import "extism:host/env" "input_length" (func $len (result i64)))
  (import "extism:host/user" "open" (func $open))
  (memory (export "memory") 1)
  (func (export "run") (result i32)
    (if (i64.ne (call $len) (i64.const 0)) (then (call $open) (loop $l (br $l))))
    (i32.const 0)))"""

EXTISM_START_LOOPS = """(module
  (import "extism:host/env" "input_length" (func $len (result i64)))
  (import "extism:host/user" "open" (func $open))
  (memory (export "memory") 1)
  (func $start (call $open) (loop $l (br $l)))
  (start $start)
  (func (export "run") (result i32) (i32.const 0)))"""

#: A WASI command whose ``_start`` writes a byte to stdout (the host's write opens the gate)
#: and loops.
COMMAND_LOOPS = """(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\\10\\00\\00\\00\\01\\00\\00\\00")
  (data (i32.const 16) "x")
  (func (export "_start")
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (loop $l (br $l))))"""


class _Ended(Exception):
    """How a test program's run ended (it answers an outcome rather than raising)."""


class _GateOutput:
    """A command's or a test program's stdout: the guest's first write opens the gate."""

    def write(self, *args: Any) -> None:
        _open_gate()

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Setup:
    """What a lane makes its runtime with; what it makes is closed after the call."""

    def __init__(self, engine: SandboxEngine, tmp: Path, monkeypatch: pytest.MonkeyPatch,
                 ) -> None:
        self.engine, self.tmp, self.monkeypatch = engine, tmp, monkeypatch
        self.made: list[Any] = []
        #: The engine whose ticker the call's deadline counts (a test program has its own).
        self.ticking = engine

    def keep(self, thing: Any) -> Any:
        self.made.append(thing)
        return thing

    def close(self) -> None:
        for thing in reversed(self.made):
            thing.close()


def _core(s: Setup, wat: str) -> Callable[[], PluginRuntime]:
    module = PluginModule.load(s.engine, bytes(wasmtime.wat2wasm(wat)))
    registry = _registry()
    return lambda: s.keep(PluginRuntime(s.engine, module, registry,  # type: ignore[arg-type]
                                        limits=Limits(timeout_ms=TIMEOUT_MS)))


def _extism(s: Setup, wat: str) -> Callable[[], Any]:
    from omnicore.extism import ExtismRuntime, host_fn

    module = PluginModule.load(s.engine, bytes(wasmtime.wat2wasm(wat)), "spin")
    opener = host_fn(name="open", signature=((), ()))(
        lambda _plugin, _inputs, _outputs: _open_gate())
    return lambda: s.keep(ExtismRuntime(s.engine, module, builtin_registry(),  # type: ignore[arg-type]
                                        limits=Limits(timeout_ms=TIMEOUT_MS),
                                        functions=[opener]))


def _component(s: Setup, source: Path, **kw: Any) -> Callable[[], Any]:
    from omnicore.sandbox.component import ComponentRuntime

    module = PluginModule.load(s.engine, source)
    kw.setdefault("registry", _registry())
    return lambda: s.keep(ComponentRuntime(s.engine, module,  # type: ignore[arg-type]
                                           Limits(timeout_ms=TIMEOUT_MS), **kw))


#: Each lane: set up on ``Setup`` and answer the call to time, which must end at its deadline
#: (its guest opening the gate first). Each says how the host calls it on the C path; on the
#: Python path (``OMNICORE_CALLPATH=python``) the same call takes that path's twin.
Lane = Callable[[Setup], Callable[[], object]]


def core_call(s: Setup) -> Callable[[], object]:
    """``Slot.call`` (C), ``RawInstance.call`` (Python): a call never seen quick."""
    rt = _core(s, RUNS_ON_INPUT)()
    return lambda: rt.call("run", b"x")


def core_call_holding_the_gil(s: Setup) -> Callable[[], object]:
    """``Slot.call`` keeping the GIL (a call seen quick; _epoch.c's callback keeps its
    deadline)."""
    rt = _core(s, RUNS_ON_INPUT)()
    for _ in range(20):
        assert rt.call("run", b"") == b""
    return lambda: rt.call("run", b"x")


def core_start(s: Setup) -> Callable[[], object]:
    """``Instance.instantiate`` (C), ``RawInstance._start_python``: the start function."""
    return _core(s, START_LOOPS)


def core_initialize(s: Setup) -> Callable[[], object]:
    """``Instance.start`` (C), the Python start: ``_initialize`` under the start's deadline."""
    return _core(s, INITIALIZE_LOOPS)


def core_metered_call(s: Setup) -> Callable[[], object]:
    """A metered call (the Python path on both)."""
    assert s.engine.fuel
    rt = _core(s, RUNS_ON_INPUT)()
    return lambda: rt.call("run", b"x")


def extism_call(s: Setup) -> Callable[[], object]:
    rt = _extism(s, EXTISM_RUNS_ON_INPUT)()
    for _ in range(20):
        rt.call("run", b"")
    return lambda: rt.call("run", b"x")


def extism_start(s: Setup) -> Callable[[], object]:
    return _extism(s, EXTISM_START_LOOPS)


def wasi_command(s: Setup) -> Callable[[], object]:
    """``sandbox.command.run_command``: what ``omnicore exec`` and a plugin's commands run."""
    module = CommandModule.load(s.engine, bytes(wasmtime.wat2wasm(COMMAND_LOOPS)), "spin")
    command = Command(limits=Limits(timeout_ms=TIMEOUT_MS))
    out = _GateOutput()
    return lambda: run_command(s.engine, module, command, out, out)  # type: ignore[arg-type]


def a_test_host_run(s: Setup) -> Callable[[], object]:
    """The test host (``omnicore test``: toolchains/testhost), a program on its own engine,
    its deadline cut to the lanes' for the test."""
    from omnicore.toolchains.testhost import program as testhost

    s.monkeypatch.setattr(testhost, "TIMEOUT_MS", TIMEOUT_MS)
    wasm = s.tmp / "loops.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(COMMAND_LOOPS))
    prog = s.keep(testhost.Program(wasm))
    assert prog.engine is not None
    s.ticking = prog.engine

    def run() -> None:
        outcome = prog.run([], _GateOutput())
        raise _Ended(f"code {outcome.code}: {outcome.trap}")
    return run


def component_c_lane(s: Setup) -> Callable[[], object]:
    """``Lane.serve`` (_complane.c) through ``Face.call_json``: a scalar."""
    rt = _component(s, wat_component("gate-spin"))()
    for _ in range(3):  # its face bound: the C lane (where built) serves the next call
        assert rt.call("spin-when", b"[0]") == b"0"
    return lambda: rt.call("spin-when", b"[1]")


def component_c_lane_string(s: Setup) -> Callable[[], object]:
    """``Lane.serve``: a string, its plain JSON lowered by the face."""
    rt = _component(s, wat_component("gate-spin"))()
    for _ in range(3):
        assert rt.call("spin-text", b'[""]') == b"0"
    return lambda: rt.call("spin-text", b'["x"]')


def component_c_plan(s: Setup) -> Callable[[], object]:
    """``Lane.serve``: a list, by the export's plan (_compvalue.c)."""
    rt = _component(s, wat_component("gate-spin"))()
    for _ in range(3):
        assert rt.call("spin-list", b"[[]]") == b"0"
    return lambda: rt.call("spin-list", b"[[1]]")


def component_first_call(s: Setup) -> Callable[[], object]:
    """The first call: its face bound by this call, then armed."""
    rt = _component(s, wat_component("gate-spin"))()
    return lambda: rt.call("spin-when", b"[1]")


def component_named_arguments(s: Setup) -> Callable[[], object]:
    """Arguments by name: parsed in Python, then ``Face.call`` (C) or ``FlatCall.call``."""
    rt = _component(s, wat_component("gate-spin"))()
    assert rt.call("spin-when", b'{"n": 0}') == b"0"
    return lambda: rt.call("spin-when", b'{"n": 1}')


def component_lowered_in_python(s: Setup) -> Callable[[], object]:
    """A string the face's JSON reader leaves to Python (an escape): ``Face.arm``, then
    canonabi's lowering through the face's realloc, ``call_core``."""
    rt = _component(s, wat_component("gate-spin"))()
    assert rt.call("spin-text", b'[""]') == b"0"
    return lambda: rt.call("spin-text", b'["\\n"]')


def component_metered_call(s: Setup) -> Callable[[], object]:
    """A metered engine: no C lane, the arguments parsed in Python and the face's ``call``
    (``_invoke_canon``)."""
    assert s.engine.fuel
    rt = _component(s, wat_component("gate-spin"))()
    assert rt.call("spin-when", b"[0]") == b"0"
    return lambda: rt.call("spin-when", b"[1]")


def component_value_api(s: Setup) -> Callable[[], object]:
    """No canonical face (a UTF-16 string): wasmtime's value API (``_invoke_raw``)."""
    rt = _component(s, wat_component("gate-spin"))()
    assert "spin-utf16" not in rt.module.flat
    assert rt.call("spin-utf16", b'[""]') == b"0"
    return lambda: rt.call("spin-utf16", b'["x"]')


def component_handler(s: Setup) -> Callable[[], object]:
    """An omnicore plugin component's handler: its ``call``'s face with bytes
    (``_invoke_handler``: the C face's ``arm``, or ``_arm`` on the Python path)."""
    rt = _component(s, wat_plugin("gate-bytes", {"name": "spin", "handlers": ["spin"]}))()
    for _ in range(3):
        assert rt.call("spin", b"") == b""
    return lambda: rt.call("spin", b"x")


def component_start(s: Setup) -> Callable[[], object]:
    """An instance's start (``_new_instance``): a core start function."""
    return _component(s, wat_component("gate-start"))


def component_with_a_descriptor_watch(s: Setup) -> Callable[[], object]:
    """The fs grant's directories watched: the store's epoch callback keeps the deadline."""
    rt = _component(s, wat_component("gate-spin"),
                    grants={"fs": {"dirs": [{"path": str(s.tmp), "guest": "/d"}]}})()
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
    "core _initialize": core_initialize,
    "core metered call": core_metered_call,
    "Extism call": extism_call,
    "Extism instance start": extism_start,
    "WASI command": wasi_command,
    "test host program": a_test_host_run,
    "component call, C lane": component_c_lane,
    "component call, C lane, a string": component_c_lane_string,
    "component call, C plan": component_c_plan,
    "component call binding its face": component_first_call,
    "component call, named arguments": component_named_arguments,
    "component call lowered in Python": component_lowered_in_python,
    "component call, metered": component_metered_call,
    "component call, value API": component_value_api,
    "component handler, bytes through its face": component_handler,
    "component instance start": component_start,
    "component with a descriptor watch": component_with_a_descriptor_watch,
}
#: The lanes run on a metered engine (fuel).
METERED = ("core metered call", "component call, metered")


@pytest.mark.parametrize("lane", list(LANES))
def test_a_deadline_armed_while_the_ticker_is_held_back_runs_in_full(
        lane: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A loaded machine deschedules the ticker's thread (or, for the Python ticker, keeps the
    # GIL from it); when it runs again it adds every period it missed at once. Here it owes
    # more than the call's whole deadline when the lane arms it, and is let go when the guest
    # starts: armed from the epoch alone, the deadline is behind the epoch the ticker then
    # catches up to and the call ends at once; counted with the ticks owed (the door), it
    # runs its full deadline.
    with SandboxEngine(epoch_tick_ms=5, fuel=lane in METERED) as engine:
        setup = Setup(engine, tmp_path, monkeypatch)
        try:
            run = LANES[lane](setup)
            ticking = setup.ticking
            behind = ticking.deadline_ticks(TIMEOUT_MS) + BEHIND
            with Gate(ticking, behind) as gate, \
                    pytest.raises((PluginError, _Ended)) as info:
                start = time.monotonic()
                try:
                    run()
                finally:
                    ran = time.monotonic() - start
        finally:
            setup.close()
    assert gate.by_guest, "the guest never ran: the gate opened at the end"
    if isinstance(info.value, _Ended):  # a test program reports the epoch's trap
        assert "interrupt" in str(info.value), info.value
    else:
        assert isinstance(info.value, (DeadlineExceeded, PluginLoadError)), info.value
        assert "deadline" in str(info.value), info.value
    assert ran > TIMEOUT_MS / 1000 - 0.005, f"ended {TIMEOUT_MS / 1000 - ran:.3f} s early"
    assert ran < TIMEOUT_MS / 1000 + 1.5, f"ended {ran - TIMEOUT_MS / 1000:.3f} s late"


def test_a_held_ticker_ticks_again_when_released() -> None:
    # The gate of the lanes above: no tick while held however far behind the ticker falls,
    # every missed one at once when let go.
    with SandboxEngine(epoch_tick_ms=5) as engine:
        with Gate(engine, 10) as gate:
            epoch, owed = engine.epoch_and_owed()
            eventually(lambda: engine.epoch_and_owed()[1] >= owed + 5, "the ticker further "
                       "behind", timeout=30, every=0.002)
            assert engine.epoch_and_owed()[0] == epoch
            gate.open()
            eventually(lambda: engine.epoch >= epoch + owed + 5, "the missed ticks added",
                       timeout=30, every=0.002)
        assert gate.by_guest
        eventually(lambda: engine.epoch_and_owed()[1] <= 1, "the ticker on time again",
                   timeout=30, every=0.002)
