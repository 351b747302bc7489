;; bodyread.wat: reading a body. proxy_on_request_body pauses until the end of the stream
;; (the host buffers the body), then reads its size with proxy_get_buffer_status and the
;; whole of it with proxy_get_buffer_bytes, and its last 4 bytes by offset; the response
;; carries them, as x-body-seen and x-body-tail, and x-size-match: yes when the buffer's
;; status gave the body_size of the callback.
(module
  (import "env" "proxy_get_buffer_status" (func $status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))
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
  (global $body (mut i32) (i32.const 0))
  (global $body_len (mut i32) (i32.const -1))
  (global $tail (mut i32) (i32.const 0))
  (global $tail_len (mut i32) (i32.const -1))
  (global $size_ok (mut i32) (i32.const 0))
  (data (i32.const 0x100) "x-body-seen")  ;; 11
  (data (i32.const 0x110) "x-body-tail")  ;; 11
  (data (i32.const 0x120) "x-size-match") ;; 12
  (data (i32.const 0x130) "yes")          ;; 3
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32)
    (global.set $body_len (i32.const -1))
    (global.set $tail_len (i32.const -1))
    (global.set $size_ok (i32.const 0)))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param $eos i32) (result i32)
    (local $n i32)
    (if (i32.eqz (local.get $eos)) (then (return (i32.const 1)))) ;; pause: the host buffers it
    ;; the size at 0x20, the flags at 0x24
    (if (call $status (i32.const 0) (i32.const 0x20) (i32.const 0x24)) (then (return (i32.const 0))))
    (local.set $n (i32.load (i32.const 0x20)))
    (global.set $size_ok (i32.eq (local.get $n) (local.get $size)))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 0) (local.get $n) (i32.const 0x10) (i32.const 0x14)))
      (then
        (global.set $body (i32.load (i32.const 0x10)))
        (global.set $body_len (i32.load (i32.const 0x14)))))
    (if (i32.ge_u (local.get $n) (i32.const 4))
      (then (if (i32.eqz (call $get (i32.const 0) (i32.sub (local.get $n) (i32.const 4)) (i32.const 4) (i32.const 0x10) (i32.const 0x14)))
        (then
          (global.set $tail (i32.load (i32.const 0x10)))
          (global.set $tail_len (i32.load (i32.const 0x14)))))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (i32.ge_s (global.get $body_len) (i32.const 0))
      (then (drop (call $add (i32.const 2) (i32.const 0x100) (i32.const 11) (global.get $body) (global.get $body_len)))))
    (if (i32.ge_s (global.get $tail_len) (i32.const 0))
      (then (drop (call $add (i32.const 2) (i32.const 0x110) (i32.const 11) (global.get $tail) (global.get $tail_len)))))
    (if (global.get $size_ok)
      (then (drop (call $add (i32.const 2) (i32.const 0x120) (i32.const 12) (i32.const 0x130) (i32.const 3)))))
    (i32.const 0)))
