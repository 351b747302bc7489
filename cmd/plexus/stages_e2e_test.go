package main

// Tests of the request path's stages through the real binary (issue 11's defects): the
// replay buffer for retries, path normalization before matching, the per-request deadline
// over filters, and slow clients.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// TestRetryResendsBody: a POST retried after a connect failure sends its whole body to the
// next endpoint, for both kinds of upstream transport.
func TestRetryResendsBody(t *testing.T) {
	t.Parallel()
	sum := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", len(b), sha256.Sum256(b))
	}))
	dead := deadAddr(t)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: h1, endpoints: [%[1]s, %[2]s]}
  - {name: h2c, endpoints: [%[1]s, %[2]s], protocol: h2c}
routes:
  - name: h2c
    match: {path_prefix: /h2c}
    backend: h2c
    retry: {attempts: 2, retry_on: [connect-failure]}
  - name: h1
    match: {path_prefix: /}
    backend: h1
    retry: {attempts: 2, retry_on: [connect-failure]}
`, dead, sum.addr))
	body := strings.Repeat("0123456789abcdef", 20<<10) // 320 KiB
	want := fmt.Sprintf("%d %x", len(body), sha256.Sum256([]byte(body)))
	for _, path := range []string{"/h1", "/h2c"} {
		// The dead endpoint is the first one a backend picks: the first request to each
		// backend fails to connect there and is retried on the live one.
		resp, got := do(t, h1Client(), "POST", g.url("web", path), strings.NewReader(body))
		if resp.StatusCode != 200 || got != want {
			t.Errorf("%s: %d %q, want 200 %q (the whole body, sent again)", path, resp.StatusCode, got, want)
		}
	}
}

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestPathNormalization: a path is normalized before routes see it, so that dot segments,
// doubled slashes and encoded dots cannot reach a route's backend past a route meant for
// them; the backend receives the path the route matched.
func TestPathNormalization(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - {name: web, address: 127.0.0.1:0}
  - {name: raw, address: 127.0.0.1:0, paths: {normalize: false, merge_slashes: false}}
  - {name: strict, address: 127.0.0.1:0, paths: {escaped_slashes: reject}}
backends: [{name: app, endpoints: [%s]}]
routes:
  - {name: admin, match: {path_prefix: /admin}, direct_response: {status: 403, body: "no admin"}}
  - {name: public, match: {path_prefix: /}, backend: app}
`, app.addr))
	for _, tc := range []struct {
		listener, path string
		status         int
		backendPath    string
	}{
		{"web", "/public/../admin", 403, ""},
		{"web", "/public/%2e%2e/admin", 403, ""},
		{"web", "/public/%2E%2E/admin/", 403, ""},
		{"web", "//admin", 403, ""},
		{"web", "/./admin", 403, ""},
		{"web", "/public/./a//b/../c", 200, "/public/a/c"},
		{"web", "/public/a%2Fb", 200, "/public/a%2Fb"},
		{"raw", "//admin", 200, "//admin"},
		{"strict", "/public/a%2Fb", 400, ""},
		{"web", "/public/%zz", 400, ""},
	} {
		resp, body := pxRawExchange(t, g.addr(tc.listener), "GET "+tc.path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: status %d (%s), want %d", tc.listener, tc.path, resp.StatusCode, body, tc.status)
			continue
		}
		if tc.backendPath != "" {
			if got := decodeEcho(t, body).Path; got != tc.backendPath {
				t.Errorf("%s %s: backend saw %q, want %q", tc.listener, tc.path, got, tc.backendPath)
			}
		}
	}
}

// pauseWAT is a filter that pauses every request in its request-header phase and never
// resumes it: only the route's deadline can end the wait.
var pauseWAT = wasmbuild.WATFilter(``, `  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 1))`)

