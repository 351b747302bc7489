;; grpc.wat: the gRPC host functions re-exported as t_<name>, for tests to call in the
;; context of a stream they hold (which this filter always pauses), and the gRPC callbacks
;; recorded in a log, as callbacks.wat does (4 i32 per entry at 0x1000, count at 0x0ffc):
;;   16 proxy_on_grpc_receive_initial_metadata (root, id, elements)
;;   17 proxy_on_grpc_receive                  (root, id, size)
;;   18 proxy_on_grpc_receive_trailing_metadata (root, id, elements)
;;   19 proxy_on_grpc_close                    (root, id, status)
;; What the callbacks read is kept: each message's first 28 bytes at 0x8004 + 32*k, its size
;; at 0x8000 + 32*k (k its number, counted at 0x7ffc); the value of x-md in the initial metadata at 0x9100 (size at
;; 0x90fc), of x-trailer in the trailing metadata at 0x9200 (size at 0x91fc), the status
;; message in proxy_on_grpc_close at 0x9000 (size at 0x8ffc).
;; Control words, written by the test:
;;   0x00 proxy_on_grpc_receive: 1 cancel the call (status at 0x0100), 2 close it (0x0104),
;;        3 send "again" on it (0x0108)
;;   0x04 proxy_on_grpc_receive_initial_metadata: 1 cancel the stream (status at 0x010c)
(module
  (import "env" "proxy_grpc_call" (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_stream" (func $grpc_stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $grpc_send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $grpc_cancel (param i32) (result i32)))
  (import "env" "proxy_grpc_close" (func $grpc_close (param i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_status" (func $get_status (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (data (i32.const 0x0a00) "x-md")
  (data (i32.const 0x0a10) "x-trailer")
  (data (i32.const 0x0a20) "again")

  (func $malloc (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $n)) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))))))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  (func $rec (param $code i32) (param $a i32) (param $b i32) (param $c i32)
    (local $at i32)
    (local.set $at (i32.add (i32.const 0x1000) (i32.shl (i32.load (i32.const 0x0ffc)) (i32.const 4))))
    (if (i32.lt_u (local.get $at) (i32.const 0x7000)) (then
      (i32.store (local.get $at) (local.get $code))
      (i32.store offset=4 (local.get $at) (local.get $a))
      (i32.store offset=8 (local.get $at) (local.get $b))
      (i32.store offset=12 (local.get $at) (local.get $c))
      (i32.store (i32.const 0x0ffc) (i32.add (i32.load (i32.const 0x0ffc)) (i32.const 1))))))

  ;; keep copies the (pointer, size) pair at 0x10 to dst, at most max bytes, size at dst-4.
  (func $keep (param $dst i32) (param $max i32)
    (local $n i32)
    (local.set $n (i32.load (i32.const 0x14)))
    (if (i32.gt_u (local.get $n) (local.get $max)) (then (local.set $n (local.get $max))))
    (memory.copy (local.get $dst) (i32.load (i32.const 0x10)) (local.get $n))
    (i32.store (i32.sub (local.get $dst) (i32.const 4)) (i32.load (i32.const 0x14))))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))

  (func (export "proxy_on_grpc_receive_initial_metadata") (param $root i32) (param $id i32) (param $n i32)
    (call $rec (i32.const 16) (local.get $root) (local.get $id) (local.get $n))
    (i32.store (i32.const 0x14) (i32.const 0))
    (if (i32.eqz (call $get_header (i32.const 4) (i32.const 0x0a00) (i32.const 4) (i32.const 0x10) (i32.const 0x14)))
      (then (call $keep (i32.const 0x9100) (i32.const 64))))
    (if (i32.eq (i32.load (i32.const 0x04)) (i32.const 1))
      (then (i32.store (i32.const 0x010c) (call $grpc_cancel (local.get $id))))))

  (func (export "proxy_on_grpc_receive") (param $root i32) (param $id i32) (param $size i32)
    (local $op i32)
    (call $rec (i32.const 17) (local.get $root) (local.get $id) (local.get $size))
    (if (i32.eqz (call $get_buffer (i32.const 5) (i32.const 0) (local.get $size) (i32.const 0x10) (i32.const 0x14)))
      (then
        (call $keep (i32.add (i32.const 0x8004) (i32.shl (i32.load (i32.const 0x7ffc)) (i32.const 5))) (i32.const 28))
        (i32.store (i32.const 0x7ffc) (i32.add (i32.load (i32.const 0x7ffc)) (i32.const 1)))))
    (local.set $op (i32.load (i32.const 0x00)))
    (if (i32.eq (local.get $op) (i32.const 1))
      (then (i32.store (i32.const 0x0100) (call $grpc_cancel (local.get $id)))))
    (if (i32.eq (local.get $op) (i32.const 2))
      (then (i32.store (i32.const 0x0104) (call $grpc_close (local.get $id)))))
    (if (i32.eq (local.get $op) (i32.const 3))
      (then (i32.store (i32.const 0x0108)
        (call $grpc_send (local.get $id) (i32.const 0x0a20) (i32.const 5) (i32.const 0))))))

  (func (export "proxy_on_grpc_receive_trailing_metadata") (param $root i32) (param $id i32) (param $n i32)
    (call $rec (i32.const 18) (local.get $root) (local.get $id) (local.get $n))
    (i32.store (i32.const 0x14) (i32.const 0))
    (if (i32.eqz (call $get_header (i32.const 5) (i32.const 0x0a10) (i32.const 9) (i32.const 0x10) (i32.const 0x14)))
      (then (call $keep (i32.const 0x9200) (i32.const 64)))))

  (func (export "proxy_on_grpc_close") (param $root i32) (param $id i32) (param $status i32)
    (call $rec (i32.const 19) (local.get $root) (local.get $id) (local.get $status))
    (i32.store (i32.const 0x14) (i32.const 0))
    (if (i32.eqz (call $get_status (i32.const 0x18) (i32.const 0x10) (i32.const 0x14)))
      (then (call $keep (i32.const 0x9000) (i32.const 240)))))

  (func (export "t_proxy_grpc_call") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $grpc_call (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)
      (local.get 6) (local.get 7) (local.get 8) (local.get 9) (local.get 10) (local.get 11)))
  (func (export "t_proxy_grpc_stream") (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
    (call $grpc_stream (local.get 0) (local.get 1) (local.get 2) (local.get 3) (local.get 4) (local.get 5)
      (local.get 6) (local.get 7) (local.get 8)))
  (func (export "t_proxy_grpc_send") (param i32 i32 i32 i32) (result i32)
    (call $grpc_send (local.get 0) (local.get 1) (local.get 2) (local.get 3)))
  (func (export "t_proxy_grpc_cancel") (param i32) (result i32) (call $grpc_cancel (local.get 0)))
  (func (export "t_proxy_grpc_close") (param i32) (result i32) (call $grpc_close (local.get 0)))
)
