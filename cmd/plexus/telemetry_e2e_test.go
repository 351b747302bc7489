package main

// End-to-end tests of telemetry: the real binary exports to real OpenTelemetry receivers
// written here against the OTLP protos (an OTLP/HTTP collector on httptest, an OTLP/gRPC
// collector on grpc), writes access logs and stdout spans to a captured stdout, refuses bad
// telemetry config with file:line:col, and reloads access logs but not metrics.
// gateway/telemetry_test.go and gateway/metrics_test.go cover the spans' attributes, the
// Prometheus endpoint, access log files and admin views in-process.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	_ "google.golang.org/grpc/encoding/gzip" // a collector accepts gzip-compressed exports
	"google.golang.org/protobuf/proto"
)

// otlpSink is the receiving end of a collector: it keeps every span and every metrics
// export it is sent, over OTLP/HTTP (ServeHTTP) or OTLP/gRPC (startOTLPGRPC).
type otlpSink struct {
	mu      sync.Mutex
	spans   []telSpan
	metrics []*colmetricspb.ExportMetricsServiceRequest
	posts   []string // OTLP/HTTP: "METHOD PATH content-type content-encoding" of each request
}

// telSpan is a received span with its resource's attributes.
type telSpan struct {
	*tracepb.Span
	resource map[string]string
}

func (s *otlpSink) addTraces(req *coltracepb.ExportTraceServiceRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		res := telAttrs(rs.GetResource().GetAttributes())
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.spans = append(s.spans, telSpan{sp, res})
			}
		}
	}
}

func (s *otlpSink) addMetrics(req *colmetricspb.ExportMetricsServiceRequest) {
	s.mu.Lock()
	s.metrics = append(s.metrics, req)
	s.mu.Unlock()
}

func (s *otlpSink) receivedSpans() []telSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.spans)
}

func (s *otlpSink) receivedMetrics() []*colmetricspb.ExportMetricsServiceRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.metrics)
}

func (s *otlpSink) receivedPosts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.posts)
}

// ServeHTTP is an OTLP/HTTP receiver (binary protobuf) on the collector's paths, /v1/traces
// and /v1/metrics; other paths get 404, as from a real collector.
func (s *otlpSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	enc := r.Header.Get("Content-Encoding")
	s.mu.Lock()
	s.posts = append(s.posts, strings.Join([]string{r.Method, r.URL.Path, r.Header.Get("Content-Type"), enc}, " "))
	s.mu.Unlock()
	if r.Method != http.MethodPost {
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-protobuf" {
		http.Error(w, "want application/x-protobuf, not "+ct, http.StatusUnsupportedMediaType)
		return
	}
	var body io.Reader = r.Body
	switch enc {
	case "":
	case "gzip":
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	default:
		http.Error(w, "unknown Content-Encoding "+enc, http.StatusUnsupportedMediaType)
		return
	}
	b, err := io.ReadAll(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var resp proto.Message
	switch r.URL.Path {
	case "/v1/traces":
		req := &coltracepb.ExportTraceServiceRequest{}
		if err := proto.Unmarshal(b, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.addTraces(req)
		resp = &coltracepb.ExportTraceServiceResponse{}
	case "/v1/metrics":
		req := &colmetricspb.ExportMetricsServiceRequest{}
		if err := proto.Unmarshal(b, req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.addMetrics(req)
		resp = &colmetricspb.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, r)
		return
	}
	out, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// startOTLPHTTP serves an OTLP/HTTP receiver on 127.0.0.1 until the test ends.
func startOTLPHTTP(t *testing.T) (*otlpSink, *httptest.Server) {
	t.Helper()
	sink := &otlpSink{}
	srv := httptest.NewServer(sink)
	t.Cleanup(srv.Close)
	return sink, srv
}

type traceService struct {
	coltracepb.UnimplementedTraceServiceServer
	sink *otlpSink
}

func (s traceService) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.sink.addTraces(req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type metricsService struct {
	colmetricspb.UnimplementedMetricsServiceServer
	sink *otlpSink
}

func (s metricsService) Export(_ context.Context, req *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	s.sink.addMetrics(req)
	return &colmetricspb.ExportMetricsServiceResponse{}, nil
}

// startOTLPGRPC serves the collector's TraceService and MetricsService on 127.0.0.1 until
// the test ends, and returns the sink and its host:port.
func startOTLPGRPC(t *testing.T) (*otlpSink, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink := &otlpSink{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, traceService{sink: sink})
	colmetricspb.RegisterMetricsServiceServer(srv, metricsService{sink: sink})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return sink, ln.Addr().String()
}

// telAttrs flattens OTLP attributes to strings (ints as decimal).
func telAttrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		switch v := kv.GetValue().GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			m[kv.GetKey()] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			m[kv.GetKey()] = fmt.Sprint(v.IntValue)
		case *commonpb.AnyValue_BoolValue:
			m[kv.GetKey()] = fmt.Sprint(v.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			m[kv.GetKey()] = fmt.Sprint(v.DoubleValue)
		default:
			m[kv.GetKey()] = kv.GetValue().String()
		}
	}
	return m
}

func telID(b []byte) string { return hex.EncodeToString(b) }

func telSpansOfKind(ss []telSpan, k tracepb.Span_SpanKind) []telSpan {
	var out []telSpan
	for _, s := range ss {
		if s.GetKind() == k {
			out = append(out, s)
		}
	}
	return out
}

func telDescribe(ss []telSpan) string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "\n  %s %q trace %s span %s parent %s", s.GetKind(), s.GetName(), telID(s.GetTraceId()), telID(s.GetSpanId()), telID(s.GetParentSpanId()))
	}
	return b.String()
}

