package main

// Proxy-Wasm filters through the real gateway: the examples, built from source in the test
// run with the upstream Go SDK, clang + wasi-libc, AssemblyScript and wabt, asserted as Envoy
// would show them.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// filterModules builds the example filters once per test run.
var filterModules = sync.OnceValue(func() map[string]string { return map[string]string{} })

var buildMu sync.Mutex

func module(t *testing.T, kind, dir string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	key := kind + ":" + dir
	if p, ok := filterModules()[key]; ok {
		return p
	}
	var p string
	switch kind {
	case "go":
		p = wasmbuild.Go(t, dir)
	case "filter":
		p = wasmbuild.Filter(t, dir)
	case "c":
		p = wasmbuild.C(t, dir)
	case "cpp":
		p = wasmbuild.CPP(t, dir)
	case "rust":
		p = wasmbuild.Rust(t, dir)
	case "as":
		p = wasmbuild.AS(t, dir)
	case "wat":
		p = wasmbuild.WATFile(t, dir)
	}
	filterModules()[key] = p
	return p
}

// TestFilterExamples runs every example filter on its own route of one gateway.
func TestFilterExamples(t *testing.T) {
	app := startBackend(t, echo("app"))
	canary := startBackend(t, echo("canary"))
	var authCalls, tickCalls atomic.Int32
	auth := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/auth":
			authCalls.Add(1)
			if r.Header.Get("Authorization") == "Bearer good" {
				w.Header().Set("X-Auth-User", "alice")
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
		case "/tick":
			tickCalls.Add(1)
		}
	}))

	mods := map[string]string{}
	for _, m := range []struct{ kind, dir string }{
		{"go", "examples/go/hello"}, {"go", "examples/go/http_headers"}, {"go", "examples/go/http_body"},
		{"go", "examples/go/http_routing"}, {"go", "examples/go/http_auth_callout"}, {"go", "examples/go/dispatch_call_on_tick"},
		{"go", "examples/go/shared_data"}, {"go", "examples/go/shared_queue"}, {"go", "examples/go/metrics"},
		{"go", "examples/go/json_validation"}, {"go", "examples/go/properties"}, {"go", "examples/go/postpone_requests"},
		{"go", "examples/go/vm_plugin_configuration"},
		{"c", "examples/c/hello"}, {"as", "examples/assemblyscript/hello"}, {"wat", "examples/wat/hello.wat"},
	} {
		name := m.kind + "_" + strings.TrimSuffix(m.dir[strings.LastIndex(m.dir, "/")+1:], ".wat")
		mods[name] = module(t, m.kind, m.dir)
	}

	cfg := fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends:
  - {name: app, endpoints: [%s]}
  - {name: canary, endpoints: [%s]}
  - {name: auth, endpoints: [%s]}
filters:
  - {name: hello, module: "file:%s", config: {header: x-hello, value: world}}
  - {name: headers, module: "file:%s"}
  - {name: body-buffered, module: "file:%s", config: {mode: buffered, request: uppercase}}
  - {name: body-streaming, module: "file:%s", config: {mode: streaming, chunk_suffix: "|", response_body: "replaced\n"}}
  - {name: routing, module: "file:%s"}
  - {name: authz, module: "file:%s", config: {cluster: auth}}
  - {name: tick, module: "file:%s", config: {cluster: auth, path: /tick, tick_ms: 50}, limits: {instances: 1}}
  - {name: shared, module: "file:%s"}
  - {name: queue, module: "file:%s"}
  - {name: metrics, module: "file:%s"}
  - {name: json, module: "file:%s", config: {required_keys: [id, name]}}
  - {name: props, module: "file:%s", root_id: my-root}
  - {name: postpone, module: "file:%s", config: {delay_ms: 150, tick_ms: 20}}
  - {name: vmconf, module: "file:%s", vm_config: "vm says hi", config: {greeting: hi}}
  - {name: c, module: "file:%s"}
  - {name: as, module: "file:%s"}
  - {name: wat, module: "file:%s"}
