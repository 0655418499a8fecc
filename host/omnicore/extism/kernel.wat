;; omnicore's Extism memory kernel: our own implementation of the kernel half of
;; `extism:host/env` (specs/extism.md). A separate module with its own memory, instantiated
;; beside every Extism plugin instance and linked under `extism:host/env`, so the PDKs'
;; byte-by-byte load/store traffic stays wasm-to-wasm and never crosses into Python.
;;
;; Memory layout. The call state lives in memory, not in globals, so the host sets the input
;; and reads the output by touching kernel memory directly (a call is one guest entry; the
;; offsets are mirrored in _kernel.py):
;;   0 end            offset where the next block's header goes
;;   8 input_offset  16 input_length  24 output_offset  32 output_length  40 error
;;   48 free_hint     no freed block lies below it (0: no freed block); 56 reserved.
;;   Offsets below 64 are not addressable by plugins.
;; A block is a 16-byte header followed by its bytes; the handle is the address of the bytes:
;;   handle - 16: capacity (u32) | TAG << 32   bytes available (a multiple of 8), and the tag
;;   handle -  8: used (u64)       bytes in use; FREED (all ones) when the block is free
;; Blocks lie end to end from offset 64 to `end` and are never merged, so every handle ever
;; returned in a call stays a block start: `free` and `length` check a handle in O(1) (in the
;; block area, aligned, TAG in its header, within `end`) where Extism's kernel walks the
;; list. A new block is bumped at `end` while memory holds it (O(1)); only when memory would
;; have to grow are freed blocks reused (first fit from free_hint, split when much larger).
;; An offset below 64 or past 4 GiB traps in the kernel function given it, checked inline
;; (one compare: a call to a checking helper per byte would cost the PDKs' loops); the host
;; reports the trap naming that function.
(module $extism_kernel
  (memory (export "memory") 1)
  (data (i32.const 0) "\40\00\00\00\00\00\00\00")  ;; end = 64

  ;; Memory cannot grow (the store's limit): the call fails with Extism's word, "oom".
  (func $oom (unreachable))

  (func $capacity (param $h i64) (result i64)
    (i64.load32_u (i32.wrap_i64 (i64.sub (local.get $h) (i64.const 16)))))
  (func $used (param $h i64) (result i64)
    (i64.load (i32.wrap_i64 (i64.sub (local.get $h) (i64.const 8)))))
  (func $set_used (param $h i64) (param $n i64)
    (i64.store (i32.wrap_i64 (i64.sub (local.get $h) (i64.const 8))) (local.get $n)))
  ;; The header of the block at $h: capacity $cap, tagged.
  (func $set_capacity (param $h i64) (param $cap i64)
    (i64.store (i32.wrap_i64 (i64.sub (local.get $h) (i64.const 16)))
               (i64.or (local.get $cap) (i64.const 0x6F6D6E6900000000))))

  ;; $h when it is the handle of a live block, else 0. O(1): see the layout above.
  (func $live (param $h i64) (result i64)
    (if (i32.or (i32.or (i64.lt_u (local.get $h) (i64.const 80))
                        (i64.gt_u (local.get $h) (i64.load (i32.const 0))))
                (i32.wrap_i64 (i64.and (local.get $h) (i64.const 7))))
      (then (return (i64.const 0))))
    (if (i64.ne (i64.shr_u (i64.load (i32.wrap_i64 (i64.sub (local.get $h) (i64.const 16))))
                           (i64.const 32))
                (i64.const 0x6F6D6E69))
      (then (return (i64.const 0))))
    (if (i64.gt_u (i64.add (local.get $h) (call $capacity (local.get $h)))
                  (i64.load (i32.const 0)))
      (then (return (i64.const 0))))
    (if (i64.eq (call $used (local.get $h)) (i64.const -1)) (then (return (i64.const 0))))
    (local.get $h))

  ;; Allocate $n bytes; 0 for $n == 0. When memory cannot grow, $oom traps.
  (func $alloc (export "alloc") (param $n i64) (result i64)
    (local $p i64) (local $cap i64) (local $need i64) (local $seen i64) (local $rest i64)
    (if (i64.eqz (local.get $n)) (then (return (i64.const 0))))
    (if (i64.gt_u (local.get $n) (i64.const 0xFFFF0000)) (then (call $oom)))
    ;; Sizes round up to 8 so headers stay aligned.
    (local.set $need (i64.and (i64.add (local.get $n) (i64.const 7)) (i64.const -8)))
    ;; The hot path, inline: the block fits in memory as it is.
    (local.set $p (i64.add (i64.load (i32.const 0)) (i64.const 16)))
    (if (i64.le_u (i64.add (local.get $p) (local.get $need))
                  (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
      (then
        (i64.store (i32.wrap_i64 (i64.load (i32.const 0)))
                   (i64.or (local.get $need) (i64.const 0x6F6D6E6900000000)))
        (i64.store (i32.wrap_i64 (i64.sub (local.get $p) (i64.const 8))) (local.get $n))
        (i64.store (i32.const 0) (i64.add (local.get $p) (local.get $need)))
        (return (local.get $p))))
    (if (i64.eqz (i64.load (i32.const 48)))
      (then (return (call $bump (local.get $n) (local.get $need)))))
    ;; First fit among freed blocks, from the hint; the hint moves to the first freed block
    ;; left behind (or past the block taken).
    (local.set $p (i64.load (i32.const 48)))
    (block $none
      (loop $walk
        (br_if $none (i64.gt_u (local.get $p) (i64.load (i32.const 0))))
        (local.set $cap (i64.load32_u (i32.sub (i32.wrap_i64 (local.get $p)) (i32.const 16))))
        (if (i64.eq (i64.load (i32.sub (i32.wrap_i64 (local.get $p)) (i32.const 8)))
                    (i64.const -1))
          (then
            (if (i64.ge_u (local.get $cap) (local.get $need))
              (then
                (local.set $rest (i64.add (local.get $p) (i64.add (local.get $cap)
                                                                  (i64.const 16))))
                ;; Split off the rest when it can hold a header and 64 bytes.
                (if (i64.ge_u (i64.sub (local.get $cap) (local.get $need)) (i64.const 80))
                  (then
                    (local.set $rest (i64.add (local.get $p)
                                              (i64.add (local.get $need) (i64.const 16))))
                    (call $set_capacity (local.get $rest)
                          (i64.sub (i64.sub (local.get $cap) (local.get $need))
                                   (i64.const 16)))
                    (call $set_used (local.get $rest) (i64.const -1))
                    (call $set_capacity (local.get $p) (local.get $need))))
                (i64.store (i32.const 48) (select (local.get $seen) (local.get $rest)
                                                  (i64.ne (local.get $seen) (i64.const 0))))
                (call $set_used (local.get $p) (local.get $n))
                (return (local.get $p))))
            (if (i64.eqz (local.get $seen)) (then (local.set $seen (local.get $p))))))
        (local.set $p (i64.add (local.get $p) (i64.add (local.get $cap) (i64.const 16))))
        (br $walk)))
    (i64.store (i32.const 48) (local.get $seen))
    (call $bump (local.get $n) (local.get $need)))

  ;; A new block of $need bytes ($n used) at `end`, growing memory when it must.
  (func $bump (param $n i64) (param $need i64) (result i64)
    (local $p i64) (local $pages i64)
    (local.set $p (i64.add (i64.load (i32.const 0)) (i64.const 16)))
    (local.set $pages (i64.shr_u (i64.add (i64.add (local.get $p) (local.get $need))
                                          (i64.const 65535)) (i64.const 16)))
    (if (i64.gt_u (local.get $pages) (i64.extend_i32_u (memory.size)))
      (then
        (if (i32.eq (memory.grow (i32.wrap_i64 (i64.sub (local.get $pages)
                                                        (i64.extend_i32_u (memory.size)))))
                    (i32.const -1))
          (then (call $oom)))))
    (call $set_capacity (local.get $p) (local.get $need))
    (call $set_used (local.get $p) (local.get $n))
    (i64.store (i32.const 0) (i64.add (local.get $p) (local.get $need)))
    (local.get $p))

  ;; Free a block; not a live handle (0 included) is a no-op. Freeing the input empties it.
  (func $free (export "free") (param $h i64)
    (local $hint i64)
    (if (i64.eqz (call $live (local.get $h))) (then (return)))
    (call $set_used (local.get $h) (i64.const -1))
    (local.set $hint (i64.load (i32.const 48)))
    (if (i32.or (i64.eqz (local.get $hint)) (i64.lt_u (local.get $h) (local.get $hint)))
      (then (i64.store (i32.const 48) (local.get $h))))
    (if (i64.eq (local.get $h) (i64.load (i32.const 8)))
      (then (i64.store (i32.const 16) (i64.const 0)))))

  (func $length (export "length") (param $h i64) (result i64)
    (if (i64.eqz (call $live (local.get $h))) (then (return (i64.const 0))))
    (call $used (local.get $h)))

  ;; O(1): reads the header. 0 outside the block area or for a freed block.
  (func $length_unsafe (export "length_unsafe") (param $h i64) (result i64)
    (local $n i64)
    (if (i32.or (i64.lt_u (local.get $h) (i64.const 80))
                (i64.gt_u (local.get $h) (i64.load (i32.const 0))))
      (then (return (i64.const 0))))
    (local.set $n (call $used (local.get $h)))
    (if (result i64) (i64.eq (local.get $n) (i64.const -1))
      (then (i64.const 0)) (else (local.get $n))))

  ;; The PDKs' hottest calls: $p - 64 > 0xFFFFFFBF is "below 64 or past 4 GiB".
  (func $load_u8 (export "load_u8") (param $p i64) (result i32)
    (if (i64.gt_u (i64.sub (local.get $p) (i64.const 64)) (i64.const 0xFFFFFFBF))
      (then (unreachable)))
    (i32.load8_u (i32.wrap_i64 (local.get $p))))
  (func $load_u64 (export "load_u64") (param $p i64) (result i64)
    (if (i64.gt_u (i64.sub (local.get $p) (i64.const 64)) (i64.const 0xFFFFFFBF))
      (then (unreachable)))
    (i64.load (i32.wrap_i64 (local.get $p))))
  (func $store_u8 (export "store_u8") (param $p i64) (param $v i32)
    (if (i64.gt_u (i64.sub (local.get $p) (i64.const 64)) (i64.const 0xFFFFFFBF))
      (then (unreachable)))
    (i32.store8 (i32.wrap_i64 (local.get $p)) (local.get $v)))
  (func $store_u64 (export "store_u64") (param $p i64) (param $v i64)
    (if (i64.gt_u (i64.sub (local.get $p) (i64.const 64)) (i64.const 0xFFFFFFBF))
      (then (unreachable)))
    (i64.store (i32.wrap_i64 (local.get $p)) (local.get $v)))

  (func $input_set (export "input_set") (param $h i64) (param $n i64)
    (i64.store (i32.const 8) (local.get $h))
    (i64.store (i32.const 16) (local.get $n)))
  (func $input_length (export "input_length") (result i64) (i64.load (i32.const 16)))
  (func $input_offset (export "input_offset") (result i64) (i64.load (i32.const 8)))
  ;; Reads past the input trap rather than return another block's bytes; the input may have
  ;; been set anywhere (input_set), so the address gets load_u64's check too.
  (func $input_load_u8 (export "input_load_u8") (param $p i64) (result i32)
    (local $a i64)
    (if (i64.ge_u (local.get $p) (i64.load (i32.const 16))) (then (unreachable)))
    (local.set $a (i64.add (i64.load (i32.const 8)) (local.get $p)))
    (if (i64.gt_u (i64.sub (local.get $a) (i64.const 64)) (i64.const 0xFFFFFFBF))
      (then (unreachable)))
    (i32.load8_u (i32.wrap_i64 (local.get $a))))
  (func $input_load_u64 (export "input_load_u64") (param $p i64) (result i64)
    (local $a i64)
    (if (i32.or (i64.gt_u (local.get $p) (i64.const 0xFFFFFFFF))
                (i64.gt_u (i64.add (local.get $p) (i64.const 8)) (i64.load (i32.const 16))))
      (then (unreachable)))
    (local.set $a (i64.add (i64.load (i32.const 8)) (local.get $p)))
    (if (i64.gt_u (i64.sub (local.get $a) (i64.const 64)) (i64.const 0xFFFFFFBF))
      (then (unreachable)))
    (i64.load (i32.wrap_i64 (local.get $a))))

  ;; The host checks the output and error handles after the call.
  (func $output_set (export "output_set") (param $h i64) (param $n i64)
    (i64.store (i32.const 24) (local.get $h))
    (i64.store (i32.const 32) (local.get $n)))
  (func $output_length (export "output_length") (result i64) (i64.load (i32.const 32)))
  (func $output_offset (export "output_offset") (result i64) (i64.load (i32.const 24)))
  (func $error_set (export "error_set") (param $h i64) (i64.store (i32.const 40) (local.get $h)))
  (func $error_get (export "error_get") (result i64) (i64.load (i32.const 40)))

  (func $memory_bytes (export "memory_bytes") (result i64)
    (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))

  ;; Between calls every block is forgotten (the memory is kept, already grown).
  (func $reset (export "reset")
    (i64.store (i32.const 0) (i64.const 64))
    (i64.store (i32.const 8) (i64.const 0))
    (i64.store (i32.const 16) (i64.const 0))
    (i64.store (i32.const 24) (i64.const 0))
    (i64.store (i32.const 32) (i64.const 0))
    (i64.store (i32.const 40) (i64.const 0))
    (i64.store (i32.const 48) (i64.const 0))))
