;; The limits test component (wasm-tools parse): exact 64-bit integers, a trap, an endless
;; loop, memory bombs against the store's memory limit, and a type JSON cannot carry.
(component
  (core module $m
    (memory (export "memory") 1)
    (func (export "add64") (param i64 i64) (result i64) local.get 0 local.get 1 i64.add)
    (func (export "small") (param i32) (result i32) local.get 0 i32.const 1 i32.add)
    (func (export "twice32") (param f32) (result f32) local.get 0 local.get 0 f32.add)
    (func (export "boom") unreachable)
    (func (export "nested") (param i32 i32 i32) (result i32) local.get 0)
    (func (export "spin") (result i32) (loop (br 0)) i32.const 0)
    ;; Grows 1 MiB at a time until refused; answers the pages it got.
    (func (export "grow") (result i32)
      (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
      memory.size)
    ;; Grows until refused, then traps like an allocator that cannot go on.
    (func (export "bomb") (result i32)
      (loop (br_if 0 (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
      unreachable)
  )
  (core instance $i (instantiate $m))
  (func (export "add64") (param "a" u64) (param "b" u64) (result u64)
    (canon lift (core func $i "add64")))
  (func (export "small") (param "x" u8) (result u8) (canon lift (core func $i "small")))
  (func (export "twice32") (param "x" f32) (result f32) (canon lift (core func $i "twice32")))
  (func (export "boom") (canon lift (core func $i "boom")))
  (func (export "nested") (param "x" (option (option u32))) (result u32)
    (canon lift (core func $i "nested")))
  (func (export "spin") (result u32) (canon lift (core func $i "spin")))
  (func (export "grow") (result u32) (canon lift (core func $i "grow")))
  (func (export "bomb") (result u32) (canon lift (core func $i "bomb")))
)
