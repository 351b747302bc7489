package gateway_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

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

// TestShutdownClosesIdleH3: an HTTP/3 client that keeps its connection open after its
// request does not hold shutdown for the drain timeout: with no request in flight, the
// gateway closes the connection and shutdown ends without reporting requests cut off.
// A request that is in flight as shutdown begins still gets its whole response.
func TestShutdownClosesIdleH3(t *testing.T) {
	be := newRecordingBackend(t)
	arrived, release := make(chan struct{}), make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "late")
	}))
	defer slow.Close()
	cert := testutil.WriteCert(t, t.TempDir())
	g, addrs := startGatewayWith(t, `
admin: {address: 127.0.0.1:0}
listeners:
  - name: web
    address: 127.0.0.1:0
    protocols: [http1, h2, h3]
    tls: {cert: `+cert.CertFile+`, key: `+cert.KeyFile+`}
    drain_timeout: 20s
backends:
  - {name: app, endpoints: [`+be.addr()+`]}
  - {name: slow, endpoints: [`+slow.Listener.Addr().String()+`]}
routes:
  - {name: slow, match: {path: /slow}, backend: slow}
  - {name: app, match: {path_prefix: /}, backend: app}
`, gateway.Options{})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cert.CertPEM)
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.Close()
	client := &http.Client{Transport: tr, Timeout: 50 * time.Second}
	get := func(path string) (string, error) {
		resp, err := client.Get("https://" + addrs["web"] + path)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.Proto + " " + string(b), err
	}
	if got, err := get("/"); err != nil || !strings.HasPrefix(got, "HTTP/3") {
		t.Fatalf("first request: %q, %v", got, err)
	}
	// quic-go's client closes its connection once GOAWAY comes and its requests are done;
	// this one, a bare QUIC connection, stays open as an idle one that no one closes.
	idle, err := quic.DialAddr(context.Background(), addrs["web"], &tls.Config{RootCAs: pool, NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.CloseWithError(0, "")
	// One request in flight, held at its backend, on the connection the client keeps open.
	slowDone := make(chan string, 1)
	go func() {
		got, err := get("/slow")
		if err != nil {
			got = err.Error()
		}
		slowDone <- got
	}()
	<-arrived

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- g.Shutdown(ctx) }()
	// The listener's TCP side refuses connections once shutdown has begun; then the held
	// request may finish.
	testutil.Eventually(t, "shutdown begun", func() bool {
		c, err := net.Dial("tcp", addrs["web"])
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if got := <-slowDone; got != "HTTP/3.0 late" {
		t.Fatalf("the request in flight as shutdown began: %q, want its whole response", got)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown with an idle HTTP/3 connection: %v (want it closed, not waited for)", err)
	}
	select {
	case <-idle.Context().Done(): // the gateway closed it
	case <-ctx.Done():
		t.Fatal("the idle connection is still open")
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

// TestShutdownTwice: a second Shutdown finds nothing left to do and says so at once, even
// with a context that has ended (it used to wait on the retired snapshot again, and fail).
func TestShutdownTwice(t *testing.T) {
	be := newRecordingBackend(t)
	g, _ := startGatewayWith(t, `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [`+be.addr()+`]}]
routes: [{name: app, match: {path_prefix: /}, backend: app}]
`, gateway.Options{})
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Shutdown(ended); err != nil {
		t.Fatalf("second shutdown: %v", err)
	}
}
