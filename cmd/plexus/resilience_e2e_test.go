package main

// Traffic resilience through the real gateway, to real endpoints on loopback that fail,
// slow down and come back: active health checks, outlier ejection, circuit breaking and
// retry limits. Each test waits for the gateway to detect a failure (as /clusters shows
// it), then checks that no request reaches the endpoint it took out.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

// flaky is an endpoint whose answers a test changes: the status and delay of its requests,
// and the status of its /healthz. It can be killed (its port closed) and revived on the
// same address.
type flaky struct {
	t      *testing.T
	name   string
	addr   string
	status atomic.Int32  // of requests but /healthz
	health atomic.Int32  // of /healthz
	delay  atomic.Int64  // before answering requests but /healthz
	served atomic.Int64  // requests but /healthz that arrived
	hold   chan struct{} // when set, requests wait for it to close

	mu  sync.Mutex
	srv *http.Server
}

func startFlaky(t *testing.T, name string) *flaky {
	t.Helper()
	f := &flaky{t: t, name: name}
	f.status.Store(200)
	f.health.Store(200)
	f.serve("127.0.0.1:0")
	t.Cleanup(f.kill)
	return f
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(int(f.health.Load()))
		return
	}
	f.served.Add(1)
	if f.hold != nil {
		<-f.hold
	}
	if d := time.Duration(f.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	w.Header().Set("X-Backend", f.name)
	w.WriteHeader(int(f.status.Load()))
	fmt.Fprint(w, f.name)
}

func (f *flaky) serve(addr string) {
	f.t.Helper()
	var ln net.Listener
	var err error
	testutil.Eventually(f.t, "listening on "+addr, func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	f.mu.Lock()
	f.addr = ln.Addr().String()
	f.srv = &http.Server{Handler: f}
	srv := f.srv
	f.mu.Unlock()
	go srv.Serve(ln)
}

// kill closes the port and every connection: the endpoint is gone.
func (f *flaky) kill() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.srv != nil {
		f.srv.Close()
		f.srv = nil
	}
}

// revive listens on the same address again.
func (f *flaky) revive() { f.serve(f.addr) }

// clusterJSON is what the tests read of /clusters?format=json.
type clusterJSON struct {
	Name             string           `json:"name"`
	Pending          int              `json:"pending_requests"`
	RetryOverflows   int64            `json:"retry_overflows"`
	PendingOverflows int64            `json:"pending_overflows"`
	Panic            bool             `json:"panic"`
	Ejections        map[string]int64 `json:"ejections"`
	BecameHealthy    int64            `json:"health_transitions_healthy"`
	BecameUnhealthy  int64            `json:"health_transitions_unhealthy"`
	Endpoints        []struct {
		Address       string   `json:"address"`
		Weight        uint32   `json:"weight"`
		Health        string   `json:"health"`
		Flags         []string `json:"health_flags"`
		RqTotal       int64    `json:"rq_total"`
		CxConnectFail int64    `json:"cx_connect_fail"`
		SlowStart     float64  `json:"slow_start_share"`
	} `json:"endpoints"`
}

func clustersOf(t *testing.T, g *gw) map[string]clusterJSON {
	t.Helper()
	_, body := get(t, h1Client(), "http://"+g.addr("admin")+"/clusters?format=json")
	var v struct{ Clusters []clusterJSON }
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("/clusters: %v: %s", err, body)
	}
	out := map[string]clusterJSON{}
	for _, c := range v.Clusters {
		out[c.Name] = c
	}
	return out
}

// healthOf is an endpoint's health as /clusters shows it.
func healthOf(t *testing.T, g *gw, backend, addr string) string {
	t.Helper()
	for _, ep := range clustersOf(t, g)[backend].Endpoints {
		if ep.Address == addr {
			return ep.Health
		}
	}
	return "(no such endpoint)"
}

// send makes n requests to path and returns how many each backend answered (by
// X-Backend), failing on any status but want.
func send(t *testing.T, g *gw, path string, n, want int) map[string]int {
	t.Helper()
	c := h1Client()
	got := map[string]int{}
	for range n {
		resp, body := get(t, c, g.url("web", path))
		if resp.StatusCode != want {
			t.Fatalf("%s: %d %q (%s), want %d", path, resp.StatusCode, body, resp.Header.Get("X-Plexus-Error"), want)
		}
		got[resp.Header.Get("X-Backend")]++
	}
	return got
}

