"""The WebAssembly glue that turns ruby.wasm (a reactor speaking the JS bridge's ABI) into an
omnicore ABI v1 module, written as WAT and parsed with the interpreter's own text.

ruby.wasm imports the ``rb-js-abi-host`` functions that ``require "js"`` calls and two
``canonical_abi`` resource functions. The glue defines them inside the module instead:

- the resource functions are the identity, so a Ruby value's handle is its ``VALUE``;
- the "JS" values are 16-byte blocks (``kind``, ``ptr``, ``len``, ``id``) from ``malloc``:
  bytes (a string given to or returned from the host), a number, a host function, the one
  global object and the handler's input (the host's buffer, borrowed, never freed);
- ``JS.global[:"@"]`` is the input, ``JS.global.call(:"A" + n, *args)`` calls the host
  function numbered ``n`` in :data:`HOST_FUNCTIONS`. Every argument is a Ruby String: byte
  arguments as they are, integers packed as 8 bytes little-endian. The answer is one
  String: the status as 8 bytes little-endian (``i64``), then the data, if any. (A float
  argument is its 8 bytes, ``[x].pack("E")``.)

The handlers ``omni_h0`` … are the ABI's ``(ptr, len) -> i64``: each calls the Ruby dispatcher
(``Omnicore::Dispatcher#call(index)``) through ``rb-funcallv-protect``, which runs Ruby under
ruby.wasm's own unwinding loop (setjmp, GC stack scans), and answers its String: a first byte
``0`` for output, ``1`` for an error message, then the bytes. ``omni_init`` (the pre-initializer
run once at build time, then snapshotted) starts the interpreter and loads ``/omnicore/boot.rb``.

The ``fs`` grant's directories (WASI preopens, specs/abi.md §6) are the instance's, not the
build's: wasi-libc learned its preopens (the build's ``/omnicore`` and placeholders, fds 3 to
``2 + MAX_DIRS``) while the interpreter started, and wasi-vfs maps those fds straight to the
host's. The first call of an instance drops them from wasi-libc's table and registers the
directories the host preopened there instead (:func:`libc_preopens` finds the table).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["HOST_FUNCTIONS", "MAX_DIRS", "MAX_HANDLERS", "HostFunction", "glue", "libc_preopens",
           "rewrite_head"]

#: Handler trampolines in every runtime; a plugin exports as many as it has handlers.
MAX_HANDLERS = 64
#: The fs grant's directories a Ruby plugin sees (fds 3 on): wasi-vfs gives the host's
#: preopens the fds it found when the interpreter started at build time, so the build
#: preopens this many.
MAX_DIRS = 8


@dataclass(frozen=True)
class HostFunction:
    """One ``omnicore:<namespace>`` import, as the glue calls it.

    ``args`` says what each Ruby argument becomes: ``s`` a (ptr, len) pair, ``p`` a pointer
    alone (vectors), ``i`` an ``i32``, ``I`` an ``i64`` and ``F`` an ``f64`` (from 8 bytes).
    ``answer`` says how the result comes back: ``void``, ``i32``/``i64`` (a status), ``buf``
    (the caller's buffer, ABI §3.2), ``out8`` (8 bytes written at a pointer) or ``block``
    (§3.3).
    """

    namespace: str
    name: str
    args: str
    answer: str


#: In this order: ``JS.global.call(:"A" + index)`` (sdk/ruby/lib/omnicore/host.rb numbers
#: them the same way).
HOST_FUNCTIONS: tuple[HostFunction, ...] = (
    HostFunction("log", "write", "is", "void"),
    HostFunction("log", "enabled", "i", "i32"),
    HostFunction("config", "get", "s", "buf"),
    HostFunction("kv", "get", "s", "buf"),
    HostFunction("kv", "set", "ss", "i32"),
    HostFunction("kv", "delete", "s", "i32"),
    HostFunction("kv", "incr", "sI", "out8"),
    HostFunction("kv", "list", "s", "buf"),
    HostFunction("memory", "remember", "is", "i64"),
    HostFunction("memory", "recall", "s", "buf"),
    HostFunction("memory", "forget", "I", "i32"),
    HostFunction("vectors", "upsert", "sspis", "i32"),
    HostFunction("vectors", "search", "spii", "block"),
    HostFunction("vectors", "delete", "ss", "i32"),
    HostFunction("vectors", "query", "spiis", "block"),
    HostFunction("tasks", "enqueue", "ssI", "i64"),
    HostFunction("tasks", "cancel", "I", "i32"),
    HostFunction("http", "request", "ss", "block"),
    HostFunction("events", "publish", "ss", "i32"),
    HostFunction("secrets", "get", "s", "buf"),
    HostFunction("sql", "query", "ss", "block"),
    HostFunction("sql", "execute", "ss", "block"),
    HostFunction("sql", "begin", "s", "i64"),
    HostFunction("sql", "commit", "I", "i32"),
    HostFunction("sql", "rollback", "I", "i32"),
    HostFunction("redis", "command", "ss", "block"),
    HostFunction("mcp", "progress", "FFs", "i32"),
    HostFunction("mcp", "ask", "s", "block"),
    # omnicore:testing (toolchains/testhost/control.py): imported by the every-namespace
    # runtime ``omnicore test`` runs, never by a plugin's (no plugin names the namespace).
    HostFunction("testing", "reset", "", "void"),
    HostFunction("testing", "set_config", "s", "i32"),
    HostFunction("testing", "set_log_level", "i", "void"),
    HostFunction("testing", "set_secret", "ssi", "void"),
    HostFunction("testing", "kv_set", "ss", "void"),
    HostFunction("testing", "http_answer", "ssi", "void"),
    HostFunction("testing", "sql_answer", "si", "void"),
    HostFunction("testing", "logs", "", "buf"),
    HostFunction("testing", "kv", "", "buf"),
    HostFunction("testing", "events", "", "buf"),
    HostFunction("testing", "tasks", "", "buf"),
    HostFunction("testing", "sql_statements", "", "buf"),
    HostFunction("testing", "redis_data", "", "buf"),
)

_WASM_PARAMS = {"s": "i32 i32", "p": "i32", "i": "i32", "I": "i64", "F": "f64"}
_RESULT = {"void": "", "i32": "(result i32)", "i64": "(result i64)", "buf": "(result i32)",
           "out8": "(result i32)", "block": "(result i64)"}
_EXTRA = {"buf": " i32 i32", "out8": " i32"}

#: Written once at start-up into the interpreter's heap: ruby's argv, the boot code, the
#: method name and the message for an exception the dispatcher did not catch.
_ARGV = ("ruby", "--disable-gems", "-EUTF-8", "-e_=0")
_BOOT = ('begin; load "/omnicore/boot.rb"; Omnicore::DISPATCHER; rescue Exception => e; '
         '$stderr.puts("#{e.class}: #{e.message}\\n  '
         '#{Array(e.backtrace).first(8).join("\\n  ")}"); raise; end')
_CALL = "call"
#: The globals the glue adds (after the interpreter's own).
_GLUE_GLOBALS = 6
_UNCAUGHT = "the Ruby handler raised past the SDK's dispatcher (see the plugin's log)"


def _import_name(fn: HostFunction) -> str:
    return f"$omni_import_{fn.namespace}_{fn.name}"


def _imports(namespaces: set[str]) -> str:
    lines = []
    for fn in HOST_FUNCTIONS:
        if fn.namespace not in namespaces:
            continue
        params = " ".join(_WASM_PARAMS[a] for a in fn.args) + _EXTRA.get(fn.answer, "")
        lines.append(f'  (import "omnicore:{fn.namespace}" "{fn.name}" (func {_import_name(fn)} '
                     f'(param {params}) {_RESULT[fn.answer]}))')
    return "\n".join(lines) + "\n"


def _host_call(index: int, fn: HostFunction) -> str:
    """``$omni_host_N(args, argc) -> value``: the import called with the Ruby arguments."""
    body = [f"  (func $omni_host_{index} (param $args i32) (param $argc i32) (result i32)",
            "    (local $n i32) (local $cap i32) (local $buf i32) (local $r i64)",
            f"    (if (i32.ne (local.get $argc) (i32.const {len(fn.args)})) (then unreachable))"]
    operands = []
    for i, kind in enumerate(fn.args):
        value = f"(i32.load (i32.add (local.get $args) (i32.const {4 * i})))"
        if kind == "s":
            operands += [f"(i32.load offset=4 {value})", f"(i32.load offset=8 {value})"]
        elif kind == "p":
            operands.append(f"(i32.load offset=4 {value})")
        elif kind == "i":
            operands.append(f"(i32.wrap_i64 (call $omni_number {value}))")
        elif kind == "F":
            operands.append(f"(f64.reinterpret_i64 (call $omni_number {value}))")
        else:
            operands.append(f"(call $omni_number {value})")
    call = f"(call {_import_name(fn)} {' '.join(operands)}"
    if fn.answer == "void":
        body.append(f"    {call})")
        body.append("    (call $omni_answer (i64.const 0) (i32.const 0) (i32.const 0))")
    elif fn.answer in ("i32", "i64"):
        status = f"{call})" if fn.answer == "i64" else f"(i64.extend_i32_s {call}))"
        body.append(f"    (call $omni_answer {status} (i32.const 0) (i32.const 0))")
    elif fn.answer == "out8":
        body += ["    (local.set $buf (call $omni_malloc (i32.const 16)))",
                 f"    (i64.store (local.get $buf) (i64.extend_i32_s {call} "
                 "(i32.add (local.get $buf) (i32.const 8)))))",
                 "    (call $omni_value (i32.const 1) (local.get $buf) (i32.const 16))"]
    elif fn.answer == "buf":
        # The caller's buffer (§3.2): try 1 KiB, then exactly what the host said it needs.
        body += ["    (local.set $cap (i32.const 1024))",
                 "    (block $done (loop $again",
                 "      (local.set $buf",
                 "        (call $omni_malloc (i32.add (local.get $cap) (i32.const 8))))",
                 f"      (local.set $n {call} (i32.add (local.get $buf) (i32.const 8)) "
                 "(local.get $cap)))",
                 "      (br_if $done (i32.le_s (local.get $n) (local.get $cap)))",
                 "      (call $free (local.get $buf))",
                 "      (local.set $cap (local.get $n))",
                 "      (br $again)))",
                 "    (i64.store (local.get $buf) (i64.extend_i32_s (local.get $n)))",
                 "    (call $omni_value (i32.const 1) (local.get $buf) (i32.add (i32.const 8) "
                 "(select (local.get $n) (i32.const 0) (i32.gt_s (local.get $n) (i32.const 0)))))"]
    else:  # block (§3.3): copied into the answer, the host's block freed
        body += [f"    (local.set $r {call}))",
                 "    (local.set $buf (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32))))",
                 "    (local.set $n (i32.and (i32.wrap_i64 (local.get $r)) "
                 "(i32.const 0x7fffffff)))",
                 "    (local.set $cap (call $omni_answer (i64.extend_i32_u (i32.wrap_i64 "
                 "(i64.shr_u (i64.and (local.get $r) (i64.const 0x80000000)) (i64.const 31)))) "
                 "(local.get $buf) (local.get $n)))",
                 "    (if (local.get $n) (then (call $free (local.get $buf))))",
                 "    (local.get $cap)"]
    body.append("  )")
    return "\n".join(body)


def _consts() -> tuple[bytes, dict[str, tuple[int, int]]]:
    """The start-up strings as one passive data segment, and where each one is in it."""
    blob, where = b"", {}
    for key, text in [*((f"argv{i}", a) for i, a in enumerate(_ARGV)),
                      ("boot", _BOOT), ("call", _CALL), ("uncaught", "\x01" + _UNCAUGHT)]:
        data = text.encode()
        where[key] = (len(blob), len(data))
        blob += data + b"\0"  # ruby_init reads its argv as C strings
    return blob, where


def _wat_bytes(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7f and b not in (0x22, 0x5c) else f"\\{b:02x}"
                   for b in data)


def libc_preopens(text: bytes) -> tuple[int, int]:
    """The addresses of wasi-libc's preopen count and table pointer in the interpreter's
    WAT: the first two statics ``internal_register_preopened_fd_unlocked`` loads are the
    count and the capacity, the third (stored when the table grows) the table."""
    start = text.index(b"\n  (func $internal_register_preopened_fd_unlocked ")
    body = text[start:text.index(b"\n  (func ", start + 1)].decode()
    found: list[int] = []
    for at in re.findall(r"i32\.const (\d{5,})\n\s*i32\.(?:load|store)\b", body):
        if int(at) not in found:
            found.append(int(at))
    if len(found) != 3:
        raise ValueError(f"wasi-libc's preopen table not found in the interpreter ({found})")
    return found[0], found[2]


def _fs_refresh(preopens: tuple[int, int]) -> str:
    """``$omni_fs_refresh``: wasi-libc's table rid of the build's preopens (fds 3 to
    ``2 + MAX_DIRS``), and given the instance's."""
    count, table = preopens
    return f"""
  (func $omni_fs_refresh (local $i i32) (local $j i32) (local $n i32) (local $table i32)
      (local $at i32) (local $fd i32) (local $stat i32) (local $name i32) (local $len i32)
    (local.set $n (i32.load (i32.const {count})))
    (local.set $table (i32.load (i32.const {table})))
    (block $kept (loop $each
      (br_if $kept (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $at (i32.add (local.get $table) (i32.shl (local.get $i) (i32.const 3))))
      (if (i32.lt_u (i32.sub (i32.load offset=4 (local.get $at)) (i32.const 3))
                    (i32.const {MAX_DIRS}))
        (then (call $free (i32.load (local.get $at))))
        (else
          (i64.store (i32.add (local.get $table) (i32.shl (local.get $j) (i32.const 3)))
                     (i64.load (local.get $at)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each)))
    (i32.store (i32.const {count}) (local.get $j))
    (local.set $stat (call $omni_malloc (i32.const 8)))
    (local.set $fd (i32.const 3))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $fd) (i32.const {3 + MAX_DIRS})))
      (if (i32.eqz (call $__wasi_fd_prestat_get (local.get $fd) (local.get $stat)))
        (then (if (i32.eqz (i32.load8_u (local.get $stat)))
          (then
            (local.set $len (i32.load offset=4 (local.get $stat)))
            (local.set $name (call $omni_malloc (i32.add (local.get $len) (i32.const 1))))
            (if (i32.eqz (call $__wasi_fd_prestat_dir_name (local.get $fd) (local.get $name)
                                                          (local.get $len)))
              (then
                (i32.store8 (i32.add (local.get $name) (local.get $len)) (i32.const 0))
                (drop (call $__wasilibc_register_preopened_fd (local.get $fd)
                                                              (local.get $name)))))
            (call $free (local.get $name))))))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br $next)))
    (call $free (local.get $stat)))
"""


def _glue(namespaces: set[str], globals_before: int, preopens: tuple[int, int]) -> str:
    blob, where = _consts()
    # Every global exported, so the snapshot can read it (they go again in the plugin).
    global_exports = "\n".join(f'  (export "omni_g{i}" (global {i}))'
                               for i in range(globals_before + _GLUE_GLOBALS))
    argv = "\n".join(
        f"    (i32.store offset={8 * i} (local.get $argv) (i32.add (local.get $consts) "
        f"(i32.const {where[f'argv{i}'][0]})))\n"
        f"    (i32.store offset={8 * i + 4} (local.get $argv) (i32.const {where[f'argv{i}'][1]}))"
        for i in range(len(_ARGV)))
    hosts = [(i, fn) for i, fn in enumerate(HOST_FUNCTIONS) if fn.namespace in namespaces]
    calls = "\n".join(_host_call(i, fn) for i, fn in hosts)
    # reflect-apply's dispatch on the host function's number: unknown numbers trap.
    # br_table to $hN lands after block $hN's end: $h0 is the innermost block.
    cases = "".join(f"(block $h{i} " for i in reversed(range(len(HOST_FUNCTIONS))))
    targets = " ".join(f"$h{i}" for i in range(len(HOST_FUNCTIONS)))
    arms = "\n".join(
        f"      ) (return (call $omni_apply_done (local.get $ret) "
        f"(call $omni_host_{i} (local.get $args) (local.get $argc))))"
        if fn.namespace in namespaces else "      ) unreachable"
        for i, fn in enumerate(HOST_FUNCTIONS))
    handlers = "\n".join(
        f"  (func $omni_h{i} (param i32 i32) (result i64) "
        f"(call $omni_dispatch (i32.const {i}) (local.get 0) (local.get 1)))\n"
        f'  (export "omni_h{i}" (func $omni_h{i}))' for i in range(MAX_HANDLERS))
    uncaught_at, uncaught_len = where["uncaught"]
    return f"""
  (global $omni_statics (mut i32) (i32.const 0))
  (global $omni_consts (mut i32) (i32.const 0))
  (global $omni_recv (mut i32) (i32.const 0))
  (global $omni_mid (mut i32) (i32.const 0))
  (global $omni_out (mut i32) (i32.const 0))
  ;; 0 in the snapshot: the instance's first call refreshes wasi-libc's preopens.
  (global $omni_fs_ready (mut i32) (i32.const 0))
{_fs_refresh(preopens)}
  (func $omni_malloc (param $n i32) (result i32) (local $p i32)
    (local.set $p (call $malloc (local.get $n)))
    (if (i32.eqz (local.get $p)) (then unreachable))
    (local.get $p))
  (func $omni_value (param $kind i32) (param $ptr i32) (param $len i32) (result i32) (local $v i32)
    (local.set $v (call $omni_malloc (i32.const 16)))
    (i32.store (local.get $v) (local.get $kind))
    (i32.store offset=4 (local.get $v) (local.get $ptr))
    (i32.store offset=8 (local.get $v) (local.get $len))
    (i32.store offset=12 (local.get $v) (i32.const 0))
    (local.get $v))
  (func $omni_copy (param $src i32) (param $len i32) (result i32) (local $p i32)
    (local.set $p (call $omni_malloc (select (local.get $len) (i32.const 1) (local.get $len))))
    (memory.copy (local.get $p) (local.get $src) (local.get $len))
    (local.get $p))
  ;; An answer: the status (8 bytes) then the data.
  (func $omni_answer (param $status i64) (param $src i32) (param $len i32) (result i32)
      (local $p i32)
    (local.set $p (call $omni_malloc (i32.add (local.get $len) (i32.const 8))))
    (i64.store (local.get $p) (local.get $status))
    (memory.copy (i32.add (local.get $p) (i32.const 8)) (local.get $src) (local.get $len))
    (call $omni_value (i32.const 1) (local.get $p) (i32.add (local.get $len) (i32.const 8))))
  ;; An integer argument: 8 bytes little-endian (a shorter String is a bug in the SDK).
  (func $omni_number (param $v i32) (result i64)
    (if (i32.lt_u (i32.load offset=8 (local.get $v)) (i32.const 8)) (then unreachable))
    (i64.load (i32.load offset=4 (local.get $v))))
  (func $omni_variant (param $ret i32) (param $tag i32) (param $value i32)
    (i32.store8 (local.get $ret) (local.get $tag))
    (i32.store offset=4 (local.get $ret) (local.get $value)))
  (func $omni_apply_done (param $ret i32) (param $value i32)
    (call $omni_variant (local.get $ret) (i32.const 0) (local.get $value)))
  (func $omni_fail (param $ret i32)
    (call $omni_variant (local.get $ret) (i32.const 1)
      (call $omni_value (i32.const 1) (call $omni_malloc (i32.const 1)) (i32.const 0))))

  ;; rb-js-abi-host, as `require "js"` calls it.
  (func $rb_wasm_throw_prohibit_rewind_exception (param i32 i32) unreachable)
  (func $__resource_js_abi_value_drop (param $v i32) (local $kind i32)
    (local.set $kind (i32.load (local.get $v)))
    (if (i32.ge_u (local.get $kind) (i32.const 4)) (then (return)))
    (if (i32.eq (local.get $kind) (i32.const 1)) (then (call $free (i32.load offset=4
        (local.get $v)))))
    (call $free (local.get $v)))
  (func $__wasm_import_rb_js_abi_host_eval_js (param i32 i32 i32) (call $omni_fail (local.get 2)))
  (func $__wasm_import_rb_js_abi_host_is_js (param i32) (result i32) (i32.const 1))
  (func $__wasm_import_rb_js_abi_host_instance_of (param i32 i32) (result i32) (i32.const 0))
  (func $__wasm_import_rb_js_abi_host_global_this (result i32) (global.get $omni_statics))
  (func $__wasm_import_rb_js_abi_host_int_to_js_number (param i32) (result i32)
    (call $omni_value (i32.const 2) (local.get 0) (i32.const 0)))
  (func $__wasm_import_rb_js_abi_host_float_to_js_number (param f64) (result i32)
    (call $omni_value (i32.const 2) (i32.trunc_sat_f64_s (local.get 0)) (i32.const 0)))
  (func $__wasm_import_rb_js_abi_host_string_to_js_string (param i32 i32) (result i32)
    (call $omni_value (i32.const 1) (call $omni_copy (local.get 0) (local.get 1)) (local.get 1)))
  (func $__wasm_import_rb_js_abi_host_bool_to_js_bool (param i32) (result i32)
    (call $omni_value (i32.const 2) (local.get 0) (i32.const 0)))
  (func $__wasm_import_rb_js_abi_host_proc_to_js_function (param i32) (result i32) unreachable)
  (func $__wasm_import_rb_js_abi_host_rb_object_to_js_rb_value (param i32) (result i32) unreachable)
  (func $__wasm_import_rb_js_abi_host_js_value_to_string (param $v i32) (param $ret i32)
      (local $kind i32)
    (local.set $kind (i32.load (local.get $v)))
    (if (i32.or (i32.eq (local.get $kind) (i32.const 1)) (i32.eq (local.get $kind) (i32.const 5)))
      (then
        (i32.store (local.get $ret) (call $omni_copy (i32.load offset=4 (local.get $v))
                                                     (i32.load offset=8 (local.get $v))))
        (i32.store offset=4 (local.get $ret) (i32.load offset=8 (local.get $v))))
      (else (i32.store (local.get $ret) (i32.const 0)) (i32.store offset=4 (local.get $ret)
          (i32.const 0)))))
  (func $__wasm_import_rb_js_abi_host_js_value_to_integer (param $v i32) (param $ret i32)
    (i32.store8 (local.get $ret) (i32.const 0))
    (f64.store offset=8 (local.get $ret) (f64.convert_i32_s (i32.load offset=4 (local.get $v)))))
  (func $__wasm_import_rb_js_abi_host_export_js_value_to_host (param i32))
  (func $__wasm_import_rb_js_abi_host_import_js_value_from_host (result i32)
      (global.get $omni_statics))
  (func $__wasm_import_rb_js_abi_host_js_value_typeof (param i32) (param $ret i32)
    (i32.store (local.get $ret) (i32.const 0)) (i32.store offset=4 (local.get $ret) (i32.const 0)))
  (func $__wasm_import_rb_js_abi_host_js_value_equal (param i32 i32) (result i32)
    (i32.eq (local.get 0) (local.get 1)))
  (func $__wasm_import_rb_js_abi_host_js_value_strictly_equal (param i32 i32) (result i32)
    (i32.eq (local.get 0) (local.get 1)))
  (func $__wasm_import_rb_js_abi_host_reflect_apply
    (param $target i32) (param $this i32) (param $args i32) (param $argc i32) (param $ret i32)
    (if (i32.ne (i32.load (local.get $target)) (i32.const 3)) (then (return (call $omni_fail
        (local.get $ret)))))
    {cases}(br_table {targets} (i32.load offset=12 (local.get $target)))
{arms})
  (func $__wasm_import_rb_js_abi_host_reflect_get (param $target i32) (param $key i32)
      (param $len i32) (param $ret i32)
    (local $c i32)
    (if (i32.eqz (local.get $len)) (then (return (call $omni_fail (local.get $ret)))))
    (local.set $c (i32.load8_u (local.get $key)))
    (if (i32.eq (local.get $c) (i32.const 64))
      (then (return (call $omni_variant (local.get $ret) (i32.const 0)
                          (i32.add (global.get $omni_statics) (i32.const 16))))))
    (if (i32.or (i32.lt_u (local.get $c) (i32.const 65))
                (i32.ge_u (local.get $c) (i32.const {65 + len(HOST_FUNCTIONS)})))
      (then (return (call $omni_fail (local.get $ret)))))
    (local.set $c (call $omni_value (i32.const 3) (i32.const 0) (i32.const 0)))
    (i32.store offset=12 (local.get $c) (i32.sub (i32.load8_u (local.get $key)) (i32.const 65)))
    (call $omni_variant (local.get $ret) (i32.const 0) (local.get $c)))
  (func $__wasm_import_rb_js_abi_host_reflect_set (param i32 i32 i32 i32 i32) (call $omni_fail
      (local.get 4)))
  ;; A Ruby value's handle is the VALUE itself.
  (func $__resource_rb_abi_value_new (param i32) (result i32) (local.get 0))
  (func $__resource_rb_abi_value_get (param i32) (result i32) (local.get 0))

{calls}

  ;; The ABI's allocator pair (§1.1): the interpreter's malloc.
  (func $omni_alloc (param i32) (result i32) (call $malloc (local.get 0)))
  (func $omni_free (param i32 i32) (call $free (local.get 0)))
  (export "omni_alloc" (func $omni_alloc))
  (export "omni_free" (func $omni_free))

  ;; One call: Dispatcher#call(index); its String is tag byte + bytes, kept until the next call.
  (func $omni_dispatch (param $index i32) (param $ptr i32) (param $len i32) (result i64)
    (local $r i32) (local $value i32) (local $out i32) (local $n i32)
    (if (i32.eqz (global.get $omni_fs_ready))
      (then (global.set $omni_fs_ready (i32.const 1)) (call $omni_fs_refresh)))
    (if (global.get $omni_out) (then (call $free (global.get $omni_out)) (global.set $omni_out
        (i32.const 0))))
    (i32.store offset=20 (global.get $omni_statics) (local.get $ptr))
    (i32.store offset=24 (global.get $omni_statics) (local.get $len))
    (i32.store offset=32 (global.get $omni_statics)
      (i32.add (i32.shl (local.get $index) (i32.const 1)) (i32.const 1)))
    (local.set $r (call $__wasm_export_rb_abi_guest_rb_funcallv_protect (global.get $omni_recv)
      (global.get $omni_mid) (i32.add (global.get $omni_statics) (i32.const 32)) (i32.const 1)))
    (if (i32.load offset=4 (local.get $r))
      (then (return (i64.or (i64.shl (i64.extend_i32_u (i32.add (global.get $omni_consts)
                                                                (i32.const {uncaught_at + 1})))
                                     (i64.const 32))
                            (i64.const {0x80000000 + uncaught_len - 1})))))
    (local.set $value (i32.load (local.get $r)))
    (local.set $r (call $__wasm_export_rb_abi_guest_rstring_ptr (local.get $value)))
    (local.set $out (i32.load (local.get $r)))
    (local.set $n (i32.load offset=4 (local.get $r)))
    (call $__resource_rb_abi_value_dtor (local.get $value))
    (global.set $omni_out (local.get $out))
    (if (i32.eqz (local.get $n)) (then (return (i64.const 0))))
    (i64.or (i64.shl (i64.extend_i32_u (i32.add (local.get $out) (i32.const 1))) (i64.const 32))
            (i64.or (i64.shl (i64.extend_i32_u (i32.and (i32.load8_u (local.get $out))
                (i32.const 1)))
                             (i64.const 31))
                    (i64.extend_i32_u (i32.sub (local.get $n) (i32.const 1))))))
{handlers}

  ;; Run once by wizer at build time: the interpreter started, the plugin loaded.
  (func $omni_init (local $consts i32) (local $argv i32) (local $r i32)
    (call $__wasi_vfs_rt_init)
    (global.set $omni_statics (call $omni_malloc (i32.const 48)))
    (memory.fill (global.get $omni_statics) (i32.const 0) (i32.const 48))
    (i32.store (global.get $omni_statics) (i32.const 4))
    (i32.store offset=16 (global.get $omni_statics) (i32.const 5))
    (local.set $consts (call $omni_malloc (i32.const {len(blob)})))
    (memory.init $omni_consts (local.get $consts) (i32.const 0) (i32.const {len(blob)}))
    (global.set $omni_consts (local.get $consts))
    (local.set $argv (call $omni_malloc (i32.const {8 * len(_ARGV)})))
{argv}
    (call $__wasm_export_rb_abi_guest_ruby_init (local.get $argv) (i32.const {len(_ARGV)}))
    (call $__wasm_export_rb_abi_guest_ruby_init_loadpath)
    (local.set $r (call $__wasm_export_rb_abi_guest_rb_eval_string_protect
      (i32.add (local.get $consts) (i32.const {where['boot'][0]})) (i32.const {where['boot'][1]})))
    (if (i32.load offset=4 (local.get $r)) (then unreachable))
    (global.set $omni_recv (i32.load (local.get $r)))
    (global.set $omni_mid (call $__wasm_export_rb_abi_guest_rb_intern
      (i32.add (local.get $consts) (i32.const {where['call'][0]})) (i32.const {where['call'][1]}))))
  (export "omni_init" (func $omni_init))
{global_exports}
"""


_DROPPED_IMPORT = re.compile(r'^  \(import "(rb-js-abi-host|canonical_abi)" ')
_EXPORT = re.compile(r'^  \(export "')
_WASI_IMPORT = re.compile(r'^  \(import "wasi_snapshot_preview1" ')


def rewrite_head(lines: list[str], namespaces: set[str]) -> list[str]:
    """The head of the interpreter's WAT (``wasm-tools print`` of the named build, up to its
    first function) with the JS bridge's imports out, the plugin's ``omnicore:`` imports in,
    and every export but ``memory`` gone (``_initialize`` above all: the snapshot ran it)."""
    out: list[str] = []
    for line in lines:
        if _DROPPED_IMPORT.match(line):
            continue
        if _EXPORT.match(line) and not line.startswith('  (export "memory"'):
            continue
        out.append(line)
    last = max((i for i, line in enumerate(out) if _WASI_IMPORT.match(line)), default=None)
    if last is None:
        raise ValueError("the interpreter's WAT has no WASI imports to put the glue beside")
    # The start-up strings as data segment 0: the snapshot keeps it first, so memory.init's
    # index still names it.
    consts = f'  (data $omni_consts "{_wat_bytes(_consts()[0])}")'
    out.insert(last + 1, _imports(namespaces) + consts)
    return out


def glue(namespaces: set[str], head: list[str], preopens: tuple[int, int]) -> str:
    """The glue's functions, globals and exports, for the end of the module whose rewritten
    head is ``head`` (``preopens``: :func:`libc_preopens` of its text)."""
    return _glue(namespaces, sum(1 for line in head if line.startswith("  (global ")), preopens)
