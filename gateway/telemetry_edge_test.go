package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// The edges of what telemetry records: a request whose method a filter changed, an
// upgraded connection, a backend that answers before reading the body, a route timeout
// that ends a retry's wait, a response that breaks off.

// methodWAT rewrites every request's :method to POST.
const methodWAT = `(module
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) ":method")
  (data (i32.const 1032) "POST")
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $replace (i32.const 0) (i32.const 1024) (i32.const 7) (i32.const 1032) (i32.const 4)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))`

func TestTelemetryEdges(t *testing.T) {
	be := newRecordingBackend(t)
	// upgrades: a backend that switches protocols and echoes what it is sent.
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))
	t.Cleanup(ws.Close)
	// early: answers 401 without reading the request body; cut: promises 1000 bytes, sends 5.
	early := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
	}))
	t.Cleanup(early.Close)
	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, _ := http.NewResponseController(w).Hijack()
		defer conn.Close()
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nhello")
		brw.Flush()
	}))
	t.Cleanup(cut.Close)

	dir := t.TempDir()
	wasm := wasmbuild.WATPath(t, methodWAT)
	logFile := filepath.Join(dir, "access.log")
	_, addrs := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: app, endpoints: [%[1]s]}
  - {name: ws, endpoints: [%[2]s]}
  - {name: early, endpoints: [%[3]s]}
  - {name: cut, endpoints: [%[4]s]}
filters: [{name: method, module: "file:%[5]s"}]
telemetry:
  access_log: [{path: %[6]s, flush_interval: 20ms, fields: [path, response_code, response_flags, attempts, bytes_sent]}]
routes:
  - {name: rewritten, match: {path: /rewritten}, filters: [method], backend: app}
  - {name: ws, match: {path: /ws}, backend: ws, upgrade: {protocols: [echo]}}
  - {name: early, match: {path: /early}, backend: early}
  - {name: cut, match: {path: /cut}, backend: cut}
  - {name: patient, match: {path: /unavailable}, backend: app, timeout: 150ms,
     retry: {attempts: 10, retry_on: [5xx], backoff: {base: 2s, max: 2s}}}
