;; Five core modules with a memory each: more memories than a component may have.
(component
  (core module $m (memory 1))
  (core instance $a (instantiate $m))
  (core instance $b (instantiate $m))
  (core instance $c (instantiate $m))
  (core instance $d (instantiate $m))
  (core instance $e (instantiate $m))
  (core module $f (func (export "one") (result i32) i32.const 1))
  (core instance $i (instantiate $f))
  (func (export "one") (result u32) (canon lift (core func $i "one")))
)
