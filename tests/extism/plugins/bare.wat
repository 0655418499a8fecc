;; A module with no imports at all: Extism runs its () -> i32 exports as plugin functions.
(module
  (memory (export "memory") 1)
  (global $calls (mut i32) (i32.const 0))
  (func (export "ok") (result i32) (i32.const 0))
  (func (export "code") (result i32) (i32.const 3))
  (func (export "crash") (result i32) (unreachable))
  (func $deep (export "deep") (result i32) (i32.add (call $deep) (i32.const 1)))
  (func (export "spin") (result i32) (loop $forever (br $forever)) (i32.const 0))
)
