;; The main module of a linked plugin: `run` outputs math.add(input length) as a u64.
(module
  (import "math" "add" (func $add (param i64) (result i64)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (import "extism:host/env" "store_u64" (func $store_u64 (param i64 i64)))
  (import "extism:host/env" "output_set" (func $output_set (param i64 i64)))
  (import "extism:host/env" "input_length" (func $input_length (result i64)))
  (func (export "run") (result i32)
    (local $out i64)
    (local.set $out (call $alloc (i64.const 8)))
    (call $store_u64 (local.get $out) (call $add (call $input_length)))
    (call $output_set (local.get $out) (i64.const 8))
    (i32.const 0)))
