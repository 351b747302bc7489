;; trailers.wat: trailer maps. In proxy_on_request_trailers the request's trailers gain
;; x-trailer-added: yes and x-trailer-in is copied into x-trailer-seen.
(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "x-trailer-added") ;; 15
  (data (i32.const 0x110) "yes")             ;; 3
  (data (i32.const 0x120) "x-trailer-in")    ;; 12
  (data (i32.const 0x130) "x-trailer-seen")  ;; 14
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32)
    (drop (call $add (i32.const 1) (i32.const 0x100) (i32.const 15) (i32.const 0x110) (i32.const 3)))
    (if (i32.eqz (call $get (i32.const 1) (i32.const 0x120) (i32.const 12) (i32.const 0x10) (i32.const 0x14)))
      (then (drop (call $add (i32.const 1) (i32.const 0x130) (i32.const 14)
        (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    (i32.const 0)))
