;; Linked as "b", importing from "a".
(module
  (import "a" "g" (func (result i32)))
  (func (export "f") (result i32) (i32.const 2)))
