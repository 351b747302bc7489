package proxywasm

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"
)

// TestHostMemoryLimits: a filter that makes the host hold more and more for it (header
// fields, body bytes, properties, shared data, queue items, callouts) is refused with the
// ABI's status once past its limit, and the host gives back what a stream held when it
// closes.
func TestHostMemoryLimits(t *testing.T) {
	const budget = 16 << 10
	val := strings.Repeat("v", 1000)
	newPlugin := func(t *testing.T, vmID string, host Host) *Plugin {
		resetShared(vmID)
		t.Cleanup(func() { resetShared(vmID) })
		return loadWAT(t, newRuntime(t), hostcallsWAT, Config{
			Name: "greedy", VMID: vmID, HostMemory: budget, MaxCallouts: 3, SharedDataBytes: 8 << 10, QueueDepth: 4,
		}, host)
	}
	// fill calls add with 0, 1, 2... until it fails, and returns how many succeeded and
	// the status of the one that failed.
	fill := func(t *testing.T, add func(n uint32) uint32) (int, uint32) {
		t.Helper()
		for n := range uint32(1000) {
			if st := add(n); st != statusOK {
				return int(n), st
			}
		}
		t.Fatal("1000 additions and none refused")
		return 0, 0
	}

	t.Run("header fields", func(t *testing.T) {
		p := newPlugin(t, "vm-limits-headers", nil)
		h := newHC(t, p, nil)
		hd := &Headers{Fields: []Field{{":path", "/"}}}
		h.s.OnRequestHeaders(hd, false)
		k, kn := h.put("x-pad")
		v, vn := h.put(val)
		n, st := fill(t, func(uint32) uint32 {
			return h.call("proxy_add_header_map_value", mapHTTPRequestHeaders, k, kn, v, vn)
		})
		if want := budget / int(fieldBytes(5, 1000)); n != want || st != statusBadArgument {
			t.Fatalf("%d fields added before status %d, want %d before BAD_ARGUMENT", n, st, want)
		}
		if got := len(hd.Fields); got != n+1 {
			t.Errorf("the map has %d fields, want %d: a refused add changed it", got, n+1)
		}
		if used := p.Stats().HostBytes; used != int64(n)*fieldBytes(5, 1000) {
			t.Errorf("HostBytes %d, want %d", used, int64(n)*fieldBytes(5, 1000))
		}
		// Removing frees what the fields cost: a replace that grows the map fits again.
		h.expect("remove", h.call("proxy_remove_header_map_value", mapHTTPRequestHeaders, k, kn), statusOK)
		h.expect("add after remove", h.call("proxy_add_header_map_value", mapHTTPRequestHeaders, k, kn, v, vn), statusOK)
		big := strings.Repeat("b", budget)
		pk, pn := h.put(":path")
		bv, bn := h.put(big)
		h.expect("replace past the budget", h.call("proxy_replace_header_map_value", mapHTTPRequestHeaders, pk, pn, bv, bn), statusBadArgument)
		if v, _ := hd.get(":path"); v != "/" {
			t.Errorf(":path is %.20q after a refused replace", v)
		}
		m, mn := h.putMap(Field{"a", big + big})
		h.expect("set pairs past the budget", h.call("proxy_set_header_map_pairs", mapHTTPRequestHeaders, m, mn), statusBadArgument)
		h.s.Close()
		if used := p.Stats().HostBytes; used != 0 {
			t.Errorf("HostBytes %d after the stream closed, want 0", used)
		}
	})

	t.Run("body bytes", func(t *testing.T) {
		p := newPlugin(t, "vm-limits-body", nil)
		h := newHC(t, p, nil)
		h.s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, false)
		body := &Body{Data: []byte("x")}
		h.s.OnRequestBody(body, false)
		v, vn := h.put(val)
		n, st := fill(t, func(uint32) uint32 {
			return h.call("proxy_set_buffer_bytes", bufferHTTPRequestBody, 1<<30, 0, v, vn)
		})
		if want := budget / 1000; n != want || st != statusBadArgument {
			t.Fatalf("%d appends before status %d, want %d before BAD_ARGUMENT", n, st, want)
		}
		if len(body.Data) != 1+n*1000 {
			t.Errorf("body of %d bytes, want %d", len(body.Data), 1+n*1000)
		}
		// The next body phase: the gateway holds those bytes now, and the filter may edit again.
		h.s.OnRequestBody(&Body{Data: []byte("y")}, true)
		h.expect("append at the next chunk", h.call("proxy_set_buffer_bytes", bufferHTTPRequestBody, 1<<30, 0, v, vn), statusOK)
	})

	t.Run("properties", func(t *testing.T) {
		p := newPlugin(t, "vm-limits-props", nil)
		h := newHC(t, p, nil)
		h.s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, false)
		key, _ := h.put("k000")
		v, vn := h.put(val)
		n, st := fill(t, func(n uint32) uint32 {
			binary.LittleEndian.PutUint32(h.i.memBytesAt(uint32(key), 4), n)
			return h.call("proxy_set_property", key, 4, v, vn)
		})
		if want := budget / (4 + 1000 + HostEntryBytes); n != want || st != statusBadArgument {
			t.Fatalf("%d properties set before status %d, want %d before BAD_ARGUMENT", n, st, want)
		}
	})

	t.Run("shared data", func(t *testing.T) {
		p := newPlugin(t, "vm-limits-shared", nil)
		h := newHC(t, p, nil)
		key, _ := h.put("k000")
		v, vn := h.put(val)
		n, st := fill(t, func(n uint32) uint32 {
			binary.LittleEndian.PutUint32(h.i.memBytesAt(uint32(key), 4), n)
			return h.call("proxy_set_shared_data", key, 4, v, vn, 0)
		})
		if want := (8 << 10) / (4 + 1000 + HostEntryBytes); n != want || st != statusBadArgument {
			t.Fatalf("%d keys set before status %d, want %d before BAD_ARGUMENT", n, st, want)
		}
		// Overwriting a key with a value no bigger still works.
		binary.LittleEndian.PutUint32(h.i.memBytesAt(uint32(key), 4), 0)
		h.expect("overwrite", h.call("proxy_set_shared_data", key, 4, v, vn, 0), statusOK)
	})

	t.Run("queue depth", func(t *testing.T) {
		p := newPlugin(t, "vm-limits-queue", nil)
		h := newHC(t, p, nil)
		name, nn := h.put("q")
		h.expect("register", h.call("proxy_register_shared_queue", name, nn, outU32), statusOK)
		id := uint64(h.i.u32At(outU32))
		v, vn := h.put("item")
		n, st := fill(t, func(uint32) uint32 { return h.call("proxy_enqueue_shared_queue", id, v, vn) })
		if n != 4 || st != statusBadArgument {
			t.Fatalf("%d items queued before status %d, want 4 before BAD_ARGUMENT", n, st)
		}
		h.expect("dequeue", h.call("proxy_dequeue_shared_queue", id, outPtr, outSize), statusOK)
		h.expect("enqueue after a dequeue", h.call("proxy_enqueue_shared_queue", id, v, vn), statusOK)
	})

	t.Run("callouts in flight", func(t *testing.T) {
		never := make(chan struct{})
		t.Cleanup(func() { close(never) })
		host := &fakeHost{handler: func(string, []Field, []byte) (*HTTPCallResponse, error) {
			<-never
			return nil, context.Canceled
		}}
		p := newPlugin(t, "vm-limits-callouts", host)
		h := newHC(t, p, nil)
		c, cn := h.put("backend")
		hm, hn := h.putMap(Field{":method", "GET"}, Field{":path", "/"}, Field{":authority", "b"})
		n, st := fill(t, func(uint32) uint32 {
			return h.call("proxy_http_call", c, cn, hm, hn, 0, 0, 0, 0, 1000, outU32)
		})
		if n != 3 || st != statusInternalFailure {
			t.Fatalf("%d callouts started before status %d, want 3 before INTERNAL_FAILURE", n, st)
		}
		if got := len(host.Calls()); got != 3 {
			t.Errorf("the host got %d calls, want 3", got)
		}
	})

	t.Run("callout response past the budget", func(t *testing.T) {
		host := &fakeHost{sync: true, handler: func(string, []Field, []byte) (*HTTPCallResponse, error) {
			return &HTTPCallResponse{Headers: []Field{{":status", "200"}}, Body: make([]byte, budget)}, nil
		}}
		p := newPlugin(t, "vm-limits-response", host)
		h := newHC(t, p, nil)
		c, cn := h.put("backend")
		hm, hn := h.putMap(Field{":method", "GET"}, Field{":path", "/"}, Field{":authority", "b"})
		h.expect("call", h.call("proxy_http_call", c, cn, hm, hn, 0, 0, 0, 0, 1000, outU32), statusOK)
		h.i.evMu.Lock()
		evs := append([]event(nil), h.i.events...)
		h.i.evMu.Unlock()
		if len(evs) != 1 || evs[0].resp != nil || evs[0].err == nil || !strings.Contains(evs[0].err.Error(), "host memory limit") {
			t.Fatalf("queued %+v, want one failed call naming the host memory limit", evs)
		}
		if used := p.Stats().HostBytes; used != 0 {
			t.Errorf("HostBytes %d with the response refused, want 0", used)
		}
	})
}

