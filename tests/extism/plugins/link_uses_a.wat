;; A main module importing from a module linked as "a".
(module
  (import "a" "g" (func $g (result i32)))
  (func (export "run") (result i32) (drop (call $g)) (i32.const 0)))