// TestRouteTimeoutInFilter: the route's timeout bounds a filter that holds the request: a
// paused request gets 504, not a hang.
func TestRouteTimeoutInFilter(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	pause := wasmbuild.WATPath(t, pauseWAT)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: pause, module: "file:%s", limits: {instances: 1}}
routes:
  - {name: paused, match: {path_prefix: /}, filters: [pause], backend: app, timeout: 2s}
`, app.addr, pause))
	c := h1Client()
	start := time.Now()
	resp, body := get(t, c, g.url("web", "/held"))
	if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(resp.Header.Get("X-Plexus-Error"), "route timeout") {
		t.Fatalf("a paused request: %d %q %s; want 504 route timeout", resp.StatusCode, resp.Header.Get("X-Plexus-Error"), body)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("a paused request took %s to end, with a route timeout of 2s", d)
	}

}

// TestSlowClientBody: a client that stops sending its body gets 408 after the listener's
// request_body_timeout, instead of holding the request (and an upstream connection) for
// as long as it likes.
func TestSlowClientBody(t *testing.T) {
	t.Parallel()
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		io.WriteString(w, "read it all")
	}))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, limits: {request_body_timeout: 300ms}}]
backends: [{name: app, endpoints: [%s]}]
routes: [{name: app, match: {path_prefix: /}, backend: app, timeout: 60s}]
`, app.addr))
	c, err := net.Dial("tcp", g.addr("web"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b")
	start := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled body: status %d, want 408", resp.StatusCode)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("stalled body answered after %s, with a body timeout of 300ms", d)
	}
}

// TestFilterWaitersBounded: when every instance of a filter is busy and max_waiting
// requests wait for one already, the next request gets 503 at once, not a place
// at the end of an unbounded line; a waiting one ends at its route's timeout.
func TestFilterWaitersBounded(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	pause := wasmbuild.WATPath(t, pauseWAT)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: pause, module: "file:%s", limits: {instances: 1, max_waiting: 1}}
routes:
  - {name: paused, match: {path_prefix: /}, filters: [pause], backend: app, timeout: 8s}
