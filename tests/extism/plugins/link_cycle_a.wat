;; Linked as "a", importing from "b", which imports from "a": a cycle.
(module
  (import "b" "f" (func (result i32)))
  (func (export "g") (result i32) (i32.const 1)))
