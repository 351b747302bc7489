package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testredis"
)

// Three gateway processes share one redis-server, as replicas of a fleet do: a global rate
// limit holds across them, Redis failing is survived as each filter's redis_failure says,
// and shared data keeps its compare-and-swap semantics across them.

// fleetConfig is the config every replica runs. Its Redis timeouts are four times the
// defaults, so that a loaded CI machine does not time calls out by itself. The global limit
// is 300 requests/s, in bursts of 30, and fails closed, so that nothing passes it but what
// Redis allowed; the open and closed filters' limits are too high to deny, so that what
// their requests get shows the failure policy alone.
const fleetConfig = `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: ["{{backend}}"]}]
redis: {address: "{{redis}}", timeout: 200ms, read_timeout: 100ms, write_timeout: 100ms, breaker: {failures: 5, cooldown: 300ms}}
filters:
  - name: global
    module: file:{{ratelimit}}
    redis_failure: closed
    limits: {callback_timeout: 1s}
    config: {limits: [{name: all, key: global, rate: 300, period: 1s, burst: 30}]}
  - name: open
    module: file:{{ratelimit}}
    redis_failure: open
    limits: {callback_timeout: 1s}   # Redis's timeouts, not the callback's, bound a call
    config: {limits: [{name: per-client, key: "header:x-client", rate: 1000000, period: 1s}]}
  - name: closed
    module: file:{{ratelimit}}
    redis_failure: closed
    limits: {callback_timeout: 1s}
    config: {limits: [{name: per-client, key: "header:x-client", rate: 1000000, period: 1s}]}
  - name: scoped
    module: file:{{ratelimit}}
    limits: {callback_timeout: 1s}
    config:
      limits:
        - {name: per-gateway, key: global, rate: 1, period: 1h, burst: 2, scope: local}
        - {name: fleet, key: global, rate: 1, period: 1h, burst: 4}
  - name: counter
    module: file:{{shared}}
    shared_data: redis
    limits: {callback_timeout: 1s}   # a CAS loop over the network, on a loaded machine
  - name: requests
    module: file:{{requests}}
    config: {header: x-client, window: 1m}
routes:
  - {name: global, match: {path_prefix: /global}, filters: [global], backend: app}
  - {name: open, match: {path_prefix: /open}, filters: [open], backend: app}
  - {name: closed, match: {path_prefix: /closed}, filters: [closed], backend: app}
  - {name: scoped, match: {path_prefix: /scoped}, filters: [scoped], backend: app}
  - {name: counter, match: {path_prefix: /counter}, filters: [counter], backend: app}
  - {name: requests, match: {path_prefix: /request}, filters: [requests], backend: app}
`

// outcome is one request's result, timed from when it was sent.
type outcome struct {
	sent, done time.Time
	status     int
	header     http.Header
}