`, app.addr, pause))
	type result struct {
		code int
		err  string
	}
	held := make(chan result, 2)
	for _, path := range []string{"/holder", "/waiter"} {
		go func() {
			resp, err := h1Client().Get(g.url("web", path))
			if err != nil {
				held <- result{err: err.Error()}
				return
			}
			resp.Body.Close()
			held <- result{resp.StatusCode, resp.Header.Get("X-Plexus-Error")}
		}()
		// One at a time, so that the first holds the instance and the second waits.
		want := map[string]func(adminFilter) bool{
			"/holder": func(f adminFilter) bool { return f.InUse == 1 },
			"/waiter": func(f adminFilter) bool { return f.Waiting == 1 },
		}[path]
		testutil.Eventually(t, path+" in place", func() bool { return want(filterStats(t, g)["pause"]) })
	}

	// Waiting, it would get the route's 504; refused, 503 at once.
	resp, body := get(t, h1Client(), g.url("web", "/one-more"))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Header.Get("X-Plexus-Error"), "overloaded") {
		t.Fatalf("a request past max_waiting: %d %q %s; want 503 overloaded", resp.StatusCode, resp.Header.Get("X-Plexus-Error"), body)
	}
	for range 2 {
		if r := <-held; r.code != http.StatusGatewayTimeout {
			t.Errorf("a held or waiting request ended with %d %q, want 504 at the route timeout", r.code, r.err)
		}
	}
}

// greedyWAT adds a header of 1000 bytes to every request until the host refuses one, and
// then lets the request go on: without a cap, the gateway would hold them all.
var greedyWAT = wasmbuild.WATFilter(`  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))`, `  (data (i32.const 0) "x-pad")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $i i32)
    (loop $fill ;; the value: 1000 times "a", at 64
      (i32.store8 (i32.add (i32.const 64) (local.get $i)) (i32.const 97))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 1000))))
    (local.set $i (i32.const 0))
    (block $refused
      (loop $more
        (br_if $refused (call $add (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 64) (i32.const 1000)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $i) (i32.const 100000)))))
    (i32.const 0))`)

// sleepWAT asks WASI to sleep a minute in its request-header phase.
var sleepWAT = wasmbuild.WATFilter(`  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))`, `  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 8) (i32.const 0))           ;; a clock subscription
    (i32.store (i32.const 16) (i32.const 1))           ;; monotonic
    (i64.store (i32.const 24) (i64.const 60000000000)) ;; 60 s, relative
    (drop (call $poll (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512)))
    (i32.const 0))`)

// TestGuestHostLimits: a filter that makes the host hold more and more for it is refused
// at its limits.host_memory, and the request goes on with what fit; a filter that asks to
// sleep past its callback deadline fails at once (503, a timeout) instead of holding the
// request for its sleep.
func TestGuestHostLimits(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	greedy, sleep := wasmbuild.WATPath(t, greedyWAT), wasmbuild.WATPath(t, sleepWAT)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: greedy, module: "file:%s", limits: {host_memory: 64KiB}}
  - {name: sleepy, module: "file:%s", limits: {callback_timeout: 500ms}}
routes:
  - {name: greedy, match: {path_prefix: /greedy}, filters: [greedy], backend: app}
  - {name: sleepy, match: {path_prefix: /sleepy}, filters: [sleepy], backend: app, timeout: 50s}
`, app.addr, greedy, sleep))

	c := h1Client()
	for range 3 { // and again: what a request held was given back at its end
		resp, body := get(t, c, g.url("web", "/greedy"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("greedy filter: %d %s", resp.StatusCode, body)
		}
		var e echoed
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatal(err)
		}
		// 64 KiB at 1000+5 bytes and 64 of bookkeeping a field.
		if n, want := len(e.Header.Values("X-Pad")), 64<<10/(1000+5+64); n != want {
			t.Fatalf("the backend got %d x-pad headers, want %d (the cap)", n, want)
		}
	}

	resp, body := get(t, c, g.url("web", "/sleepy"))
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Header.Get("X-Plexus-Error"), "timeout") {
		t.Fatalf("a filter sleeping past its deadline: %d %q %s; want 503 filter failed: timeout", resp.StatusCode, resp.Header.Get("X-Plexus-Error"), body)
	}
}

// TestCalloutCircuitBreaker: a filter's callout is a request to its backend like any
// other: when the backend's circuit breaker is full, the callout is turned away (the
// filter sees a failed call) instead of piling more load on it.
func TestCalloutCircuitBreaker(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	held := make(chan struct{}, 1)
	authsvc := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			held <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusOK)
	}))
	app := startBackend(t, echo("app"))
	auth := wasmbuild.Go(t, "examples/go/http_auth_callout")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: authsvc, endpoints: [%s], circuit_breaker: {max_requests: 1}}
  - {name: app, endpoints: [%s]}
filters:
  - {name: auth, module: "file:%s", config: {cluster: authsvc, path: /auth}}
routes:
  - {name: hold, match: {path: /hold}, backend: authsvc}
  - {name: guarded, match: {path_prefix: /}, filters: [auth], backend: app}
