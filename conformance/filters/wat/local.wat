;; local.wat: proxy_send_local_response from proxy_on_request_headers: 403, the body
;; "denied by filter\n" and the header x-local: yes; the backend never sees the request.
(module
  (import "env" "proxy_send_local_response"
    (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "denied by filter\n") ;; 17
  (data (i32.const 0x120) "denied")             ;; 6
  ;; the header map x-local: yes, in the ABI's serialization: count, sizes, then the
  ;; name and value each with a NUL after it
  (data (i32.const 0x200) "\01\00\00\00\07\00\00\00\03\00\00\00x-local\00yes\00") ;; 24
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $local (i32.const 403) (i32.const 0x120) (i32.const 6) (i32.const 0x100) (i32.const 17)
      (i32.const 0x200) (i32.const 24) (i32.const -1)))
    (i32.const 1)))
