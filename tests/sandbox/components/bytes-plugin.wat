;; An omnicore plugin component in WAT (the fixture of the flat byte path, sandbox/component/
;; rawlift.py, and of bench/bench_components.py): handler "echo" answers its input as ok,
;; a handler whose name starts with "f" answers its input as the error message. Memory grows as the input needs;
;; the bump allocator is reset after each call (cabi_post_call).
(component
  (core module $m
    (memory (export "memory") 1)
    (global $top (mut i32) (i32.const 1024))
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32) (local $end i32)
      (local.set $at (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
      (local.set $end (i32.add (local.get $at) (local.get 3)))
      (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
        (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (i32.sub (local.get $end)
                   (i32.mul (memory.size) (i32.const 65536))) (i32.const 16)) (i32.const 1)))
                   (i32.const -1))
          (then unreachable))))
      (global.set $top (local.get $end))
      local.get $at)
    ;; call(handler: string, input: list<u8>) -> result<list<u8>, string>, through the
    ;; return area at 0: tag (u8) at 0, payload (ptr, len) at 4 and 8.
    (func (export "omnicore:plugin/handler@1.0.0#call") (param i32 i32 i32 i32) (result i32)
      (i32.store8 (i32.const 0) (i32.eq (i32.load8_u (local.get 0)) (i32.const 0x66)))
      (i32.store (i32.const 4) (local.get 2))
      (i32.store (i32.const 8) (local.get 3))
      i32.const 0)
    (func (export "cabi_post_call") (param i32) (global.set $top (i32.const 1024)))
  )
  (core instance $i (instantiate $m))
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
