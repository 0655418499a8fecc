;; Imports an omnicore interface that has no WIT face (fs: components use wasi:filesystem).
(component
  (import "omnicore:plugin/fs@1.0.0" (instance $q (export "get" (func (param "key" u32) (result u32)))))
  (core func $get (canon lower (func $q "get")))
  (core module $m
    (import "q" "get" (func $get (param i32) (result i32)))
    (func (export "run") (result i32) i32.const 1 call $get))
  (core instance $qi (export "get" (func $get)))
  (core instance $i (instantiate $m (with "q" (instance $qi))))
  (func (export "run") (result u32) (canon lift (core func $i "run")))
)
