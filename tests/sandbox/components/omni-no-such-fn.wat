;; Imports a function omnicore:plugin/log does not have.
(component
  (import "omnicore:plugin/log@1.0.0" (instance $q (export "shout" (func (param "key" u32) (result u32)))))
  (core func $get (canon lower (func $q "shout")))
  (core module $m
    (import "q" "shout" (func $get (param i32) (result i32)))
    (func (export "run") (result i32) i32.const 1 call $get))
  (core instance $qi (export "shout" (func $get)))
  (core instance $i (instantiate $m (with "q" (instance $qi))))
  (func (export "run") (result u32) (canon lift (core func $i "run")))
)
