;; A command module (it exports _start) linked as "commander", from Extism's own linking
;; test: every call of one of its exports runs in a new instance of it.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
  (import "extism:host/env" "alloc" (func $alloc (param i64) (result i64)))
  (global $counter (mut i32) (i32.const 0))
  (func $start (export "_start")
    (global.set $counter (i32.add (global.get $counter) (i32.const 1))))
  (func (export "read_counter") (result i32) (global.get $counter))
  (start $start))
