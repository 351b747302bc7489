;; gate.wat: the gate example in WebAssembly text, against the Proxy-Wasm ABI (v0.2.1) by
;; hand: it counts every request in the metric gate_requests, answers one that carries
;; x-deny: yes with 403 itself, and marks the others, and their responses, with
;; x-gate: wat. See ../README.md.
(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_increment_metric" (func $incr (param i32 i64) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; What the host hands over (a header's value) goes at $top, which each request resets:
  ;; nothing is kept past the callback that asked for it.
  (global $top (mut i32) (i32.const 0x1000))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $n)) (i32.const 0x10000)) (then (return (i32.const 0))))
    (global.set $top (i32.add (local.get $p) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "gate_requests")  ;; 13
  (data (i32.const 0x110) "x-deny")         ;; 6
  (data (i32.const 0x118) "yes")            ;; 3
  (data (i32.const 0x120) "x-gate")         ;; 6
  (data (i32.const 0x128) "wat")            ;; 3
  (data (i32.const 0x130) "gate_denied")    ;; 11
  (data (i32.const 0x140) "denied by wat\n") ;; 14
  ;; the local reply's headers: 1 pair, x-gate: wat. 23 bytes.
  (data (i32.const 0x150) "\01\00\00\00\06\00\00\00\03\00\00\00x-gate\00wat\00")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  ;; the metric's id at 0x20
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.eqz (call $define (i32.const 0) (i32.const 0x100) (i32.const 13) (i32.const 0x20))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (global.set $top (i32.const 0x1000))
    (drop (call $incr (i32.load (i32.const 0x20)) (i64.const 1)))
    ;; x-deny's value: pointer and size at 0x10, 0x14
    (if (i32.eqz (call $get (i32.const 0) (i32.const 0x110) (i32.const 6) (i32.const 0x10) (i32.const 0x14)))
      (then (if (i32.and (i32.eq (i32.load (i32.const 0x14)) (i32.const 3))
                         (i32.eq (i32.load16_u (i32.load (i32.const 0x10))) (i32.load16_u (i32.const 0x118))))
        (then (if (i32.eq (i32.load8_u offset=2 (i32.load (i32.const 0x10))) (i32.load8_u (i32.const 0x11a)))
          (then
            (drop (call $reply (i32.const 403) (i32.const 0x130) (i32.const 11) (i32.const 0x140) (i32.const 14)
              (i32.const 0x150) (i32.const 23) (i32.const -1)))
            (return (i32.const 1))))))))
    (drop (call $add (i32.const 0) (i32.const 0x120) (i32.const 6) (i32.const 0x128) (i32.const 3)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 0x120) (i32.const 6) (i32.const 0x128) (i32.const 3)))
    (i32.const 0)))