routes:
  - {name: canary, match: {path_prefix: /canary/}, backend: canary}
  - {name: hello, match: {path_prefix: /hello-go}, filters: [hello], backend: app}
  - {name: headers, match: {path_prefix: /headers}, filters: [headers], backend: app}
  - {name: body-buffered, match: {path_prefix: /body-buffered}, filters: [body-buffered], backend: app}
  - {name: body-streaming, match: {path_prefix: /body-streaming}, filters: [body-streaming], backend: app}
  - {name: routing, match: {path_prefix: /routing}, filters: [routing], backend: app}
  - {name: authz, match: {path_prefix: /private}, filters: [authz], backend: app}
  - {name: tick, match: {path_prefix: /tick}, filters: [tick], backend: app}
  - {name: shared, match: {path_prefix: /shared}, filters: [shared], backend: app}
  - {name: queue, match: {path_prefix: /queue}, filters: [queue], backend: app}
  - {name: metrics, match: {path_prefix: /metrics}, filters: [metrics], backend: app}
  - {name: json, match: {path_prefix: /json}, filters: [json], backend: app}
  - {name: props, match: {path_prefix: /props}, filters: [props], backend: app}
  - {name: postpone, match: {path_prefix: /postpone}, filters: [postpone], backend: app}
  - {name: vmconf, match: {path_prefix: /vmconf}, filters: [vmconf], backend: app}
  - {name: c, match: {path_prefix: /c/}, filters: [c], backend: app}
  - {name: as, match: {path_prefix: /as/}, filters: [as], backend: app}
  - {name: wat, match: {path_prefix: /wat/}, filters: [wat], backend: app}
  - {name: chain, match: {path_prefix: /chain}, filters: [headers, hello, c], backend: app}
  - {name: local-body, match: {hosts: [local-body.test], path: /hello}, filters: [body-streaming, c], backend: app}
  - {name: chain-local, match: {path: /hello}, filters: [headers, hello, c], backend: app}
  - {name: direct-filtered, match: {path: /direct-filtered}, filters: [headers], direct_response: {status: 202, body: "direct\n", headers: {x-direct: "1"}}}
  - {name: redirect-filtered, match: {path: /redirect-filtered}, filters: [headers], redirect: {path: /elsewhere, status: 307}}
