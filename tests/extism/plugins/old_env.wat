;; Extism's pre-1.0 ABI (the old Go PDK): the kernel imported from env as extism_*.
(module
  (import "env" "extism_input_length" (func $input_length (result i64)))
  (memory (export "memory") 1)
  (func (export "run") (result i32) (i32.wrap_i64 (call $input_length)))
)
