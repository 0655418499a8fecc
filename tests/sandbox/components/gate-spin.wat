;; The component of tests/sandbox/test_deadline_door.py's lanes: each export, asked to (a
;; non-zero number, a non-empty string or list), opens the test's gate (omnicore:plugin/gate:
;; the ticker held back until then) and loops until its call's deadline; asked not to, it
;; answers 0 at once. One export per way the host calls a component: a scalar (the C lane,
;; Face.call), a string (the C lane's plain JSON, or lowered in Python), a list (the C plan),
;; and a UTF-16 string (no canonical face: wasmtime's value API).
(component
  (import "omnicore:plugin/gate@1.0.0" (instance $gate
    (export "open" (func))))
  (alias export $gate "open" (func $open))
  (core func $open_lowered (canon lower (func $open)))
  (core module $m
    (import "gate" "open" (func $open))
    (memory (export "memory") 1)
    (global $top (mut i32) (i32.const 1024))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $at i32)
      (local.set $at (i32.and (i32.add (global.get $top) (i32.const 7)) (i32.const -8)))
      (if (i32.gt_u (i32.add (local.get $at) (local.get 3)) (i32.const 65536))
        (then (local.set $at (i32.const 1024))))
      (global.set $top (i32.add (local.get $at) (local.get 3)))
      local.get $at)
    (func (export "spin-when") (param i32) (result i32)
      (if (local.get 0) (then (call $open) (loop (br 0))))
      i32.const 0)
    ;; (ptr, len) of a string or a list: loops when len is not 0.
    (func (export "spin-len") (param i32 i32) (result i32)
      (if (local.get 1) (then (call $open) (loop (br 0))))
      i32.const 0))
  (core instance $hi (export "open" (func $open_lowered)))
  (core instance $i (instantiate $m (with "gate" (instance $hi))))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))
  (func (export "spin-when") (param "n" u32) (result u32)
    (canon lift (core func $i "spin-when")))
  (func (export "spin-text") (param "s" string) (result u32)
    (canon lift (core func $i "spin-len") (memory $mem) (realloc $realloc)))
  (func (export "spin-list") (param "l" (list u32)) (result u32)
    (canon lift (core func $i "spin-len") (memory $mem) (realloc $realloc)))
  (func (export "spin-utf16") (param "s" string) (result u32)
    (canon lift (core func $i "spin-len") (memory $mem) (realloc $realloc)
      string-encoding=utf16))
)
