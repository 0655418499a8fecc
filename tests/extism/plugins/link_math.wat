;; A reactor linked as "math" (tests/extism/test_extism_links.py): its running total is
;; state of the linked instance, kept across calls as the main module's state is.
(module
  (global $total (mut i64) (i64.const 0))
  (func (export "add") (param i64) (result i64)
    (global.set $total (i64.add (global.get $total) (local.get 0)))
    (global.get $total)))