// telTraceBackend answers 200 and keeps the traceparent of each request it gets.
func telTraceBackend(t *testing.T) (*backend, func() []string) {
	var mu sync.Mutex
	var seen []string
	be := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Traceparent"))
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	return be, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(seen)
	}
}

// telStop sends SIGTERM and waits for plexus to exit, which it does after exporting the
// spans and flushing the access logs it holds: the way to see them without waiting for the
// exporters' schedules.
func telStop(t *testing.T, g *gw) {
	t.Helper()
	g.signal(syscall.SIGTERM)
	select {
	case <-g.waitc:
	case <-time.After(15 * time.Second):
		t.Fatal("plexus still running 15s after SIGTERM")
	}
	if code := g.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("plexus exited with %d after SIGTERM, want 0", code)
	}
	if l := g.findLogs("tracing: spans not exported at shutdown"); len(l) > 0 {
		t.Errorf("spans lost at shutdown: %v", l)
	}
	telNoExportErrors(t, g)
}

// telNoExportErrors fails on a failed export. The exporters report those to OpenTelemetry's
// global error handler, which writes them with the log package: plexus's slog, at INFO.
func telNoExportErrors(t *testing.T, g *gw) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.logs {
		msg, _ := m["msg"].(string)
		if strings.Contains(msg, "fail") && (strings.Contains(msg, "export") || strings.Contains(msg, "upload")) {
			t.Errorf("an export failed: %v", m)
		}
	}
}

