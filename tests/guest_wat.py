"""The WAT the capability tests' guests share: a bump allocator, a handler that forwards its
input to a host function taking two byte strings, and the plugin made of a module.

A forwarding handler reads ``u32 a_len | a | b`` and passes ``(a, a_len, b, b_len)`` on: a
connector's name and a request (``omnicore:sql``, ``omnicore:redis``), or a request JSON and
a body (``omnicore:http``). The host's packed result is the handler's.
"""

from __future__ import annotations

import json

import wasmtime

from omnicore.sandbox import wasmbin

__all__ = ["ALLOC", "forward", "plugin_wasm"]

#: ``omni_alloc`` from a bump pointer that grows the memory as needed; ``omni_free`` a no-op.
ALLOC = r"""
  (global $bump (mut i32) (i32.const 0x10000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $bump))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7))
                             (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                    (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1)))
                        (i32.const -1))
              (then (return (i32.const 0))))))
    (global.set $bump (local.get $end))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
"""


def forward(export: str, callee: str, then: str = "") -> str:
    """A handler ``export`` that calls ``$callee`` with its input split in two and returns
    the answer; with ``then``, it drops the answer and runs ``then`` (which ends the
    function) instead."""
    call = f"""(call ${callee} (i32.add (local.get $p) (i32.const 4)) (local.get $a)
                 (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $a))
                 (i32.sub (i32.sub (local.get $n) (i32.const 4)) (local.get $a)))"""
    body = f"(drop {call})\n    {then}" if then else call
    return f"""
  (func (export "{export}") (param $p i32) (param $n i32) (result i64)
    (local $a i32)
    (local.set $a (i32.load (local.get $p)))
    {body})
"""


def plugin_wasm(name: str, wat: str) -> bytes:
    """The module ``wat`` as the plugin ``name`` (its manifest in a custom section)."""
    return wasmbin.set_custom_section(wasmtime.wat2wasm(wat), "omnicore.manifest",
                                      json.dumps({"name": name}).encode())