// memBytesAt is n bytes of the guest's memory at addr, to write in place.
func (i *instance) memBytesAt(addr, n uint32) []byte {
	b, _ := i.mem.Read(addr, n)
	return b
}

// TestSleepPastDeadline: a callback that asks WASI to sleep past its deadline fails at
// once, as a timeout, instead of holding its instance (and the request) for the sleep.
func TestSleepPastDeadline(t *testing.T) {
	const sleeper = `(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $bump (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32) (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n))) (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  ;; On request headers: one clock subscription (relative, monotonic) of 60 s.
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 8) (i32.const 0))                 ;; eventtype clock
    (i32.store (i32.const 16) (i32.const 1))                 ;; clock id monotonic
    (i64.store (i32.const 24) (i64.const 60000000000))       ;; timeout, ns
    (i32.store16 (i32.const 40) (i32.const 0))               ;; flags: relative
    (drop (call $poll (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512)))
    (i32.const 0)))`
	r := newRuntime(t)
	p := loadWAT(t, r, sleeper, Config{CallbackTimeout: 200 * time.Millisecond}, nil)
	s, err := p.NewStream(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	start := time.Now()
	_, err = s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, true)
	f, ok := err.(*Failure)
	if !ok || f.Kind != FailTimeout || !strings.Contains(f.Error(), "sleep") {
		t.Fatalf("err %v, want a timeout failure naming the sleep", err)
	}
	// The sleep was refused, not slept: well under its minute (generous for a loaded machine).
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the callback took %v", d)
	}
}
