;; The components benchmark (bench/bench_components.py): round trips of a u32, a string and
;; a list<u8>, and a call making one host callback (omnicore:plugin/log#enabled).
(component
  (type $level (enum "trace" "debug" "info" "warn" "error"))
  (import "omnicore:plugin/log@1.0.0" (instance $log
    (export "level" (type $lv (eq $level)))
    (export "enabled" (func (param "level" $lv) (result bool)))))
  (alias export $log "enabled" (func $enabled))
  (core func $enabled_lowered (canon lower (func $enabled)))
  (core module $m
    (import "log" "enabled" (func $enabled (param i32) (result i32)))
    (memory (export "memory") 2)
    ;; A bump allocator over the first page past 1 KiB, wrapping round: each call's data is
    ;; consumed before the next call lowers its own.
    (global $top (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
      (if (i32.gt_u (i32.add (local.get $at) (local.get 3)) (i32.const 131072))
        (then (local.set $at (i32.const 1024))))
      (global.set $top (i32.add (local.get $at) (local.get 3)))
      local.get $at)
    (func (export "echo32") (param i32) (result i32) local.get 0)
    ;; A (ptr, len) pair answered through the return area at 0.
    (func (export "echo-pair") (param i32 i32) (result i32)
      (i32.store (i32.const 0) (local.get 0))
      (i32.store (i32.const 4) (local.get 1))
      i32.const 0)
    (func (export "callback") (result i32) (call $enabled (i32.const 2)))
  )
  (core instance $hi (export "enabled" (func $enabled_lowered)))
  (core instance $i (instantiate $m (with "log" (instance $hi))))
  (alias core export $i "realloc" (core func $realloc))
  (alias core export $i "memory" (core memory $mem))
  (func (export "echo32") (param "x" u32) (result u32) (canon lift (core func $i "echo32")))
  (func (export "echo-string") (param "s" string) (result string)
    (canon lift (core func $i "echo-pair") (memory $mem) (realloc $realloc)))
  (func (export "echo-bytes") (param "b" (list u8)) (result (list u8))
    (canon lift (core func $i "echo-pair") (memory $mem) (realloc $realloc)))
  (func (export "callback") (result bool) (canon lift (core func $i "callback")))
)