// TestHealthChecks: an endpoint whose /healthz answers 503, and one killed, leave the
// rotation once their checks fail and take no request after; both come back when well.
func TestHealthChecks(t *testing.T) {
	t.Parallel()
	a, b, c := startFlaky(t, "a"), startFlaky(t, "b"), startFlaky(t, "c")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends:
  - name: app
    endpoints: [%s, %s, %s]
    panic_threshold: 0
    health_check: {path: /healthz, interval: 50ms, timeout: 1s, healthy_threshold: 2, unhealthy_threshold: 2, expected_statuses: ["200-299"]}
routes:
  - {name: app, match: {path_prefix: /}, backend: app}
`, a.addr, b.addr, c.addr))
	if got := send(t, g, "/", 30, 200); got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
		t.Fatalf("all well: %v, want 10 each", got)
	}

	b.health.Store(503)
	testutil.Eventually(t, "b failing its health checks", func() bool { return healthOf(t, g, "app", b.addr) == "/failed_active_hc" })
	before := b.served.Load()
	if got := send(t, g, "/", 30, 200); got["b"] != 0 {
		t.Errorf("b unhealthy: %v", got)
	}
	if n := b.served.Load() - before; n != 0 {
		t.Errorf("b took %d requests after it was found unhealthy", n)
	}

	c.kill()
	testutil.Eventually(t, "c failing its health checks", func() bool { return healthOf(t, g, "app", c.addr) == "/failed_active_hc" })
	if got := send(t, g, "/", 20, 200); got["a"] != 20 {
		t.Errorf("b unhealthy and c dead: %v, want all on a", got)
	}
	for _, ep := range clustersOf(t, g)["app"].Endpoints {
		if ep.CxConnectFail != 0 {
			t.Errorf("%s: %d connect failures: a request went to the dead endpoint", ep.Address, ep.CxConnectFail)
		}
	}

	b.health.Store(200)
	c.revive()
	testutil.Eventually(t, "b and c healthy again", func() bool {
		return healthOf(t, g, "app", b.addr) == "healthy" && healthOf(t, g, "app", c.addr) == "healthy"
	})
	if got := send(t, g, "/", 30, 200); got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
		t.Errorf("all back: %v, want 10 each", got)
	}
	cl := clustersOf(t, g)["app"]
	if cl.BecameUnhealthy != 2 || cl.BecameHealthy != 2 {
		t.Errorf("transitions: %d to unhealthy, %d to healthy; want 2 and 2", cl.BecameUnhealthy, cl.BecameHealthy)
	}
	_, metrics := get(t, h1Client(), "http://"+g.addr("admin")+"/metrics")
	for _, want := range []string{`plexus_upstream_health_transitions_total{`, `to="unhealthy"`, `plexus_upstream_endpoint_healthy{`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestOutlierEjection: an endpoint answering 503 is ejected after consecutive_5xx and
// takes no request while out; one that is slow is ejected after consecutive gateway
// failures (its per-try timeouts), the requests retried elsewhere; an ejection that runs
// out brings the endpoint back.
func TestOutlierEjection(t *testing.T) {
	t.Parallel()
	var e [4]*flaky
	for i := range e {
		e[i] = startFlaky(t, fmt.Sprint("e", i))
	}
	e[0].status.Store(503)
	var s [3]*flaky
	for i := range s {
		s[i] = startFlaky(t, fmt.Sprint("s", i))
	}
	s[0].delay.Store(int64(5 * time.Second))
	var r [2]*flaky
	for i := range r {
		r[i] = startFlaky(t, fmt.Sprint("r", i))
	}
	r[0].status.Store(500)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends:
  - name: errors
    endpoints: [%s, %s, %s, %s]
    panic_threshold: 0
    outlier_detection: {consecutive_5xx: 3, interval: 50ms, base_ejection_time: 10m, max_ejection_time: 10m, max_ejection_percent: 50}
  - name: slow
    endpoints: [%s, %s, %s]
    panic_threshold: 0
    outlier_detection: {consecutive_5xx: 0, consecutive_gateway_failure: 2, interval: 50ms, base_ejection_time: 10m, max_ejection_time: 10m, max_ejection_percent: 50}
  - name: returns
    endpoints: [%s, %s]
    panic_threshold: 0
    outlier_detection: {consecutive_5xx: 2, interval: 20ms, base_ejection_time: 100ms, max_ejection_percent: 50}
routes:
  - {name: errors, match: {path_prefix: /errors}, backend: errors}
  - {name: slow, match: {path_prefix: /slow}, backend: slow, retry: {attempts: 2, per_try_timeout: 200ms, retry_on: [gateway-error]}}
  - {name: returns, match: {path_prefix: /returns}, backend: returns}
`, e[0].addr, e[1].addr, e[2].addr, e[3].addr, s[0].addr, s[1].addr, s[2].addr, r[0].addr, r[1].addr))
	c := h1Client()
	ejected := func(backend, addr string) func() bool {
		return func() bool {
			if healthOf(t, g, backend, addr) == "/failed_outlier_check" {
				return true
			}
			get(t, c, g.url("web", "/"+backend)) // traffic is what finds an outlier
			return false
		}
	}

	testutil.Eventually(t, "e0 ejected", ejected("errors", e[0].addr))
	before := e[0].served.Load()
	if got := send(t, g, "/errors", 40, 200); got["e0"] != 0 {
		t.Errorf("e0 ejected: %v", got)
	}
	if n := e[0].served.Load() - before; n != 0 {
		t.Errorf("e0 took %d requests while ejected", n)
	}
	if cl := clustersOf(t, g)["errors"]; cl.Ejections["consecutive_5xx"] != 1 {
		t.Errorf("ejections: %v", cl.Ejections)
	}

	// The slow one: each request to it times out after 200ms and is retried on another.
	testutil.Eventually(t, "s0 ejected", ejected("slow", s[0].addr))
	before = s[0].served.Load()
	start := time.Now()
	if got := send(t, g, "/slow", 30, 200); got["s0"] != 0 {
		t.Errorf("s0 ejected: %v", got)
	}
	if n := s[0].served.Load() - before; n != 0 {
		t.Errorf("s0 took %d requests while ejected", n)
	}
	t.Logf("30 requests with the slow endpoint ejected: %s", time.Since(start))
	if cl := clustersOf(t, g)["slow"]; cl.Ejections["consecutive_gateway_failure"] != 1 {
		t.Errorf("ejections: %v", cl.Ejections)
	}

	// The one whose ejection runs out, well again by then, comes back.
	testutil.Eventually(t, "r0 ejected", ejected("returns", r[0].addr))
	r[0].status.Store(200)
	testutil.Eventually(t, "r0 back and answering", func() bool {
		get(t, c, g.url("web", "/returns"))
		return healthOf(t, g, "returns", r[0].addr) == "healthy" && r[0].served.Load() > 0 && send(t, g, "/returns", 4, 200)["r0"] > 0
	})
	_, metrics := get(t, c, "http://"+g.addr("admin")+"/metrics")
	if !strings.Contains(metrics, `plexus_upstream_ejections_total{`) || !strings.Contains(metrics, `reason="consecutive_5xx"`) {
		t.Error("/metrics lacks plexus_upstream_ejections_total by reason")
	}
}

