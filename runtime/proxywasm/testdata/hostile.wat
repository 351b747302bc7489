;; hostile.wat: a filter that misbehaves in proxy_on_request_headers according to the
;; number of request headers it gets:
;;    7 loops forever             8 grows memory until it cannot, then traps
;;    9 traps (unreachable)      10 its malloc returns a pointer past the end of memory
;;   11 calls proxy_log with an out-of-bounds message (status at 0x100), then continues
;;   12 calls an env import the host does not provide
;;   13 recurses 2^60 times without a loop
;; and behaves with any other number.
(module
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "not_provided" (func $not_provided))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $evil (mut i32) (i32.const 0))
  (data (i32.const 0x0800) ":path")

  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (global.get $evil) (then (return (i32.const 0x7fff0000))))
    (local.set $p (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $n)) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))))))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  (func $fan (param $n i32)
    (if (local.get $n) (then
      (call $fan (i32.sub (local.get $n) (i32.const 1)))
      (call $fan (i32.sub (local.get $n) (i32.const 1))))))

  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_context_create") (param i32 i32)
    (if (local.get 1) (then (global.set $heap (i32.const 65536)))))
  (func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
    (if (i32.eq (local.get $n) (i32.const 7)) (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $n) (i32.const 8)) (then
      (block $done (loop $grow
        (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
        (br $grow)))
      unreachable))
    (if (i32.eq (local.get $n) (i32.const 9)) (then unreachable))
    (if (i32.eq (local.get $n) (i32.const 10)) (then
      (global.set $evil (i32.const 1))
      (drop (call $get_header (i32.const 0) (i32.const 0x0800) (i32.const 5) (i32.const 0x0900) (i32.const 0x0904)))))
    (if (i32.eq (local.get $n) (i32.const 11)) (then
      (i32.store (i32.const 0x0100) (call $log (i32.const 2) (i32.const 0xfffffff0) (i32.const 64)))))
    (if (i32.eq (local.get $n) (i32.const 12)) (then (call $not_provided)))
    (if (i32.eq (local.get $n) (i32.const 13)) (then (call $fan (i32.const 60))))
    ;; behave: read :path, so the allocator runs
    (drop (call $get_header (i32.const 0) (i32.const 0x0800) (i32.const 5) (i32.const 0x0900) (i32.const 0x0904)))
    (i32.const 0))
)
