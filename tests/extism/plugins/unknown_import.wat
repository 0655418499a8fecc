;; Imports an extism:host/env function that does not exist.
(module
  (import "extism:host/env" "frobnicate" (func (param i64) (result i64)))
  (func (export "run") (result i32) (i32.const 0)))