// telWaitFor polls cond until it holds, or fails after d.
func telWaitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The trace a request makes, as the collector gets it: the gateway's server span continues
// the caller's trace, the upstream attempt is a client span under it, and the backend is
// told the client span. The endpoint is the full URL of the collector's traces path, the
// form OTEL_EXPORTER_OTLP_TRACES_ENDPOINT takes.
func TestTelemetryOTLPHTTPTraces(t *testing.T) {
	t.Parallel()
	sink, col := startOTLPHTTP(t)
	be, traceparents := telTraceBackend(t)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
telemetry:
  service_name: edge
  resource: {deployment.environment: e2e}
  tracing:
    sampling: 1
    exporter: {type: otlp_http, endpoint: "%s/v1/traces", insecure: true}
routes:
  - {name: api, match: {path_prefix: /api}, backend: app}
`, be.addr, col.URL))

	const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	resp, body := get(t, h1Client(), g.url("web", "/api/items?x=1"), "Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	if resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET /api/items: %d %q", resp.StatusCode, body)
	}
	telStop(t, g)

	posts := sink.receivedPosts()
	if len(posts) == 0 {
		t.Fatal("the collector got no request")
	}
	for _, p := range posts {
		if !strings.HasPrefix(p, "POST /v1/traces application/x-protobuf") {
			t.Errorf("export %q, want POST /v1/traces application/x-protobuf", p)
		}
	}
	ss := sink.receivedSpans()
	servers, clients := telSpansOfKind(ss, tracepb.Span_SPAN_KIND_SERVER), telSpansOfKind(ss, tracepb.Span_SPAN_KIND_CLIENT)
	if len(servers) != 1 || len(clients) != 1 || len(ss) != 2 {
		t.Fatalf("want one server and one client span, got:%s", telDescribe(ss))
	}
	srv, cli := servers[0], clients[0]
	for _, s := range ss {
		if s.resource["service.name"] != "edge" || s.resource["deployment.environment"] != "e2e" {
			t.Errorf("span %q: resource %v, want service.name edge and deployment.environment e2e", s.GetName(), s.resource)
		}
	}
	if srv.GetName() != "GET /api*" {
		t.Errorf("server span name %q, want %q (the route's path template)", srv.GetName(), "GET /api*")
	}
	if got := telID(srv.GetTraceId()); got != callerTrace {
		t.Errorf("server span trace %s, want the caller's %s", got, callerTrace)
	}
	if got := telID(srv.GetParentSpanId()); got != callerSpan {
		t.Errorf("server span parent %s, want the caller's span %s", got, callerSpan)
	}
	if a := telAttrs(srv.GetAttributes()); a["http.route"] != "/api*" || a["plexus.route"] != "api" || a["http.response.status_code"] != "200" || a["url.path"] != "/api/items" {
		t.Errorf("server span attributes %v; want http.route /api*, plexus.route api, status 200, url.path /api/items", a)
	}
	if telID(cli.GetTraceId()) != callerTrace || telID(cli.GetParentSpanId()) != telID(srv.GetSpanId()) {
		t.Errorf("client span trace %s parent %s; want trace %s, parent the server span %s",
			telID(cli.GetTraceId()), telID(cli.GetParentSpanId()), callerTrace, telID(srv.GetSpanId()))
	}
	tps := traceparents()
	if want := "00-" + callerTrace + "-" + telID(cli.GetSpanId()) + "-01"; len(tps) != 1 || tps[0] != want {
		t.Errorf("the backend got traceparent %q, want [%s] (the client span, sampled)", tps, want)
	}
}

// Spans reach a collector over OTLP/gRPC; a request without a traceparent starts a trace,
// which the backend joins.
func TestTelemetryOTLPGRPCTraces(t *testing.T) {
	t.Parallel()
	sink, addr := startOTLPGRPC(t)
	be, traceparents := telTraceBackend(t)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
telemetry:
  tracing:
    exporter: {type: otlp_grpc, endpoint: "%s", insecure: true}
routes:
  - {name: all, backend: app}
`, be.addr, addr))

	if resp, body := get(t, h1Client(), g.url("web", "/x")); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("GET /x: %d %q", resp.StatusCode, body)
	}
	telStop(t, g)

	ss := sink.receivedSpans()
	servers, clients := telSpansOfKind(ss, tracepb.Span_SPAN_KIND_SERVER), telSpansOfKind(ss, tracepb.Span_SPAN_KIND_CLIENT)
	if len(servers) != 1 || len(clients) != 1 {
		t.Fatalf("want one server and one client span, got:%s", telDescribe(ss))
	}
	srv, cli := servers[0], clients[0]
	if srv.resource["service.name"] != "plexus" {
		t.Errorf("resource service.name %q, want the default plexus", srv.resource["service.name"])
	}
	if srv.GetName() != "GET /*" || len(srv.GetParentSpanId()) != 0 {
		t.Errorf("server span %q with parent %s; want GET /*, a root span", srv.GetName(), telID(srv.GetParentSpanId()))
	}
	if !bytes.Equal(cli.GetTraceId(), srv.GetTraceId()) || !bytes.Equal(cli.GetParentSpanId(), srv.GetSpanId()) {
		t.Errorf("the client span is not the server span's child:%s", telDescribe(ss))
	}
	tps := traceparents()
	if want := "00-" + telID(srv.GetTraceId()) + "-" + telID(cli.GetSpanId()) + "-01"; len(tps) != 1 || tps[0] != want {
		t.Errorf("the backend got traceparent %q, want [%s]", tps, want)
	}
}

