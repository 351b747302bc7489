;; shared.wat: shared data and logs. Each request sets the key "conformance" to "v" with
;; CAS 0 (any version), reads it back into x-shared, and logs "shared: set" at info. It then
;; sets it again with a CAS one past the one it read: x-cas-status is what that returns (a
;; hex digit; CAS_MISMATCH is 8); and reads a key no one set: x-missing-status (NOT_FOUND
;; is 1).
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
  (data (i32.const 0x140) "x-cas-status") ;; 12
  (data (i32.const 0x150) "conformance-never-set") ;; 21
  (data (i32.const 0x168) "x-missing-status") ;; 16
  (data (i32.const 0x1f0) "0123456789abcdef")
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
    (drop (call $add (i32.const 0) (i32.const 0x140) (i32.const 12)
      (i32.add (i32.const 0x1f0) (i32.and (call $set (i32.const 0x100) (i32.const 11) (i32.const 0x110) (i32.const 1)
        (i32.add (i32.load (i32.const 0x18)) (i32.const 1))) (i32.const 15))) (i32.const 1)))
    (drop (call $add (i32.const 0) (i32.const 0x168) (i32.const 16)
      (i32.add (i32.const 0x1f0) (i32.and (call $get (i32.const 0x150) (i32.const 21) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18)) (i32.const 15))) (i32.const 1)))
    (i32.const 0)))
