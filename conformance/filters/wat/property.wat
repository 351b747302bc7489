;; property.wat: proxy_get_property. The request gets x-path (request.path) and
;; x-plugin (plugin_name).
(module
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "request\00path") ;; 12
  (data (i32.const 0x120) "x-path")         ;; 6
  (data (i32.const 0x130) "plugin_name")    ;; 11
  (data (i32.const 0x140) "x-plugin")       ;; 8
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func $copy (param $path i32) (param $n i32) (param $hdr i32) (param $hn i32)
    (if (i32.eqz (call $prop (local.get $path) (local.get $n) (i32.const 0x10) (i32.const 0x14)))
      (then (drop (call $add (i32.const 0) (local.get $hdr) (local.get $hn)
        (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14)))))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $copy (i32.const 0x100) (i32.const 12) (i32.const 0x120) (i32.const 6))
    (call $copy (i32.const 0x130) (i32.const 11) (i32.const 0x140) (i32.const 8))
    (i32.const 0)))
