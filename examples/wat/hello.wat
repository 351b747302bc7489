;; hello.wat: a Proxy-Wasm filter written by hand in the WebAssembly text format, against the
;; ABI (v0.2.1) with no SDK and no libc. It does what examples/c/hello does:
;;   - every request going upstream gets "x-hello: wat" (proxy_add_header_map_value);
;;   - every response gets "x-hello: wat" (proxy_replace_header_map_value: set, not added);
;;   - a request for exactly /hello (query ignored) is answered by the filter: 200, a short
;;     body, content-type and x-hello (proxy_send_local_response).
;;
;; Memory: the host hands data to the filter in memory it gets from the exported malloc. Here
;; malloc is a bump allocator that the start of every callback resets: everything the host
;; allocates is used within the callback that asked for it, so nothing outlives it.
;;
;; Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
;; Build: wat2wasm hello.wat -o hello.wasm
(module
  (import "env" "proxy_log"
    (func $proxy_log (param $level i32) (param $msg i32) (param $msg_size i32) (result i32)))
  (import "env" "proxy_get_header_map_value"
    (func $proxy_get_header_map_value
      (param $map i32) (param $key i32) (param $key_size i32)
      (param $value_ptr_ptr i32) (param $value_size_ptr i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $proxy_add_header_map_value
      (param $map i32) (param $key i32) (param $key_size i32)
      (param $value i32) (param $value_size i32) (result i32)))
  (import "env" "proxy_replace_header_map_value"
    (func $proxy_replace_header_map_value
      (param $map i32) (param $key i32) (param $key_size i32)
      (param $value i32) (param $value_size i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $proxy_send_local_response
      (param $status i32) (param $details i32) (param $details_size i32)
      (param $body i32) (param $body_size i32)
      (param $headers i32) (param $headers_size i32) (param $grpc_status i32) (result i32)))

  (memory (export "memory") 1)

  ;; 256, 260: where the host writes a returned pointer and size.
  (data (i32.const 1024) ":path")                     ;; 5 bytes
  (data (i32.const 1032) "x-hello")                   ;; 7
  (data (i32.const 1040) "wat")                       ;; 3
  (data (i32.const 1048) "/hello")                    ;; 6
  (data (i32.const 1056) "hello_local")               ;; 11
  (data (i32.const 1072) "hello from a WAT filter\n") ;; 24
  (data (i32.const 1104) "started")                   ;; 7
  ;; The local reply's headers as an ABI map: u32 count, (key size, value size) per field,
  ;; then the keys and values, each followed by a NUL. 71 bytes.
  (data (i32.const 1120)
    "\02\00\00\00"
    "\0c\00\00\00" "\19\00\00\00"
    "\07\00\00\00" "\03\00\00\00"
    "content-type\00" "text/plain; charset=utf-8\00"
    "x-hello\00" "wat\00")

  (global $heap_base i32 (i32.const 2048))
  (global $heap (mut i32) (i32.const 2048))

  ;; malloc returns size bytes, 8-aligned, growing memory when it must; 0 when it cannot.
  (func $malloc (export "malloc") (param $size i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $size)))
    (if (i32.lt_u (local.get $end) (local.get $p)) (then (return (i32.const 0))))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow (i32.shr_u
                (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 0xffff))
                (i32.const 16)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func (export "proxy_abi_version_0_2_1"))

  (func (export "proxy_on_vm_start") (param $root i32) (param $size i32) (result i32)
    (drop (call $proxy_log (i32.const 2) (i32.const 1104) (i32.const 7)))
    (i32.const 1))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (i32.const 1))

  (func (export "proxy_on_context_create") (param $id i32) (param $parent i32))

  ;; $is_local reports whether the :path at $p, $n bytes long, is /hello up to any '?'.
  (func $is_local (param $p i32) (param $n i32) (result i32)
    (local $i i32)
    ;; cut at the first '?'
    (block $cut
      (loop $scan
        (br_if $cut (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 63))
          (then (local.set $n (local.get $i)) (br $cut)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (if (i32.ne (local.get $n) (i32.const 6)) (then (return (i32.const 0))))
    (local.set $i (i32.const 0))
    (block $differ
      (loop $cmp
        (if (i32.ge_u (local.get $i) (i32.const 6)) (then (return (i32.const 1))))
        (br_if $differ
          (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $i)))
                  (i32.load8_u (i32.add (i32.const 1048) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $cmp)))
    (i32.const 0))

  (func (export "proxy_on_request_headers")
    (param $id i32) (param $headers i32) (param $eos i32) (result i32)
    (global.set $heap (global.get $heap_base))
    (if (i32.eqz (call $proxy_get_header_map_value
                   (i32.const 0) (i32.const 1024) (i32.const 5) (i32.const 256) (i32.const 260)))
      (then
        (if (call $is_local (i32.load (i32.const 256)) (i32.load (i32.const 260)))
          (then
            (drop (call $proxy_send_local_response
              (i32.const 200) (i32.const 1056) (i32.const 11)
              (i32.const 1072) (i32.const 24)
              (i32.const 1120) (i32.const 71)
              (i32.const -1)))
            (return (i32.const 1)))))) ;; Pause: the filter answered
    (drop (call $proxy_add_header_map_value
      (i32.const 0) (i32.const 1032) (i32.const 7) (i32.const 1040) (i32.const 3)))
    (i32.const 0))

  (func (export "proxy_on_response_headers")
    (param $id i32) (param $headers i32) (param $eos i32) (result i32)
    (global.set $heap (global.get $heap_base))
    (drop (call $proxy_replace_header_map_value
      (i32.const 2) (i32.const 1032) (i32.const 7) (i32.const 1040) (i32.const 3)))
    (i32.const 0))

  (func (export "proxy_on_done") (param $id i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param $id i32))
  (func (export "proxy_on_delete") (param $id i32))
)
