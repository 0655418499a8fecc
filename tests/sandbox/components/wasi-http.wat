;; Imports a standard WASI interface the host does not grant (wasi:http), as toolchains do by
;; default: it loads, runs, and only the use of the import fails.
(component
  (import "wasi:http/types@0.2.0" (instance $t
    (export "fields" (type $f (sub resource)))
    (export "[constructor]fields" (func (result (own $f))))))
  (import "wasi:http/outgoing-handler@0.2.0" (instance $h (export "ping" (func))))
  (core func $ping (canon lower (func $h "ping")))
  (core module $m
    (import "h" "ping" (func $ping))
    (func (export "use-http") call $ping)
    (func (export "answer") (result i32) i32.const 42))
  (core instance $hi (export "ping" (func $ping)))
  (core instance $i (instantiate $m (with "h" (instance $hi))))
  (func (export "use-http") (canon lift (core func $i "use-http")))
  (func (export "answer") (result u32) (canon lift (core func $i "answer")))
)
