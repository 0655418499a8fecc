"""The test host of ``omnicore test`` (omnicore.toolchains.testhost): a hand-written command
importing capabilities and ``omnicore:testing``, run through it as a test program is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wasmtime

from omnicore.errors import PluginLoadError
from omnicore.toolchains.testhost import Program
from omnicore.toolchains.testhost.program import Captured

# _start prints kv (empty: a fresh host), sets greeting=hi through omnicore:kv, prints kv
# again, then scripts an HTTP answer and prints what omnicore:http.request answered (the §3.3
# block, allocated with omni_alloc). With argv[1] present it traps after the first print.
PROGRAM = r"""
(module
  (import "omnicore:kv" "set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:http" "request" (func $http (param i32 i32 i32 i32) (result i64)))
  (import "omnicore:testing" "kv" (func $kv_dump (param i32 i32) (result i32)))
  (import "omnicore:testing" "http_answer" (func $answer (param i32 i32 i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 0) "greeting")
  (data (i32.const 16) "hi")
  (data (i32.const 32) "{\"status\":201,\"headers\":[[\"X-A\",\"1\"]]}")
  (data (i32.const 96) "{\"method\":\"GET\",\"url\":\"https://example.com/\"}")
  (data (i32.const 160) "pong")
  (data (i32.const 176) "\n")
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 512) (local.get $ptr))
    (i32.store (i32.const 516) (local.get $len))
    (i32.store (i32.const 520) (i32.const 176))
    (i32.store (i32.const 524) (i32.const 1))
    (drop (call $fd_write (i32.const 1) (i32.const 512) (i32.const 2) (i32.const 528))))
  (func $dump
    (call $print (i32.const 1024) (call $kv_dump (i32.const 1024) (i32.const 1024))))
  (func (export "_start")
    (local $packed i64)
    (call $dump)
    (drop (call $args (i32.const 600) (i32.const 604)))
    (if (i32.gt_u (i32.load (i32.const 600)) (i32.const 1)) (then unreachable))
    (drop (call $kv_set (i32.const 0) (i32.const 8) (i32.const 16) (i32.const 2)))
    (call $dump)
    (call $answer (i32.const 32) (i32.const 38) (i32.const 160) (i32.const 4) (i32.const 0))
    (local.set $packed (call $http (i32.const 96) (i32.const 45) (i32.const 0) (i32.const 0)))
    (call $print (i32.wrap_i64 (i64.shr_u (local.get $packed) (i64.const 32)))
                 (i32.wrap_i64 (i64.and (local.get $packed) (i64.const 0x7fffffff))))))
