;; An omnicore plugin component whose handler, given input, opens the test's gate
;; (omnicore:plugin/gate) and loops (the byte face's deadline: tests/sandbox/test_deadline_door.py);
;; an empty input it answers with itself.
(component
  (import "omnicore:plugin/gate@1.0.0" (instance $gate
    (export "open" (func))))
  (alias export $gate "open" (func $open))
  (core func $open_lowered (canon lower (func $open)))
  (core module $m
    (import "gate" "open" (func $open))
    (memory (export "memory") 1)
    (global $top (mut i32) (i32.const 1024))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
      (global.set $top (i32.add (local.get $at) (local.get 3)))
      local.get $at)
    ;; call(handler: string, input: list<u8>) -> result<list<u8>, string>: ok(input).
    (func (export "omnicore:plugin/handler@1.0.0#call") (param i32 i32 i32 i32) (result i32)
      (if (local.get 3) (then (call $open) (loop $l (br $l))))
      (i32.store8 (i32.const 0) (i32.const 0))
      (i32.store (i32.const 4) (local.get 2))
      (i32.store (i32.const 8) (local.get 3))
      i32.const 0)
    (func (export "cabi_post_call") (param i32) (global.set $top (i32.const 1024)))
  )
  (core instance $hi (export "open" (func $open_lowered)))
  (core instance $i (instantiate $m (with "gate" (instance $hi))))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "cabi_realloc" (core func $realloc))
  (alias core export $i "cabi_post_call" (core func $post))
  (func $call (param "handler" string) (param "input" (list u8))
    (result (result (list u8) (error string)))
    (canon lift (core func $i "omnicore:plugin/handler@1.0.0#call") (memory $mem)
      (realloc $realloc) (post-return $post)))
  (instance $h (export "call" (func $call)))
  (export "omnicore:plugin/handler@1.0.0" (instance $h))
)
