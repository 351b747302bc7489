;; close.wat: proxy_close_stream. proxy_on_request_headers resets the request
;; (stream type HTTP_REQUEST): the backend never hears of it, and the client's stream ends
;; without a response.
(module
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
  (memory (export "memory") 1)
  ;; never called: no host call of this filter hands memory back
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $close (i32.const 0)))
    (i32.const 1)))
