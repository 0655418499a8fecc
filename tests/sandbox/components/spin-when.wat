;; An export that loops only when asked: quick calls first bind its C face (the C lane serves
;; the next), then a looping one meets the call's deadline there.
(component
  (core module $m
    (func (export "spin-when") (param i32) (result i32)
      (if (local.get 0) (then (loop (br 0))))
      i32.const 0))
  (core instance $i (instantiate $m))
  (func (export "spin-when") (param "n" u32) (result u32)
    (canon lift (core func $i "spin-when")))
)
