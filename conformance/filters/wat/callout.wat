;; callout.wat: an HTTP callout that holds the request. proxy_on_request_headers calls the
;; cluster "callout" (GET /check, :authority callout) and pauses; when the answer comes,
;; the stream's context is made effective, the answer's :status is added to the request
;; as x-callout-status, and the request goes on. With the request header x-callout-timeout
;; the call's timeout is 200ms (5s without): one that runs out reaches
;; proxy_on_http_call_response with no headers, and the request goes on with
;; x-callout-failed: yes.
(module
  (import "env" "proxy_http_call"
    (func $call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (global $stream (mut i32) (i32.const 0))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "callout") ;; 7
  ;; the callout's headers: 3 pairs, their sizes, then each name and value with a NUL
  (data (i32.const 0x200) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\06\00\00\00\0a\00\00\00\07\00\00\00:method\00GET\00:path\00/check\00:authority\00callout\00") ;; 72
  (data (i32.const 0x300) ":status")          ;; 7
  (data (i32.const 0x310) "x-callout-status") ;; 16
  (data (i32.const 0x330) "x-callout-timeout") ;; 17
  (data (i32.const 0x348) "x-callout-failed")  ;; 16
  (data (i32.const 0x360) "yes")               ;; 3
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $timeout i32)
    (global.set $stream (local.get $ctx))
    (local.set $timeout (i32.const 5000))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 0x330) (i32.const 17) (i32.const 0x10) (i32.const 0x14)))
      (then (local.set $timeout (i32.const 200))))
    (if (call $call (i32.const 0x100) (i32.const 7) (i32.const 0x200) (i32.const 72)
          (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (local.get $timeout) (i32.const 0x20))
      (then (return (i32.const 0)))) ;; the call failed: go on without it
    (i32.const 1))
  (func (export "proxy_on_http_call_response") (param i32 i32) (param $headers i32) (param i32 i32)
    (drop (call $effective (global.get $stream)))
    (if (i32.eqz (local.get $headers))
      (then (drop (call $add (i32.const 0) (i32.const 0x348) (i32.const 16) (i32.const 0x360) (i32.const 3)))))
    (if (i32.eqz (call $get (i32.const 6) (i32.const 0x300) (i32.const 7) (i32.const 0x10) (i32.const 0x14)))
      (then (drop (call $add (i32.const 0) (i32.const 0x310) (i32.const 16)
        (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    (drop (call $continue (i32.const 0)))))
