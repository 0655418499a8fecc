"""Host functions called from a module's start function (specs/abi.md §2.1, §6).

A start function runs inside instantiation, before the host has the instance's exports. It may
call every host function a handler may, under the start's deadline: the instance is in its
runtime's ``live`` map from before instantiation, and until its exports are resolved a host
function takes the memory (and ``omni_alloc``) its caller exports. The suite runs this folder
on both call paths (OMNICORE_CALLPATH=native, then python); the tests on RawInstance itself
run both in one process.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from omnicore.errors import DeadlineExceeded, GuestError, PluginLoadError
from omnicore.sandbox import (
    CapabilityRegistry,
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
    fastcall,
    hostfunc,
    wasmbin,
)
from omnicore.sandbox.fastcall import GuestFailure, GuestMemory, RawInstance
from omnicore.sandbox.hostfunc import define_host_function
from tests.sandbox_fixtures import assert_deadlines_kept

Make = Callable[..., PluginRuntime]

ROOT = Path(__file__).resolve().parents[2]
JS_TOOLS = ROOT / "build" / "js-tools" / "node_modules"
ASC = JS_TOOLS / "assemblyscript" / "bin" / "asc.js"
OUT = ROOT / "build" / "test-plugins" / "sandbox"
_START_SECTION = 8

ALLOCATOR = """
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (func $alloc (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p)
                               (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
"""

FD_WRITE = ('(import "wasi_snapshot_preview1" "fd_write" '
            "(func $fd_write (param i32 i32 i32 i32) (result i32)))")


def module(imports: str, body: str) -> bytes:
    return bytes(wasmtime.wat2wasm(f"(module {imports} {ALLOCATOR} {body})"))


def log_lines(rt: PluginRuntime) -> list[tuple[str, str]]:
    return [(line.level, line.message) for line in rt.log.since(0)]


# ---- a start function calls WASI and capabilities ------------------------------------------

#: The start function reads config "greeting" into 256.., prints it (and a newline) to stdout,
#: stores it in kv under "started" and logs through omnicore:log; "started" reads kv back.
GREETER = module(
    FD_WRITE + """
    (import "omnicore:config" "get" (func $config_get (param i32 i32 i32 i32) (result i32)))
    (import "omnicore:kv" "set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
    (import "omnicore:kv" "get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
    (import "omnicore:log" "write" (func $log (param i32 i32 i32)))""",
    """
    (data (i32.const 16) "greeting")
    (data (i32.const 32) "started")
    (data (i32.const 48) "logged from the start function")
    (global $status (mut i32) (i32.const -100))
    (func $start
      (local $n i32)
      (local.set $n (call $config_get (i32.const 16) (i32.const 8) (i32.const 256)
                                      (i32.const 200)))
      (i32.store8 (i32.add (i32.const 256) (local.get $n)) (i32.const 10))
      (i32.store (i32.const 128) (i32.const 256))
      (i32.store (i32.const 132) (i32.add (local.get $n) (i32.const 1)))
      (drop (call $fd_write (i32.const 1) (i32.const 128) (i32.const 1) (i32.const 136)))
      (global.set $status (call $kv_set (i32.const 32) (i32.const 7) (i32.const 256)
                                        (local.get $n)))
      (call $log (i32.const 2) (i32.const 48) (i32.const 30)))
    (start $start)
    (func (export "started") (param i32 i32) (result i64)
      (local $n i32)
      (if (i32.ne (global.get $status) (i32.const 0)) (then unreachable))
      (local.set $n (call $kv_get (i32.const 32) (i32.const 7) (i32.const 1024)
                                  (i32.const 200)))
      (i64.or (i64.const 0x0000040000000000) (i64.extend_i32_u (local.get $n))))""")


def test_a_start_function_prints_logs_and_uses_granted_capabilities(
        tmp_path: Path, engine: SandboxEngine, registry: CapabilityRegistry) -> None:
    rt = PluginRuntime(engine, PluginModule.load(engine, GREETER, "greeter"), registry,
                       ["kv", "config"], {"greeting": "hello from start"}, data_dir=tmp_path)
    try:
        # Its stdout and its omnicore:log line are in the plugin's log, in order.
        assert log_lines(rt) == [("info", "hello from start"),
                                 ("info", "logged from the start function")]
        # What it stored in kv during the start is there for the handler.
        assert rt.call("started", b"") == b"hello from start"
    finally:
        rt.close()


def test_a_start_function_gets_a_reentrant_result(make: Make) -> None:
    # omnicore:http answers through the guest's omni_alloc (abi.md §3.3): called from the start
    # function, before the host has the instance's exports, it uses the caller's omni_alloc.
    wasm = module(
        '(import "omnicore:http" "request" (func $req (param i32 i32 i32 i32) (result i64)))',
        """
        (data (i32.const 16) "not json")
        (global $got (mut i64) (i64.const 0))
        (func $start (global.set $got (call $req (i32.const 16) (i32.const 8) (i32.const 0)
                                                 (i32.const 0))))
        (start $start)
        (func (export "got") (param i32 i32) (result i64) (global.get $got))""")
    rt = make(wasm, grants={"http": {}})
    with pytest.raises(GuestError, match="INVALID: request is not JSON"):
        rt.call("got", b"")


def test_a_host_function_refusing_the_start_fails_the_load_with_its_words(make: Make) -> None:
    # An out-of-bounds pointer traps (abi.md §3.1) in the start function as in a handler.
    wasm = module(FD_WRITE, """
        (func $start (drop (call $fd_write (i32.const 1) (i32.const 0x7fff0000) (i32.const 1)
                                           (i32.const 0))))
        (start $start)""")
    with pytest.raises(PluginLoadError, match=r"handler '\(start\)' trapped: host function "
                                              r"wasi_snapshot_preview1.fd_write: out-of-bounds"):
        make(wasm)


@pytest.mark.parametrize("call", [
    "(drop (call $fd_write (i32.const 1) (i32.const 64) (i32.const 0) (i32.const 72)))",
    "(drop (call $enabled (i32.const 2)))",
])
def test_a_start_function_looping_on_host_calls_ends_at_the_load_deadline(
        make: Make, call: str) -> None:
    wasm = module(FD_WRITE + ' (import "omnicore:log" "enabled" '
                             "(func $enabled (param i32) (result i32)))", f"""
        (func $start (loop $l {call} (br $l)))
        (start $start)""")
    overshoots = []
    for _ in range(3):
        began = time.monotonic()
        with pytest.raises(PluginLoadError, match=r"handler '\(start\)' exceeded its deadline "
                                                  r"of 200 ms") as info:
            make(wasm, limits=Limits(timeout_ms=200))
        overshoots.append(time.monotonic() - began - 0.2)
        assert isinstance(info.value.__context__, DeadlineExceeded)
    assert_deadlines_kept(overshoots)


# ---- a real toolchain: AssemblyScript runs top-level statements in the start function ------

def assemblyscript(source: str, *options: str) -> bytes:
    """tests/sandbox/plugins/SOURCE built with asc (``scripts/setup-toolchains.sh`` installs
    it), cached by the source and the options."""
    src = Path(__file__).parent / "plugins" / source
    digest = hashlib.sha256(src.read_bytes() + repr(options).encode()).hexdigest()[:12]
    out = OUT / f"{src.stem}-{digest}.wasm"
    if not out.is_file():
        assert ASC.is_file(), f"{ASC} is missing: run scripts/setup-toolchains.sh"
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp.wasm")  # per process: test workers race
        done = subprocess.run(
            ["node", str(ASC), src.name, "-O3", "--runtime", "stub", "--use",
             f"abort={src.stem}/abort", "--outFile", str(tmp), *options],
            cwd=src.parent, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"asc failed:\n{done.stdout}\n{done.stderr}"
        tmp.replace(out)
    return out.read_bytes()


@pytest.mark.parametrize("options", [(), ("--exportStart", "_initialize")],
                         ids=["start-section", "exported-initialize"])
def test_assemblyscript_top_level_output_lands_in_the_log(make: Make,
                                                          options: tuple[str, ...]) -> None:
    wasm = assemblyscript("toplevel.ts", *options)
    # asc's default puts the top level in the module's start section: the common case.
    starts = any(sid == _START_SECTION for sid, _, _ in wasmbin.sections(wasm))
    assert starts is not bool(options)
    rt = make(wasm, name="toplevel")
    assert log_lines(rt) == [("info", "hello from the top level"),
                             ("info", "logged from the top level")]
    assert rt.call("hello", b"") == b"hello from the top level"


# ---- the live map: registered before the start, never left behind -------------------------

PATHS = ["python", pytest.param("native", marks=pytest.mark.native)]


@pytest.fixture
def callpath(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    path: str = request.param
    if path == "python":  # host functions and the start both the ctypes way
        monkeypatch.setattr(fastcall, "_callpath", None)
        monkeypatch.setattr(hostfunc, "CALLPATH", None)
    return path


def _instance(engine: SandboxEngine, body: str, live: dict[int, RawInstance],
              seen: list[tuple[bool, bytes]], timeout_s: float = 5.0) -> RawInstance:
    """A RawInstance of a module importing ``env.ping(ptr, len) -> i32``, which records
    whether its instance was in ``live`` and the bytes at (ptr, len)."""
    def ping(_state: None, mem: GuestMemory, ptr: int, length: int) -> int:
        seen.append((live.get(mem.instance.ctx) is mem.instance, mem.read(ptr, length)))
        return 7

    keep: list[Any] = []
    linker = wasmtime.Linker(engine.wasmtime)
    define_host_function(linker, "env", "ping", ("ptr", "len"), ("i32",), ping, None, live,
                         keep)
    wasm = module('(import "env" "ping" (func $ping (param i32 i32) (result i32)))', body)
    pre = linker.instantiate_pre(wasmtime.Module(engine.wasmtime, wasm))
    inst = RawInstance(engine.wasmtime, pre, memory_limit=4 << 20,
                       deadline_ticks=engine.deadline_ticks(int(timeout_s * 1000)), fuel=None,
                       wasi=None, live=live, timeout_s=timeout_s)
    inst._keep = (keep, linker, pre)  # type: ignore[attr-defined]
    return inst


_DATA = '(data (i32.const 16) "ping")'
_PING_CALL = "(drop (call $ping (i32.const 16) (i32.const 4)))"
_PING = f"{_DATA} (func $start {_PING_CALL})"


@pytest.mark.parametrize("callpath", PATHS, indirect=True)
def test_the_start_function_finds_its_instance_in_live(engine: SandboxEngine,
                                                       callpath: str) -> None:
    live: dict[int, RawInstance] = {}
    seen: list[tuple[bool, bytes]] = []
    inst = _instance(engine, _PING + ' (start $start) (func (export "h") (param i32 i32) '
                     "(result i64) (i64.extend_i32_u (call $ping (i32.const 16) (i32.const 2))))",
                     live, seen)
    try:
        assert (inst.slot is None) == (callpath == "python")
        assert seen == [(True, b"ping")]
        assert live == {inst.ctx: inst}
        # The memory a handler's host functions get is the instance's own.
        assert inst.call(inst.func("h"), b"", 1000) == 7  # type: ignore[arg-type]
        assert seen[-1] == (True, b"pi")
    finally:
        inst.close()
    assert live == {}


#: Starts that fail after the start function called a host function.
BROKEN_AFTER_PING = {
    "the start traps": f"{_DATA} (func $start {_PING_CALL} unreachable) (start $start)",
    "_initialize traps": f'{_PING} (start $start) (func (export "_initialize") unreachable)',
    "the start passes its deadline": f"{_DATA} (func $start (loop $l {_PING_CALL} (br $l))) "
                                     "(start $start)",
}


@pytest.mark.parametrize("callpath", PATHS, indirect=True)
@pytest.mark.parametrize("case", sorted(BROKEN_AFTER_PING))
def test_a_failed_start_leaves_nothing_in_live(engine: SandboxEngine, callpath: str,
                                               case: str) -> None:
    live: dict[int, RawInstance] = {}
    seen: list[tuple[bool, bytes]] = []
    with pytest.raises(GuestFailure) as info:
        _instance(engine, BROKEN_AFTER_PING[case], live, seen, timeout_s=0.1)
    assert seen[0] == (True, b"ping")
    assert live == {}
    if case == "the start passes its deadline":  # the host function's check or the epoch's
        failure = info.value
        assert failure.deadline_hit or failure.code == wasmtime.TrapCode.INTERRUPT


@pytest.mark.parametrize("callpath", PATHS, indirect=True)
def test_a_start_without_omni_alloc_leaves_nothing_in_live(engine: SandboxEngine,
                                                           callpath: str) -> None:
    live: dict[int, RawInstance] = {}
    seen: list[bytes] = []

    def ping(_state: None, mem: GuestMemory, ptr: int, length: int) -> int:
        seen.append(mem.read(ptr, length))
        return 0

    linker = wasmtime.Linker(engine.wasmtime)
    keep: list[Any] = []
    define_host_function(linker, "env", "ping", ("ptr", "len"), ("i32",), ping, None, live, keep)
    wasm = bytes(wasmtime.wat2wasm("""(module
      (import "env" "ping" (func $ping (param i32 i32) (result i32)))
      (memory (export "memory") 1) (data (i32.const 16) "ping")
      (func $start (drop (call $ping (i32.const 16) (i32.const 4)))) (start $start))"""))
    pre = linker.instantiate_pre(wasmtime.Module(engine.wasmtime, wasm))
    with pytest.raises(ValueError, match="omni_alloc"):
        RawInstance(engine.wasmtime, pre, memory_limit=4 << 20, deadline_ticks=1000,
                    fuel=None, wasi=None, live=live)
    assert seen == [b"ping"]
    assert live == {}
