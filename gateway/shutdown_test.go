package gateway_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// lingerWAT pauses every request in its header phase and, when the request ends
// (proxy_on_log), sleeps 300ms before it logs "request logged": a filter still at work
// after the client is gone.
var lingerWAT = wasmbuild.WATFilter(`  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))`, `  (data (i32.const 1024) "request logged")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32)
    (i32.store8 (i32.const 8) (i32.const 0))          ;; a clock subscription
    (i32.store (i32.const 16) (i32.const 1))          ;; monotonic
    (i64.store (i32.const 24) (i64.const 300000000))  ;; 300ms, relative
    (drop (call $poll (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512)))
    (drop (call $log (i32.const 2) (i32.const 1024) (i32.const 14))))`)

// TestShutdownWaitsForHandlers: shutdown waits for the requests still running, their
// filters' last callbacks included, before it closes the Wasm runtime, even when the
// listener's drain timeout cut their connections.
func TestShutdownWaitsForHandlers(t *testing.T) {
	be := newRecordingBackend(t)
	linger := wasmbuild.WATPath(t, lingerWAT)
	logs := &lockedBuffer{}
	g, addrs := startGatewayWith(t, `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, drain_timeout: 50ms}]
backends: [{name: app, endpoints: [`+be.addr()+`]}]
filters:
  - {name: linger, module: "file:`+linger+`", limits: {callback_timeout: 5s}}
routes:
  - {name: held, match: {path_prefix: /}, filters: [linger], backend: app}
`, gateway.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil))})

	go func() {
		if resp, err := http.Get("http://" + addrs["web"] + "/held"); err == nil {
			resp.Body.Close()
		}
	}()
	testutil.Eventually(t, "the request held by the filter", func() bool {
		return filterInUse(t, addrs["admin"], "linger") == 1
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil && !strings.Contains(err.Error(), "cut off") {
		t.Fatalf("shutdown: %v", err)
	}
	// The drain timeout cut the connection; the filter's proxy_on_log still ran to its end
	// before the runtime closed.
	if !strings.Contains(logs.String(), "request logged") {
		t.Fatalf("the filter's last callback did not finish before shutdown returned; logs:\n%s", logs)
	}
}

// filterInUse is the number of the filter's instances in use, from the admin's /filters.
func filterInUse(t *testing.T, admin, name string) int {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/filters")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Filters []struct {
			Name  string
			InUse int `json:"in_use"`
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	for _, f := range out.Filters {
		if f.Name == name {
			return f.InUse
		}
	}
	return -1
}