`, app.addr, canary.addr, auth.addr,
		mods["go_hello"], mods["go_http_headers"], mods["go_http_body"], mods["go_http_body"], mods["go_http_routing"],
		mods["go_http_auth_callout"], mods["go_dispatch_call_on_tick"], mods["go_shared_data"], mods["go_shared_queue"],
		mods["go_metrics"], mods["go_json_validation"], mods["go_properties"], mods["go_postpone_requests"],
		mods["go_vm_plugin_configuration"], mods["c_hello"], mods["as_hello"], mods["wat_hello"])
	g := startGateway(t, cfg)

	clients := map[string]*http.Client{"h1": h1Client(), "h2c": h2cClient()}
	for cname, c := range clients {
		t.Run(cname, func(t *testing.T) {
			t.Run("hello", func(t *testing.T) {
				resp, body := get(t, c, g.url("web", "/hello-go/x"))
				if resp.StatusCode != 200 || resp.Header.Get("X-Hello") != "world" {
					t.Fatalf("status %d, x-hello %q", resp.StatusCode, resp.Header.Get("X-Hello"))
				}
				if e := decodeEcho(t, body); e.Backend != "app" || e.Path != "/hello-go/x" {
					t.Errorf("backend saw %+v", e)
				}
			})
			t.Run("headers", func(t *testing.T) {
				resp, body := get(t, c, g.url("web", "/headers"), "x-remove-me", "gone")
				e := decodeEcho(t, body)
				if e.Header.Get("X-Wasm-Request") != "http_headers" || e.Header.Get("X-Remove-Me") != "" {
					t.Errorf("backend headers %v", e.Header)
				}
				if resp.Header.Get("X-Wasm-Response") != "http_headers" {
					t.Errorf("response headers %v", resp.Header)
				}
				if n, err := strconv.Atoi(resp.Header.Get("X-Request-Header-Count")); err != nil || n < 5 {
					t.Errorf("x-request-header-count %q", resp.Header.Get("X-Request-Header-Count"))
				}
			})
			t.Run("body buffered", func(t *testing.T) {
				_, body := do(t, c, "POST", g.url("web", "/body-buffered"), strings.NewReader("make me loud"))
				if e := decodeEcho(t, body); e.Body != "MAKE ME LOUD" {
					t.Errorf("backend got body %q", e.Body)
				}
			})
			t.Run("body streaming and response rewrite", func(t *testing.T) {
				resp, body := do(t, c, "POST", g.url("web", "/body-streaming"), strings.NewReader("abc"))
				if body != "replaced\n" {
					t.Errorf("response body %q", body)
				}
				if resp.Header.Get("X-Request-Chunks") == "" {
					t.Errorf("no x-request-chunks: %v", resp.Header)
				}
			})
			t.Run("routing by header", func(t *testing.T) {
				_, body := get(t, c, g.url("web", "/routing/a"), "x-canary", "true")
				if e := decodeEcho(t, body); e.Backend != "canary" || e.Path != "/canary/routing/a" || e.Header.Get("X-Route-To") != "canary" {
					t.Errorf("canary request: %+v", e)
				}
				_, body = get(t, c, g.url("web", "/routing/a"))
				if e := decodeEcho(t, body); e.Backend != "app" || e.Path != "/routing/a" || e.Header.Get("X-Route-To") != "primary" {
					t.Errorf("primary request: %+v", e)
				}
			})
			t.Run("auth callout", func(t *testing.T) {
				resp, body := get(t, c, g.url("web", "/private/x"), "Authorization", "Bearer good", "x-auth-user", "mallory")
				if resp.StatusCode != 200 {
					t.Fatalf("good token: %d %s", resp.StatusCode, body)
				}
				if e := decodeEcho(t, body); e.Header.Get("X-Auth") != "ok" || e.Header.Get("X-Auth-User") != "alice" {
					t.Errorf("backend saw %v", e.Header)
				}
				resp, body = get(t, c, g.url("web", "/private/x"), "Authorization", "Bearer bad")
				if resp.StatusCode != 403 || resp.Header.Get("X-Auth") != "denied" || body != "forbidden: the auth service said 401\n" {
					t.Errorf("bad token: %d %v %q", resp.StatusCode, resp.Header, body)
				}
			})
			t.Run("json validation", func(t *testing.T) {
				resp, body := do(t, c, "POST", g.url("web", "/json"), strings.NewReader(`{"id":1,"name":"x"}`))
				if resp.StatusCode != 200 || decodeEcho(t, body).Body != `{"id":1,"name":"x"}` {
					t.Errorf("valid: %d %s", resp.StatusCode, body)
				}
				resp, body = do(t, c, "POST", g.url("web", "/json"), strings.NewReader(`{"id":1}`))
				if resp.StatusCode != 400 || !strings.Contains(body, "missing required key(s): name") {
					t.Errorf("invalid: %d %s", resp.StatusCode, body)
				}
			})
			t.Run("properties", func(t *testing.T) {
				resp, _ := get(t, c, g.url("web", "/props/x?q=1"), "x-request-id", "req-123")
				want := map[string]string{
					"X-Prop-Request-Path":     "/props/x?q=1",
					"X-Prop-Request-Url-Path": "/props/x",
					"X-Prop-Request-Method":   "GET",
					"X-Prop-Request-Id":       "req-123",
					"X-Prop-Route-Name":       "props",
					"X-Prop-Plugin-Name":      "props",
					"X-Prop-Plugin-Root-Id":   "my-root",
					"X-Prop-Custom":           "hello",
					"X-Prop-Response-Code":    "200",
				}
				for k, v := range want {
					if got := resp.Header.Get(k); got != v {
						t.Errorf("%s = %q, want %q", k, got, v)
					}
				}
				if !strings.HasPrefix(resp.Header.Get("X-Prop-Source-Address"), "127.0.0.1:") {
					t.Errorf("source.address %q", resp.Header.Get("X-Prop-Source-Address"))
				}
				if m := resp.Header.Get("X-Prop-Missing"); m != "" {
					t.Errorf("properties the host lacks: %s", m)
				}
			})
			t.Run("postpone", func(t *testing.T) {
				start := time.Now()
				resp, _ := get(t, c, g.url("web", "/postpone"))
				if d := time.Since(start); resp.StatusCode != 200 || d < 150*time.Millisecond {
					t.Errorf("status %d after %v", resp.StatusCode, d)
				}
			})
			t.Run("vm and plugin configuration", func(t *testing.T) {
				resp, _ := get(t, c, g.url("web", "/vmconf"))
				if resp.Header.Get("X-Vm-Config") != "vm says hi" || resp.Header.Get("X-Plugin-Config") != `{"greeting":"hi"}` {
					t.Errorf("headers %v", resp.Header)
				}
			})
			for _, small := range []struct{ path, value, body string }{
				{"/c/", "c", "hello from a C filter"},
				{"/wat/", "wat", "hello from a WAT filter"},
				{"/as/", "assemblyscript", "hello from an AssemblyScript filter"},
			} {
				t.Run("small filter "+small.value, func(t *testing.T) {
					resp, body := get(t, c, g.url("web", small.path+"x"))
					if resp.Header.Get("X-Hello") != small.value || decodeEcho(t, body).Header.Get("X-Hello") != small.value {
						t.Errorf("x-hello: response %q, body %s", resp.Header.Get("X-Hello"), body)
					}
				})
			}
		})
	}

	t.Run("shared data counts every request once", func(t *testing.T) {
		c := h1Client()
		get(t, c, g.url("web", "/shared")) // the first write races with nothing
		var wg sync.WaitGroup
		seen := make(chan int, 40)
		for i := 0; i < 40; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, _ := get(t, c, g.url("web", "/shared"))
				n, _ := strconv.Atoi(resp.Header.Get("X-Shared-Counter"))
				seen <- n
			}()
		}
		wg.Wait()
		close(seen)
		distinct := map[int]bool{}
		for n := range seen {
			distinct[n] = true
		}
		if len(distinct) != 40 {
			t.Errorf("40 concurrent requests saw %d distinct counter values", len(distinct))
		}
	})
	t.Run("metrics", func(t *testing.T) {
		c := h1Client()
		var last *http.Response
		for i := 0; i < 3; i++ {
			last, _ = get(t, c, g.url("web", "/metrics"), "x-tenant", "acme")
		}
		if got := last.Header.Get("X-Metric-Requests"); got != "3" {
			t.Errorf("x-metric-requests %q, want 3", got)
		}
		resp, _ := get(t, c, g.url("web", "/metrics"), "x-tenant", "globex")
		if got := resp.Header.Get("X-Metric-Requests"); got != "1" {
			t.Errorf("globex x-metric-requests %q, want 1", got)
		}
	})
	t.Run("shared queue drains", func(t *testing.T) {
		c := h1Client()
		for i := 0; i < 5; i++ {
			get(t, c, g.url("web", fmt.Sprintf("/queue/%d", i)))
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, _ := get(t, c, g.url("web", "/queue/poll"))
			if n, _ := strconv.Atoi(resp.Header.Get("X-Queue-Dequeued")); n >= 5 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("queue not drained: x-queue-dequeued %q", resp.Header.Get("X-Queue-Dequeued"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("callouts on a timer", func(t *testing.T) {
		c := h1Client()
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, _ := get(t, c, g.url("web", "/tick"))
			if n, _ := strconv.Atoi(resp.Header.Get("X-Tick-Responses")); n >= 3 && tickCalls.Load() >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("tick callouts: backend saw %d, x-tick-responses %q", tickCalls.Load(), resp.Header.Get("X-Tick-Responses"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	t.Run("chain order", func(t *testing.T) {
		// Request phase in declared order: headers, hello, c; response phase in reverse.
		resp, body := get(t, h1Client(), g.url("web", "/chain"))
		e := decodeEcho(t, body)
		if e.Header.Get("X-Wasm-Request") != "http_headers" || e.Header.Get("X-Hello") != "c" {
			t.Errorf("backend saw %v", e.Header)
		}
		if resp.Header.Get("X-Hello") == "" || resp.Header.Get("X-Wasm-Response") != "http_headers" {
			t.Errorf("response %v", resp.Header)
		}
		// headers counted the request headers before c added x-hello, so c ran after it.
		if n, _ := strconv.Atoi(resp.Header.Get("X-Request-Header-Count")); n == 0 {
			t.Errorf("no count")
		}
	})
	t.Run("local reply", func(t *testing.T) {
		// c answers /hello itself; the response phase of the filters before it still runs.
		resp, body := get(t, h1Client(), g.url("web", "/hello"))
		if resp.StatusCode != 200 || body != "hello from a C filter\n" {
			t.Fatalf("c local reply: %d %q", resp.StatusCode, body)
		}
		if resp.Header.Get("X-Wasm-Response") != "http_headers" || !slices.Contains(resp.Header.Values("X-Hello"), "world") {
			t.Errorf("earlier filters' response phase did not run: %v", resp.Header)
		}
		// The reply's body passes through the earlier filters' body phase too: http_body
		// replaces it.
		resp, body = get(t, h1Client(), g.url("web", "/hello"), "host", "local-body.test")
		if resp.StatusCode != 200 || body != "replaced\n" || resp.Header.Get("X-Hello") != "c" {
			t.Errorf("local reply through http_body: %d %v %q", resp.StatusCode, resp.Header, body)
		}
	})
	t.Run("the route's own answers pass through the response phase", func(t *testing.T) {
		resp, body := get(t, h1Client(), g.url("web", "/direct-filtered"))
		if resp.StatusCode != 202 || body != "direct\n" || resp.Header.Get("X-Direct") != "1" || resp.Header.Get("X-Wasm-Response") != "http_headers" {
			t.Errorf("direct response: %d %v %q", resp.StatusCode, resp.Header, body)
		}
		resp, _ = get(t, h1Client(), g.url("web", "/redirect-filtered?q=1"))
		if resp.StatusCode != 307 || !strings.HasSuffix(resp.Header.Get("Location"), "/elsewhere?q=1") || resp.Header.Get("X-Wasm-Response") != "http_headers" {
			t.Errorf("redirect: %d %v", resp.StatusCode, resp.Header)
		}
	})
	t.Run("filter logs carry the filter's name", func(t *testing.T) {
		found := false
		for _, l := range g.findLogs("hello: adding x-hello: world to every response") {
			if l["filter"] == "hello" {
				found = true
			}
		}
		if !found {
			t.Errorf("no log line from the hello filter tagged filter=hello")
		}
	})
}

// TestFilterHostile: a module that loops, grows memory without bound, traps, or hands the
// host a bad pointer fails only its own request, as its failure policy says; every other
// request keeps being served, by fresh instances.
func TestFilterHostile(t *testing.T) {
	app := startBackend(t, echo("app"))
	hostile := module(t, "wat", "cmd/plexus/testdata/hostile.wat")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: hostile-closed, module: "file:%s", failure: closed, limits: {instances: 2, memory: 1MiB, callback_timeout: 50ms}}
  - {name: hostile-open, module: "file:%s", failure: open, limits: {instances: 2, memory: 1MiB, callback_timeout: 50ms}}
routes:
  - {name: plain, match: {path_prefix: /plain}, backend: app}
  - {name: open, match: {headers: [{name: x-policy, exact: open}]}, filters: [hostile-open], backend: app}
  - {name: closed, match: {path_prefix: /}, filters: [hostile-closed], backend: app}
`, app.addr, hostile, hostile))
	c := h1Client()
	calm := func() {
		t.Helper()
		for _, policy := range []string{"open", "closed"} {
			resp, body := get(t, c, g.url("web", "/calm"), "x-policy", policy)
			if resp.StatusCode != 200 || decodeEcho(t, body).Header.Get("X-Hostile") != "calm" {
				t.Fatalf("calm request (%s): %d %s", policy, resp.StatusCode, body)
			}
		}
		if resp, _ := get(t, c, g.url("web", "/plain")); resp.StatusCode != 200 {
			t.Fatalf("a route without the filter: %d", resp.StatusCode)
		}
	}
	calm()
	base := filterStats(t, g)
	for _, tc := range []struct{ path, kind string }{
		{"/loop", "timeout"}, {"/grow", "out of memory"}, {"/trap", "trap"}, {"/malloc", "ABI violation"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			start := time.Now()
			resp, _ := get(t, c, g.url("web", tc.path))
			if resp.StatusCode != 503 || resp.Header.Get("X-Plexus-Error") != "filter hostile-closed failed: "+tc.kind {
				t.Errorf("failure closed: %d %q", resp.StatusCode, resp.Header.Get("X-Plexus-Error"))
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
			resp, body := get(t, c, g.url("web", tc.path), "x-policy", "open")
			if resp.StatusCode != 200 || decodeEcho(t, body).Path != tc.path {
				t.Errorf("failure open: %d %s", resp.StatusCode, body)
			}
			calm()
		})
	}
	t.Run("out-of-bounds host call", func(t *testing.T) {
		resp, body := get(t, c, g.url("web", "/oob"))
		if resp.StatusCode != 200 || decodeEcho(t, body).Header.Get("X-Hostile") != "calm" {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	if n := len(g.findLogs("filter failed")); n < 8 {
		t.Errorf("%d filter failures logged, want 8 (one per failed request)", n)
	}
	// Failed instances were discarded and replaced: the pools are back where they were,
	// instances and memory, and the admin listener counts what failed, by kind.
	after := filterStats(t, g)
	for _, name := range []string{"hostile-closed", "hostile-open"} {
		b, a := base[name], after[name]
		if a.Instances > b.Instances || a.InUse != 0 || a.MemoryBytes > b.MemoryBytes {
			t.Errorf("%s: instances %d in use %d memory %d, before the failures %d, %d, %d",
				name, a.Instances, a.InUse, a.MemoryBytes, b.Instances, b.InUse, b.MemoryBytes)
		}
		for _, kind := range []string{"timeout", "out of memory", "trap", "ABI violation"} {
			if a.Failures[kind] != 1 {
				t.Errorf("%s: /filters counts %d failures of kind %q, want 1 (%v)", name, a.Failures[kind], kind, a.Failures)
			}
		}
		if a.Restarts < 4 || a.Digest == "" || a.ABI != "0.2.1" {
			t.Errorf("%s: %+v", name, a)
		}
	}
	// The same counts as metrics, and the fail-closed ones as local replies by cause.
	_, metrics := get(t, c, "http://"+g.addr("admin")+"/metrics")
	for _, want := range []string{
		`plexus_filter_failures_total{error_type="trap",otel_scope_name="github.com/plexus-mesh/plexus/gateway",otel_scope_schema_url="",otel_scope_version="",plexus_filter="hostile-closed"} 1`,
		`plexus_filter_failures_total{error_type="timeout",otel_scope_name="github.com/plexus-mesh/plexus/gateway",otel_scope_schema_url="",otel_scope_version="",plexus_filter="hostile-open"} 1`,
		`plexus_cause="filter_failed",plexus_route="closed"} 4`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

type adminFilter struct {
	Name        string
	Digest      string
	ABI         string
	Instances   int
	InUse       int            `json:"in_use"`
	Waiting     int            `json:"waiting"`
	MemoryBytes int64          `json:"memory_bytes"`
	Failures    map[string]int `json:"failures"`
	Restarts    int
}

// filterStats reads the admin listener's /filters, by filter name.
func filterStats(t *testing.T, g *gw) map[string]adminFilter {
	t.Helper()
	resp, body := get(t, h1Client(), "http://"+g.addr("admin")+"/filters")
	if resp.StatusCode != 200 {
		t.Fatalf("/filters: %d %s", resp.StatusCode, body)
	}
	var out struct{ Filters []adminFilter }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("/filters: %v: %s", err, body)
	}
	m := map[string]adminFilter{}
	for _, f := range out.Filters {
		m[f.Name] = f
	}
	return m
}

// TestFilterRefusedAtLoad: a module without the ABI marker, or a filter that refuses its
// configuration, is refused by validate and by run, naming the filter and its place.
func TestFilterRefusedAtLoad(t *testing.T) {
	hello := module(t, "go", "examples/go/hello")
	dir := t.TempDir()
	noabi := dir + "/noabi.wasm"
	if err := os.WriteFile(noabi, wasmbuild.WAT(t, `(module (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0)))`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, filter, want string }{
		{"no ABI marker", `{name: bad, module: "file:` + noabi + `"}`, `plexus.yaml:5:25: filter "bad" (sha256:`},
		{"configuration refused", `{name: hello, module: "file:` + hello + `", config: {header: ""}}`, `plexus.yaml:5:27: filter "hello" (sha256:`},
		{"missing file", `{name: gone, module: "file:/nonexistent.wasm"}`, `plexus.yaml:5:26: filter "gone": module /nonexistent.wasm does not exist`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := dir + "/plexus.yaml"
			cfg := "listeners: [{name: web, address: 127.0.0.1:0}]\nbackends: [{name: app, endpoints: [127.0.0.1:1]}]\nroutes: [{name: r, filters: [" +
				strings.SplitN(strings.SplitN(tc.filter, "name: ", 2)[1], ",", 2)[0] + "], backend: app}]\nfilters:\n  - " + tc.filter + "\n"
			if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range []string{"validate", "run"} {
				_, out, code := lcRun(t, cmd, "--config", file)
				if code != 1 || !strings.Contains(out, file+":"+strings.TrimPrefix(tc.want, "plexus.yaml:")) {
					t.Errorf("plexus %s: exit %d, output:\n%s\nwant %q", cmd, code, out, tc.want)
				}
			}
		})
	}
}

// TestFilterReload: a reload that changes a filter's configuration swaps in a new plugin;
// one whose filter cannot load is refused, naming the place, and the running one keeps
// serving.
func TestFilterReload(t *testing.T) {
	app := startBackend(t, echo("app"))
	hello := module(t, "go", "examples/go/hello")
	conf := func(value, module string) string {
		return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: hello, module: "file:%s", config: {header: x-hello, value: %s}}
routes:
  - {name: app, match: {path_prefix: /}, filters: [hello], backend: app}
`, app.addr, module, value)
	}
	g := startGateway(t, conf("one", hello))
	c := h1Client()
	if resp, _ := get(t, c, g.url("web", "/")); resp.Header.Get("X-Hello") != "one" {
		t.Fatalf("x-hello %q", resp.Header.Get("X-Hello"))
	}
	g.writeConfig(conf("two", hello))
	g.waitLog("config reloaded", 1)
	if resp, _ := get(t, c, g.url("web", "/")); resp.Header.Get("X-Hello") != "two" {
		t.Errorf("after the reload x-hello %q, want two", resp.Header.Get("X-Hello"))
	}
	noabi := g.dir + "/noabi.wasm"
	if err := os.WriteFile(noabi, wasmbuild.WAT(t, `(module (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0)))`), 0o644); err != nil {
		t.Fatal(err)
	}
	g.writeConfig(conf("three", noabi))
	l := g.waitLog("config reload refused; the running config keeps serving", 1)
	if e, _ := l[0]["error"].(string); !strings.Contains(e, g.file+":6:27: filter \"hello\"") {
		t.Errorf("refusal %q", e)
	}
	if resp, _ := get(t, c, g.url("web", "/")); resp.Header.Get("X-Hello") != "two" {
		t.Errorf("after a refused reload x-hello %q, want two", resp.Header.Get("X-Hello"))
	}
}
