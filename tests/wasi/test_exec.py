"""``omnicore exec``: a WASI command module run once (cli/execute.py over sandbox/command.py).

Each case is a hand-written command module run by the real CLI in a subprocess: arguments,
environment, directories read-write and read-only, the exit code, stdout and stderr passed
through, and the three ways a run fails (a trap, the deadline, the memory limit), each with
one ``Error:`` line and its own exit code. tests/wasi/adapter_omnicore.py runs the official
WebAssembly/wasi-testsuite through the same command.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime

from omnicore.cli.execute import EXIT_CANNOT_RUN, EXIT_DEADLINE, EXIT_TRAP

WASI = "wasi_snapshot_preview1"

#: argv or environ (NUL-separated strings) written to stdout.
_LIST = f"""(module
  (import "{WASI}" "{{kind}}_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "{WASI}" "{{kind}}_get" (func $get (param i32 i32) (result i32)))
  (import "{WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    (drop (call $get (i32.const 1024) (i32.const 4096)))
    (i32.store (i32.const 16) (i32.const 4096))
    (i32.store (i32.const 20) (i32.load (i32.const 4)))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))"""

_STDIO = f"""(module
  (import "{WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "to stdout\\n")
  (data (i32.const 200) "to stderr\\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.const 10))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 200))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))))"""

_EXIT = f"""(module
  (import "{WASI}" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7))))"""

#: Creates out.txt in the first preopen and writes "hi" to it; exits with path_open's errno.
_WRITE_FILE = f"""(module
  (import "{WASI}" "path_open" (func $open
    (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "{WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "{WASI}" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "out.txt")
  (data (i32.const 200) "hi")
  (func (export "_start") (local $errno i32)
    (local.set $errno (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 7)
      (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 40)))
    (if (local.get $errno) (then (call $exit (local.get $errno))))
    (i32.store (i32.const 0) (i32.const 200)) (i32.store (i32.const 4) (i32.const 2))
    (drop (call $write (i32.load (i32.const 40)) (i32.const 0) (i32.const 1) (i32.const 8)))))"""

#: The name the first preopen has for the guest, to stdout.
_PREOPEN_NAME = f"""(module
  (import "{WASI}" "fd_prestat_get" (func $stat (param i32 i32) (result i32)))
  (import "{WASI}" "fd_prestat_dir_name" (func $name (param i32 i32 i32) (result i32)))
  (import "{WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $stat (i32.const 3) (i32.const 32)))
    (drop (call $name (i32.const 3) (i32.const 100) (i32.load (i32.const 36))))
    (i32.store (i32.const 0) (i32.const 100)) (i32.store (i32.const 4) (i32.load (i32.const 36)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""

_TRAP = '(module (memory (export "memory") 1) (func (export "_start") unreachable))'
_SPIN = '(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))'
#: Grows its memory a page at a time; traps once a growth is refused.
_GROW = """(module (memory (export "memory") 1)
  (func (export "_start")
    (loop (br_if 0 (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))"""
_REACTOR = '(module (memory (export "memory") 1) (func (export "run")))'


def _module(tmp_path: Path, wat: str, name: str = "cmd") -> Path:
    path = tmp_path / f"{name}.wasm"
    path.write_bytes(wasmtime.wat2wasm(wat))
    return path


def _exec(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "omnicore.cli", "exec", *map(str, args)],
                          capture_output=True, timeout=60, check=False)


def _error_line(run: subprocess.CompletedProcess[bytes]) -> str:
    lines = run.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), run.stderr
    return lines[0]


def test_arguments_follow_the_program_name(tmp_path: Path) -> None:
    wasm = _module(tmp_path, _LIST.format(kind="args"))
    run = _exec(wasm, "--", "one", "two words", "--flag")
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{wasm}\0one\0two words\0--flag\0".encode()


def test_the_guest_sees_only_the_environment_it_is_given(tmp_path: Path) -> None:
    wasm = _module(tmp_path, _LIST.format(kind="environ"))
    run = _exec("--env", "A=1", "--env", "B=x=y", wasm)
    assert run.returncode == 0, run.stderr
    assert run.stdout == b"A=1\0B=x=y\0"


def test_stdout_and_stderr_pass_through(tmp_path: Path) -> None:
    run = _exec(_module(tmp_path, _STDIO))
    assert (run.returncode, run.stdout, run.stderr) == (0, b"to stdout\n", b"to stderr\n")


def test_proc_exit_is_the_exit_code(tmp_path: Path) -> None:
    run = _exec(_module(tmp_path, _EXIT))
    assert (run.returncode, run.stderr) == (7, b"")


def test_a_writable_dir_takes_a_new_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    run = _exec("--dir", f"{data}::/data", _module(tmp_path, _WRITE_FILE))
    assert run.returncode == 0, run.stderr
    assert (data / "out.txt").read_bytes() == b"hi"


def test_a_read_only_dir_refuses_to_create(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    run = _exec("--dir", f"ro:{data}::/data", _module(tmp_path, _WRITE_FILE))
    assert run.returncode == 69  # the guest exits with path_open's errno: EROFS
    assert not (data / "out.txt").exists()


@pytest.mark.parametrize(("spec", "seen"), [("{d}::/guest", b"/guest"), ("{d}", None)])
def test_a_dir_is_seen_under_its_guest_path(tmp_path: Path, spec: str, seen: bytes | None
                                            ) -> None:
    data = tmp_path / "data"
    data.mkdir()
    run = _exec("--dir", spec.format(d=data), _module(tmp_path, _PREOPEN_NAME))
    assert run.returncode == 0, run.stderr
    assert run.stdout == (seen or str(data).encode())


def test_a_trap_is_one_line_and_its_own_exit_code(tmp_path: Path) -> None:
    run = _exec(_module(tmp_path, _TRAP))
    assert run.returncode == EXIT_TRAP
    assert "unreachable" in _error_line(run)


def test_the_timeout_ends_the_run(tmp_path: Path) -> None:
    run = _exec("--timeout", "0.3", _module(tmp_path, _SPIN))
    assert run.returncode == EXIT_DEADLINE
    assert "deadline of 300 ms" in _error_line(run)


def test_the_memory_limit_holds(tmp_path: Path) -> None:
    run = _exec("--max-memory", "1MiB", _module(tmp_path, _GROW))
    assert run.returncode == EXIT_TRAP
    line = _error_line(run)
    assert "max_memory_bytes (1048576, from --max-memory)" in line


def test_a_module_that_is_not_a_command_is_refused(tmp_path: Path) -> None:
    run = _exec(_module(tmp_path, _REACTOR))
    assert run.returncode == EXIT_CANNOT_RUN
    assert "not a WASI command" in _error_line(run)


def test_a_missing_dir_is_refused(tmp_path: Path) -> None:
    run = _exec("--dir", f"{tmp_path / 'nope'}::/x", _module(tmp_path, _EXIT))
    assert run.returncode == EXIT_CANNOT_RUN
    assert "does not exist" in _error_line(run)
