;; Tools that wait at a gate: each makes the HTTP request its arguments describe
;; (omnicore:http), so a test holds a call open with a server that answers when it says so.
;; `fetch` is an ordinary tool, `slow` a long-running one (the manifest's long_running).
(module
  (import "omnicore:http" "request" (func $request (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (if (i32.gt_u (global.get $heap) (i32.shl (memory.size) (i32.const 16)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16))
                                        (i32.const 1))))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (func (export "fetch") (param $p i32) (param $n i32) (result i64)
    (call $request (local.get $p) (local.get $n) (i32.const 0) (i32.const 0)))
  (func (export "slow") (param $p i32) (param $n i32) (result i64)
    (call $request (local.get $p) (local.get $n) (i32.const 0) (i32.const 0)))
  (@custom "omnicore.manifest" "{\"abi\":1,\"name\":\"gate\",\"handlers\":[{\"name\":\"fetch\",\"description\":\"Wait at the gate\"},{\"name\":\"slow\",\"description\":\"Wait at the gate, as a durable job\",\"long_running\":true}]}")
)
