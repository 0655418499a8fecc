;; Declares 200 pages (12.5 MiB) of initial memory: more than an 8 MiB limit allows.
(component
  (core module $m
    (memory 200)
    (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
