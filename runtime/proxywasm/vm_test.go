package proxywasm

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// vmWAT logs "vm start" in proxy_on_vm_start and counts its starts in a global; its
// streams do nothing. extra is spliced into the module (another global, say).
func vmWAT(extra string) string {
	return `(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "vm start")
  (global $top (mut i32) (i32.const 4096))
  (global $starts (mut i32) (i32.const 0))
  ` + extra + `
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (global.set $starts (i32.add (global.get $starts) (i32.const 1)))
    (drop (call $log (i32.const 2) (i32.const 0) (i32.const 8)))
    (i32.const 1))
  (func (export "starts") (result i32) (global.get $starts))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0)))`
}

// TestOneVMStart: a plugin's pool grows to three instances with one proxy_on_vm_start,
// with the callback deadline's rewrite and without it; each instance has the VM's state
// as proxy_on_vm_start left it. A second plugin of the VM starts nothing again and has a
// root context id of its own. A module whose VM cannot be copied (a mutable funcref
// global) starts it in each instance, and says why.
func TestOneVMStart(t *testing.T) {
	for _, tc := range []struct {
		name     string
		extra    string
		timeout  int64 // CallbackTimeout: 0 the default, -1 none
		starts   int
		copyable bool
	}{
		{"deadline", "", 0, 1, true},
		{"no deadline", "", -1, 1, true},
		{"funcref global", "(table 1 funcref) (global $f (mut funcref) (ref.null func))", 0, 3, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sink := &logSink{}
			r, err := NewRuntime(context.Background(), Options{Logger: slog.New(sink)})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close(context.Background())
			cfg := Config{Name: "a", VMID: "vm-" + strings.ReplaceAll(tc.name, " ", "-"), MaxInstances: 3, Logger: slog.New(sink)}
			cfg.CallbackTimeout = time.Duration(tc.timeout)
			p := loadWAT(t, r, vmWAT(tc.extra), cfg, nil)
			var streams []*Stream
			for range 3 {
				s, err := p.NewStream(context.Background(), nil)
				if err != nil {
					t.Fatal(err)
				}
				streams = append(streams, s)
			}
			for _, s := range streams {
				if got := s.inst.mod.ExportedFunction("starts"); got != nil {
					res, err := got.Call(context.Background())
					if err != nil {
						t.Fatal(err)
					}
					if want := uint64(1); res[0] != want {
						t.Errorf("an instance's count of its VM's starts: %d, want %d", res[0], want)
					}
				}
				s.Close()
			}
			cfg.Name = "b"
			b := loadWAT(t, r, vmWAT(tc.extra), cfg, nil)
			if b.rootID == p.rootID {
				t.Errorf("two plugins of one VM have root context id %d", b.rootID)
			}
			n := 0
			for _, m := range sink.messages() {
				if strings.HasSuffix(m, " vm start") {
					n++
				}
			}
			want := tc.starts
			if !tc.copyable {
				want++ // b's instance starts its own too
			}
			if n != want {
				t.Errorf("proxy_on_vm_start ran %d times for 3 instances of a and 1 of b; want %d", n, want)
			}
			if got := sink.has("cannot be copied"); got == tc.copyable {
				t.Errorf("logged that the VM cannot be copied: %v; want %v", got, !tc.copyable)
			}
		})
	}
}