`, authsvc.addr, app.addr, auth))
	c := h1Client()
	if resp, body := get(t, c, g.url("web", "/guarded")); resp.StatusCode != http.StatusOK {
		t.Fatalf("with the auth service free: %d %s", resp.StatusCode, body)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := h1Client().Get(g.url("web", "/hold")); err == nil {
			resp.Body.Close()
		}
	}()
	<-held // the auth service's one place is taken
	resp, body := get(t, c, g.url("web", "/guarded"))
	close(release)
	<-done
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("with the auth service's circuit breaker full: %d %s; want 403 (the callout turned away)", resp.StatusCode, body)
	}
}

// passWAT has only a request-header phase, which lets every request through.
var passWAT = wasmbuild.WATFilter(``, `  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))`)

// TestSlowBackendSharedFilter: a filter with nothing to run on the response gives its
// instance back once the request is through, so that a slow backend holding requests does
// not starve other routes that share the filter (limits.instances: 1 here).
func TestSlowBackendSharedFilter(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan struct{}, 2)
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		arrived <- struct{}{}
		<-release
	}))
	fast := startBackend(t, echo("fast"))
	pass := wasmbuild.WATPath(t, passWAT)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: slow, endpoints: [%s]}
  - {name: fast, endpoints: [%s]}
filters:
  - {name: pass, module: "file:%s", limits: {instances: 1}}
routes:
  - {name: slow, match: {path_prefix: /slow}, filters: [pass], backend: slow, timeout: 60s}
  - {name: fast, match: {path_prefix: /fast}, filters: [pass], backend: fast, timeout: 5s}
`, slow.addr, fast.addr, pass))
	done := make(chan struct{})
	defer func() { close(release); <-done; <-done }()
	for _, body := range []string{"", "a body"} { // one without a body, one with
		go func() {
			defer func() { done <- struct{}{} }()
			if resp, err := h1Client().Post(g.url("web", "/slow"), "text/plain", strings.NewReader(body)); err == nil {
				resp.Body.Close()
			}
		}()
		select {
		case <-arrived:
		case <-time.After(testutil.Patience):
			t.Fatalf("a /slow request (body %q) did not reach its backend: the filter's instance is held", body)
		}
	}
	// Two requests wait on the slow backend; the filter's one instance is free.
	resp, body := get(t, h1Client(), g.url("web", "/fast"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/fast while /slow waits on its backend: %d %q %s; want 200", resp.StatusCode, resp.Header.Get("X-Plexus-Error"), body)
	}
}

// headerWAT is a filter that sets one request header in its request-header phase:
// replace_header_map_value(KEY, VALUE).
func headerWAT(key, value string) string {
	return wasmbuild.WATFilter(`  (import "env" "proxy_replace_header_map_value" (func $set (param i32 i32 i32 i32 i32) (result i32)))`, fmt.Sprintf(`  (data (i32.const 0) %q)
  (data (i32.const 512) %q)
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $set (i32.const 0) (i32.const 0) (i32.const %d) (i32.const 512) (i32.const %d)))
    (i32.const 0))`, key, value, len(key), len(value)))
}

// TestRouteChangeRunsFilters: a filter that moves a request to another route (it rewrites
// :path) has that route's filters run too, as if the request had matched it: /public's
// filter sends it to /admin, whose guard filter then marks it.
func TestRouteChangeRunsFilters(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	move, guard := wasmbuild.WATPath(t, headerWAT(":path", "/admin/x")), wasmbuild.WATPath(t, headerWAT("x-guarded", "yes"))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: move, module: "file:%s"}
  - {name: guard, module: "file:%s"}
routes:
  - {name: admin, match: {path_prefix: /admin}, filters: [guard], backend: app}
  - {name: public, match: {path_prefix: /public}, filters: [move], backend: app}
