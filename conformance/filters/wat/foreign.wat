;; foreign.wat: foreign functions. Each request calls a function no host has
;; ("conformance.no_such_function"): x-unknown-status is what that returns (a hex digit;
;; the spec's NOT_FOUND is 1). It then compresses "hello hello hello" with Envoy's
;; "compress" and uncompresses the result with "uncompress": x-roundtrip is what comes
;; back, when both calls succeed.
(module
  (import "env" "proxy_call_foreign_function" (func $call (param i32 i32 i32 i32 i32 i32) (result i32)))
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
  (data (i32.const 0x100) "conformance.no_such_function") ;; 28
  (data (i32.const 0x120) "x-unknown-status")             ;; 16
  (data (i32.const 0x130) "compress")                     ;; 8
  (data (i32.const 0x138) "uncompress")                   ;; 10
  (data (i32.const 0x148) "hello hello hello")            ;; 17
  (data (i32.const 0x160) "x-roundtrip")                  ;; 11
  (data (i32.const 0x1f0) "0123456789abcdef")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ;; results' pointers and sizes at 0x10, 0x14
    (drop (call $add (i32.const 0) (i32.const 0x120) (i32.const 16)
      (i32.add (i32.const 0x1f0) (i32.and
        (call $call (i32.const 0x100) (i32.const 28) (i32.const 0) (i32.const 0) (i32.const 0x10) (i32.const 0x14))
        (i32.const 15)))
      (i32.const 1)))
    (if (call $call (i32.const 0x130) (i32.const 8) (i32.const 0x148) (i32.const 17) (i32.const 0x10) (i32.const 0x14))
      (then (return (i32.const 0))))
    (if (call $call (i32.const 0x138) (i32.const 10) (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14)) (i32.const 0x10) (i32.const 0x14))
      (then (return (i32.const 0))))
    (drop (call $add (i32.const 0) (i32.const 0x160) (i32.const 11) (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))
    (i32.const 0)))