// telMetric finds a metric by name in an export.
func telMetric(req *colmetricspb.ExportMetricsServiceRequest, name string) *metricspb.Metric {
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				if m.GetName() == name {
					return m
				}
			}
		}
	}
	return nil
}

func telMetricNames(req *colmetricspb.ExportMetricsServiceRequest) []string {
	var out []string
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				out = append(out, m.GetName())
			}
		}
	}
	sort.Strings(out)
	return out
}

// telHistCount is the count of the histogram's points whose attributes include want.
func telHistCount(m *metricspb.Metric, want map[string]string) uint64 {
	var n uint64
	for _, p := range m.GetHistogram().GetDataPoints() {
		if telHas(p.GetAttributes(), want) {
			n += p.GetCount()
		}
	}
	return n
}

// telSum is the sum of the int sum's points whose attributes include want.
func telSum(m *metricspb.Metric, want map[string]string) int64 {
	var n int64
	for _, p := range m.GetSum().GetDataPoints() {
		if telHas(p.GetAttributes(), want) {
			n += p.GetAsInt()
		}
	}
	return n
}

func telHas(kvs []*commonpb.KeyValue, want map[string]string) bool {
	a := telAttrs(kvs)
	for k, v := range want {
		if a[k] != v {
			return false
		}
	}
	return true
}

// telMetricsView is what TestTelemetryOTLPMetrics looks at in an export.
type telMetricsView struct {
	counted, plain uint64 // http.server.request.duration counts by route
	acme, none     int64  // the filter's counters, by x-tenant
	inFlight       int64  // the filter's gauge
	filterHist     uint64 // the filter's histogram's count
	service        string
	temporality    metricspb.AggregationTemporality // of http.server.request.duration
}

func telViewMetrics(req *colmetricspb.ExportMetricsServiceRequest) telMetricsView {
	v := telMetricsView{inFlight: -1}
	if rms := req.GetResourceMetrics(); len(rms) > 0 {
		v.service = telAttrs(rms[0].GetResource().GetAttributes())["service.name"]
	}
	if m := telMetric(req, "http.server.request.duration"); m != nil {
		v.counted = telHistCount(m, map[string]string{"plexus.route": "counted", "http.request.method": "GET", "http.response.status_code": "200"})
		v.plain = telHistCount(m, map[string]string{"plexus.route": "plain"})
		v.temporality = m.GetHistogram().GetAggregationTemporality()
	}
	filter := map[string]string{"plexus.filter": "counting"}
	if m := telMetric(req, "e2e_requests_total.x-tenant.acme"); m != nil {
		v.acme = telSum(m, filter)
	}
	if m := telMetric(req, "e2e_requests_total.x-tenant.none"); m != nil {
		v.none = telSum(m, filter)
	}
	if m := telMetric(req, "e2e_requests_in_flight"); m != nil {
		for _, p := range m.GetGauge().GetDataPoints() {
			if telHas(p.GetAttributes(), filter) {
				v.inFlight = p.GetAsInt()
			}
		}
	}
	if m := telMetric(req, "e2e_upstream_time_ms"); m != nil {
		v.filterHist = telHistCount(m, filter)
	}
	return v
}