`, app.addr, move, guard))
	resp, body := get(t, h1Client(), g.url("web", "/public/y"))
	var e echoed
	if err := json.Unmarshal([]byte(body), &e); resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("/public/y: %d %s", resp.StatusCode, body)
	}
	if e.Path != "/admin/x" || e.Header.Get("X-Guarded") != "yes" {
		t.Fatalf("the backend got %s with x-guarded %q; want /admin/x, with the admin route's filter run (yes)", e.Path, e.Header.Get("X-Guarded"))
	}
}

// bodyTrapWAT fails (traps) at the end of a request body, and lets everything else through.
var bodyTrapWAT = wasmbuild.WATFilter(``, `  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (if (local.get 2) (then unreachable))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))`)

// TestBodyFailureAfterEarlyResponse: a fail-closed filter that fails on the request body
// after the backend has begun its answer (an h2c backend: the response streams while the
// request body still comes) ends the request with a reset, not with the backend's
// complete answer as if nothing had failed. Over HTTP/1.1 too: the rest of the body still
// goes through the filter after the response header went out, as Envoy does it.
func TestBodyFailureAfterEarlyResponse(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]*http.Client{"http1": h1Client(), "h2c": h2cClient()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bodyFailureAfterEarlyResponse(t, c)
		})
	}
}

func bodyFailureAfterEarlyResponse(t *testing.T, c *http.Client) {
	finish := make(chan struct{})
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("begun "))
		w.(http.Flusher).Flush()
		select {
		case <-finish:
		case <-r.Context().Done():
		}
		w.Write([]byte("and done"))
	}))
	trap := wasmbuild.WATPath(t, bodyTrapWAT)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, protocol: h2c, endpoints: [%s]}]
filters:
  - {name: trap, module: "file:%s"}
routes:
  - {name: up, match: {path_prefix: /}, filters: [trap], backend: app}
`, app.addr, trap))
	var once sync.Once
	release := func() { once.Do(func() { close(finish) }) }
	defer release()

	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("12345"))
	// A gateway that waits for the whole body before it answers gets none: the client's
	// transport, which will not give up before its body is written, gives up at the
	// pipe's end.
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url("web", "/up"), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 10
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("no early answer while the body is still coming: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the backend's early answer: %d", resp.StatusCode)
	}
	// The rest of the body: the filter fails on its end.
	go func() { pw.Write([]byte("67890")); pw.Close() }()
	testutil.Eventually(t, "the filter's failure", func() bool { return filterStats(t, g)["trap"].Failures["trap"] == 1 })
	release()
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the response ended cleanly (%q) though a fail-closed filter failed on the request", body)
	}
}

// holdWAT pauses the headers of a request (and of a response) that has a body, buffers the
// body to its end, and then resumes from the body callback, as a filter that decides on the
// whole body does under Envoy. From the last body callback it sets a header: the request's
// x-held-body to the whole request body, the response's x-held-response to the first 5
// bytes of its body. Both can only be sent if the headers were still held.
var holdWAT = wasmbuild.WATFilter(`  (import "env" "proxy_get_buffer_bytes" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))`, `  (data (i32.const 0) "x-held-body")
  (data (i32.const 16) "x-held-response")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (result i32) (local.get 2) (then (i32.const 0)) (else (i32.const 1))))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (if (i32.eqz (local.get 2)) (then (return (i32.const 1))))
    (drop (call $get (i32.const 0) (i32.const 0) (local.get 1) (i32.const 32) (i32.const 36)))
    (drop (call $add (i32.const 0) (i32.const 0) (i32.const 11) (i32.load (i32.const 32)) (i32.load (i32.const 36))))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (if (result i32) (local.get 2) (then (i32.const 0)) (else (i32.const 1))))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (if (i32.eqz (local.get 2)) (then (return (i32.const 1))))
    (drop (call $get (i32.const 1) (i32.const 0) (i32.const 5) (i32.const 32) (i32.const 36)))
    (drop (call $add (i32.const 2) (i32.const 16) (i32.const 15) (i32.load (i32.const 32)) (i32.load (i32.const 36))))
    (i32.const 0))`)

