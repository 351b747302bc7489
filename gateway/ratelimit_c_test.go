package gateway_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/testredis"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// examples/c/ratelimit, the C filter calling plexus.rate_limit by hand, on a gateway without
// redis: (the in-process store): 3 requests per minute in a burst of 3, then 429.
func TestRateLimitC(t *testing.T) {
	be := newRecordingBackend(t)
	_, addrs := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: limit, module: "file:%s", config: "global 3 60000 3"}
routes: [{name: limit, match: {path_prefix: /}, filters: [limit], backend: app}]
`, be.addr(), wasmbuild.C(t, "examples/c/ratelimit")), gateway.Options{})
	web := "http://" + addrs["web"]

	for n := 1; n <= 3; n++ {
		if resp := get(t, web+"/limited"); resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d: status %d, want 200", n, resp.StatusCode)
		}
	}
	resp, err := http.Get(web + "/limited")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || string(body) != "rate limited\n" {
		t.Fatalf("request 4: %d %q, want 429 %q", resp.StatusCode, body, "rate limited\n")
	}
	for h, want := range map[string]string{
		"Retry-After":           "20", // a request every 20s
		"X-Ratelimit-Remaining": "0",
		"Content-Type":          "text/plain; charset=utf-8",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("429: %s %q, want %q", h, got, want)
		}
	}
	if n := len(be.traceparents("/limited")); n != 3 {
		t.Errorf("the backend saw %d requests, want the 3 allowed", n)
	}
	statsHave(t, addrs["admin"], "^plexus.ratelimit",
		`plexus.ratelimit.decisions{plexus.decision="allowed",plexus.decision.source="store",plexus.filter="limit"}: 3`,
		`plexus.ratelimit.decisions{plexus.decision="denied",plexus.decision.source="store",plexus.filter="limit"}: 1`)
}

// A configuration the C filter cannot use fails its proxy_on_configure: the gateway refuses
// to load it, naming the filter, and the filter's critical log line names the problem.
func TestRateLimitCRefusesBadConfig(t *testing.T) {
	wasm := wasmbuild.C(t, "examples/c/ratelimit")
	for _, tc := range []struct{ config, why string }{
		{`""`, "no configuration"},
		{`"global 3"`, "fewer than 3 fields"},
		{`"global 3 1000 3 4"`, "more than 4 fields"},
		{`"global three 1000"`, "RATE is not a whole number"},
		{`"global 0 1000"`, "RATE is not a whole number"},
		{`"global 3 0"`, "PERIOD_MS is not a whole number"},
		{`"global 3 1000 -1"`, "BURST is not a whole number"},
		{`"global 3 1000 9223372036854775808"`, "BURST is not a whole number"},
		{`"` + strings.Repeat("k", 1025) + ` 3 1000"`, "KEY is longer than 1024 bytes"},
		{`"global 1 86400000 100000000"`, "above 2^50 microseconds"},
	} {
		t.Run(tc.why, func(t *testing.T) {
			var logs lockedBuffer
			cfg, err := config.Parse(t.TempDir()+"/plexus.yaml", []byte(fmt.Sprintf(`
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [127.0.0.1:1]}]
filters:
  - {name: limit, module: "file:%s", config: %s}
routes: [{name: r, filters: [limit], backend: app}]
`, wasm, tc.config)))
			if err != nil {
				t.Fatal(err)
			}
			g, err := gateway.New(cfg, gateway.Options{
				Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
				CacheDir: testutil.GatewayCacheDir(),
			})
			if err == nil {
				g.Shutdown(t.Context())
				t.Fatalf("config %s loaded, want it refused (%s)", tc.config, tc.why)
			}
			if !strings.Contains(err.Error(), `filter "limit"`) || !strings.Contains(err.Error(), "refused its configuration") {
				t.Errorf("error %q does not name the filter and say it refused its configuration", err)
			}
			if !strings.Contains(logs.String(), "level=ERROR+4") || !strings.Contains(logs.String(), tc.why) {
				t.Errorf("no critical log line saying %q:\n%s", tc.why, logs.String())
			}
		})
	}
}

// With Redis down, the filter's redis_failure decides: open lets the request through (the
// decision comes back allowed, marked fail-open); closed gets the gateway's 503, which the C
// filter lets out by continuing after the failed call, logging it at warn.
func TestRateLimitCRedisDown(t *testing.T) {
	be := newRecordingBackend(t)
	rs := testredis.Start(t)
	wasm := wasmbuild.C(t, "examples/c/ratelimit")
	var logs lockedBuffer
	_, addrs := startGatewayWith(t, fmt.Sprintf(`
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%[1]s]}]
redis: {address: %[2]s}
filters:
  - {name: open, module: "file:%[3]s", redis_failure: open, config: "global 3 60000"}
  - {name: closed, module: "file:%[3]s", redis_failure: closed, config: "global 3 60000"}
routes:
  - {name: open, match: {path: /open}, filters: [open], backend: app}
  - {name: closed, match: {path: /closed}, filters: [closed], backend: app}
`, be.addr(), rs.Addr, wasm), gateway.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	web := "http://" + addrs["web"]
	for _, path := range []string{"/open", "/closed"} {
		if resp := get(t, web+path); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s with Redis up: status %d, want 200", path, resp.StatusCode)
		}
	}
	rs.Stop()
	for n := 1; n <= 4; n++ { // more than the limit: nothing is counted
		if resp := get(t, web+"/open"); resp.StatusCode != http.StatusOK {
			t.Errorf("/open, Redis down, request %d: status %d, want 200", n, resp.StatusCode)
		}
	}
	resp := get(t, web+"/closed")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Header.Get(gateway.HeaderError), "redis unavailable") {
		t.Errorf("/closed, Redis down: %d, %s %q; want 503 naming Redis", resp.StatusCode, gateway.HeaderError, resp.Header.Get(gateway.HeaderError))
	}
	if n := len(be.traceparents("/closed")); n != 1 {
		t.Errorf("the backend saw %d requests for /closed, want the 1 before Redis went down", n)
	}
	if !strings.Contains(logs.String(), "ratelimit (C): request not limited: plexus.rate_limit failed with status 10") {
		t.Errorf("the failed call was not logged at warn:\n%s", logs.String())
	}
}
