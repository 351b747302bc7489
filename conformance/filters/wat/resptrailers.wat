;; resptrailers.wat: response trailer maps. In proxy_on_response_trailers the response's
;; trailers gain x-resp-trailer-added: yes and x-backend-trailer is copied into
;; x-resp-trailer-seen.
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
  (data (i32.const 0x100) "x-resp-trailer-added") ;; 20
  (data (i32.const 0x120) "yes")                  ;; 3
  (data (i32.const 0x130) "x-backend-trailer")    ;; 17
  (data (i32.const 0x150) "x-resp-trailer-seen")  ;; 19
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32)
    (drop (call $add (i32.const 3) (i32.const 0x100) (i32.const 20) (i32.const 0x120) (i32.const 3)))
    (if (i32.eqz (call $get (i32.const 3) (i32.const 0x130) (i32.const 17) (i32.const 0x10) (i32.const 0x14)))
      (then (drop (call $add (i32.const 3) (i32.const 0x150) (i32.const 19)
        (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    (i32.const 0)))
