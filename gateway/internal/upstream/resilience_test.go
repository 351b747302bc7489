package upstream

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// cluster makes a started-or-not cluster of n endpoints at made-up addresses.
func testCluster(t *testing.T, cfg config.Backend, n int) *Cluster {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "test"
	}
	for i := range n {
		cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: fmt.Sprintf("10.0.0.%d:80", i+1)})
	}
	if cfg.PanicThreshold == nil {
		zero := 0
		cfg.PanicThreshold = &zero
	}
	b, err := NewCluster(cfg, &config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func outlierCfg(cons5xx, gateway, maxPercent int) *config.Outlier {
	return &config.Outlier{Consecutive5xx: &cons5xx, ConsecutiveGatewayFailure: gateway, Interval: time.Hour,
		BaseEjectionTime: time.Minute, MaxEjectionTime: 5 * time.Minute, MaxEjectionPercent: maxPercent}
}

// picks counts where n picks go.
func picks(b *Cluster, n int) map[string]int {
	c := map[string]int{}
	for range n {
		if ep := b.Pick(nil); ep != nil {
			c[ep.Addr]++
		} else {
			c["<nil>"]++
		}
	}
	return c
}

// TestConsecutive5xx: the fifth 5xx in a row ejects; a success in between resets the run;
// the ejected endpoint takes no picks; a second ejection lasts twice as long.
func TestConsecutive5xx(t *testing.T) {
	b := testCluster(t, config.Backend{Outlier: outlierCfg(5, 0, 100)}, 3)
	ep := b.Endpoints()[0]
	for range 4 {
		b.Observe(ep, 503, false)
	}
	b.Observe(ep, 200, false)
	for range 4 {
		b.Observe(ep, 500, false)
	}
	if _, ok := ep.Ejected(); ok {
		t.Fatal("ejected after runs of four with a success between")
	}
	b.Observe(ep, 0, true) // a local failure counts as a 5xx
	until, ok := ep.Ejected()
	if !ok {
		t.Fatal("not ejected after five failures in a row")
	}
	if d := time.Until(until); d < 55*time.Second || d > time.Minute {
		t.Errorf("first ejection for %s, want the base (1m)", d)
	}
	if c := picks(b, 300); c[ep.Addr] != 0 || c["<nil>"] != 0 {
		t.Errorf("picks while ejected: %v", c)
	}
	if n := b.Stats.Ejections[EjectConsecutive5xx].Load(); n != 1 {
		t.Errorf("ejections counted %d", n)
	}
	// The ejection runs out; the next one lasts twice the base.
	ep.ejectedUntil.Store(time.Now().Add(-time.Second).UnixNano())
	b.outlier.sweep(b)
	if _, ok := ep.Ejected(); ok || ep.ejectedUntil.Load() != 0 {
		t.Fatal("still ejected after its time and a sweep")
	}
	for range 5 {
		b.Observe(ep, 502, false)
	}
	until, _ = ep.Ejected()
	if d := time.Until(until); d < 115*time.Second || d > 2*time.Minute {
		t.Errorf("second ejection for %s, want twice the base", d)
	}
	// Intervals in the rotation bring the multiple back down.
	ep.ejectedUntil.Store(time.Now().Add(-time.Second).UnixNano())
	for range 3 {
		b.outlier.sweep(b)
	}
	if n := ep.ejections.Load(); n != 0 {
		t.Errorf("ejection multiple %d after three intervals in, want 0", n)
	}
}

// TestGatewayFailures: only 502, 503, 504 and local failures count, and 5xx detection off.
func TestGatewayFailures(t *testing.T) {
	b := testCluster(t, config.Backend{Outlier: outlierCfg(0, 3, 100)}, 2)
	ep := b.Endpoints()[1]
	b.Observe(ep, 502, false)
	b.Observe(ep, 500, false) // not a gateway failure: the run starts again
	b.Observe(ep, 503, false)
	b.Observe(ep, 504, false)
	if _, ok := ep.Ejected(); ok {
		t.Fatal("ejected: 500 broke the run")
	}
	b.Observe(ep, 0, true)
	if _, ok := ep.Ejected(); !ok {
		t.Fatal("not ejected after three gateway failures in a row")
	}
	if n := b.Stats.Ejections[EjectConsecutiveGateway].Load(); n != 1 {
		t.Errorf("gateway ejections %d", n)
	}
}

// TestMaxEjectionPercent: 10% of 4 endpoints still lets one be ejected, not two.
func TestMaxEjectionPercent(t *testing.T) {
	b := testCluster(t, config.Backend{Outlier: outlierCfg(1, 0, 10)}, 4)
	eps := b.Endpoints()
	b.Observe(eps[0], 500, false)
	b.Observe(eps[1], 500, false)
	_, first := eps[0].Ejected()
	_, second := eps[1].Ejected()
	if !first || second {
		t.Errorf("ejected: %v, %v; want the first only", first, second)
	}
}

// TestSuccessRate: of six endpoints, the one answering 50% where the others answer 99-100%
// is ejected at the interval; none is with too little traffic.
func TestSuccessRate(t *testing.T) {
	o := outlierCfg(0, 0, 50)
	o.SuccessRate = &config.SuccessRate{MinimumHosts: 5, RequestVolume: 100, StdevFactor: 1.9}
	b := testCluster(t, config.Backend{Outlier: o}, 6)
	eps := b.Endpoints()
	feed := func(n int) {
		for i, ep := range eps {
			for k := range n {
				status := 200
				if i == 3 && k%2 == 0 || i == 1 && k == 0 {
					status = 500
				}
				b.Observe(ep, status, false)
			}
		}
	}
	feed(50) // below request_volume
	b.outlier.sweep(b)
	for _, ep := range eps {
		if _, ok := ep.Ejected(); ok {
			t.Fatalf("%s ejected with 50 requests each", ep.Addr)
		}
	}
	feed(100)
	b.outlier.sweep(b)
	for i, ep := range eps {
		if _, ok := ep.Ejected(); ok != (i == 3) {
			t.Errorf("endpoint %d (%s) ejected: %v", i, ep.Addr, ok)
		}
	}
	if n := b.Stats.Ejections[EjectSuccessRate].Load(); n != 1 {
		t.Errorf("success-rate ejections %d", n)
	}
}

// TestPanic: with 50% the threshold, one of four out leaves picks to the rest; three out
// of four send picks to all four, except one refusing connections.
func TestPanic(t *testing.T) {
	half := 50
	b := testCluster(t, config.Backend{PanicThreshold: &half}, 4)
	eps := b.Endpoints()
	eps[0].hcFailed.Store(true)
	b.healthChanged()
	if c := picks(b, 300); c[eps[0].Addr] != 0 || b.Panicking() {
		t.Fatalf("one of four unhealthy: %v, panic %v", c, b.Panicking())
	}
	eps[1].hcFailed.Store(true)
	eps[2].ejectedUntil.Store(time.Now().Add(time.Minute).UnixNano())
	b.healthChanged()
	c := picks(b, 400)
	if !b.Panicking() {
		t.Fatal("three of four out, and no panic")
	}
	for _, ep := range eps {
		if c[ep.Addr] < 50 {
			t.Errorf("in panic, %s got %d of 400 picks: %v", ep.Addr, c[ep.Addr], c)
		}
	}
	eps[3].DownUntil.Store(time.Now().Add(time.Minute).UnixNano())
	b.healthChanged()
	if c := picks(b, 300); c[eps[3].Addr] != 0 {
		t.Errorf("in panic, the endpoint refusing connections got picks: %v", c)
	}
}

// TestSlowStart: an endpoint that joins gets a share growing from min_weight_percent.
func TestSlowStart(t *testing.T) {
	b := testCluster(t, config.Backend{Balance: config.BalanceRoundRobin,
		SlowStart: &config.SlowStart{Window: time.Hour, Aggression: 1, MinWeightPercent: 10}}, 1)
	b.SetEndpoints([]config.Endpoint{{Address: "10.0.0.1:80"}, {Address: "10.0.0.9:80"}})
	eps := b.Endpoints()
	if eps[0].warmFrom.Load() != 0 || eps[1].warmFrom.Load() == 0 {
		t.Fatal("the endpoint that stayed is in slow start, or the new one is not")
	}
	c := picks(b, 4000)
	// The new one starts at about a tenth of its even share.
	if n := c["10.0.0.9:80"]; n < 50 || n > 600 {
		t.Errorf("new endpoint got %d of 4000 picks, want about 10%% of its half: %v", n, c)
	}
	// Half-way through the window it has about half its weight.
	eps[1].warmFrom.Store(time.Now().Add(-30 * time.Minute).UnixNano())
	if f := b.SlowStartFactor(eps[1]); f < 0.49 || f > 0.51 {
		t.Errorf("share half-way %g", f)
	}
	eps[1].warmFrom.Store(time.Now().Add(-2 * time.Hour).UnixNano())
	if c := picks(b, 1000); c["10.0.0.9:80"] != 500 {
		t.Errorf("after the window: %v, want even", c)
	}
	if eps[1].warmFrom.Load() != 0 {
		t.Error("still marked as warming after its window")
	}
}

// TestSetEndpoints: endpoints that stay keep their state; new ones come, gone ones go.
func TestSetEndpoints(t *testing.T) {
	b := testCluster(t, config.Backend{}, 2)
	kept := b.Endpoints()[1]
	kept.Stats.Total.Store(7)
	b.SetEndpoints([]config.Endpoint{{Address: "10.0.0.2:80"}, {Address: "10.0.0.3:80", Weight: 3}, {Address: "10.0.0.2:80"}})
	eps := b.Endpoints()
	if len(eps) != 2 || eps[0] != kept || eps[1].Addr != "10.0.0.3:80" || eps[1].Weight != 3 {
		t.Fatalf("endpoints after the change: %v", eps)
	}
	if c := picks(b, 400); c["10.0.0.1:80"] != 0 || c["10.0.0.3:80"] != 300 {
		t.Errorf("picks: %v", c)
	}
	if b.Stats.Added.Load() != 1 || b.Stats.Removed.Load() != 1 {
		t.Errorf("added %d removed %d", b.Stats.Added.Load(), b.Stats.Removed.Load())
	}
	b.SetEndpoints(nil)
	if ep := b.Pick(nil); ep != nil {
		t.Errorf("no endpoints, picked %v", ep.Addr)
	}
}

// TestRetryBudget: max_retries bounds retries in flight; a budget bounds them by load.
func TestRetryBudget(t *testing.T) {
	b := testCluster(t, config.Backend{CircuitBreaker: config.CircuitBreaker{MaxRequests: 1000, MaxRetries: ptr(2)}}, 1)
	if !b.AdmitRetry() || !b.AdmitRetry() || b.AdmitRetry() {
		t.Fatal("max_retries 2 did not allow exactly two")
	}
	b.ReleaseRetry()
	if !b.AdmitRetry() {
		t.Fatal("a place given back was not taken again")
	}
	if n := b.Stats.RetryOverflows.Load(); n != 1 {
		t.Errorf("overflows %d", n)
	}
	b = testCluster(t, config.Backend{CircuitBreaker: config.CircuitBreaker{MaxRequests: 1000,
		RetryBudget: &config.RetryBudget{BudgetPercent: 20, MinRetryConcurrency: ptr(3)}}}, 1)
	for range 100 {
		b.Admit()
	}
	n := 0
	for b.AdmitRetry() {
		n++
	}
	if n != 20 {
		t.Errorf("with 100 in flight, a 20%% budget allowed %d retries", n)
	}
	b = testCluster(t, config.Backend{CircuitBreaker: config.CircuitBreaker{MaxRequests: 1000,
		RetryBudget: &config.RetryBudget{BudgetPercent: 20, MinRetryConcurrency: ptr(3)}}}, 1)
	n = 0
	for b.AdmitRetry() {
		n++
	}
	if n != 3 {
		t.Errorf("idle, the budget allowed %d retries, want min_retry_concurrency 3", n)
	}
}

// TestMaxConnections: with max_connections 2 and max_pending 1, a third request waits for
// a connection and a fourth is turned away; the waiter goes once a connection is free.
func TestMaxConnections(t *testing.T) {
	release := make(chan struct{})
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		<-release
	}))
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	b, err := NewCluster(config.Backend{Name: "limited", Endpoints: []config.Endpoint{{Address: addr}},
		CircuitBreaker: config.CircuitBreaker{MaxRequests: 100, MaxConnections: 2, MaxPendingRequests: 1}}, &config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	ep := b.Endpoints()[0]
	results := make(chan error, 3)
	send := func() {
		req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
		resp, err := b.RoundTrip(ep, req)
		if err == nil {
			resp.Body.Close()
		}
		results <- err
	}
	go send()
	go send()
	waitFor(t, func() bool { return served.Load() == 2 })
	go send()
	waitFor(t, func() bool { return b.conns.pending.Load() == 1 })
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	_, err = b.RoundTrip(ep, req)
	wantKind(t, err, KindOverflow)
	if n := b.Stats.PendingOverflows.Load(); n != 1 {
		t.Errorf("pending overflows %d", n)
	}
	close(release)
	for range 3 {
		if err := <-results; err != nil {
			t.Errorf("a request under the limits failed: %v", err)
		}
	}
	if n := b.conns.Open(); n > 2 {
		t.Errorf("%d connections open, limit 2", n)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestHealthThresholds: the first result counts at once, then the thresholds.
func TestHealthThresholds(t *testing.T) {
	b := testCluster(t, config.Backend{HealthCheck: &config.HealthCheck{Type: config.HealthTCP, Interval: time.Hour, Timeout: time.Second,
		HealthyThreshold: 2, UnhealthyThreshold: 3}}, 1)
	ep := b.Endpoints()[0]
	c := b.health
	fail := fmt.Errorf("down")
	c.judge(ep, fail, true, 0, 1)
	if !ep.HealthCheckFailed() {
		t.Fatal("a first failure did not count at once")
	}
	c.judge(ep, nil, false, 1, 0)
	if !ep.HealthCheckFailed() {
		t.Fatal("back after one pass; healthy_threshold is 2")
	}
	c.judge(ep, nil, false, 2, 0)
	if ep.HealthCheckFailed() {
		t.Fatal("not back after two passes")
	}
	c.judge(ep, fail, false, 0, 2)
	if ep.HealthCheckFailed() {
		t.Fatal("out after two failures; unhealthy_threshold is 3")
	}
	c.judge(ep, fail, false, 0, 3)
	if !ep.HealthCheckFailed() {
		t.Fatal("still in after three failures")
	}
	if b.Stats.BecameHealthy.Load() != 1 || b.Stats.BecameUnhealthy.Load() != 2 {
		t.Errorf("transitions: %d healthy, %d unhealthy", b.Stats.BecameHealthy.Load(), b.Stats.BecameUnhealthy.Load())
	}
}

// TestHealthChecks: HTTP (path, host, expected statuses), TCP and gRPC checks against real
// servers take an endpoint out and bring it back.
func TestHealthChecks(t *testing.T) {
	var status atomic.Int32
	status.Store(204)
	var gotHost, gotPath atomic.Value
	var checks atomic.Int32
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checks.Add(1)
		gotHost.Store(r.Host)
		gotPath.Store(r.URL.Path)
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(web.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	hs.SetServingStatus("plexus.Test", healthpb.HealthCheckResponse_SERVING)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)

	tcpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tcpAddr := tcpLn.Addr().String()

	start := func(hc *config.HealthCheck, addr, protocol string) *Endpoint {
		hc.Interval, hc.Timeout, hc.HealthyThreshold, hc.UnhealthyThreshold = 20*time.Millisecond, time.Second, 1, 1
		zero := 0
		b, err := NewCluster(config.Backend{Name: hc.Type, Protocol: protocol, Endpoints: []config.Endpoint{{Address: addr}},
			HealthCheck: hc, PanicThreshold: &zero, CircuitBreaker: config.CircuitBreaker{MaxRequests: 10}}, &config.Config{})
		if err != nil {
			t.Fatal(err)
		}
		b.Start(nil, nil)
		t.Cleanup(b.Close)
		return b.Endpoints()[0]
	}
	httpEP := start(&config.HealthCheck{Type: config.HealthHTTP, Path: "/healthz", Host: "api.internal", ExpectedStatuses: []string{"200-299"}}, web.Listener.Addr().String(), config.UpstreamHTTP1)
	grpcEP := start(&config.HealthCheck{Type: config.HealthGRPC, Service: "plexus.Test"}, ln.Addr().String(), config.UpstreamH2C)
	tcpEP := start(&config.HealthCheck{Type: config.HealthTCP}, tcpAddr, config.UpstreamHTTP1)

	waitFor(t, func() bool { return checks.Load() >= 3 }) // a few checks, all passing
	for name, ep := range map[string]*Endpoint{"http": httpEP, "grpc": grpcEP, "tcp": tcpEP} {
		if ep.HealthCheckFailed() {
			t.Errorf("%s: unhealthy while the server is well", name)
		}
	}
	if gotHost.Load() != "api.internal" || gotPath.Load() != "/healthz" {
		t.Errorf("http check asked %v %v", gotHost.Load(), gotPath.Load())
	}

	status.Store(503)
	hs.SetServingStatus("plexus.Test", healthpb.HealthCheckResponse_NOT_SERVING)
	tcpLn.Close()
	waitFor(t, func() bool {
		return httpEP.HealthCheckFailed() && grpcEP.HealthCheckFailed() && tcpEP.HealthCheckFailed()
	})

	status.Store(200)
	hs.SetServingStatus("plexus.Test", healthpb.HealthCheckResponse_SERVING)
	waitFor(t, func() bool { return !httpEP.HealthCheckFailed() && !grpcEP.HealthCheckFailed() })
	if !tcpEP.HealthCheckFailed() {
		t.Error("tcp: healthy with nothing listening")
	}
}

func ptr[T any](v T) *T { return &v }
