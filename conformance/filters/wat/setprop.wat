;; setprop.wat: setting a property. Each request sets the property conformance_value to
;; "set-by-filter" with proxy_set_property and reads it back with proxy_get_property, as
;; x-prop; x-unset-status is what proxy_get_property returns for a property no one set (a
;; hex digit; NOT_FOUND is 1).
(module
  (import "env" "proxy_set_property" (func $set (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $get (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $top))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.lt_s (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))) (i32.const 0))
        (then (return (i32.const 0))))))
    (global.set $top (local.get $end))
    (local.get $p))
  (data (i32.const 0x100) "conformance_value") ;; 17
  (data (i32.const 0x118) "set-by-filter")     ;; 13
  (data (i32.const 0x128) "x-prop")            ;; 6
  (data (i32.const 0x130) "conformance_unset") ;; 17
  (data (i32.const 0x148) "x-unset-status")    ;; 14
  (data (i32.const 0x1f0) "0123456789abcdef")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $set (i32.const 0x100) (i32.const 17) (i32.const 0x118) (i32.const 13)))
    (if (i32.eqz (call $get (i32.const 0x100) (i32.const 17) (i32.const 0x10) (i32.const 0x14)))
      (then (drop (call $add (i32.const 0) (i32.const 0x128) (i32.const 6) (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    (drop (call $add (i32.const 0) (i32.const 0x148) (i32.const 14)
      (i32.add (i32.const 0x1f0) (i32.and (call $get (i32.const 0x130) (i32.const 17) (i32.const 0x10) (i32.const 0x14)) (i32.const 15)))
      (i32.const 1)))
    (i32.const 0)))
