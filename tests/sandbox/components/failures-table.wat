;; A component whose one table is declared over limits.max_table_elements (test_failures.py).
(component
  (core module $m (table 100000 funcref) (func (export "count") (result i32) i32.const 1))
  (core instance $i (instantiate $m))
  (func (export "count") (result u32) (canon lift (core func $i "count")))
)