// Metrics pushed over OTLP every 200ms, by both transports: the HTTP server duration by
// route, and what the examples/go/metrics filter defines, tagged with the filter's name.
func TestTelemetryOTLPMetrics(t *testing.T) {
	t.Parallel()
	wasm := module(t, "go", "examples/go/metrics")
	for _, kind := range []string{"otlp_http", "otlp_grpc"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			var sink *otlpSink
			var endpoint string
			if kind == "otlp_http" {
				var col *httptest.Server
				sink, col = startOTLPHTTP(t)
				endpoint = col.Listener.Addr().String() // host:port: the exporter adds /v1/metrics
			} else {
				sink, endpoint = startOTLPGRPC(t)
			}
			app := startBackend(t, echo("app"))
			g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: counting, module: "file:%s", config: {header: x-tenant, prefix: e2e}}
telemetry:
  metrics:
    interval: 200ms
    exporter: {type: %s, endpoint: "%s", insecure: true}
routes:
  - {name: counted, match: {path_prefix: /counted}, filters: [counting], backend: app}
  - {name: plain, backend: app}
`, app.addr, wasm, kind, endpoint))
			c := h1Client()
			for i, tenant := range []string{"acme", "acme", "", "acme"} {
				var hdr []string
				if tenant != "" {
					hdr = []string{"X-Tenant", tenant}
				}
				resp, _ := get(t, c, g.url("web", "/counted"), hdr...)
				// The filter ran: its answer carries its counter, the third acme request's 3.
				if resp.StatusCode != 200 || (i == 3 && resp.Header.Get("X-Metric-Requests") != "3") {
					t.Fatalf("/counted #%d: %d, x-metric-requests %q", i, resp.StatusCode, resp.Header.Get("X-Metric-Requests"))
				}
			}
			for range 2 {
				if resp, _ := get(t, c, g.url("web", "/plain")); resp.StatusCode != 200 {
					t.Fatalf("/plain: %d", resp.StatusCode)
				}
			}

			// Every series is cumulative: some export sees all the requests, and later ones
			// see the same.
			want := telMetricsView{counted: 4, plain: 2, acme: 3, none: 1, inFlight: 0, filterHist: 4, service: "plexus",
				temporality: metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE}
			var last telMetricsView
			var lastNames []string
			deadline := time.Now().Add(10 * time.Second)
			for last != want {
				if time.Now().After(deadline) {
					t.Fatalf("after 10s the latest export has %+v, want %+v; its metrics: %v", last, want, lastNames)
				}
				time.Sleep(50 * time.Millisecond)
				if exports := sink.receivedMetrics(); len(exports) > 0 {
					req := exports[len(exports)-1]
					last, lastNames = telViewMetrics(req), telMetricNames(req)
				}
			}
			telNoExportErrors(t, g)
			if kind == "otlp_http" {
				for _, p := range sink.receivedPosts() {
					if !strings.HasPrefix(p, "POST /v1/metrics application/x-protobuf") {
						t.Errorf("export %q, want POST /v1/metrics application/x-protobuf", p)
					}
				}
			}
		})
	}
}

// lockedBuffer is a bytes.Buffer safe for a process's output copier and a test at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// The stdout span exporter and a JSON access log on stdout share it: every line stays
// whole JSON (each writer writes whole lines), one access log line per request with its
// status and response flags, and the access log's trace_id names a span the exporter wrote.
func TestTelemetryStdout(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	var out lockedBuffer
	g := startGatewayOut(t, t.TempDir(), fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
telemetry:
  tracing:
    exporter: {type: stdout}
  access_log:
    - {path: stdout, format: json}
routes:
  - {name: app, match: {path_prefix: /app}, backend: app}
`, app.addr), &out)
	c := h1Client()
	want := []struct {
		path   string
		status int
		flags  string
		route  any
	}{
		{"/app/one", 200, "-", "app"},
		{"/nowhere", 404, "NR", nil},
		{"/app/two", 200, "-", "app"},
	}
	for _, w := range want {
		if resp, _ := get(t, c, g.url("web", w.path)); resp.StatusCode != w.status {
			t.Fatalf("GET %s: %d, want %d", w.path, resp.StatusCode, w.status)
		}
	}
	telStop(t, g) // flushes the access log and exports the spans

	var access []map[string]any
	spanTraces := map[string]int{}
	for i, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("stdout line %d is not a JSON object (%v): %q", i+1, err, line)
			continue
		}
		switch {
		case m["response_code"] != nil:
			access = append(access, m)
		case m["SpanContext"] != nil:
			sc, _ := m["SpanContext"].(map[string]any)
			tid, _ := sc["TraceID"].(string)
			spanTraces[tid]++
		default:
			t.Errorf("stdout line %d is neither an access log line nor a span: %q", i+1, line)
		}
	}
	if len(access) != len(want) {
		t.Fatalf("%d access log lines on stdout, want %d:\n%s", len(access), len(want), out.String())
	}
	byPath := map[any]map[string]any{}
	for _, l := range access {
		byPath[l["path"]] = l
	}
	for _, w := range want {
		l := byPath[w.path]
		if l == nil {
			t.Errorf("no access log line for %s", w.path)
			continue
		}
		if l["response_code"] != float64(w.status) || l["response_flags"] != w.flags || l["route_name"] != w.route {
			t.Errorf("access log line for %s: response_code %v, response_flags %v, route_name %v; want %d, %s, %v",
				w.path, l["response_code"], l["response_flags"], l["route_name"], w.status, w.flags, w.route)
		}
		tid, _ := l["trace_id"].(string)
		if len(tid) != 32 || spanTraces[tid] == 0 {
			t.Errorf("access log line for %s: trace_id %q is not the trace of a span on stdout (%v)", w.path, tid, spanTraces)
		}
	}
	// A proxied request makes a server and a client span; one that no route matches, a
	// server span.
	total := 0
	for _, n := range spanTraces {
		total += n
	}
	if len(spanTraces) != 3 || total != 5 {
		t.Errorf("spans on stdout by trace %v; want 3 traces, 5 spans", spanTraces)
	}
}

