;; tick.wat: a timer. proxy_on_configure asks for a tick every 10ms; proxy_on_tick sets
;; the shared data key "ticked" to "yes"; each request carries it as x-ticked once set.
(module
  (import "env" "proxy_set_tick_period_milliseconds" (func $period (param i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "ticked")   ;; 6
  (data (i32.const 0x110) "yes")      ;; 3
  (data (i32.const 0x120) "x-ticked") ;; 8
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $period (i32.const 10)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $set (i32.const 0x100) (i32.const 6) (i32.const 0x110) (i32.const 3) (i32.const 0))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0x100) (i32.const 6) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18)))
      (then (drop (call $add (i32.const 0) (i32.const 0x120) (i32.const 8)
        (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    (i32.const 0)))