// drive sends GETs of path to every gateway from conc goroutines each until ctx ends.
func drive(ctx context.Context, gws []*gw, conc int, path string) []outcome {
	var mu sync.Mutex
	var out []outcome
	var wg sync.WaitGroup
	for k, g := range gws {
		url := g.url("web", path)
		for c := range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				client := h1Client()
				defer client.CloseIdleConnections()
				var mine []outcome
				for ctx.Err() == nil {
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					req.Header.Set("x-client", fmt.Sprintf("client-%d-%d", k, c))
					o := outcome{sent: time.Now()}
					resp, err := client.Do(req)
					o.done = time.Now()
					if err != nil {
						o.status = -1
					} else {
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						o.status, o.header = resp.StatusCode, resp.Header
					}
					mine = append(mine, o)
				}
				mu.Lock()
				out = append(out, mine...)
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out
}

func startFleet(t *testing.T, n int, rs *testredis.Server) []*gw {
	t.Helper()
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	cfg := strings.NewReplacer(
		"{{backend}}", app.addr, "{{redis}}", rs.Addr,
		"{{ratelimit}}", module(t, "filter", "ratelimit"),
		"{{shared}}", module(t, "go", "examples/go/shared_data"),
		"{{requests}}", module(t, "go", "examples/go/request_counter"),
	).Replace(fleetConfig)
	gws := make([]*gw, n)
	for k := range gws {
		gws[k] = startGateway(t, cfg)
	}
	return gws
}

func TestRedisFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("drives three gateways for several seconds")
	}
	rs := testredis.Start(t)
	gws := startFleet(t, 3, rs)

	t.Run("global limit", func(t *testing.T) {
		// Three windows of 2s after a second of warm-up, which spends the burst.
		const rate, window, windows = 300, 2 * time.Second, 3
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second+windows*window)
		defer cancel()
		out := drive(ctx, gws, 3, "/global")
		counts := make([]int, windows)
		var denied, admitted, failed int
		perGateway := map[string]int{}
		for _, o := range out {
			switch o.status {
			case http.StatusOK:
				admitted++
				if d := o.done.Sub(start.Add(time.Second)); d >= 0 && d < windows*window {
					counts[d/window]++
				}
			case http.StatusTooManyRequests:
				denied++
				if ra, _ := strconv.Atoi(o.header.Get("Retry-After")); ra < 1 {
					t.Errorf("429 with retry-after %q", o.header.Get("Retry-After"))
				}
			case http.StatusServiceUnavailable: // Redis did not answer in time
				failed++
			default:
				t.Fatalf("status %d", o.status)
			}
		}
		for _, g := range gws {
			perGateway[g.addr("web")] = int(statValue(t, g, `plexus.ratelimit.decisions{plexus.decision="allowed",plexus.decision.source="store",plexus.filter="global"}`))
		}
		want := rate * int(window/time.Second)
		t.Logf("%d requests: %d admitted, %d denied, %d failed; admitted per %v window %v (limit %d); allowed by each gateway %v",
			len(out), admitted, denied, failed, window, counts, want, perGateway)
		if denied < 2*admitted {
			t.Fatalf("offered load too low to test the limit: %d denied, %d admitted", denied, admitted)
		}
		for w, n := range counts {
			if diff := n - want; diff*50 > want || -diff*50 > want {
				t.Errorf("window %d admitted %d, want %d ± 2%%", w, n, want)
			}
		}
		// A key over its limit is answered from each gateway's cache until it may pass
		// again (here a few milliseconds: a request every 3.3ms passes).
		var cached, fromRedis float64
		for _, g := range gws {
			cached += statValue(t, g, `plexus.ratelimit.decisions{plexus.decision="denied",plexus.decision.source="cache",plexus.filter="global"}`)
			fromRedis += statValue(t, g, `plexus.ratelimit.decisions{plexus.decision="denied",plexus.decision.source="store",plexus.filter="global"}`)
		}
		t.Logf("denials: %v from the gateways' caches, %v from Redis", cached, fromRedis)
		if cached == 0 {
			t.Errorf("no denial from the caches, %v from Redis", fromRedis)
		}
		for addr, n := range perGateway {
			if n < want/10 {
				t.Errorf("gateway %s allowed only %d: the load did not go through all three", addr, n)
			}
		}
		// Over the whole run: at most the burst plus the rate.
		if limit := 30 + rate*int(time.Since(start)/time.Millisecond)/1000; admitted > limit {
			t.Errorf("admitted %d over the run, above the %d GCRA allows", admitted, limit)
		}
	})

	t.Run("redis fails", func(t *testing.T) {
		for _, fault := range []struct {
			name       string
			down, back func()
		}{
			{"killed", rs.Stop, rs.Restart},
			{"stalled", rs.Stall, rs.Resume},
		} {
			t.Run(fault.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 4500*time.Millisecond)
				defer cancel()
				var open, closed []outcome
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); open = drive(ctx, gws, 2, "/open") }()
				go func() { defer wg.Done(); closed = drive(ctx, gws, 2, "/closed") }()
				time.Sleep(time.Second)
				downAt := time.Now()
				fault.down()
				time.Sleep(1500 * time.Millisecond)
				backAt := time.Now()
				fault.back()
				wg.Wait()

				// A request sent while Redis was away, and a little after it failed
				// (requests in flight then may have been decided already).
				during := func(o outcome) bool { return o.sent.After(downAt.Add(100*time.Millisecond)) && o.done.Before(backAt) }
				// After it is back and the breaker's cooldown has passed.
				after := func(o outcome) bool { return o.sent.After(backAt.Add(time.Second)) }
				check := func(name string, out []outcome, whileDown int, errHeader bool) {
					var n [3]int // before, during, after
					var lat []time.Duration
					for _, o := range out {
						lat = append(lat, o.done.Sub(o.sent))
						switch {
						case during(o):
							n[1]++
							if o.status != whileDown {
								t.Errorf("%s: %d while Redis was %s, want %d", name, o.status, fault.name, whileDown)
							} else if errHeader && !strings.Contains(o.header.Get("X-Plexus-Error"), "redis unavailable") {
								t.Errorf("%s: 503 with x-plexus-error %q", name, o.header.Get("X-Plexus-Error"))
							}
						case after(o):
							n[2]++
							if o.status != http.StatusOK {
								t.Errorf("%s: %d after Redis came back", name, o.status)
							}
						case o.done.Before(downAt):
							n[0]++
							if o.status != http.StatusOK {
								t.Errorf("%s: %d before Redis failed (%q)", name, o.status, o.header.Get("X-Plexus-Error"))
							}
						}
					}
					slices.Sort(lat)
					p99, max := lat[len(lat)*99/100], lat[len(lat)-1]
					t.Logf("%s: %d requests before, %d during, %d after; latency p99 %v, max %v", name, n[0], n[1], n[2], p99, max)
					if n[1] < 20 || n[2] < 20 {
						t.Errorf("%s: too few requests during (%d) or after (%d) the fault", name, n[1], n[2])
					}
					// A Redis call gives up after redis.timeout: no request waits on it longer.
					if p99 > 200*time.Millisecond {
						t.Errorf("%s: p99 latency %v, want it bounded by redis.timeout (200ms)", name, p99)
					}
				}
				check("open", open, http.StatusOK, false)
				check("closed", closed, http.StatusServiceUnavailable, true)
			})
		}
		g := gws[0]
		for _, series := range []string{
			`plexus.ratelimit.decisions{plexus.decision="allowed",plexus.decision.source="fail_open",plexus.filter="open"}`,
			`plexus.redis.failures{error.type="breaker_open",plexus.filter="closed"}`,
			`plexus.redis.failures{error.type="timeout",plexus.filter="open"}`,
		} {
			if v := statValue(t, g, series); v <= 0 {
				t.Errorf("%s = %v, want some", series, v)
			}
		}
		if v := statValue(t, g, `plexus.redis.breaker.state{state="closed"}`); v != 1 {
			t.Errorf("the breaker is not closed again")
		}
		// One line when the breaker opens, one when it closes: not one per failed trial.
		opened := len(g.findLogs("redis: circuit breaker open: calls fail at once until a trial call succeeds"))
		if closed := len(g.findLogs("redis: circuit breaker closed: a trial call succeeded")); opened < 2 || opened != closed {
			t.Errorf("the breaker logged opening %d times and closing %d times, want once each per fault", opened, closed)
		}
	})

	t.Run("counter", func(t *testing.T) { testFleetCounter(t, gws) })

	// A local limit counts on each gateway alone, a global one across the fleet: 2 per
	// gateway, 4 in all. The first gateway's third request meets its local limit (the
	// global one counts it); the second gateway's first passes, its second meets the
	// global limit.
	t.Run("local and global", func(t *testing.T) {
		c := h1Client()
		for _, step := range []struct{ g, want int }{{0, 200}, {0, 200}, {0, 429}, {1, 200}, {1, 429}} {
			if resp, _ := get(t, c, gws[step.g].url("web", "/scoped")); resp.StatusCode != step.want {
				t.Fatalf("gateway %d: %d, want %d", step.g, resp.StatusCode, step.want)
			}
		}
	})

	t.Run("shared data", func(t *testing.T) {
		// The first set of a key is unconditional (cas 0 on a key not set), as in Envoy:
		// make it alone, then every update races.
		resp, _ := get(t, h1Client(), gws[0].url("web", "/counter"))
		first, _ := strconv.Atoi(resp.Header.Get("X-Shared-Counter"))
		if first < 1 {
			t.Fatalf("first count %q", resp.Header.Get("X-Shared-Counter"))
		}
		const each = 40
		var mu sync.Mutex
		var got []int
		var retries int
		var wg sync.WaitGroup
		for _, g := range gws {
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := h1Client()
					for range each {
						resp, err := c.Get(g.url("web", "/counter"))
						if err != nil {
							t.Error(err)
							return
						}
						resp.Body.Close()
						n, err := strconv.Atoi(resp.Header.Get("X-Shared-Counter"))
						r, _ := strconv.Atoi(resp.Header.Get("X-Shared-Cas-Retries"))
						mu.Lock()
						if err != nil {
							t.Errorf("count %q", resp.Header.Get("X-Shared-Counter"))
						}
						got = append(got, n)
						retries += r
						mu.Unlock()
					}
				}()
			}
		}
		wg.Wait()
		sort.Ints(got)
		t.Logf("%d concurrent increments through 3 gateways, %d CAS retries", len(got), retries)
		for k, n := range got {
			if n != first+1+k {
				t.Fatalf("counts %v...: want each of %d..%d once (a lost or doubled update)", got[max(0, k-3):min(len(got), k+3)], first+1, first+len(got))
			}
		}
		if retries == 0 {
			t.Error("no CAS mismatch: the updates did not race")
		}
	})
}