// plexus validate refuses bad telemetry with FILE:LINE:COL: message, exit 1, nothing on
// stdout; plexus run refuses them the same way.
func TestTelemetryValidate(t *testing.T) {
	t.Parallel()
	const base = `admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [127.0.0.1:9]}]
routes: [{name: app, backend: app}]
telemetry:
`
	type want struct {
		needle   string // where the error points
		lineOnly bool   // the column may be the list's rather than the entry's
		msg      string // a fragment of the message
	}
	cases := []struct {
		name  string
		yaml  string
		wants []want
	}{
		{"unknown exporter type", `
  tracing:
    exporter: {type: zipkin, endpoint: "127.0.0.1:9411"}
`, []want{{needle: "zipkin", msg: `"zipkin" for type; expected one of: otlp_grpc, otlp_http, stdout`}}},
		{"sampling above 1", `
  tracing:
    sampling: 1.5
    exporter: {type: otlp_grpc, endpoint: "127.0.0.1:4317"}
`, []want{{needle: "1.5", msg: "sampling 1.5 must be between 0 and 1"}}},
		// The field list's position, not the entry's: CheckFields does not say which entry.
		{"unknown access log field", `
  access_log:
    - {path: stdout, fields: [method, response_cod]}
`, []want{{needle: "response_cod", lineOnly: true, msg: `unknown field "response_cod"`}}},
		{"access log status 6xx", `
  access_log:
    - path: stdout
      status: ["6xx"]
`, []want{{needle: `"6xx"`, lineOnly: true, msg: `status filter entry "6xx"`}}},
		{"metrics interval too short", `
  metrics: {interval: 50ms}
`, []want{{needle: "50ms", msg: "interval 50ms is too short; at least 100ms"}}},
		{"grpc exporter given a URL", `
  metrics:
    exporter: {type: otlp_grpc, endpoint: "http://127.0.0.1:4317"}
`, []want{{needle: `"http://127.0.0.1:4317"`, msg: "otlp_grpc takes host:port, not a URL"}}},
		{"several at once", `
  tracing:
    sampling: -0.5
    exporter: {type: stdout}
  access_log:
    - path: stdout
      fields: [response_cod]
      status: [5xx, "600-700"]
`, []want{
			{needle: "-0.5", msg: "sampling -0.5 must be between 0 and 1"},
			{needle: "response_cod", lineOnly: true, msg: `unknown field "response_cod"`},
			{needle: `"600-700"`, lineOnly: true, msg: `status filter entry "600-700"`},
		}},
	}
	dir := t.TempDir()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			yaml := base + strings.TrimPrefix(tc.yaml, "\n")
			file := filepath.Join(dir, fmt.Sprintf("bad%d.yaml", i))
			if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			cmds := [][]string{{"validate", "--config", file}}
			if i == 0 {
				cmds = append(cmds, []string{"run", "--config", file})
			}
			for _, args := range cmds {
				stdout, stderr, code := lcRun(t, args...)
				if code != 1 || stdout != "" {
					t.Errorf("plexus %s: exit %d, stdout %q; want 1 and nothing", args[0], code, stdout)
				}
				lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
				if len(lines) != len(tc.wants) {
					t.Errorf("plexus %s: %d lines on stderr, want %d:\n%s", args[0], len(lines), len(tc.wants), stderr)
				}
				lineRE := regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `:\d+:\d+: \S`)
				for _, l := range lines {
					if !lineRE.MatchString(l) {
						t.Errorf("plexus %s: stderr line %q is not FILE:LINE:COL: message", args[0], l)
					}
				}
				for _, w := range tc.wants {
					at := file + ":" + lcPos(t, yaml, w.needle) + ": "
					if w.lineOnly {
						at = file + ":" + strings.Split(lcPos(t, yaml, w.needle), ":")[0] + ":"
					}
					found := false
					for _, l := range lines {
						found = found || strings.HasPrefix(l, at) && strings.Contains(l, w.msg)
					}
					if !found {
						t.Errorf("plexus %s: no stderr line at %s saying %q:\n%s", args[0], at, w.msg, stderr)
					}
				}
			}
		})
	}
}

