;; grpc.wat: gRPC callouts to the cluster "callout" (which speaks h2c), service
;; conformance.Echo, each with the metadata x-md: from-filter and the message "hello". The
;; request header x-grpc-mode says which:
;;   (none)  proxy_grpc_call to Say
;;   stream  proxy_grpc_stream to Stream and proxy_grpc_send; the reply's arrival
;;           half-closes it (proxy_grpc_close)
;;   cancel  proxy_grpc_stream to Stream, proxy_grpc_send, then proxy_grpc_cancel at once:
;;           the request goes on with x-grpc-cancel: what the cancel returned (hex digit)
;;   fail    proxy_grpc_call to Fail, which the backend refuses
;; The request is held until the exchange ends, and then carries what came back:
;; x-grpc-initial-md and x-grpc-trailing-md (the backend's x-server-md and x-server-trailer
;; from proxy_on_grpc_receive_initial_metadata and _trailing_metadata), x-grpc-reply (the
;; message, from proxy_on_grpc_receive), and, from proxy_on_grpc_close, x-grpc-status (its
;; status, a hex digit) and x-grpc-message (proxy_get_status's message, when it has one).
;; A call that succeeds ends with its reply: as in Envoy, proxy_on_grpc_close comes only
;; for one that fails. A call that cannot be made sends the request on with x-grpc-open:
;; the status (hex digit).
(module
  (import "env" "proxy_grpc_call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $cancel (param i32) (result i32)))
  (import "env" "proxy_grpc_close" (func $close (param i32) (result i32)))
  (import "env" "proxy_get_status" (func $get_status (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
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
  (global $ctx (mut i32) (i32.const 0))  ;; the stream the call is for
  (global $id (mut i32) (i32.const -1))  ;; the call's id
  (global $streaming (mut i32) (i32.const 0))
  (global $reply (mut i32) (i32.const 0))
  (global $reply_len (mut i32) (i32.const -1))
  (global $imd (mut i32) (i32.const 0))
  (global $imd_len (mut i32) (i32.const -1))
  (global $tmd (mut i32) (i32.const 0))
  (global $tmd_len (mut i32) (i32.const -1))
  (data (i32.const 0x100) "callout")             ;; 7
  (data (i32.const 0x108) "conformance.Echo")    ;; 16
  (data (i32.const 0x118) "Say")                 ;; 3
  (data (i32.const 0x11c) "Stream")              ;; 6
  (data (i32.const 0x124) "Fail")                ;; 4
  (data (i32.const 0x128) "hello")               ;; 5
  (data (i32.const 0x130) "x-grpc-mode")         ;; 11
  (data (i32.const 0x140) "x-grpc-cancel")       ;; 13
  (data (i32.const 0x150) "x-grpc-initial-md")   ;; 17
  (data (i32.const 0x168) "x-grpc-trailing-md")  ;; 18
  (data (i32.const 0x180) "x-grpc-reply")        ;; 12
  (data (i32.const 0x190) "x-grpc-status")       ;; 13
  (data (i32.const 0x1a0) "x-grpc-message")      ;; 14
  (data (i32.const 0x1b0) "x-server-md")         ;; 11
  (data (i32.const 0x1c0) "x-server-trailer")    ;; 16
  (data (i32.const 0x1d0) "x-grpc-open")         ;; 11
  (data (i32.const 0x1f0) "0123456789abcdef")
  ;; the metadata, as an ABI map: x-md: from-filter. 29 bytes.
  (data (i32.const 0x200) "\01\00\00\00\04\00\00\00\0b\00\00\00x-md\00from-filter\00")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  ;; $hex adds name: the hex digit of v to the request headers
  (func $hex (param $name i32) (param $n i32) (param $v i32)
    (drop (call $add (i32.const 0) (local.get $name) (local.get $n)
      (i32.add (i32.const 0x1f0) (i32.and (local.get $v) (i32.const 15))) (i32.const 1))))
  (func $put (param $name i32) (param $n i32) (param $v i32) (param $len i32)
    (if (i32.ge_s (local.get $len) (i32.const 0))
      (then (drop (call $add (i32.const 0) (local.get $name) (local.get $n) (local.get $v) (local.get $len))))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $mode i32) (local $st i32)
    (global.set $ctx (local.get $ctx))
    (global.set $reply_len (i32.const -1))
    (global.set $imd_len (i32.const -1))
    (global.set $tmd_len (i32.const -1))
    (global.set $streaming (i32.const 0))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 0x130) (i32.const 11) (i32.const 0x10) (i32.const 0x14)))
      (then (local.set $mode (i32.load8_u (i32.load (i32.const 0x10))))))
    ;; s(tream) and c(ancel): a stream
    (if (i32.or (i32.eq (local.get $mode) (i32.const 0x73)) (i32.eq (local.get $mode) (i32.const 0x63)))
      (then
        (local.set $st (call $stream (i32.const 0x100) (i32.const 7) (i32.const 0x108) (i32.const 16)
          (i32.const 0x11c) (i32.const 6) (i32.const 0x200) (i32.const 29) (i32.const 0x18)))
        (if (local.get $st) (then (call $hex (i32.const 0x1d0) (i32.const 11) (local.get $st)) (return (i32.const 0))))
        (global.set $id (i32.load (i32.const 0x18)))
        (global.set $streaming (i32.const 1))
        (drop (call $send (global.get $id) (i32.const 0x128) (i32.const 5) (i32.const 0)))
        (if (i32.eq (local.get $mode) (i32.const 0x63))
          (then
            (call $hex (i32.const 0x140) (i32.const 13) (call $cancel (global.get $id)))
            (return (i32.const 0))))
        (return (i32.const 1))))
    ;; a call: Say, or Fail for f(ail)
    (if (i32.eq (local.get $mode) (i32.const 0x66))
      (then (local.set $st (call $call (i32.const 0x100) (i32.const 7) (i32.const 0x108) (i32.const 16)
        (i32.const 0x124) (i32.const 4) (i32.const 0x200) (i32.const 29) (i32.const 0x128) (i32.const 5)
        (i32.const 5000) (i32.const 0x18))))
      (else (local.set $st (call $call (i32.const 0x100) (i32.const 7) (i32.const 0x108) (i32.const 16)
        (i32.const 0x118) (i32.const 3) (i32.const 0x200) (i32.const 29) (i32.const 0x128) (i32.const 5)
        (i32.const 5000) (i32.const 0x18)))))
    (if (local.get $st) (then (call $hex (i32.const 0x1d0) (i32.const 11) (local.get $st)) (return (i32.const 0))))
    (global.set $id (i32.load (i32.const 0x18)))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive_initial_metadata") (param i32) (param $id i32) (param i32)
    (if (i32.eqz (call $get (i32.const 4) (i32.const 0x1b0) (i32.const 11) (i32.const 0x10) (i32.const 0x14)))
      (then
        (global.set $imd (i32.load (i32.const 0x10)))
        (global.set $imd_len (i32.load (i32.const 0x14))))))
  (func (export "proxy_on_grpc_receive") (param i32) (param $id i32) (param $size i32)
    (if (i32.eqz (call $get_buffer (i32.const 5) (i32.const 0) (local.get $size) (i32.const 0x10) (i32.const 0x14)))
      (then
        (global.set $reply (i32.load (i32.const 0x10)))
        (global.set $reply_len (i32.load (i32.const 0x14)))))
    (if (global.get $streaming)
      (then (drop (call $close (local.get $id))))
      (else (if (i32.eqz (call $effective (global.get $ctx))) (then (call $resume))))))
  ;; $resume adds what came back to the request, and lets it go on
  (func $resume
    (call $put (i32.const 0x150) (i32.const 17) (global.get $imd) (global.get $imd_len))
    (call $put (i32.const 0x168) (i32.const 18) (global.get $tmd) (global.get $tmd_len))
    (call $put (i32.const 0x180) (i32.const 12) (global.get $reply) (global.get $reply_len))
    (drop (call $continue (i32.const 0))))
  (func (export "proxy_on_grpc_receive_trailing_metadata") (param i32) (param $id i32) (param i32)
    (if (i32.eqz (call $get (i32.const 5) (i32.const 0x1c0) (i32.const 16) (i32.const 0x10) (i32.const 0x14)))
      (then
        (global.set $tmd (i32.load (i32.const 0x10)))
        (global.set $tmd_len (i32.load (i32.const 0x14))))))
  (func (export "proxy_on_grpc_close") (param i32) (param $id i32) (param $status i32)
    (if (call $effective (global.get $ctx)) (then (return)))
    (call $hex (i32.const 0x190) (i32.const 13) (local.get $status))
    ;; the status code at 0x1c, the message's pointer and size at 0x10, 0x14
    (i32.store (i32.const 0x14) (i32.const 0))
    (if (i32.eqz (call $get_status (i32.const 0x1c) (i32.const 0x10) (i32.const 0x14)))
      (then (if (i32.load (i32.const 0x14))
        (then (call $put (i32.const 0x1a0) (i32.const 14) (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14)))))))
    (call $resume)))
