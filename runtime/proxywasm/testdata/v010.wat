;; v010.wat: an ABI 0.1.0 filter: proxy_on_request_headers without end_of_stream,
;; proxy_get_configuration, proxy_continue_request, and proxy_on_memory_allocate.
;; proxy_on_configure copies the configuration to 0x0300 (size at 0x02fc, status at
;; 0x0100); proxy_on_request_headers looks up a header that is absent (status at 0x0104,
;; value size at 0x010c), resumes the request (status at 0x0110) and pauses.
(module
  (import "env" "proxy_get_configuration" (func $get_config (param i32 i32) (result i32)))
  (import "env" "proxy_continue_request" (func $continue_request (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 0x0800) "x-absent")
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "proxy_abi_version_0_1_0"))
  (func (export "proxy_on_configure") (param $id i32) (param $size i32) (result i32)
    (i32.store (i32.const 0x0100) (call $get_config (i32.const 0x02f8) (i32.const 0x02fc)))
    (memory.copy (i32.const 0x0300) (i32.load (i32.const 0x02f8)) (i32.load (i32.const 0x02fc)))
    (i32.const 1))
  (func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (result i32)
    (i32.store (i32.const 0x0104) (call $get_header (i32.const 0) (i32.const 0x0800) (i32.const 8) (i32.const 0x0108) (i32.const 0x010c)))
    (i32.store (i32.const 0x0110) (call $continue_request))
    (i32.const 1))
)
