;; stream.wat: data rewritten as it streams, chunk by chunk, never held: the client's bytes
;; go to the backend in upper case, and the backend's come back with every E as 3. As a
;; network (L4) filter it rewrites DOWNSTREAM_DATA in proxy_on_downstream_data and
;; UPSTREAM_DATA in proxy_on_upstream_data, and logs at info "tcp: new connection" from
;; proxy_on_new_connection, "tcp: downstream closed" and "tcp: upstream closed" from the two
;; close callbacks; as an HTTP filter it rewrites the request body in proxy_on_request_body
;; and the response body in proxy_on_response_body (the sizes do not change).
(module
  (import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
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
  (data (i32.const 0x100) "tcp: new connection")   ;; 19
  (data (i32.const 0x120) "tcp: downstream closed") ;; 22
  (data (i32.const 0x140) "tcp: upstream closed")   ;; 20
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_new_connection") (param i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 0x100) (i32.const 19)))
    (i32.const 0))
  ;; $rewrite reads buffer b's size bytes, maps each byte from lo..hi by adding delta (or,
  ;; when hi is 0, the one byte lo to delta), and sets them back
  (func $rewrite (param $b i32) (param $size i32) (param $lo i32) (param $hi i32) (param $delta i32)
    (local $p i32) (local $n i32) (local $k i32) (local $c i32)
    (if (i32.eqz (local.get $size)) (then (return)))
    (if (call $get (local.get $b) (i32.const 0) (local.get $size) (i32.const 0x10) (i32.const 0x14)) (then (return)))
    (local.set $p (i32.load (i32.const 0x10)))
    (local.set $n (i32.load (i32.const 0x14)))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
        (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $k))))
        (if (i32.eqz (local.get $hi))
          (then (if (i32.eq (local.get $c) (local.get $lo))
            (then (i32.store8 (i32.add (local.get $p) (local.get $k)) (local.get $delta)))))
          (else (if (i32.and (i32.ge_u (local.get $c) (local.get $lo)) (i32.le_u (local.get $c) (local.get $hi)))
            (then (i32.store8 (i32.add (local.get $p) (local.get $k)) (i32.add (local.get $c) (local.get $delta)))))))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $each)))
    (drop (call $set (local.get $b) (i32.const 0) (local.get $n) (local.get $p) (local.get $n))))
  (func (export "proxy_on_downstream_data") (param i32) (param $size i32) (param i32) (result i32)
    (call $rewrite (i32.const 2) (local.get $size) (i32.const 97) (i32.const 122) (i32.const -32)) ;; a-z to A-Z
    (i32.const 0))
  (func (export "proxy_on_upstream_data") (param i32) (param $size i32) (param i32) (result i32)
    (call $rewrite (i32.const 3) (local.get $size) (i32.const 69) (i32.const 0) (i32.const 51)) ;; E to 3
    (i32.const 0))
  (func (export "proxy_on_request_body") (param i32) (param $size i32) (param i32) (result i32)
    (call $rewrite (i32.const 0) (local.get $size) (i32.const 97) (i32.const 122) (i32.const -32))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32) (param $size i32) (param i32) (result i32)
    (call $rewrite (i32.const 1) (local.get $size) (i32.const 69) (i32.const 0) (i32.const 51))
    (i32.const 0))
  (func (export "proxy_on_downstream_connection_close") (param i32 i32)
    (drop (call $log (i32.const 2) (i32.const 0x120) (i32.const 22))))
  (func (export "proxy_on_upstream_connection_close") (param i32 i32)
    (drop (call $log (i32.const 2) (i32.const 0x140) (i32.const 20)))))