// telReadLog reads a JSON-lines access log (what is there so far).
func telReadLog(t *testing.T, file string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func telKeys(m map[string]any) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, ",")
}

// A reload changes the access log's fields; one that changes telemetry.metrics is refused,
// at its place in the file, and the running config (access log included) keeps serving.
func TestTelemetryReload(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	cfg := func(fields, metrics string) string {
		return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
telemetry:
  access_log:
    - {path: "{{dir}}/access.log", fields: [%s], flush_interval: 50ms}
%sroutes:
  - {name: app, backend: app}
`, app.addr, fields, metrics)
	}
	g := startGateway(t, cfg("method, path, response_code", ""))
	logFile := filepath.Join(g.dir, "access.log")
	c := h1Client()
	// request GETs path and waits for its line, which must have exactly keys.
	request := func(t *testing.T, path, keys string) {
		t.Helper()
		if resp, _ := get(t, c, g.url("web", path)); resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		var line map[string]any
		telWaitFor(t, 10*time.Second, "access log line for "+path, func() bool {
			for _, l := range telReadLog(t, logFile) {
				if l["path"] == path {
					line = l
					return true
				}
			}
			return false
		})
		if got := telKeys(line); got != keys {
			t.Errorf("%s: access log line %v has keys %s, want %s", path, line, got, keys)
		}
	}
	request(t, "/one", "method,path,response_code")

	g.writeConfig(cfg("path, response_code, route_name", ""))
	g.waitLog("config reloaded", 1)
	request(t, "/two", "path,response_code,route_name")

	refused := cfg("path, upstream_host", "  metrics: {interval: 5s}\n")
	g.writeConfig(refused)
	l := g.waitLog(lcRefused, 1)[0]
	msg, _ := l["error"].(string)
	if at := g.file + ":" + lcPos(t, refused, "{interval: 5s}") + ": "; !strings.HasPrefix(msg, at) ||
		!strings.Contains(msg, "telemetry.metrics cannot change on reload") {
		t.Errorf("changed telemetry.metrics: refusal %q; want it at %s, saying metrics cannot change on reload", msg, at)
	}
	request(t, "/three", "path,response_code,route_name")
	if n := len(g.findLogs("config reloaded")); n != 1 {
		t.Errorf("%d reloads, want 1 (the metrics change refused)", n)
	}
	if v := lcVersion(t, g); v != 2 {
		t.Errorf("/config version %d, want 2", v)
	}
}

// plexus validate builds what a start builds but reaches out to nothing: no metrics pushed
// to a collector (nor waiting for one that is down), no access log file made.
func TestTelemetryValidatePushesNothing(t *testing.T) {
	sink, col := startOTLPHTTP(t)
	dir := t.TempDir()
	for _, exp := range []string{
		fmt.Sprintf(`{type: otlp_http, endpoint: "%s", insecure: true}`, col.Listener.Addr()),
		`{type: otlp_grpc, endpoint: "127.0.0.1:1", insecure: true}`, // nothing listens there
	} {
		file := filepath.Join(dir, "p.yaml")
		os.WriteFile(file, []byte(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [127.0.0.1:9]}]
routes: [{name: app, backend: app}]
telemetry:
  metrics:
    exporter: `+exp+"\n"), 0o644)
		if _, stderr, code := lcRun(t, "validate", "--config", file); code != 0 {
			t.Fatalf("validate: %d %s", code, stderr)
		}

	}
	if p := sink.receivedPosts(); len(p) > 0 {
		t.Errorf("plexus validate pushed metrics to the collector: %v", p)
	}
}