`, be.addr(), ws.Listener.Addr(), early.Listener.Addr(), cut.Listener.Addr(), wasm, logFile), gateway.Options{})
	web, admin := "http://"+addrs["web"], addrs["admin"]

	for range 3 {
		get(t, web+"/rewritten")
	}

	// An upgrade, and bytes both ways.
	conn, err := net.Dial("tcp", addrs["web"])
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	conn.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the upgrade: %q %v", buf, err)
	}
	conn.Close()

	// A body the backend does not wait for: the upstream client may still be sending it
	// while the handler finishes (run under -race, this is where a race would be).
	for range 5 {
		resp, err := http.Post(web+"/early", "application/octet-stream", bytes.NewReader(make([]byte, 4<<20)))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}

	if resp := get(t, web+"/unavailable"); resp.StatusCode != http.StatusGatewayTimeout {
		t.Errorf("a route timeout during a retry's wait: status %d, want 504", resp.StatusCode)
	}
	if resp, err := http.Get(web + "/cut"); err == nil {
		io.Copy(io.Discard, resp.Body) // breaks off
		resp.Body.Close()
	}

	// Requests a filter turned into POSTs are counted in and out as the GETs they came as.
	testutil.Eventually(t, "http.server.active_requests in /stats", func() bool { return strings.Contains(adminGet(t, admin, "/stats"), "http.server.active_requests") })
	stats := adminGet(t, admin, "/stats?filter=active_requests")
	for _, line := range strings.Split(strings.TrimSpace(stats), "\n") {
		if !strings.HasSuffix(line, ": 0") {
			t.Errorf("active requests after every request ended: %s", line)
		}
	}

	lines := map[string]map[string]any{}
	testutil.Eventually(t, "5 paths in the access log", func() bool {
		for _, l := range readJSONLines(t, logFile) {
			lines[fmt.Sprint(l["path"])] = l
		}
		return len(lines) >= 5
	})
	for path, want := range map[string]string{
		"/ws":          "101 - 1",
		"/unavailable": "504 UT 1",
		"/cut":         "200 UC 1",
		"/early":       "401 - 1",
		"/rewritten":   "200 - 1",
	} {
		l := lines[path]
		if n, _ := l["attempts"].(float64); path == "/unavailable" && n > 1 {
			// Backoff is fully jittered, as Envoy's: a wait shorter than the timeout, once
			// in a while, lets a second attempt fail before the timeout falls in a wait.
			l["attempts"] = 1.0
		}
		if got := fmt.Sprint(l["response_code"], " ", l["response_flags"], " ", l["attempts"]); got != want {
			t.Errorf("%s: code, flags, attempts %q, want %q (%v)", path, got, want, l)
		}
	}
	if n, _ := lines["/ws"]["bytes_sent"].(float64); n != 4 {
		t.Errorf("/ws: bytes_sent %v, want the 4 echoed after the switch", lines["/ws"]["bytes_sent"])
	}
	if body := adminGet(t, admin, "/stats?filter=plexus.local_replies"); strings.Contains(body, "upstream_reset") {
		t.Errorf("a response that broke off is counted as a local reply:\n%s", body)
	}
}

// reservedWAT defines a gauge under a name plexus reports itself, and sets it to 7.
const reservedWAT = `(module
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "http.server.active_requests")
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $define (i32.const 1) (i32.const 1024) (i32.const 27) (i32.const 2048)))
    (drop (call $record (i32.load (i32.const 2048)) (i64.const 7)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))`

// A filter's metric named like one of plexus's own goes under wasmcustom., and plexus's
// series stay its own.
func TestFilterMetricUnderReservedName(t *testing.T) {
	wasm := wasmbuild.WATPath(t, reservedWAT)
	_, addrs := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
filters: [{name: reserved, module: "file:%s"}]
routes: [{name: r, filters: [reserved], direct_response: {body: hi}}]
`, wasm), gateway.Options{})
	get(t, "http://"+addrs["web"]+"/")
	fams := scrape(t, addrs["admin"])
	if m := one(t, fams, "wasmcustom_http_server_active_requests", map[string]string{"plexus_filter": "reserved"}); m.GetGauge().GetValue() != 7 {
		t.Errorf("the filter's gauge: %v, want 7", m.GetGauge().GetValue())
	}
	if s := series(fams, "http_server_active_requests", map[string]string{"plexus_filter": "reserved"}); len(s) != 0 {
		t.Errorf("the filter's gauge landed in plexus's own family: %v", s)
	}
}

// A reload that replaces the access log closes the old one when its requests are done, or
// at shutdown, whichever comes first: its buffered lines are written either way.
func TestShutdownAfterReloadWritesOldLogs(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first.log"), filepath.Join(dir, "second.log")
	yaml := `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
routes: [{name: r, direct_response: {body: hi}}]
telemetry: {access_log: [{path: %s, flush_interval: 1h}]}
`
	cfg, err := config.Parse(filepath.Join(dir, "plexus.yaml"), []byte(fmt.Sprintf(yaml, first)))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	web := "http://" + g.Addrs()["web"]
	for range 3 {
		get(t, web+"/")
	}
	next, err := config.Parse(filepath.Join(dir, "plexus.yaml"), []byte(fmt.Sprintf(yaml, second)))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(next); err != nil {
		t.Fatal(err)
	}
	get(t, web+"/")
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(readJSONLines(t, first)); n != 3 {
		t.Errorf("the replaced log has %d lines, want 3", n)
	}
	if n := len(readJSONLines(t, second)); n != 1 {
		t.Errorf("the new log has %d lines, want 1", n)
	}
}

// Validate checks that an access log could be opened, and opens none.
func TestValidateOpensNoLogFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ path, err string }{
		{filepath.Join(dir, "access.log"), ""},
		{filepath.Join(dir, "no-such-dir", "access.log"), "telemetry.access_log"},
	} {
		cfg, err := config.Parse(filepath.Join(dir, "plexus.yaml"), []byte(`
listeners: [{name: web, address: 127.0.0.1:0}]
telemetry: {access_log: [{path: `+tc.path+`}]}
`))
		if err != nil {
			t.Fatal(err)
		}
		err = gateway.Validate(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.path, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), "cannot create")):
			t.Errorf("%s: error %v, want cannot create", tc.path, err)
		}
		if _, err := os.Stat(tc.path); err == nil {
			t.Errorf("validate created %s", tc.path)
		}
	}
}
