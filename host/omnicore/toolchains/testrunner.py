"""The runner ``omnicore test`` uses for the languages whose tests compile to one wasm32-wasi
program (C's and Zig's): the program runs in wasmtime here, its output on ours, and what the
SDK's test host asks of ``omnicore:testing`` is answered from Python, written once for every
such language: Redis by :class:`~omnicore.toolchains.testredis.MemoryRedis` (the host's
commands, replies and refusals), and an SQL answer a test scripted checked for the host's
shape (:func:`sql_answer_problem`), both held to ``sdk/contract/host.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omnicore.toolchains.testredis import MemoryRedis

__all__ = ["run_tests", "sql_answer_problem"]


def sql_answer_problem(text: str) -> str | None:
    """Why a query's answer is not shaped as the host's (``{"columns": [{"name", "type"}...],
    "rows": [[one value per column]...]}``), or None: a plugin tested on another shape would
    pass its tests and fail live."""
    try:
        doc = json.loads(text)
    except ValueError:
        return "it is not JSON"
    if not isinstance(doc, dict):
        return "it is not an object"
    if "columns" not in doc:
        return "it has no columns"
    if "rows" not in doc:
        return "it has no rows"
    columns, rows = doc["columns"], doc["rows"]
    if not isinstance(columns, list) or not isinstance(rows, list):
        return "columns and rows are arrays"
    for column in columns:
        if not isinstance(column, dict):
            return 'a column is an object {"name", "type"}, never a bare name'
        if "name" not in column:
            return "a column has a name"
        if "type" not in column:
            return "a column has a type"
        if not isinstance(column["name"], str) or not isinstance(column["type"], str):
            return "a column's name and type are strings"
    for row in rows:
        if not isinstance(row, list):
            return "a row is an array of the columns' values"
        if len(row) != len(columns):
            return "a row has one value per column"
    return None


def run_tests(wasm: Path, args: list[str]) -> int:
    """Run a test program in wasmtime (WASI: its output on ours, ``args`` as its arguments
    after its name); its exit status (C's: the number of failed tests)."""
    import wasmtime

    engine = wasmtime.Engine()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.argv = ["tests", *args]
    wasi.inherit_stdout()
    wasi.inherit_stderr()
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    _define_testing(linker, MemoryRedis())
    instance = linker.instantiate(store, wasmtime.Module.from_file(engine, str(wasm)))
    start = instance.exports(store)["_start"]
    assert isinstance(start, wasmtime.Func)
    try:
        start(store)
    except wasmtime.ExitTrap as exc:
        return exc.code
    except wasmtime.Trap as exc:
        # The program stops at a trap: C's header names the test and prints its log.
        trapped = instance.exports(store).get("omni_test_trapped")
        if isinstance(trapped, wasmtime.Func):
            trapped(store)
        print(f"    {exc.message}\nthe tests after it did not run", flush=True)
        return 1
    return 0


def _define_testing(linker: Any, redis: MemoryRedis) -> None:
    """``omnicore:testing``: the Redis ``redis_*`` (what the SDK's test host sends a plugin's
    commands to, and what its helpers read and set keys with) and ``sql_check``. The program
    is a command: the runner never calls its exports (each call would run its constructors
    again), so an answer is copied out by a second call (``redis_reply``, ``sql_reason``)."""
    import wasmtime

    i32, i64 = wasmtime.ValType.i32(), wasmtime.ValType.i64()

    def memory(caller: Any) -> Any:
        return caller["memory"]

    def read(caller: Any, ptr: int, length: int) -> bytes:
        return bytes(memory(caller).read(caller, ptr, ptr + length))

    answer = [b""]

    def command(caller: Any, req: int, req_len: int) -> int:
        failed, answer[0] = redis.command(read(caller, req, req_len))
        return (1 << 31 if failed else 0) | len(answer[0])

    def reply(caller: Any, out: int) -> None:
        memory(caller).write(caller, answer[0], out)

    def get(caller: Any, key: int, key_len: int, out: int, cap: int) -> int:
        value = redis.value(read(caller, key, key_len))
        if value is None:
            return -1
        if len(value) <= cap:
            memory(caller).write(caller, value, out)
        return len(value)

    def ttl(caller: Any, key: int, key_len: int) -> int:
        return redis.ttl(read(caller, key, key_len))

    def put(caller: Any, key: int, key_len: int, value: int, value_len: int) -> None:
        redis.put(read(caller, key, key_len), read(caller, value, value_len))

    def sql_check(caller: Any, text: int, text_len: int) -> int:
        problem = sql_answer_problem(read(caller, text, text_len).decode("utf-8", "replace"))
        answer[0] = b"" if problem is None else problem.encode()
        return len(answer[0])

    def define(name: str, params: int, results: list[Any], fn: Any, caller: bool = True) -> None:
        linker.define_func("omnicore:testing", name, wasmtime.FuncType([i32] * params, results),
                           fn, access_caller=caller)

    define("redis_command", 2, [i64], command)
    define("redis_reply", 1, [], reply)
    define("redis_get", 4, [i32], get)
    define("redis_ttl", 2, [i64], ttl)
    define("redis_set", 4, [], put)
    define("redis_reset", 0, [], redis.clear, caller=False)
    define("sql_check", 2, [i32], sql_check)
    define("sql_reason", 1, [], reply)
