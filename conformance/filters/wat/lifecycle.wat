;; lifecycle.wat: configuration, the host's clock and log level, and the end of a stream.
;;
;; proxy_on_vm_start notes that it ran; proxy_on_configure reads the plugin configuration
;; with proxy_get_buffer_bytes (PLUGIN_CONFIGURATION). Each request gets x-vm-started: yes,
;; x-config: the configuration, x-log-level-valid: yes when proxy_get_log_level gives a
;; level of the spec (0 to 5), x-clock: yes when proxy_get_current_time_nanoseconds is
;; after 2020, x-done-status: what proxy_done returns outside proxy_on_done (a hex digit;
;; the spec's NOT_FOUND is 1), and x-lifecycle: what an earlier stream left in shared data.
;;
;; As a stream ends, each callback appends a letter: d for proxy_on_done (which returns
;; true), l for proxy_on_log, h when proxy_on_log could read the request header
;; x-lifecycle-probe (the spec lets it), x for proxy_on_delete, which stores the letters in
;; the shared data key "lifecycle": "dlhx" in the spec's order. proxy_on_log also logs
;; "lifecycle: on_log" at info.
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $log_level (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set_shared (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get_shared (param i32 i32 i32 i32 i32) (result i32)))
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
  (global $vm_started (mut i32) (i32.const 0))
  (global $config (mut i32) (i32.const 0))
  (global $config_len (mut i32) (i32.const 0))
  (global $stream (mut i32) (i32.const 0)) ;; the stream context whose end is recorded
  (global $seq_len (mut i32) (i32.const 0)) ;; the letters, at 0x800
  (data (i32.const 0x100) "x-vm-started")       ;; 12
  (data (i32.const 0x110) "x-config")           ;; 8
  (data (i32.const 0x120) "x-log-level-valid")  ;; 17
  (data (i32.const 0x138) "x-clock")            ;; 7
  (data (i32.const 0x140) "x-done-status")      ;; 13
  (data (i32.const 0x150) "x-lifecycle")        ;; 11
  (data (i32.const 0x160) "x-lifecycle-probe")  ;; 17
  (data (i32.const 0x178) "lifecycle")          ;; 9
  (data (i32.const 0x188) "lifecycle: on_log")  ;; 17
  (data (i32.const 0x1a0) "yes")                ;; 3
  (data (i32.const 0x1f0) "0123456789abcdef")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param $ctx i32) (param $parent i32)
    (if (local.get $parent)
      (then
        (global.set $stream (local.get $ctx))
        (global.set $seq_len (i32.const 0)))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (global.set $vm_started (i32.const 1))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32) (param $size i32) (result i32)
    (if (i32.eqz (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0x10) (i32.const 0x14)))
      (then
        (global.set $config (i32.load (i32.const 0x10)))
        (global.set $config_len (i32.load (i32.const 0x14)))))
    (i32.const 1))
  (func $yes (param $name i32) (param $n i32)
    (drop (call $add (i32.const 0) (local.get $name) (local.get $n) (i32.const 0x1a0) (i32.const 3))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (global.get $vm_started) (then (call $yes (i32.const 0x100) (i32.const 12))))
    (drop (call $add (i32.const 0) (i32.const 0x110) (i32.const 8) (global.get $config) (global.get $config_len)))
    (if (i32.eqz (call $log_level (i32.const 0x20)))
      (then (if (i32.le_u (i32.load (i32.const 0x20)) (i32.const 5))
        (then (call $yes (i32.const 0x120) (i32.const 17))))))
    (if (i32.eqz (call $now (i32.const 0x28)))
      (then (if (i64.gt_u (i64.load (i32.const 0x28)) (i64.const 1577836800000000000))
        (then (call $yes (i32.const 0x138) (i32.const 7))))))
    (drop (call $add (i32.const 0) (i32.const 0x140) (i32.const 13)
      (i32.add (i32.const 0x1f0) (i32.and (call $done) (i32.const 15))) (i32.const 1)))
    ;; the value's pointer and size at 0x10, 0x14; the CAS at 0x18
    (if (i32.eqz (call $get_shared (i32.const 0x178) (i32.const 9) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18)))
      (then (drop (call $add (i32.const 0) (i32.const 0x150) (i32.const 11) (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    (i32.const 0))
  (func $letter (param $ctx i32) (param $c i32)
    (if (i32.and (i32.eq (local.get $ctx) (global.get $stream)) (i32.lt_u (global.get $seq_len) (i32.const 16)))
      (then
        (i32.store8 (i32.add (i32.const 0x800) (global.get $seq_len)) (local.get $c))
        (global.set $seq_len (i32.add (global.get $seq_len) (i32.const 1))))))
  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (call $letter (local.get $ctx) (i32.const 100)) ;; d
    (i32.const 1))
  (func (export "proxy_on_log") (param $ctx i32)
    (call $letter (local.get $ctx) (i32.const 108)) ;; l
    (if (i32.eqz (call $get (i32.const 0) (i32.const 0x160) (i32.const 17) (i32.const 0x10) (i32.const 0x14)))
      (then (call $letter (local.get $ctx) (i32.const 104)))) ;; h
    (if (i32.eq (local.get $ctx) (global.get $stream))
      (then (drop (call $log (i32.const 2) (i32.const 0x188) (i32.const 17))))))
  (func (export "proxy_on_delete") (param $ctx i32)
    (call $letter (local.get $ctx) (i32.const 120)) ;; x
    (if (i32.eq (local.get $ctx) (global.get $stream))
      (then (drop (call $set_shared (i32.const 0x178) (i32.const 9) (i32.const 0x800) (global.get $seq_len) (i32.const 0)))))))
