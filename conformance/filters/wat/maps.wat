;; maps.wat: whole header maps. On the request, proxy_get_header_map_size must give the
;; size of what proxy_get_header_map_pairs returns (x-size-match: yes), and the pairs'
;; count the num_headers of the callback (x-count-match: yes); the pairs are then set back
;; unchanged with proxy_set_header_map_pairs. On the response, the whole map is replaced by
;; two pairs, ":status: 200" and "x-set-pairs: yes". The allocator is exported by its 0.2.1
;; name, proxy_on_memory_allocate.
(module
  (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_header_map_pairs" (func $set_pairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_size" (func $size (param i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  ;; a bump allocator that grows the memory when it must
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $top))
    (local.set $end (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.lt_s (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))) (i32.const 0))
        (then (return (i32.const 0))))))
    (global.set $top (local.get $end))
    (local.get $p))
  (data (i32.const 0x100) "x-size-match")  ;; 12
  (data (i32.const 0x110) "x-count-match") ;; 13
  (data (i32.const 0x120) "yes")           ;; 3
  (data (i32.const 0x128) "no")            ;; 2
  ;; the response's map: 2 pairs, their sizes, then each name and value with a NUL. 48 bytes.
  (data (i32.const 0x200) "\02\00\00\00\07\00\00\00\03\00\00\00\0b\00\00\00\03\00\00\00:status\00200\00x-set-pairs\00yes\00")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  ;; name at 0x100 + off (size n): yes or no
  (func $verdict (param $name i32) (param $n i32) (param $ok i32)
    (if (local.get $ok)
      (then (drop (call $add (i32.const 0) (local.get $name) (local.get $n) (i32.const 0x120) (i32.const 3))))
      (else (drop (call $add (i32.const 0) (local.get $name) (local.get $n) (i32.const 0x128) (i32.const 2))))))
  (func (export "proxy_on_request_headers") (param i32) (param $num i32) (param i32) (result i32)
    (local $ptr i32) (local $len i32)
    ;; the size at 0x18; the pairs' pointer and size at 0x10, 0x14
    (drop (call $size (i32.const 0) (i32.const 0x18)))
    (if (call $pairs (i32.const 0) (i32.const 0x10) (i32.const 0x14)) (then (return (i32.const 0))))
    (local.set $ptr (i32.load (i32.const 0x10)))
    (local.set $len (i32.load (i32.const 0x14)))
    (drop (call $set_pairs (i32.const 0) (local.get $ptr) (local.get $len)))
    (call $verdict (i32.const 0x100) (i32.const 12) (i32.eq (local.get $len) (i32.load (i32.const 0x18))))
    (call $verdict (i32.const 0x110) (i32.const 13) (i32.eq (local.get $num) (i32.load (local.get $ptr))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $set_pairs (i32.const 2) (i32.const 0x200) (i32.const 48)))
    (i32.const 0)))
