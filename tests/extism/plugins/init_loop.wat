;; A constructor that never returns: the plugin's start runs into its deadline.
(module
  (memory (export "memory") 1)
  (func (export "__wasm_call_ctors") (loop $forever (br $forever)))
  (func (export "run") (result i32) (i32.const 0))
)
