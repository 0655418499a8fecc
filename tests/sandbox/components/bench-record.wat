;; The components benchmark's record row (bench/bench_components.py): a record of five fields
;; (a u32, a string, an f64, a bool, a u8) in and out. The core function takes the record's
;; six core values and writes the record back into its return area (at 0, 32 bytes).
(component
  (type $r' (record (field "id" u32) (field "name" string) (field "score" f64)
                    (field "ok" bool) (field "tag" u8)))
  (export $r "item" (type $r'))
  (core module $m
    (memory (export "memory") 2)
    ;; A bump allocator over the first page past 1 KiB, wrapping round (as bench.wat's).
    (global $top (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
      (if (i32.gt_u (i32.add (local.get $at) (local.get 3)) (i32.const 131072))
        (then (local.set $at (i32.const 1024))))
      (global.set $top (i32.add (local.get $at) (local.get 3)))
      local.get $at)
    (func (export "echo-record") (param i32 i32 i32 f64 i32 i32) (result i32)
      (i32.store (i32.const 0) (local.get 0))
      (i32.store (i32.const 4) (local.get 1))
      (i32.store (i32.const 8) (local.get 2))
      (f64.store (i32.const 16) (local.get 3))
      (i32.store8 (i32.const 24) (local.get 4))
      (i32.store8 (i32.const 25) (local.get 5))
      i32.const 0)
  )
  (core instance $i (instantiate $m))
  (alias core export $i "realloc" (core func $realloc))
  (alias core export $i "memory" (core memory $mem))
  (func (export "echo-record") (param "r" $r) (result $r)
    (canon lift (core func $i "echo-record") (memory $mem) (realloc $realloc)))
)