"""


@pytest.fixture
def program(tmp_path: Path) -> Program:
    wasm = tmp_path / "tests.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(PROGRAM))
    prog = Program(wasm)
    yield prog  # type: ignore[misc]
    prog.close()


def test_capabilities_are_the_hosts_and_each_run_starts_fresh(program: Program) -> None:
    for _ in range(2):
        out = Captured()
        assert program.run([], out).code == 0
        lines = bytes(out.data).split(b"\n")
        assert json.loads(lines[0]) == {}
        assert json.loads(lines[1]) == {"greeting": "aGk="}  # base64 of "hi"
        # The http capability's own answer block: head length, head JSON, body.
        block = b"\n".join(lines[2:])
        head_len = int.from_bytes(block[:4], "little")
        assert json.loads(block[4:4 + head_len]) == {"status": 201, "headers": {"x-a": "1"}}
        assert block[4 + head_len:].rstrip(b"\n") == b"pong"


def test_a_trap_ends_one_run_only(program: Program) -> None:
    out = Captured()
    outcome = program.run(["trap"], out)
    assert outcome.code != 0 and outcome.trap and "unreachable" in outcome.trap
    assert program.run([], Captured()).code == 0


# config_set("db.port", "5432") (C's omni_test_config), then omnicore:config.get("db.port")
# and get("") (the whole section) printed: the host's own config lookup reads the dotted path.
CONFIG = r"""
(module
  (import "omnicore:config" "get" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:testing" "config_set" (func $set (param i32 i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "db.port")
  (data (i32.const 16) "5432")
  (data (i32.const 32) "\n")
  (func $print (param $ptr i32) (param $len i32)
    (i32.store (i32.const 512) (local.get $ptr))
    (i32.store (i32.const 516) (local.get $len))
    (i32.store (i32.const 520) (i32.const 32))
    (i32.store (i32.const 524) (i32.const 1))
    (drop (call $fd_write (i32.const 1) (i32.const 512) (i32.const 2) (i32.const 528))))
  (func (export "_start")
    (call $set (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 4))
    (call $print (i32.const 1024)
                 (call $get (i32.const 0) (i32.const 7) (i32.const 1024) (i32.const 256)))
    (call $print (i32.const 1024)
                 (call $get (i32.const 0) (i32.const 0) (i32.const 1024) (i32.const 256)))))
"""


def test_a_dotted_config_key_is_a_nested_value(tmp_path: Path) -> None:
    wasm = tmp_path / "config.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(CONFIG))
    prog = Program(wasm)
    try:
        out = Captured()
        assert prog.run([], out).code == 0
    finally:
        prog.close()
    assert bytes(out.data).decode().splitlines() == ["5432", '{"db":{"port":"5432"}}']


def test_a_test_program_is_compiled_by_winch(program: Program) -> None:
    """A test binary is new on every edit: the test host compiles it with the baseline
    compiler (a fifth of Cranelift's CPU), and a trap and a deadline are the same there."""
    assert program.engine is not None and program.engine.baseline
    assert program.run([], Captured()).code == 0


# A test program whose _start ends in a tail call: Winch has no tail calls, Cranelift does.
TAIL_CALL = r"""
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func $finish (call $exit (i32.const 3)))
  (func (export "_start") (return_call $finish)))
"""


def test_what_winch_cannot_compile_cranelift_does(tmp_path: Path) -> None:
    wasm = tmp_path / "tail.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(TAIL_CALL))
    prog = Program(wasm)
    try:
        assert prog.engine is not None and not prog.engine.baseline
        assert prog.run([], Captured()).code == 3
    finally:
        prog.close()


def test_a_module_neither_compiler_takes_is_refused_by_name(tmp_path: Path) -> None:
    wasm = tmp_path / "broken.wasm"
    wasm.write_bytes(wasmtime.wat2wasm(PROGRAM)[:-7])  # cut short
    with pytest.raises(PluginLoadError, match=r"broken\.wasm is not a valid WebAssembly module"):
        Program(wasm)


def test_a_sql_connector_is_judged_by_the_grammar_of_the_kind_the_test_names() -> None:
    # As the host's connectors.<name>.kind: PostgreSQL's grammar unless the test names MySQL's
    # (omni_test_sql_kind, TestHost's sqlKinds), so MySQL's `?` is a statement only there.
    from omnicore.egress import Refused
    from omnicore.toolchains.testhost.connectors import TestDatabases
    from omnicore.toolchains.testhost.services import Answers

    answers = Answers()
    dbs = TestDatabases(answers)
    select = "SELECT sku FROM stock WHERE sku = ?"
    with pytest.raises(Refused) as refused:
        dbs.backend("pg", ("postgres",)).run("p", True, select, ["A-1"], 1e18)
    assert refused.value.status == "INVALID" and "PostgreSQL's grammar" in str(refused.value)
    dbs.set_kind("inventory", "mysql")
    answers.sql = ('{"columns":[{"name":"sku","type":"varchar"}],"rows":[["A-1"]]}', False)
    assert dbs.backend("inventory", ("postgres",)).run("p", True, select, ["A-1"], 1e18)
    with pytest.raises(ValueError, match="redis"):
        dbs.set_kind("cache", "redis")
