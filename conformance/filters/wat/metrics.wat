;; metrics.wat: metrics. proxy_on_configure defines the counter conformance_hits, the
;; gauge conformance_level and the histogram conformance_sizes; every request increments
;; the counter and reads it back (proxy_get_metric) as x-hits, sets the gauge to 42 and
;; records 7 in the histogram (proxy_record_metric).
(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $incr (param i32 i64) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (import "env" "proxy_get_metric" (func $getm (param i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "conformance_hits") ;; 16
  (data (i32.const 0x120) "x-hits")           ;; 6
  (data (i32.const 0x140) "conformance_level") ;; 17
  (data (i32.const 0x160) "conformance_sizes") ;; 17
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  ;; the metrics' ids at 0x20 (type 0: a counter), 0x24 (1: a gauge), 0x38 (2: a histogram)
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.and
      (i32.and
        (i32.eqz (call $define (i32.const 0) (i32.const 0x100) (i32.const 16) (i32.const 0x20)))
        (i32.eqz (call $define (i32.const 1) (i32.const 0x140) (i32.const 17) (i32.const 0x24))))
      (i32.eqz (call $define (i32.const 2) (i32.const 0x160) (i32.const 17) (i32.const 0x38)))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $v i64)
    (drop (call $incr (i32.load (i32.const 0x20)) (i64.const 1)))
    (drop (call $record (i32.load (i32.const 0x24)) (i64.const 42)))
    (drop (call $record (i32.load (i32.const 0x38)) (i64.const 7)))
    (if (i32.eqz (call $getm (i32.load (i32.const 0x20)) (i32.const 0x28)))
      (then
        ;; one decimal digit is enough for the suite: the value is 1
        (i32.store8 (i32.const 0x30) (i32.add (i32.const 48) (i32.wrap_i64 (i64.load (i32.const 0x28)))))
        (drop (call $add (i32.const 0) (i32.const 0x120) (i32.const 6) (i32.const 0x30) (i32.const 1)))))
    (i32.const 0)))
