package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// closedAddr is a 127.0.0.1 address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// scrape reads the admin's /metrics with Prometheus's own text parser.
func scrape(t *testing.T, admin string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("/metrics Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("/metrics does not parse as Prometheus text: %v", err)
	}
	return fams
}

// series finds the metrics of family name whose labels include want.
func series(fams map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	f := fams[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

func familyNames(fams map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range fams {
		out = append(out, n)
	}
	return out
}

// one is the single series of name with labels want; it fails the test otherwise.
func one(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	s := series(fams, name, want)
	if len(s) != 1 {
		t.Fatalf("%s%v: %d series; families: %v", name, want, len(s), familyNames(fams))
	}
	return s[0]
}

func TestMetricsAccessLogsAndAdminViews(t *testing.T) {
	be := newRecordingBackend(t)
	down := closedAddr(t)
	metricsFilter := wasmbuild.Go(t, "examples/go/metrics")
	auth := wasmbuild.Go(t, "examples/go/http_auth_callout")
	dir := t.TempDir()
	jsonLog, textLog := filepath.Join(dir, "access.json"), filepath.Join(dir, "errors.log")
	var reader *sdkmetric.ManualReader
	newReader := func(p sdkmetric.Producer) sdkmetric.Reader {
		reader = sdkmetric.NewManualReader(sdkmetric.WithProducer(p))
		return reader
	}
	_, addrs := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: app, endpoints: [%[1]s]}
  - {name: down, endpoints: [%[2]s]}
  - {name: narrow, endpoints: [%[1]s], circuit_breaker: {max_requests: 1}}
filters:
  - {name: counting, module: "file:%[3]s", config: {header: x-tenant, prefix: demo}}
  - {name: auth, module: "file:%[4]s", config: {cluster: app, path: /auth}}
telemetry:
  access_log:
    - {path: %[5]s, format: json, flush_interval: 50ms,
       fields: [response_code, response_flags, route_name, upstream_cluster, upstream_host, filter, attempts, method, path, trace_id, req.x-tenant, bytes_sent]}
    - {path: %[6]s, format: text, status: [5xx], flush_interval: 50ms}
routes:
  - {name: counted, match: {path: /counted}, filters: [counting], backend: app}
  - {name: guarded, match: {path: /guarded}, filters: [auth], backend: app}
  - {name: down, match: {path: /down}, backend: down}
  - {name: narrow, match: {path: /slow}, backend: narrow}
  - {name: retry, match: {path_prefix: /flaky}, backend: app, retry: {attempts: 2, retry_on: [5xx], backoff: {base: 1ms}}}
  - {name: exhausted, match: {path: /unavailable}, backend: app, retry: {attempts: 2, retry_on: [5xx], backoff: {base: 1ms}}}
  - {name: impatient, match: {path: /slow-too}, backend: app, timeout: 50ms}
  - {name: app, match: {path: /app}, backend: app}
`, be.addr(), down, metricsFilter, auth, jsonLog, textLog), gateway.Options{MetricReader: newReader})
	web, admin := "http://"+addrs["web"], addrs["admin"]

	for range 5 {
		get(t, web+"/app")
	}
	for range 3 {
		get(t, web+"/counted", "X-Tenant", "acme")
	}
	get(t, web+"/nowhere")
	get(t, web+"/nowhere")
	if resp := get(t, web+"/guarded", "Authorization", "no"); resp.StatusCode != 403 {
		t.Fatalf("/guarded: status %d", resp.StatusCode)
	}
	// The narrow backend takes one request at a time: a second one while the first is in
	// flight is turned away by its circuit breaker.
	var wg sync.WaitGroup
	wg.Go(func() {
		// Not get: it may fail the test, which only the test's goroutine may do.
		if resp, err := http.Get(web + "/slow"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	testutil.Eventually(t, "the first /slow at the backend", func() bool { return len(be.traceparents("/slow")) == 1 })
	if resp := get(t, web+"/slow", "X-Tenant", "second"); resp.StatusCode != 503 || resp.Header.Get(gateway.HeaderError) != "upstream overflow" {
		t.Errorf("/slow while full: status %d, %s %q; want 503, upstream overflow", resp.StatusCode, gateway.HeaderError, resp.Header.Get(gateway.HeaderError))
	}
	wg.Wait()
	if resp := get(t, web+"/flaky"); resp.StatusCode != 200 {
		t.Fatalf("/flaky: status %d after a retry", resp.StatusCode)
	}
	if resp := get(t, web+"/unavailable"); resp.StatusCode != 503 {
		t.Fatalf("/unavailable: status %d", resp.StatusCode)
	}
	if resp := get(t, web+"/slow-too"); resp.StatusCode != 504 {
		t.Fatalf("/slow-too: status %d, want 504 from the route's timeout", resp.StatusCode)
	}
	// Last: the endpoint stays ejected for a second after it refused a connection.
	if resp := get(t, web+"/down"); resp.StatusCode != 502 {
		t.Fatalf("/down: status %d", resp.StatusCode)
	}

	t.Run("prometheus", func(t *testing.T) {
		fams := scrape(t, admin)
		h := one(t, fams, "http_server_request_duration_seconds", map[string]string{"plexus_route": "app", "http_response_status_code": "200", "http_request_method": "GET"})
		if got := h.GetHistogram().GetSampleCount(); got != 5 {
			t.Errorf("http.server.request.duration for route app: count %d, want 5", got)
		}
		if h.GetHistogram().GetSampleSum() <= 0 {
			t.Error("http.server.request.duration: sum is 0")
		}
		if h := one(t, fams, "http_server_response_body_size_bytes", map[string]string{"plexus_route": "app"}); h.GetHistogram().GetSampleSum() != 10 {
			t.Errorf("response body size sum %v, want 10 (5 × \"ok\")", h.GetHistogram().GetSampleSum())
		}
		host, port, _ := strings.Cut(be.addr(), ":")
		c := one(t, fams, "http_client_request_duration_seconds", map[string]string{"plexus_backend": "app", "server_address": host, "server_port": port, "http_response_status_code": "200"})
		// 5 /app, 3 /counted, the second attempt of /flaky; the auth filter denied its request.
		if got := c.GetHistogram().GetSampleCount(); got != 9 {
			t.Errorf("http.client.request.duration for backend app: count %d, want 9", got)
		}
		one(t, fams, "http_client_request_duration_seconds", map[string]string{"plexus_backend": "down", "error_type": "connect_failure"})
		for cause, want := range map[string]float64{"no_route": 2, "upstream_connect_failure": 1, "filter_local_reply": 1, "upstream_overflow": 1, "upstream_timeout": 1} {
			m := one(t, fams, "plexus_local_replies_total", map[string]string{"plexus_cause": cause})
			if got := m.GetCounter().GetValue(); got != want {
				t.Errorf("local replies %s: %v, want %v", cause, got, want)
			}
		}
		if m := one(t, fams, "http_server_active_requests", map[string]string{"http_request_method": "GET"}); m.GetGauge().GetValue() != 0 {
			t.Errorf("active requests %v after every request ended", m.GetGauge().GetValue())
		}
		// The filter's own counter, defined with proxy_define_metric, tagged with its name.
		var filterCounter *dto.Metric
		for name := range fams {
			// demo_requests_total.x-tenant.acme, as Prometheus names it.
			if strings.HasPrefix(name, "demo_requests_") && strings.Contains(name, "acme") {
				filterCounter = one(t, fams, name, map[string]string{"plexus_filter": "counting"})
			}
		}
		if filterCounter == nil {
			t.Fatalf("no metric defined by the filter; families: %v", familyNames(fams))
		}
		if got := filterCounter.GetCounter().GetValue(); got != 3 {
			t.Errorf("the filter's counter: %v, want 3", got)
		}
		if len(series(fams, "demo_upstream_time_ms", map[string]string{"plexus_filter": "counting"})) != 1 {
			t.Errorf("the filter's histogram is missing")
		}
		for _, name := range []string{"plexus_wasm_instances", "plexus_wasm_memory_bytes"} {
			if len(series(fams, name, map[string]string{"plexus_filter": "counting"})) == 0 {
				t.Errorf("%s has no series for the filter", name)
			}
		}
		if m := one(t, fams, "plexus_filter_duration_seconds", map[string]string{"plexus_filter": "counting", "plexus_phase": "on_request_headers"}); m.GetHistogram().GetSampleCount() != 3 {
			t.Errorf("filter callbacks on_request_headers: %d, want 3", m.GetHistogram().GetSampleCount())
		}
		// Two modules loaded: each was compiled, or found compiled in the cache on disk.
		compiles := one(t, fams, "plexus_wasm_compiles_total", nil).GetCounter().GetValue()
		hits := one(t, fams, "plexus_wasm_cache_hits_total", nil).GetCounter().GetValue()
		if compiles+hits != 2 {
			t.Errorf("compiles %v + cache hits %v, want 2", compiles, hits)
		}
		for route, want := range map[string]float64{"retry": 1, "exhausted": 1} {
			if m := one(t, fams, "plexus_upstream_retries_total", map[string]string{"plexus_route": route, "plexus_backend": "app"}); m.GetCounter().GetValue() != want {
				t.Errorf("retries on route %s: %v, want %v", route, m.GetCounter().GetValue(), want)
			}
		}
		if m := one(t, fams, "plexus_upstream_overflows_total", map[string]string{"plexus_backend": "narrow"}); m.GetCounter().GetValue() != 1 {
			t.Errorf("overflows %v, want 1", m.GetCounter().GetValue())
		}
	})

	t.Run("otel reader", func(t *testing.T) {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				seen[m.Name] = true
			}
		}
		for _, name := range []string{"http.server.request.duration", "http.client.request.duration", "plexus.wasm.instances", "demo_upstream_time_ms"} {
			if !seen[name] {
				t.Errorf("an OpenTelemetry reader does not see %s", name)
			}
		}
		if v, ok := rm.Resource.Set().Value("service.name"); !ok || v.AsString() != "plexus" {
			t.Errorf("resource service.name %v", v)
		}
	})

	t.Run("access log", func(t *testing.T) {
		var lines []map[string]any
		testutil.Eventually(t, "17 lines in the JSON access log", func() bool {
			lines = readJSONLines(t, jsonLog)
			return len(lines) >= 17
		})
		byPath := map[string][]map[string]any{}
		for _, l := range lines {
			byPath[fmt.Sprint(l["path"])] = append(byPath[fmt.Sprint(l["path"])], l)
		}
		check := func(path string, want map[string]any) {
			t.Helper()
			ls := byPath[path]
			if len(ls) == 0 {
				t.Errorf("no access log line for %s", path)
				return
			}
			l := ls[len(ls)-1]
			for k, v := range want {
				if fmt.Sprint(l[k]) != fmt.Sprint(v) {
					t.Errorf("%s: %s = %v, want %v (line %v)", path, k, l[k], v, l)
				}
			}
		}
		check("/app", map[string]any{"response_code": 200, "response_flags": "-", "route_name": "app", "upstream_cluster": "app", "upstream_host": be.addr(), "attempts": 1, "method": "GET", "bytes_sent": 2})
		check("/nowhere", map[string]any{"response_code": 404, "response_flags": "NR", "route_name": nil, "upstream_cluster": nil})
		check("/down", map[string]any{"response_code": 502, "response_flags": "UF", "upstream_host": down})
		check("/guarded", map[string]any{"response_code": 403, "response_flags": "FL", "filter": "auth"})
		check("/counted", map[string]any{"response_code": 200, "req.x-tenant": "acme"})
		check("/flaky", map[string]any{"response_code": 200, "response_flags": "-", "attempts": 2})
		check("/unavailable", map[string]any{"response_code": 503, "response_flags": "URX", "attempts": 2})
		check("/slow-too", map[string]any{"response_code": 504, "response_flags": "UT"})
		overflow := false
		for _, l := range byPath["/slow"] {
			if l["response_flags"] == "UO" && fmt.Sprint(l["response_code"]) == "503" && l["req.x-tenant"] == "second" {
				overflow = true
			}
		}
		if !overflow {
			t.Errorf("no UO line for the request the circuit breaker turned away: %v", byPath["/slow"])
		}

		// The text sink takes 5xx only, as Envoy's default line. It flushes on its own
		// timer: the JSON lines being there says nothing of it.
		var text string
		testutil.Eventually(t, "4 lines in the text access log", func() bool {
			data, _ := os.ReadFile(textLog)
			text = strings.TrimSpace(string(data))
			return strings.Count(text, "\n") >= 3
		})
		envoyLine := regexp.MustCompile(`^\[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET (\S+) HTTP/1\.1" (\d+) (\S+) \d+ \d+ \d+ \S+ "[^"]*" "[^"]*" "[^"]*" "[^"]*" "[^"]*"$`)
		got := map[string]string{}
		for _, line := range strings.Split(text, "\n") {
			m := envoyLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("text line does not have Envoy's shape: %q", line)
				continue
			}
			got[m[1]] = m[2] + " " + m[3]
		}
		want := map[string]string{"/down": "502 UF", "/slow": "503 UO", "/unavailable": "503 URX", "/slow-too": "504 UT"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("5xx text log holds %v; want %v", got, want)
		}
	})

	t.Run("stats", func(t *testing.T) {
		body := adminGet(t, admin, "/stats?filter=^http\\.server\\.request\\.duration$")
		want := regexp.MustCompile(`(?m)^http\.server\.request\.duration\{.*http\.route="/app",.*plexus\.route="app".*\}: count=5 sum=\S+ p50=\S+ p90=\S+ p99=\S+ max=\S+$`)
		if !want.MatchString(body) {
			t.Errorf("/stats has no line for route app's durations:\n%s", body)
		}
		if strings.Contains(body, "http.client") {
			t.Errorf("/stats?filter= shows other metrics:\n%s", body)
		}
		var js struct {
			Stats []struct {
				Name   string            `json:"name"`
				Labels map[string]string `json:"labels"`
				Value  *float64          `json:"value"`
			} `json:"stats"`
		}
		if err := json.Unmarshal([]byte(adminGet(t, admin, "/stats?format=json")), &js); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range js.Stats {
			if s.Name == "plexus.local_replies" && s.Labels["plexus.cause"] == "no_route" && s.Value != nil && *s.Value == 2 {
				found = true
			}
		}
		if !found {
			t.Errorf("/stats?format=json has no plexus.local_replies{no_route} = 2")
		}
	})

	t.Run("clusters", func(t *testing.T) {
		text := adminGet(t, admin, "/clusters")
		for _, want := range []string{
			"app::" + be.addr() + "::rq_total::",
			"app::" + be.addr() + "::health_flags::healthy",
			"down::" + down + "::health_flags::/failed_outlier_check",
			"down::" + down + "::cx_connect_fail::1",
			"narrow::circuit_breakers::max_requests::1",
			"narrow::overflows::1",
		} {
			if !strings.Contains(text, want) {
				t.Errorf("/clusters lacks %q:\n%s", want, text)
			}
		}
		var js struct {
			Clusters []struct {
				Name      string `json:"name"`
				Endpoints []struct {
					Address   string `json:"address"`
					RqTotal   int64  `json:"rq_total"`
					RqError   int64  `json:"rq_error"`
					RqTimeout int64  `json:"rq_timeout"`
				} `json:"endpoints"`
			} `json:"clusters"`
		}
		if err := json.Unmarshal([]byte(adminGet(t, admin, "/clusters?format=json")), &js); err != nil {
			t.Fatal(err)
		}
		for _, c := range js.Clusters {
			// 5 /app, 3 /counted, 2 attempts each for /flaky and /unavailable, 1 /slow-too;
			// errors: a 503 of /flaky, both of /unavailable, the timeout. The auth filter's
			// callout is the filter's, not a request forwarded, and /slow went to narrow.
			if c.Name == "app" && (len(c.Endpoints) != 1 || c.Endpoints[0].RqTotal != 13 || c.Endpoints[0].RqError != 4 || c.Endpoints[0].RqTimeout != 1) {
				t.Errorf("/clusters?format=json: app's endpoints %+v; want one with rq_total 13, rq_error 4, rq_timeout 1", c.Endpoints)
			}
		}
	})

	t.Run("filters", func(t *testing.T) {
		var js struct {
			Filters []struct {
				Name      string `json:"name"`
				Digest    string `json:"digest"`
				Callbacks map[string]struct {
					Calls uint64 `json:"calls"`
				} `json:"callbacks"`
			} `json:"filters"`
		}
		if err := json.Unmarshal([]byte(adminGet(t, admin, "/filters")), &js); err != nil {
			t.Fatal(err)
		}
		for _, f := range js.Filters {
			if f.Name == "counting" && f.Callbacks["on_request_headers"].Calls != 3 {
				t.Errorf("/filters: counting ran on_request_headers %d times, want 3", f.Callbacks["on_request_headers"].Calls)
			}
		}
	})
}

// statsHave reports each line of want that the admin's /stats, filtered by the regular
// expression filter, lacks.
func statsHave(t *testing.T, admin, filter string, want ...string) {
	t.Helper()
	stats := adminGet(t, admin, "/stats?filter="+filter)
	for _, w := range want {
		if !strings.Contains(stats, w) {
			t.Errorf("/stats lacks %s:\n%s", w, stats)
		}
	}
}

func adminGet(t *testing.T, admin, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: status %d: %s", path, resp.StatusCode, b)
	}
	return string(b)
}

func readJSONLines(t *testing.T, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("access log line is not JSON: %v: %q", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}