// The stdout exporters write through a duplicate of the descriptor: a reader that went away
// is a failed write, not a SIGPIPE that ends the process.
func TestTelemetryStdoutReaderGone(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close() // nobody reads plexus's stdout
	g := startGatewayOut(t, t.TempDir(), `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
routes: [{name: app, direct_response: {body: "hi"}}]
telemetry:
  metrics:
    interval: 1s
    exporter: {type: stdout}
`, w)
	w.Close()
	// The first push (after a second) fails, and is said; the process lives on.
	telWaitFor(t, 10*time.Second, "a failed metrics push logged", func() bool {
		return len(g.findLogs("telemetry export failed")) > 0
	})
	select {
	case <-g.waitc:
		t.Fatalf("plexus died when its stdout reader went away: %v", g.cmd.ProcessState)
	default:
	}
}

type telSlowWriter struct{ lockedBuffer }

func (s *telSlowWriter) Write(p []byte) (int, error) {
	time.Sleep(2 * time.Millisecond) // a slow reader: the pipe fills, writes are split
	return s.lockedBuffer.Write(p)
}

// Access log batches and the span exporter's lines share stdout under one lock: under load,
// with a slow reader, no line is cut into by another.
func TestTelemetryStdoutLinesWhole(t *testing.T) {
	app := startBackend(t, echo("app"))
	var out telSlowWriter
	g := startGatewayOut(t, t.TempDir(), fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
telemetry:
  tracing: {exporter: {type: stdout}}
  access_log: [{path: stdout, format: json, flush_interval: 10ms}]
routes: [{name: app, backend: app}]
`, app.addr), &out)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			c := h1Client()
			for range 300 {
				if resp, err := c.Get(g.url("web", "/"+strings.Repeat("x", 200))); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	telStop(t, g)
	for i, line := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("stdout line %d is not JSON: %.200q", i+1, line)
		}
	}
}

// A collector's base URL, as users write it, gets the signal's path.
func TestTelemetryOTLPHTTPBaseURL(t *testing.T) {
	sink, col := startOTLPHTTP(t)
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
routes: [{name: app, direct_response: {body: "hi"}}]
telemetry:
  tracing: {exporter: {type: otlp_http, endpoint: "%s"}}
`, col.URL))
	get(t, h1Client(), g.url("web", "/"))
	telStop(t, g)
	if len(sink.receivedSpans()) == 0 {
		t.Errorf("endpoint %s: no spans at /v1/traces; the exporter sent %v", col.URL, sink.receivedPosts())
	}
}

// A bad access log field is reported where it stands, not where its list starts.
func TestTelemetryFieldErrorPosition(t *testing.T) {
	yaml := `admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
routes: [{name: app, direct_response: {body: "hi"}}]
telemetry:
  access_log:
    - path: stdout
      fields:
        - method
        - response_cod
`
	file := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(file, []byte(yaml), 0o644)
	_, stderr, _ := lcRun(t, "validate", "--config", file)
	if at := file + ":" + lcPos(t, yaml, "response_cod") + ": "; !strings.HasPrefix(stderr, at) {
		t.Errorf("error %q, want it at %s", stderr, at)
	}
}
