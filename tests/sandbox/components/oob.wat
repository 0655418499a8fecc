;; Loads past the end of memory: just past its size, near 4 GiB, and into the guard region
;; past the reservation. Each must trap (the host makes the memories: component/memory.py).
(component
  (core module $m
    (memory 1)
    (func (export "far") (result i32) i32.const -16 i32.load)
    (func (export "guard") (result i32) i32.const -16 i32.load offset=1000000)
    (func (export "near") (result i32) i32.const 65536 i32.load)
    (func (export "ok") (result i32) i32.const 1)
  )
  (core instance $i (instantiate $m))
  (func (export "far") (result u32) (canon lift (core func $i "far")))
  (func (export "guard") (result u32) (canon lift (core func $i "guard")))
  (func (export "near") (result u32) (canon lift (core func $i "near")))
  (func (export "ok") (result u32) (canon lift (core func $i "ok")))
)
