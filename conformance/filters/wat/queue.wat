;; queue.wat: shared queues. proxy_on_configure registers the queue "conformance-q";
;; every request enqueues "item"; proxy_on_queue_ready dequeues it and sets the shared data
;; key "dequeued" to what it got, which requests carry as x-dequeued once set. Each request
;; also resolves the queue by its VM's id (the property plugin_vm_id) and name with
;; proxy_resolve_shared_queue: x-resolved: yes when that gives the registered queue's id.
(module
  (import "env" "proxy_register_shared_queue" (func $register (param i32 i32 i32) (result i32)))
  (import "env" "proxy_enqueue_shared_queue" (func $enqueue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_dequeue_shared_queue" (func $dequeue (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_resolve_shared_queue" (func $resolve (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (data (i32.const 0x100) "conformance-q") ;; 13
  (data (i32.const 0x110) "item")          ;; 4
  (data (i32.const 0x120) "dequeued")      ;; 8
  (data (i32.const 0x130) "x-dequeued")    ;; 10
  (data (i32.const 0x140) "plugin_vm_id")  ;; 12
  (data (i32.const 0x150) "x-resolved")    ;; 10
  (data (i32.const 0x160) "yes")           ;; 3
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  ;; the queue's id at 0x20
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (i32.eqz (call $register (i32.const 0x100) (i32.const 13) (i32.const 0x20))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0x120) (i32.const 8) (i32.const 0x10) (i32.const 0x14) (i32.const 0x18)))
      (then (drop (call $add (i32.const 0) (i32.const 0x130) (i32.const 10)
        (i32.load (i32.const 0x10)) (i32.load (i32.const 0x14))))))
    ;; the VM's id at 0x40, 0x44; the resolved queue's id at 0x48
    (if (i32.eqz (call $property (i32.const 0x140) (i32.const 12) (i32.const 0x40) (i32.const 0x44)))
      (then (if (i32.eqz (call $resolve (i32.load (i32.const 0x40)) (i32.load (i32.const 0x44)) (i32.const 0x100) (i32.const 13) (i32.const 0x48)))
        (then (if (i32.eq (i32.load (i32.const 0x48)) (i32.load (i32.const 0x20)))
          (then (drop (call $add (i32.const 0) (i32.const 0x150) (i32.const 10) (i32.const 0x160) (i32.const 3)))))))))
    (drop (call $enqueue (i32.load (i32.const 0x20)) (i32.const 0x110) (i32.const 4)))
    (i32.const 0))
  (func (export "proxy_on_queue_ready") (param i32) (param $id i32)
    (if (i32.eqz (call $dequeue (local.get $id) (i32.const 0x30) (i32.const 0x34)))
      (then (drop (call $set (i32.const 0x120) (i32.const 8)
        (i32.load (i32.const 0x30)) (i32.load (i32.const 0x34)) (i32.const 0)))))))
