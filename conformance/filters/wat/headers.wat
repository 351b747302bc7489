;; headers.wat: header map calls. On the request: adds x-conformance-added: yes, replaces
;; x-replace with "replaced", removes x-remove, and copies x-copy-from into x-copied; on
;; the response: adds x-response-added: yes.
(module
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "x-conformance-added") ;; 19
  (data (i32.const 0x120) "yes")                 ;; 3
  (data (i32.const 0x130) "x-replace")           ;; 9
  (data (i32.const 0x140) "replaced")            ;; 8
  (data (i32.const 0x150) "x-remove")            ;; 8
  (data (i32.const 0x160) "x-copy-from")         ;; 11
  (data (i32.const 0x170) "x-copied")            ;; 8
  (data (i32.const 0x180) "x-response-added")    ;; 16
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 0) (i32.const 0x100) (i32.const 19) (i32.const 0x120) (i32.const 3)))
    (drop (call $replace (i32.const 0) (i32.const 0x130) (i32.const 9) (i32.const 0x140) (i32.const 8)))
    (drop (call $remove (i32.const 0) (i32.const 0x150) (i32.const 8)))
    ;; the value of x-copy-from, as a pointer and size the host writes at 0x10 and 0x14
    (if (i32.eqz (call $get (i32.const 0) (i32.const 0x160) (i32.const 11) (i32.const 0x10) (i32.const 0x14)))
      (then (drop (call $add (i32.const 0) (i32.const 0x170) (i32.const 8)
        (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 0x180) (i32.const 16) (i32.const 0x120) (i32.const 3)))
    (i32.const 0)))
