"""`omnicore call` as its own process against hostile plugins: it never aborts, whatever the
plugin wrote, and a broken plugin is one line of error, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import wasmtime

from tests.sandbox_fixtures import compile_wat

OMNICORE = Path(sys.executable).parent / "omnicore"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OMNICORE), *map(str, args)], capture_output=True, text=True,
                          timeout=120, check=False)


def test_concurrent_calls_of_a_wasi_plugin_never_abort_at_exit(tmp_path: Path) -> None:
    # WASI output is written on wasmtime's own threads; with Python callbacks there, about
    # half of these processes died with SIGABRT while exiting.
    wasm = tmp_path / "wasi.wasm"
    wasm.write_bytes(compile_wat("wasi"))
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: run("call", wasm, "hello"), range(24)))
    codes = [r.returncode for r in results]
    assert codes == [0] * 24, [r.stderr[-500:] for r in results if r.returncode]
    assert not any("panicked" in r.stderr for r in results)


_START = """(module
  (import "omnicore:log" "write" (func $write (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "hi")
  (func $start (call $write (i32.const 2) (i32.const PTR) (i32.const 2)))
  (start $start)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "ok") (param i32 i32) (result i64) (i64.const 0)))"""


def test_a_start_function_calling_the_host_loads(tmp_path: Path) -> None:
    # specs/abi.md §2.1: a start function may call every host function a handler may.
    wasm = tmp_path / "start.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(_START.replace("PTR", "16")))
    result = run("call", wasm, "ok")
    assert result.returncode == 0, result.stderr


def test_a_start_function_refused_by_the_host_is_one_line_of_error(tmp_path: Path) -> None:
    wasm = tmp_path / "start.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(_START.replace("PTR", "0x7fff0000")))
    result = run("call", wasm, "ok")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "KeyError" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error")]
    assert len(errors) == 1, result.stderr
    assert "'(start)' trapped: host function omnicore:log.write: out-of-bounds" in errors[0]
