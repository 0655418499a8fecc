;; A core start function that opens the test's gate (omnicore:plugin/gate) and never returns:
;; instantiating it must end at the deadline armed before it (tests/sandbox/test_deadline_door.py).
(component
  (import "omnicore:plugin/gate@1.0.0" (instance $gate
    (export "open" (func))))
  (alias export $gate "open" (func $open))
  (core func $open_lowered (canon lower (func $open)))
  (core module $m
    (import "gate" "open" (func $open))
    (func $spin (call $open) (loop (br 0)))
    (start $spin)
    (func (export "one") (result i32) i32.const 1))
  (core instance $hi (export "open" (func $open_lowered)))
  (core instance $i (instantiate $m (with "gate" (instance $hi))))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
