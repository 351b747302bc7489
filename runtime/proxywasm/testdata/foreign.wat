;; foreign.wat: a filter that calls the foreign function "later" and takes its answers in
;; proxy_on_foreign_function.
;;
;; proxy_on_request_headers calls later("ping"), keeps the status at 0x100 and the token it
;; returned (4 bytes) at 0x104, and pauses. A plugin configuration "boot" makes
;; proxy_on_configure call later("boot") the same way, from the root context.
;;
;; proxy_on_foreign_function(root, id, size) records root, id and size at 0x110, 0x114,
;; 0x118, reads buffer 8 (FOREIGN_FUNCTION_ARGUMENTS) into the pointer and size at 0x300,
;; 0x304 with its status at 0x11c, says the data with proxy_log (level info), counts itself
;; at 0x128, and, when a stream is paused, makes it effective and continues it (statuses
;; at 0x120, 0x124). Outside that callback, it reads buffer 8 once more in
;; proxy_on_response_headers: status at 0x130.
(module
  (import "env" "proxy_call_foreign_function" (func $call_foreign (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  (data (i32.const 0x400) "later") ;; 5
  (data (i32.const 0x410) "ping")  ;; 4
  (data (i32.const 0x420) "boot")  ;; 4

  (global $heap (mut i32) (i32.const 0x8000))
  (global $stream (mut i32) (i32.const 0)) ;; the paused stream, 0 when none

  (func $malloc (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 0x10000))
      (then (global.set $heap (i32.const 0x8000))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  ;; later calls the foreign function with args and keeps its status and token.
  (func $later (param $args i32) (param $n i32)
    (i32.store (i32.const 0x100)
      (call $call_foreign (i32.const 0x400) (i32.const 5) (local.get $args) (local.get $n) (i32.const 0x308) (i32.const 0x30c)))
    (if (i32.eq (i32.load (i32.const 0x30c)) (i32.const 4))
      (then (i32.store (i32.const 0x104) (i32.load (i32.load (i32.const 0x308)))))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (i32.eq (local.get $size) (i32.const 4)) (then (call $later (i32.const 0x420) (i32.const 4))))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param $id i32) (param i32 i32) (result i32)
    (global.set $stream (local.get $id))
    (call $later (i32.const 0x410) (i32.const 4))
    (i32.const 1))

  (func (export "proxy_on_response_headers") (param $id i32) (param i32 i32) (result i32)
    (i32.store (i32.const 0x130) (call $get_buffer (i32.const 8) (i32.const 0) (i32.const 16) (i32.const 0x310) (i32.const 0x314)))
    (i32.const 0))

  (func (export "proxy_on_foreign_function") (param $root i32) (param $id i32) (param $size i32)
    (i32.store (i32.const 0x110) (local.get $root))
    (i32.store (i32.const 0x114) (local.get $id))
    (i32.store (i32.const 0x118) (local.get $size))
    (i32.store (i32.const 0x11c)
      (call $get_buffer (i32.const 8) (i32.const 0) (local.get $size) (i32.const 0x300) (i32.const 0x304)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 0x300)) (i32.load (i32.const 0x304))))
    (i32.store (i32.const 0x128) (i32.add (i32.load (i32.const 0x128)) (i32.const 1)))
    (if (global.get $stream) (then
      (i32.store (i32.const 0x120) (call $set_effective (global.get $stream)))
      (i32.store (i32.const 0x124) (call $continue (i32.const 0)))
      (global.set $stream (i32.const 0)))))

  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
)
