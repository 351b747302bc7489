;; abi.wat: a Proxy-Wasm filter (ABI 0.2.1), written by hand, for the end-to-end tests of
;; cmd/plexus/abi_e2e_test.go. What it does is chosen by the request path: its second byte
;; is the mode M, the third and fourth the options X and Y ("/MXY..."). The first byte of the
;; plugin configuration is the filter's tag T ("-" without one).
;;
;;   t  trailers: in proxy_on_request_trailers, x-in is copied to x-seen and x-replace set to
;;      by-filter; in proxy_on_response_trailers, x-resp-in is copied to x-resp-seen and
;;      x-resp-replace set to by-filter
;;   e  trailers added where there were none: x-added-in-body: yes added to the request
;;      trailers in the last proxy_on_request_body, and to the response trailers in the last
;;      proxy_on_response_body (content-length removed from the response)
;;   i  a trailer name that carries a CR LF and a second field, "x-a: 1\r\nx-injected", added
;;      in proxy_on_request_trailers (X=q) or proxy_on_response_trailers (X=s)
;;   c  proxy_close_stream(request) in proxy_on_request_headers
;;   r  proxy_close_stream(response) in proxy_on_response_headers
;;   k  proxy_close_stream(response) in the first proxy_on_response_body
;;   g  proxy_send_local_response from proxy_on_request_headers with grpc_status 7 and
;;      details abi_denied: X=t a trailers-only gRPC answer (200, content-type
;;      application/grpc, x-local: grpc, no body); otherwise 403, x-local: grpc,
;;      body "denied by abi\n"
;;   l  proxy_send_local_response from proxy_on_response_headers, when the response is the
;;      backend's (it has x-backend): 418, x-local: response, body "replaced by abi\n"
;;   q  request body edits (content-length removed from the request); s: the same on the
;;      response body. X is the edit: r replaces the data with its upper case (start 0, size
;;      the whole), p prepends "<<" (start 0, size 0) before the first data, a appends ">>"
;;      (start the length, size 0) at end of stream. Y=b buffers first: Pause until the end
;;      of the stream, then edit everything at once; otherwise each callback's data is
;;      edited as it passes.
;;   h  a chain by tag, on both bodies (content-length removed): T=U buffers to the end and
;;      upper-cases everything; T=W wraps the data of every callback that has any in "(w:" ")"
;;   v  proxy_log at every level (trace .. critical: "abi: trace" .. "abi: critical") in
;;      proxy_on_request_headers; proxy_get_log_level as x-log-level (0..5) on the response
;;   n  a node property, read with proxy_get_property in proxy_on_response_headers, as
;;      x-node on the response (none when absent). X says which: m node.metadata.region,
;;      d node.metadata.labels.tier, i node.id, c node.cluster, w node.metadata (whole)
;;
;; Every response whose headers the filter sees without answering or closing it gets
;; x-abi-resp: T.
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_log_level" (func $get_log_level (param i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $remove (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_buffer_bytes" (func $set_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $local (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 2)

  ;; 0x100, 0x104: where the host writes a returned pointer and size; 0x108: the log level.
  (data (i32.const 0x400) ":path")              ;; 5
  (data (i32.const 0x420) "content-length")     ;; 14
  (data (i32.const 0x440) "x-abi-resp")         ;; 10
  (data (i32.const 0x460) "x-log-level")        ;; 11
  (data (i32.const 0x480) "x-backend")          ;; 9
  (data (i32.const 0x4a0) "x-in")               ;; 4
  (data (i32.const 0x4c0) "x-seen")             ;; 6
  (data (i32.const 0x4e0) "x-replace")          ;; 9
  (data (i32.const 0x500) "by-filter")          ;; 9
  (data (i32.const 0x520) "x-resp-in")          ;; 9
  (data (i32.const 0x540) "x-resp-seen")        ;; 11
  (data (i32.const 0x560) "x-resp-replace")     ;; 14
  (data (i32.const 0x580) "<<")                 ;; 2
  (data (i32.const 0x590) ">>")                 ;; 2
  (data (i32.const 0x5a0) "(w:")                ;; 3
  (data (i32.const 0x5b0) ")")                  ;; 1
  (data (i32.const 0x600) "abi: trace")         ;; 10
  (data (i32.const 0x620) "abi: debug")         ;; 10
  (data (i32.const 0x640) "abi: info")          ;; 9
  (data (i32.const 0x660) "abi: warn")          ;; 9
  (data (i32.const 0x680) "abi: error")         ;; 10
  (data (i32.const 0x6a0) "abi: critical")      ;; 13
  (data (i32.const 0x700) "abi_denied")         ;; 10
  (data (i32.const 0x720) "denied by abi\n")    ;; 14
  ;; {x-local: grpc}, serialized as the ABI's maps are: 25 bytes
  (data (i32.const 0x740)
    "\01\00\00\00" "\07\00\00\00" "\04\00\00\00"
    "x-local\00" "grpc\00")
  ;; {content-type: application/grpc, x-local: grpc}: 63 bytes
  (data (i32.const 0x780)
    "\02\00\00\00" "\0c\00\00\00" "\10\00\00\00" "\07\00\00\00" "\04\00\00\00"
    "content-type\00" "application/grpc\00" "x-local\00" "grpc\00")
  (data (i32.const 0x7c0) "abi_replaced")       ;; 12
  (data (i32.const 0x7e0) "replaced by abi\n")  ;; 16
  ;; {x-local: response}: 29 bytes
  (data (i32.const 0x800)
    "\01\00\00\00" "\07\00\00\00" "\08\00\00\00"
    "x-local\00" "response\00")
  (data (i32.const 0x840) "x-added-in-body")    ;; 15
  (data (i32.const 0x860) "yes")                ;; 3
  (data (i32.const 0x8a0) "x-a: 1\0d\0ax-injected") ;; 18
  ;; 0x870: the log level as a digit; 0x880: the tag
  (data (i32.const 0x880) "-")
  (data (i32.const 0x900) "x-node")                            ;; 6
  (data (i32.const 0x920) "node\00metadata\00region")          ;; 20
  (data (i32.const 0x940) "node\00metadata\00labels\00tier")   ;; 25
  (data (i32.const 0x960) "node\00id")                         ;; 7
  (data (i32.const 0x970) "node\00cluster")                    ;; 12
  (data (i32.const 0x980) "node\00metadata")                   ;; 13

  (global $heap (mut i32) (i32.const 0x10000))
  (global $m (mut i32) (i32.const 0))     ;; mode
  (global $x (mut i32) (i32.const 0))     ;; option X
  (global $y (mut i32) (i32.const 0))     ;; option Y
  (global $first (mut i32) (i32.const 0)) ;; no body data edited yet in this direction

  ;; A bump allocator, reset at the start of every callback: what the host hands the filter
  ;; is used within the callback that asked for it.
  (func $malloc (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $n)) (i32.mul (memory.size) (i32.const 65536)))
      (then (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then (return (i32.const 0))))))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (local.get $p))

  (func $reset (global.set $heap (i32.const 0x10000)))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))

  ;; The tag: the configuration's first byte.
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (call $reset)
    (if (i32.gt_u (local.get $size) (i32.const 0)) (then
      (if (i32.eqz (call $get_buffer (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0x100) (i32.const 0x104)))
        (then (i32.store8 (i32.const 0x880) (i32.load8_u (i32.load (i32.const 0x100))))))))
    (i32.const 1))

  (func $tag (result i32) (i32.load8_u (i32.const 0x880)))

  ;; header returns 1 when map mt has key (the value at 0x100/0x104), 0 when not.
  (func $header (param $mt i32) (param $key i32) (param $klen i32) (result i32)
    (i32.eqz (call $get (local.get $mt) (local.get $key) (local.get $klen) (i32.const 0x100) (i32.const 0x104))))

  (func $upper (param $p i32) (param $n i32)
    (local $end i32) (local $c i32)
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $c (i32.load8_u (local.get $p)))
      (if (i32.and (i32.ge_u (local.get $c) (i32.const 0x61)) (i32.le_u (local.get $c) (i32.const 0x7a)))
        (then (i32.store8 (local.get $p) (i32.sub (local.get $c) (i32.const 0x20)))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $next))))

  ;; body edits buffer bt (0 request, 1 response), size bytes long, as the mode says.
  (func $body (param $bt i32) (param $size i32) (param $eos i32) (result i32)
    (local $op i32) (local $buffered i32) (local $p i32)
    (if (i32.eq (global.get $m) (i32.const 0x68)) ;; h
      (then
        (if (i32.eq (call $tag) (i32.const 0x55)) (then (local.set $op (i32.const 0x72)) (local.set $buffered (i32.const 1))))
        (if (i32.eq (call $tag) (i32.const 0x57)) (then (local.set $op (i32.const 0x77)))))
      (else
        (local.set $op (global.get $x))
        (local.set $buffered (i32.eq (global.get $y) (i32.const 0x62)))))
    (if (i32.and (local.get $buffered) (i32.eqz (local.get $eos))) (then (return (i32.const 1))))
    ;; r: replace everything there is with its upper case
    (if (i32.and (i32.eq (local.get $op) (i32.const 0x72)) (i32.gt_u (local.get $size) (i32.const 0))) (then
      (if (call $get_buffer (local.get $bt) (i32.const 0) (local.get $size) (i32.const 0x100) (i32.const 0x104))
        (then unreachable))
      (local.set $p (i32.load (i32.const 0x100)))
      (call $upper (local.get $p) (i32.load (i32.const 0x104)))
      (if (call $set_buffer (local.get $bt) (i32.const 0) (local.get $size) (local.get $p) (i32.load (i32.const 0x104)))
        (then unreachable))))
    ;; p: prepend before the first data
    (if (i32.and (i32.eq (local.get $op) (i32.const 0x70)) (global.get $first)) (then
      (global.set $first (i32.const 0))
      (if (call $set_buffer (local.get $bt) (i32.const 0) (i32.const 0) (i32.const 0x580) (i32.const 2))
        (then unreachable))))
    ;; a: append at the end of the stream
    (if (i32.and (i32.eq (local.get $op) (i32.const 0x61)) (local.get $eos)) (then
      (if (call $set_buffer (local.get $bt) (local.get $size) (i32.const 0) (i32.const 0x590) (i32.const 2))
        (then unreachable))))
    ;; w: wrap the data of this callback
    (if (i32.and (i32.eq (local.get $op) (i32.const 0x77)) (i32.gt_u (local.get $size) (i32.const 0))) (then
      (if (call $set_buffer (local.get $bt) (i32.const 0) (i32.const 0) (i32.const 0x5a0) (i32.const 3))
        (then unreachable))
      (if (call $set_buffer (local.get $bt) (i32.add (local.get $size) (i32.const 3)) (i32.const 0) (i32.const 0x5b0) (i32.const 1))
        (then unreachable))))
    (i32.const 0))

  (func (export "proxy_on_request_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
    (local $p i32) (local $len i32)
    (call $reset)
    (global.set $m (i32.const 0))
    (global.set $x (i32.const 0))
    (global.set $y (i32.const 0))
    (global.set $first (i32.const 1))
    (if (call $header (i32.const 0) (i32.const 0x400) (i32.const 5)) (then
      (local.set $p (i32.load (i32.const 0x100)))
      (local.set $len (i32.load (i32.const 0x104)))
      (if (i32.gt_u (local.get $len) (i32.const 1)) (then (global.set $m (i32.load8_u offset=1 (local.get $p)))))
      (if (i32.gt_u (local.get $len) (i32.const 2)) (then (global.set $x (i32.load8_u offset=2 (local.get $p)))))
      (if (i32.gt_u (local.get $len) (i32.const 3)) (then (global.set $y (i32.load8_u offset=3 (local.get $p)))))))
    (if (i32.eq (global.get $m) (i32.const 0x63)) (then ;; c
      (if (call $close (i32.const 0)) (then unreachable))
      (return (i32.const 0))))
    (if (i32.eq (global.get $m) (i32.const 0x67)) (then ;; g
      (if (i32.eq (global.get $x) (i32.const 0x74))
        (then (if (call $local (i32.const 200) (i32.const 0x700) (i32.const 10) (i32.const 0) (i32.const 0)
                (i32.const 0x780) (i32.const 63) (i32.const 7)) (then unreachable)))
        (else (if (call $local (i32.const 403) (i32.const 0x700) (i32.const 10) (i32.const 0x720) (i32.const 14)
                (i32.const 0x740) (i32.const 25) (i32.const 7)) (then unreachable))))
      (return (i32.const 1))))
    (if (i32.or (i32.eq (global.get $m) (i32.const 0x71)) (i32.eq (global.get $m) (i32.const 0x68))) (then ;; q, h
      (if (call $remove (i32.const 0) (i32.const 0x420) (i32.const 14)) (then unreachable))))
    (if (i32.eq (global.get $m) (i32.const 0x76)) (then ;; v
      (drop (call $log (i32.const 0) (i32.const 0x600) (i32.const 10)))
      (drop (call $log (i32.const 1) (i32.const 0x620) (i32.const 10)))
      (drop (call $log (i32.const 2) (i32.const 0x640) (i32.const 9)))
      (drop (call $log (i32.const 3) (i32.const 0x660) (i32.const 9)))
      (drop (call $log (i32.const 4) (i32.const 0x680) (i32.const 10)))
      (drop (call $log (i32.const 5) (i32.const 0x6a0) (i32.const 13)))))
    (i32.const 0))

  (func (export "proxy_on_request_body") (param $id i32) (param $size i32) (param $eos i32) (result i32)
    (call $reset)
    (if (i32.and (i32.eq (global.get $m) (i32.const 0x65)) (local.get $eos)) (then ;; e
      (if (call $add (i32.const 1) (i32.const 0x840) (i32.const 15) (i32.const 0x860) (i32.const 3)) (then unreachable))))
    (if (i32.or (i32.eq (global.get $m) (i32.const 0x71)) (i32.eq (global.get $m) (i32.const 0x68))) (then ;; q, h
      (return (call $body (i32.const 0) (local.get $size) (local.get $eos)))))
    (i32.const 0))

  (func (export "proxy_on_request_trailers") (param $id i32) (param $n i32) (result i32)
    (call $reset)
    (if (i32.and (i32.eq (global.get $m) (i32.const 0x69)) (i32.eq (global.get $x) (i32.const 0x71))) (then ;; i, q
      (if (call $add (i32.const 1) (i32.const 0x8a0) (i32.const 18) (i32.const 0x860) (i32.const 3)) (then unreachable))))
    (if (i32.eq (global.get $m) (i32.const 0x74)) (then ;; t
      (if (call $header (i32.const 1) (i32.const 0x4a0) (i32.const 4)) (then
        (if (call $add (i32.const 1) (i32.const 0x4c0) (i32.const 6) (i32.load (i32.const 0x100)) (i32.load (i32.const 0x104)))
          (then unreachable))))
      (if (call $replace (i32.const 1) (i32.const 0x4e0) (i32.const 9) (i32.const 0x500) (i32.const 9)) (then unreachable))))
    (i32.const 0))

  ;; node adds the property at path as x-node to the response headers, if it is there.
  (func $node (param $path i32) (param $len i32)
    (if (i32.eqz (call $get_property (local.get $path) (local.get $len) (i32.const 0x100) (i32.const 0x104))) (then
      (if (call $add (i32.const 2) (i32.const 0x900) (i32.const 6) (i32.load (i32.const 0x100)) (i32.load (i32.const 0x104)))
        (then unreachable)))))

  (func (export "proxy_on_response_headers") (param $id i32) (param $n i32) (param $eos i32) (result i32)
    (call $reset)
    (global.set $first (i32.const 1))
    (if (i32.eq (global.get $m) (i32.const 0x6e)) (then ;; n
      (if (i32.eq (global.get $x) (i32.const 0x6d)) (then (call $node (i32.const 0x920) (i32.const 20)))) ;; m
      (if (i32.eq (global.get $x) (i32.const 0x64)) (then (call $node (i32.const 0x940) (i32.const 25)))) ;; d
      (if (i32.eq (global.get $x) (i32.const 0x69)) (then (call $node (i32.const 0x960) (i32.const 7))))  ;; i
      (if (i32.eq (global.get $x) (i32.const 0x63)) (then (call $node (i32.const 0x970) (i32.const 12)))) ;; c
      (if (i32.eq (global.get $x) (i32.const 0x77)) (then (call $node (i32.const 0x980) (i32.const 13)))))) ;; w
    (if (i32.eq (global.get $m) (i32.const 0x72)) (then ;; r
      (if (call $close (i32.const 1)) (then unreachable))
      (return (i32.const 0))))
    (if (i32.and (i32.eq (global.get $m) (i32.const 0x6c)) (call $header (i32.const 2) (i32.const 0x480) (i32.const 9))) (then ;; l
      (if (call $local (i32.const 418) (i32.const 0x7c0) (i32.const 12) (i32.const 0x7e0) (i32.const 16)
            (i32.const 0x800) (i32.const 29) (i32.const -1)) (then unreachable))
      (return (i32.const 1))))
    (if (i32.or (i32.or (i32.eq (global.get $m) (i32.const 0x73)) (i32.eq (global.get $m) (i32.const 0x68)))
                (i32.eq (global.get $m) (i32.const 0x65))) (then ;; s, h, e
      (if (call $remove (i32.const 2) (i32.const 0x420) (i32.const 14)) (then unreachable))))
    (if (i32.eq (global.get $m) (i32.const 0x76)) (then ;; v
      (if (call $get_log_level (i32.const 0x108)) (then unreachable))
      (i32.store8 (i32.const 0x870) (i32.add (i32.const 0x30) (i32.load (i32.const 0x108))))
      (if (call $add (i32.const 2) (i32.const 0x460) (i32.const 11) (i32.const 0x870) (i32.const 1)) (then unreachable))))
    (if (call $add (i32.const 2) (i32.const 0x440) (i32.const 10) (i32.const 0x880) (i32.const 1)) (then unreachable))
    (i32.const 0))

  (func (export "proxy_on_response_body") (param $id i32) (param $size i32) (param $eos i32) (result i32)
    (call $reset)
    (if (i32.eq (global.get $m) (i32.const 0x6b)) (then ;; k
      (if (call $close (i32.const 1)) (then unreachable))
      (return (i32.const 0))))
    (if (i32.and (i32.eq (global.get $m) (i32.const 0x65)) (local.get $eos)) (then ;; e
      (if (call $add (i32.const 3) (i32.const 0x840) (i32.const 15) (i32.const 0x860) (i32.const 3)) (then unreachable))))
    (if (i32.or (i32.eq (global.get $m) (i32.const 0x73)) (i32.eq (global.get $m) (i32.const 0x68))) (then ;; s, h
      (return (call $body (i32.const 1) (local.get $size) (local.get $eos)))))
    (i32.const 0))

  (func (export "proxy_on_response_trailers") (param $id i32) (param $n i32) (result i32)
    (call $reset)
    (if (i32.and (i32.eq (global.get $m) (i32.const 0x69)) (i32.eq (global.get $x) (i32.const 0x73))) (then ;; i, s
      (if (call $add (i32.const 3) (i32.const 0x8a0) (i32.const 18) (i32.const 0x860) (i32.const 3)) (then unreachable))))
    (if (i32.eq (global.get $m) (i32.const 0x74)) (then ;; t
      (if (call $header (i32.const 3) (i32.const 0x520) (i32.const 9)) (then
        (if (call $add (i32.const 3) (i32.const 0x540) (i32.const 11) (i32.load (i32.const 0x100)) (i32.load (i32.const 0x104)))
          (then unreachable))))
      (if (call $replace (i32.const 3) (i32.const 0x560) (i32.const 14) (i32.const 0x500) (i32.const 9)) (then unreachable))))
    (i32.const 0))
)
