;; grpc.wat: a filter that asks a gRPC backend before letting a request through, written
;; against the Proxy-Wasm ABI (v0.2.1) by hand. The backend is the one its plugin
;; configuration names ("grpc" when it has none).
;;
;; On request headers it sends "hello" (with metadata x-md: from-filter) to
;; pkg.Service/<x-grpc-method, default Method> and pauses the request. x-grpc-mode says how:
;;   (none)  a stream (proxy_grpc_stream, proxy_grpc_send); the reply half-closes it
;;   u       a unary call (proxy_grpc_call)
;;   c       a stream that the filter cancels as soon as its initial metadata comes, then
;;           lets the request through with x-grpc-canceled: 1
;;   k       a unary call to pkg.Service/Hang and a stream to pkg.Service/AfterHang; the
;;           stream's reply cancels the call (x-unary-cancel: the status of the cancel)
;; A reply is copied into the request header x-grpc-reply (and the x-server-md of the
;; stream's initial metadata into x-grpc-initial-md), and the request resumes.
;; A call or stream that ends with a non-zero status gets the request a local 503 with
;; x-grpc-status: <status> and the status message as its body; one that cannot be opened, a
;; 503 with x-open-status: <the host function's status>.
(module
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_status" (func $get_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_call" (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $grpc_stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $grpc_send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $grpc_cancel (param i32) (result i32)))
  (import "env" "proxy_grpc_close" (func $grpc_close (param i32) (result i32)))

  (memory (export "memory") 1)

  ;; 0x10, 0x14: a returned pointer and size; 0x18 a returned id; 0x1c a returned status.
  ;; 0x20: the backend's name's size, the name at 0x100 (64 bytes at most).
  ;; 0x24: the size of the kept x-server-md, the value at 0x2000 (64 bytes at most).
  (data (i32.const 0x0200) "pkg.Service")        ;; 11
  (data (i32.const 0x0210) "Method")             ;; 6
  (data (i32.const 0x0218) "hello")              ;; 5
  (data (i32.const 0x0220) "x-grpc-method")      ;; 13
  (data (i32.const 0x0230) "x-grpc-mode")        ;; 11
  (data (i32.const 0x0240) "x-grpc-reply")       ;; 12
  (data (i32.const 0x0250) "x-grpc-canceled")    ;; 15
  (data (i32.const 0x0260) "Hang")               ;; 4
  (data (i32.const 0x0268) "AfterHang")          ;; 9
  (data (i32.const 0x0278) "x-unary-cancel")     ;; 14
  (data (i32.const 0x0288) "x-server-md")        ;; 11
  (data (i32.const 0x0298) "x-grpc-initial-md")  ;; 17
  (data (i32.const 0x02b0) "x-open-status")      ;; 13
  (data (i32.const 0x02c0) "grpc")               ;; 4
  (data (i32.const 0x02c8) "grpc_error")         ;; 10
  (data (i32.const 0x02d8) "x-grpc-status")      ;; 13
  (data (i32.const 0x02f8) "1")                  ;; 1
  ;; The call's metadata, as an ABI map: x-md: from-filter. 29 bytes.
  (data (i32.const 0x0300) "\01\00\00\00" "\04\00\00\00" "\0b\00\00\00" "x-md\00" "from-filter\00")
  ;; 0x0400: a local reply's headers, built by $reply; 0x0500..0x0510: digits, by $itoa.
  ;; 0x1000: per call or stream id (its low 8 bits), the request's context id and the mode.

  (global $heap (mut i32) (i32.const 0x8000))
  (global $pending_call (mut i32) (i32.const 0)) ;; the call that mode k cancels

  ;; A bump allocator that each callback resets: what the host hands over is used within
  ;; the callback that asked for it.
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (if (i32.gt_u (local.get $end) (i32.shl (memory.size) (i32.const 16)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (global.set $heap (i32.const 0x8000))
    (i32.store (i32.const 0x20) (i32.const 4))
    (memory.copy (i32.const 0x100) (i32.const 0x02c0) (i32.const 4))
    (if (i32.and (i32.gt_u (local.get $size) (i32.const 0)) (i32.le_u (local.get $size) (i32.const 64)))
      (then (if (i32.eqz (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0x10) (i32.const 0x14)))
        (then
          (memory.copy (i32.const 0x100) (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14)))
          (i32.store (i32.const 0x20) (i32.load (i32.const 0x14)))))))
    (i32.const 1))

  ;; $header looks key up in the request headers: its size (0 when absent), pointer at 0x10.
  (func $header (param $key i32) (param $len i32) (result i32)
    (if (call $get_header (i32.const 0) (local.get $key) (local.get $len) (i32.const 0x10) (i32.const 0x14))
      (then (i32.store (i32.const 0x14) (i32.const 0))))
    (i32.load (i32.const 0x14)))

  (func $slot (param $id i32) (result i32)
    (i32.add (i32.const 0x1000) (i32.shl (i32.and (local.get $id) (i32.const 0xff)) (i32.const 3))))
  (func $remember (param $id i32) (param $ctx i32) (param $mode i32)
    (i32.store (call $slot (local.get $id)) (local.get $ctx))
    (i32.store offset=4 (call $slot (local.get $id)) (local.get $mode)))
  (func $mode (param $id i32) (result i32) (i32.load offset=4 (call $slot (local.get $id))))
  ;; $enter makes the context that made call id effective; false when it is gone.
  (func $enter (param $id i32) (result i32)
    (i32.eqz (call $set_effective (i32.load (call $slot (local.get $id))))))

  ;; $itoa writes v in decimal to end at 0x0510 and returns the number of digits.
  (func $itoa (param $v i32) (result i32)
    (local $p i32)
    (local.set $p (i32.const 0x0510))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p) (i32.add (i32.const 48) (i32.rem_u (local.get $v) (i32.const 10))))
      (local.set $v (i32.div_u (local.get $v) (i32.const 10)))
      (br_if $digit (local.get $v)))
    (i32.sub (i32.const 0x0510) (local.get $p)))

  ;; $reply answers 503 with the header key: <n in decimal> and body.
  (func $reply (param $key i32) (param $klen i32) (param $n i32) (param $body i32) (param $blen i32)
    (local $digits i32) (local $at i32)
    (local.set $digits (call $itoa (local.get $n)))
    (i32.store (i32.const 0x0400) (i32.const 1))
    (i32.store (i32.const 0x0404) (local.get $klen))
    (i32.store (i32.const 0x0408) (local.get $digits))
    (memory.copy (i32.const 0x040c) (local.get $key) (local.get $klen))
    (local.set $at (i32.add (i32.const 0x040c) (local.get $klen)))
    (i32.store8 (local.get $at) (i32.const 0))
    (memory.copy (i32.add (local.get $at) (i32.const 1)) (i32.sub (i32.const 0x0510) (local.get $digits)) (local.get $digits))
    (local.set $at (i32.add (i32.add (local.get $at) (i32.const 1)) (local.get $digits)))
    (i32.store8 (local.get $at) (i32.const 0))
    (drop (call $local (i32.const 503) (i32.const 0x02c8) (i32.const 10) (local.get $body) (local.get $blen)
      (i32.const 0x0400) (i32.sub (i32.add (local.get $at) (i32.const 1)) (i32.const 0x0400)) (i32.const -1))))

  (func $open_failed (param $st i32) (result i32)
    (call $reply (i32.const 0x02b0) (i32.const 13) (local.get $st) (i32.const 0) (i32.const 0))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param $eos i32) (result i32)
    (local $m i32) (local $ml i32) (local $mode i32) (local $st i32) (local $id i32)
    (global.set $heap (i32.const 0x8000))
    (local.set $m (i32.const 0x0210))
    (local.set $ml (i32.const 6))
    (if (call $header (i32.const 0x0220) (i32.const 13))
      (then
        (local.set $m (i32.load (i32.const 0x10)))
        (local.set $ml (i32.load (i32.const 0x14)))))
    (local.set $mode (i32.const 0))
    (if (call $header (i32.const 0x0230) (i32.const 11))
      (then (local.set $mode (i32.load8_u (i32.load (i32.const 0x10))))))

    (if (i32.eq (local.get $mode) (i32.const 0x75)) (then ;; u
      (local.set $st (call $grpc_call (i32.const 0x100) (i32.load (i32.const 0x20)) (i32.const 0x0200) (i32.const 11)
        (local.get $m) (local.get $ml) (i32.const 0x0300) (i32.const 29) (i32.const 0x0218) (i32.const 5)
        (i32.const 5000) (i32.const 0x18)))
      (if (local.get $st) (then (return (call $open_failed (local.get $st)))))
      (call $remember (i32.load (i32.const 0x18)) (local.get $ctx) (local.get $mode))
      (return (i32.const 1))))

    (if (i32.eq (local.get $mode) (i32.const 0x6b)) (then ;; k
      (local.set $st (call $grpc_call (i32.const 0x100) (i32.load (i32.const 0x20)) (i32.const 0x0200) (i32.const 11)
        (i32.const 0x0260) (i32.const 4) (i32.const 0x0300) (i32.const 29) (i32.const 0x0218) (i32.const 5)
        (i32.const 5000) (i32.const 0x18)))
      (if (local.get $st) (then (return (call $open_failed (local.get $st)))))
      (global.set $pending_call (i32.load (i32.const 0x18)))
      (call $remember (global.get $pending_call) (local.get $ctx) (local.get $mode))
      (local.set $m (i32.const 0x0268))
      (local.set $ml (i32.const 9))))

    (local.set $st (call $grpc_stream (i32.const 0x100) (i32.load (i32.const 0x20)) (i32.const 0x0200) (i32.const 11)
      (local.get $m) (local.get $ml) (i32.const 0x0300) (i32.const 29) (i32.const 0x18)))
    (if (local.get $st) (then (return (call $open_failed (local.get $st)))))
    (local.set $id (i32.load (i32.const 0x18)))
    (call $remember (local.get $id) (local.get $ctx) (local.get $mode))
    (local.set $st (call $grpc_send (local.get $id) (i32.const 0x0218) (i32.const 5) (i32.const 0)))
    (if (local.get $st) (then (return (call $open_failed (local.get $st)))))
    (i32.const 1))

  (func (export "proxy_on_grpc_receive_initial_metadata") (param $root i32) (param $id i32) (param $n i32)
    (global.set $heap (i32.const 0x8000))
    (i32.store (i32.const 0x24) (i32.const 0))
    (if (i32.eqz (call $get_header (i32.const 4) (i32.const 0x0288) (i32.const 11) (i32.const 0x10) (i32.const 0x14)))
      (then (if (i32.le_u (i32.load (i32.const 0x14)) (i32.const 64)) (then
        (memory.copy (i32.const 0x2000) (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14)))
        (i32.store (i32.const 0x24) (i32.load (i32.const 0x14)))))))
    (if (i32.eq (call $mode (local.get $id)) (i32.const 0x63)) (then ;; c
      (drop (call $grpc_cancel (local.get $id)))
      (if (call $enter (local.get $id)) (then
        (drop (call $add_header (i32.const 0) (i32.const 0x0250) (i32.const 15) (i32.const 0x02f8) (i32.const 1)))
        (drop (call $continue (i32.const 0))))))))

  (func (export "proxy_on_grpc_receive") (param $root i32) (param $id i32) (param $size i32)
    (local $msg i32) (local $len i32) (local $digits i32)
    (global.set $heap (i32.const 0x8000))
    (if (call $get_buffer (i32.const 5) (i32.const 0) (local.get $size) (i32.const 0x10) (i32.const 0x14))
      (then (return)))
    (local.set $msg (i32.load (i32.const 0x10)))
    (local.set $len (i32.load (i32.const 0x14)))
    (if (i32.ne (call $mode (local.get $id)) (i32.const 0x75)) ;; a stream: we have said all we had
      (then (drop (call $grpc_close (local.get $id)))))
    (if (i32.eqz (call $enter (local.get $id))) (then (return)))
    (drop (call $add_header (i32.const 0) (i32.const 0x0240) (i32.const 12) (local.get $msg) (local.get $len)))
    (if (i32.load (i32.const 0x24)) (then
      (drop (call $add_header (i32.const 0) (i32.const 0x0298) (i32.const 17) (i32.const 0x2000) (i32.load (i32.const 0x24))))
      (i32.store (i32.const 0x24) (i32.const 0))))
    (if (global.get $pending_call) (then
      (local.set $digits (call $itoa (call $grpc_cancel (global.get $pending_call))))
      (global.set $pending_call (i32.const 0))
      (drop (call $add_header (i32.const 0) (i32.const 0x0278) (i32.const 14)
        (i32.sub (i32.const 0x0510) (local.get $digits)) (local.get $digits)))))
    (drop (call $continue (i32.const 0))))

  (func (export "proxy_on_grpc_close") (param $root i32) (param $id i32) (param $status i32)
    (global.set $heap (i32.const 0x8000))
    (if (i32.eqz (local.get $status)) (then (return)))
    (if (i32.eqz (call $enter (local.get $id))) (then (return)))
    (i32.store (i32.const 0x14) (i32.const 0))
    (drop (call $get_status (i32.const 0x1c) (i32.const 0x10) (i32.const 0x14)))
    (call $reply (i32.const 0x02d8) (i32.const 13) (local.get $status) (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))
)
