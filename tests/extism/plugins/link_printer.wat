;; A reactor linked as "printer" that writes to stdout through WASI from its own memory:
;; the text must come from this module's memory, not the main module's.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "from the linked module\n")
  (func (export "say") (result i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 23))
    (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
