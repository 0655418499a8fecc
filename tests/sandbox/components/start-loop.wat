;; A core start function that never returns: instantiating it must end at the deadline.
(component
  (core module $m (func $spin (loop (br 0))) (start $spin)
    (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
