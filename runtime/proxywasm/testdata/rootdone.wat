;; rootdone.wat: a filter whose proxy_on_done answers false, for every context, and that
;; says what it gets with proxy_log (level info), one message per event:
;;
;;   "root on_done" / "stream on_done"      proxy_on_done, then at once proxy_done's status
;;                                          ("proxy_done OK" or "proxy_done NOT_FOUND")
;;   "tick"                                 proxy_on_tick
;;   "call response"                        proxy_on_http_call_response
;;   "root on_delete" / "stream on_delete"  proxy_on_delete
;;
;; The first byte of the plugin configuration says how the root context finishes:
;;   t  proxy_on_done sets a 5 ms tick; the first proxy_on_tick calls proxy_done
;;   c  proxy_on_done makes an HTTP call (GET /flush to "collector"); its response calls
;;      proxy_done
;;   n  proxy_on_done sets a 5 ms tick, and proxy_done is never called
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_http_call" (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  ;; 0x300, 0x304: a returned pointer and size; 0x308: a call id; 0x380: the mode.
  (data (i32.const 0x400) "root on_done")         ;; 12
  (data (i32.const 0x420) "stream on_done")       ;; 14
  (data (i32.const 0x440) "root on_delete")       ;; 14
  (data (i32.const 0x460) "stream on_delete")     ;; 16
  (data (i32.const 0x480) "tick")                 ;; 4
  (data (i32.const 0x4a0) "call response")        ;; 13
  (data (i32.const 0x4c0) "proxy_done OK")        ;; 13
  (data (i32.const 0x4e0) "proxy_done NOT_FOUND") ;; 20
  (data (i32.const 0x500) "collector")            ;; 9
  ;; {:method: GET, :path: /flush, :authority: collector}: 74 bytes
  (data (i32.const 0x520)
    "\03\00\00\00" "\07\00\00\00" "\03\00\00\00" "\05\00\00\00" "\06\00\00\00" "\0a\00\00\00" "\09\00\00\00"
    ":method\00" "GET\00" ":path\00" "/flush\00" ":authority\00" "collector\00")

  (global $heap (mut i32) (i32.const 0x8000))

  ;; A bump allocator that starts over when the page is full: what the host hands the
  ;; filter is used within the callback that asked for it.
  (func $malloc (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 0x10000))
      (then (global.set $heap (i32.const 0x8000))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  (func $say (param $p i32) (param $n i32)
    (drop (call $log (i32.const 2) (local.get $p) (local.get $n))))

  ;; finish calls proxy_done and says what it answered.
  (func $finish
    (if (i32.eqz (call $done))
      (then (call $say (i32.const 0x4c0) (i32.const 13)))
      (else (call $say (i32.const 0x4e0) (i32.const 20)))))

  (func $mode (result i32) (i32.load8_u (i32.const 0x380)))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))

  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (if (local.get $size) (then
      (if (i32.eqz (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 1) (i32.const 0x300) (i32.const 0x304)))
        (then (i32.store8 (i32.const 0x380) (i32.load8_u (i32.load (i32.const 0x300))))))))
    (i32.const 1))

  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))

  (func (export "proxy_on_done") (param $id i32) (result i32)
    (if (i32.ne (local.get $id) (i32.const 1)) (then
      (call $say (i32.const 0x420) (i32.const 14))
      (call $finish)
      (return (i32.const 0))))
    (call $say (i32.const 0x400) (i32.const 12))
    ;; Not pending yet while proxy_on_done runs: NOT_FOUND, as in proxy-wasm-cpp-host.
    (call $finish)
    (if (i32.eq (call $mode) (i32.const 0x63)) ;; c
      (then
        (if (call $http_call (i32.const 0x500) (i32.const 9) (i32.const 0x520) (i32.const 74)
              (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 0x308))
          (then unreachable)))
      (else (drop (call $tick (i32.const 5)))))
    (i32.const 0))

  (func (export "proxy_on_tick") (param $root i32)
    (call $say (i32.const 0x480) (i32.const 4))
    (if (i32.eq (call $mode) (i32.const 0x74)) (then (call $finish)))) ;; t

  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (call $say (i32.const 0x4a0) (i32.const 13))
    (call $finish))

  (func (export "proxy_on_delete") (param $id i32)
    (if (i32.eq (local.get $id) (i32.const 1))
      (then (call $say (i32.const 0x440) (i32.const 14)))
      (else (call $say (i32.const 0x460) (i32.const 16)))))
)