// TestPanicThreshold: with two of three endpoints failing their health checks and a
// panic threshold of 50%, requests go to all three (Envoy's panic mode); below it they
// would pile onto the last one.
func TestPanicThreshold(t *testing.T) {
	t.Parallel()
	a, b, c := startFlaky(t, "a"), startFlaky(t, "b"), startFlaky(t, "c")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends:
  - name: app
    endpoints: [%s, %s, %s]
    panic_threshold: 50
    health_check: {path: /healthz, interval: 50ms, timeout: 1s, healthy_threshold: 1, unhealthy_threshold: 1}
routes:
  - {name: app, match: {path_prefix: /}, backend: app}
`, a.addr, b.addr, c.addr))
	b.health.Store(500)
	testutil.Eventually(t, "b unhealthy", func() bool { return healthOf(t, g, "app", b.addr) == "/failed_active_hc" })
	if got := send(t, g, "/", 20, 200); got["b"] != 0 {
		t.Errorf("two of three healthy (67%%, above the threshold): %v", got)
	}
	c.health.Store(500)
	testutil.Eventually(t, "c unhealthy", func() bool { return healthOf(t, g, "app", c.addr) == "/failed_active_hc" })
	got := send(t, g, "/", 30, 200)
	if got["a"] != 10 || got["b"] != 10 || got["c"] != 10 {
		t.Errorf("one of three healthy, in panic: %v, want 10 each", got)
	}
	if !clustersOf(t, g)["app"].Panic {
		t.Error("/clusters does not show the panic")
	}
}

// TestCircuitBreaking: max_connections and max_pending_requests hold a request back and
// turn the next away with 503 (UO); max_retries 0 and a spent retry budget stop retries,
// where the default lets them through.
func TestCircuitBreaking(t *testing.T) {
	t.Parallel()
	held := startFlaky(t, "held")
	held.hold = make(chan struct{})
	var busy [3]*flaky
	for i := range busy {
		busy[i] = startFlaky(t, fmt.Sprint("busy", i))
		busy[i].status.Store(503)
	}
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends:
  - name: held
    endpoints: [%s]
    circuit_breaker: {max_connections: 2, max_pending_requests: 1}
  - {name: noretries, endpoints: [%s], circuit_breaker: {max_retries: 0}}
  - {name: budget, endpoints: [%s], circuit_breaker: {retry_budget: {budget_percent: 20, min_retry_concurrency: 0}}}
  - {name: retries, endpoints: [%s]}
routes:
  - {name: held, match: {path_prefix: /held}, backend: held}
  - {name: noretries, match: {path_prefix: /noretries}, backend: noretries, retry: {attempts: 3, retry_on: [5xx]}}
  - {name: budget, match: {path_prefix: /budget}, backend: budget, retry: {attempts: 3, retry_on: [5xx]}}
  - {name: retries, match: {path_prefix: /retries}, backend: retries, retry: {attempts: 3, retry_on: [5xx]}}
`, held.addr, busy[0].addr, busy[1].addr, busy[2].addr))

	results := make(chan int, 3)
	hold := func() {
		resp, err := h1Client().Get(g.url("web", "/held"))
		if err != nil {
			results <- 0
			return
		}
		resp.Body.Close()
		results <- resp.StatusCode
	}
	go hold()
	go hold()
	testutil.Eventually(t, "two requests at the endpoint", func() bool { return held.served.Load() == 2 })
	go hold()
	testutil.Eventually(t, "a third waiting for a connection", func() bool { return clustersOf(t, g)["held"].Pending == 1 })
	resp, _ := get(t, h1Client(), g.url("web", "/held"))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Plexus-Error") != "upstream overflow" {
		t.Errorf("a fourth: %d %q, want 503 upstream overflow", resp.StatusCode, resp.Header.Get("X-Plexus-Error"))
	}
	close(held.hold)
	for range 3 {
		if code := <-results; code != 200 {
			t.Errorf("a request within the limits: %d", code)
		}
	}
	if n := held.served.Load(); n != 3 {
		t.Errorf("the endpoint served %d, want 3", n)
	}
	if cl := clustersOf(t, g)["held"]; cl.PendingOverflows != 1 {
		t.Errorf("pending overflows %d, want 1", cl.PendingOverflows)
	}

	for i, tc := range []struct {
		path     string
		attempts int64
	}{{"/noretries", 5}, {"/budget", 5}, {"/retries", 15}} {
		send(t, g, tc.path, 5, 503)
		if n := busy[i].served.Load(); n != tc.attempts {
			t.Errorf("%s: 5 requests made %d attempts, want %d", tc.path, n, tc.attempts)
		}
	}
	cl := clustersOf(t, g)
	if cl["noretries"].RetryOverflows != 5 || cl["budget"].RetryOverflows != 5 || cl["retries"].RetryOverflows != 0 {
		t.Errorf("retry overflows: %d, %d, %d; want 5, 5, 0", cl["noretries"].RetryOverflows, cl["budget"].RetryOverflows, cl["retries"].RetryOverflows)
	}
}
