;; hostile.wat: a Proxy-Wasm filter that misbehaves on request headers according to the
;; request path's second byte:
;;   /l...  loops forever                 /g...  grows memory until it cannot, then traps
;;   /t...  traps (unreachable)           /m...  its malloc returns a pointer past memory
;;   /o...  calls proxy_log with an out-of-bounds message, then carries on (a good request)
;; and on any other path adds x-hostile: calm and lets the request through.
(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $evil (mut i32) (i32.const 0))
  (data (i32.const 0x0800) ":path")
  (data (i32.const 0x0810) "x-hostile")
  (data (i32.const 0x0820) "calm")

  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (global.get $evil) (then (return (i32.const 0x7fff0000))))
    (local.set $p (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $n)) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))))))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
    (local $c i32)
    (global.set $heap (i32.const 65536))
    (drop (call $get (i32.const 0) (i32.const 0x0800) (i32.const 5) (i32.const 0x0900) (i32.const 0x0904)))
    ;; the path's second byte
    (local.set $c (i32.load8_u (i32.add (i32.load (i32.const 0x0900)) (i32.const 1))))
    (if (i32.eq (local.get $c) (i32.const 0x6c)) (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $c) (i32.const 0x67)) (then
      (block $done (loop $grow
        (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
        (br $grow)))
      unreachable))
    (if (i32.eq (local.get $c) (i32.const 0x74)) (then unreachable))
    (if (i32.eq (local.get $c) (i32.const 0x6d)) (then
      (global.set $evil (i32.const 1))
      (drop (call $get (i32.const 0) (i32.const 0x0800) (i32.const 5) (i32.const 0x0900) (i32.const 0x0904)))))
    (if (i32.eq (local.get $c) (i32.const 0x6f)) (then
      (drop (call $log (i32.const 2) (i32.const 0xfffffff0) (i32.const 64)))))
    (drop (call $add (i32.const 0) (i32.const 0x0810) (i32.const 9) (i32.const 0x0820) (i32.const 4)))
    (i32.const 0))
)
