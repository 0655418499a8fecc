;; Imports a standard WASI interface the host does not supply (wasi:keyvalue, with a
;; resource): it loads, runs, and only the use of the import fails (a trap).
(component
  (import "wasi:keyvalue/store@0.2.0-draft" (instance $t
    (export "bucket" (type $f (sub resource)))
    (export "[constructor]bucket" (func (result (own $f))))
    (export "ping" (func))))
  (alias export $t "ping" (func $pingf))
  (core func $ping (canon lower (func $pingf)))
  (core module $m
    (import "h" "ping" (func $ping))
    (func (export "use-kv") call $ping)
    (func (export "answer") (result i32) i32.const 42))
  (core instance $hi (export "ping" (func $ping)))
  (core instance $i (instantiate $m (with "h" (instance $hi))))
  (func (export "use-kv") (canon lift (core func $i "use-kv")))
  (func (export "answer") (result u32) (canon lift (core func $i "answer")))
)