// Counters: every replica increments the same one, atomically.
func testFleetCounter(t *testing.T, gws []*gw) {
	const each = 30
	var mu sync.Mutex
	var got []int
	var wg sync.WaitGroup
	for _, g := range gws {
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := h1Client()
				for range each {
					resp, _ := get(t, c, g.url("web", "/requests"), "x-client", "fleet")
					n, err := strconv.Atoi(resp.Header.Get("X-Request-Count"))
					mu.Lock()
					if err != nil {
						t.Errorf("x-request-count %q", resp.Header.Get("X-Request-Count"))
					}
					got = append(got, n)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	sort.Ints(got)
	for k, n := range got {
		if n != k+1 {
			t.Fatalf("counts %v...: want each of 1..%d once", got[max(0, k-3):min(len(got), k+3)], len(got))
		}
	}
	for _, g := range gws {
		resp, _ := get(t, h1Client(), g.url("web", "/request-count"), "x-client", "fleet")
		if c := resp.Header.Get("X-Request-Count"); c != strconv.Itoa(len(got)) {
			t.Errorf("%s reads %q, want %d", g.addr("web"), c, len(got))
		}
	}
}

// statValue reads one series's value from the gateway's /stats; 0 when absent.
func statValue(t *testing.T, g *gw, series string) float64 {
	t.Helper()
	_, body := get(t, h1Client(), "http://"+g.addr("admin")+"/stats")
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+": "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