// TestPauseHeadersResumeFromBody: a filter that pauses on the request (response) headers
// is given the body while they are held, and resumes from its body callback (defect 2):
// the body reaches it, the header it sets then goes out with the request (response), and
// the filter after it has its header phase once it resumed, and the whole body too.
func TestPauseHeadersResumeFromBody(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	hold, tag := wasmbuild.WATPath(t, holdWAT), wasmbuild.WATPath(t, headerWAT("x-after", "yes"))
	dir := t.TempDir()
	cert := newTestCert(t, dir)
	g := startGatewayIn(t, dir, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners:
  - {name: web, address: 127.0.0.1:0}
  - {name: secure, address: 127.0.0.1:0, protocols: [http1, h2, h3], tls: {cert: cert.pem, key: key.pem}}
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: hold, module: "file:%s"}
  - {name: tag, module: "file:%s"}
routes:
  - {name: held, match: {path_prefix: /}, filters: [hold, tag], backend: app, timeout: 10s}
`, app.addr, hold, tag))
	plain, secure := "http://"+g.addr("web"), "https://"+g.addr("secure")
	for _, tc := range []struct {
		name, base string
		c          *http.Client
	}{
		{"http1", plain, h1Client()}, {"h2c", plain, h2cClient()}, {"h2", secure, h2Client(cert)}, {"h3", secure, h3Client(t, cert)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The body comes in two writes, the second after the first went through.
			pr, pw := io.Pipe()
			go func() {
				pw.Write([]byte("held "))
				pw.Write([]byte("body, all of it"))
				pw.Close()
			}()
			req, err := http.NewRequest(http.MethodPost, tc.base+"/up", pr)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tc.c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var e echoed
			if err := json.Unmarshal(body, &e); resp.StatusCode != http.StatusOK || err != nil {
				t.Fatalf("POST through a filter that holds the headers: %d %s", resp.StatusCode, body)
			}
			if got := e.Header.Get("X-Held-Body"); got != "held body, all of it" {
				t.Errorf("the header the filter set from the whole body: %q", got)
			}
			if e.Body != "held body, all of it" || e.Header.Get("X-After") != "yes" {
				t.Errorf("the backend got body %q, x-after %q; want the whole body, through the filter after", e.Body, e.Header.Get("X-After"))
			}
			if got := resp.Header.Get("X-Held-Response"); got != string(body[:5]) {
				t.Errorf("the response header the filter set from the response body: %q, want %q", got, body[:5])
			}
		})
	}
}

// tickResumeWAT pauses the headers of a request with a body and resumes them from its next
// timer tick, whatever the body does; it buffers the body to its end.
var tickResumeWAT = wasmbuild.WATFilter(`  (import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $cont (param i32) (result i32)))`, `  (global $held (mut i32) (i32.const 0))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (local.get 2) (then (return (i32.const 0))))
    (global.set $held (local.get 0))
    (drop (call $tick (i32.const 5)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (global.get $held) (then
      (drop (call $eff (global.get $held)))
      (drop (call $cont (i32.const 0)))
      (global.set $held (i32.const 0))
      (drop (call $tick (i32.const 0))))))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (if (result i32) (local.get 2) (then (i32.const 0)) (else (i32.const 1))))`)

// TestPausedHeadersResumeWhileBodyStalls: a filter that holds the headers while the body
// comes, and resumes them from a timer while the client still keeps the rest of its body
// back (until it sees the response begin), sends the request on at once; the body the
// filter had by then goes on first, and nothing of it is lost.
func TestPausedHeadersResumeWhileBodyStalls(t *testing.T) {
	t.Parallel()
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		body, _ := io.ReadAll(r.Body)
		w.Write(body)
	}))
	tick := wasmbuild.WATPath(t, tickResumeWAT)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: tick, module: "file:%s"}
routes:
  - {name: up, match: {path_prefix: /}, filters: [tick], backend: app, timeout: 10s}
`, app.addr, tick))
	for name, c := range map[string]*http.Client{"http1": h1Client(), "h2c": h2cClient()} {
		t.Run(name, func(t *testing.T) {
			pr, pw := io.Pipe()
			ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
			defer cancel()
			context.AfterFunc(ctx, func() { pw.CloseWithError(ctx.Err()) })
			go pw.Write([]byte("first "))
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url("web", "/up"), pr)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("no response while the body waits for one: %v", err)
			}
			defer resp.Body.Close()
			go func() { pw.Write([]byte("second")); pw.Close() }()
			body, err := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || err != nil || string(body) != "first second" {
				t.Fatalf("the backend echoed %d %q (%v); want 200 \"first second\"", resp.StatusCode, body, err)
			}
		})
	}
}
