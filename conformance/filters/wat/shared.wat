;; shared.wat: shared data and logs. Each request sets the key "conformance" to "v" with
;; CAS 0 (any version), reads it back into x-shared, and logs "shared: set" at info.
(module
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "conformance") ;; 11
  (data (i32.const 0x110) "v")           ;; 1
  (data (i32.const 0x120) "x-shared")    ;; 8
  (data (i32.const 0x130) "shared: set") ;; 11
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $set (i32.const 0x100) (i32.const 11) (i32.const 0x110) (i32.const 1) (i32.const 0)))
    ;; value pointer and size at 0x10, 0x14; the CAS at 0x18
    (if (i32.eqz (call $get (i32.const 0x100) (i32.const 11) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18)))
      (then (drop (call $add (i32.const 0) (i32.const 0x120) (i32.const 8)
        (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    (drop (call $log (i32.const 2) (i32.const 0x130) (i32.const 11)))
    (i32.const 0)))
