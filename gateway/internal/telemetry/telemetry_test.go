package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/plexus-mesh/plexus/gateway/config"
)

func TestWithPath(t *testing.T) {
	for _, tc := range []struct{ endpoint, want string }{
		{"http://collector:4318", "http://collector:4318/v1/traces"},
		{"http://collector:4318/", "http://collector:4318/v1/traces"},
		{"https://collector", "https://collector/v1/traces"},
		{"http://collector:4318?tenant=a", "http://collector:4318/v1/traces?tenant=a"},
		{"http://collector:4318/?tenant=a&x=1", "http://collector:4318/v1/traces?tenant=a&x=1"},
		// A path is the user's: kept as it is, even one that is not OTLP's.
		{"http://collector:4318/v1/traces", "http://collector:4318/v1/traces"},
		{"https://gw.example/otlp/v1/traces?tenant=a", "https://gw.example/otlp/v1/traces?tenant=a"},
		{"http://collector:4318/custom", "http://collector:4318/custom"},
		{"http://[::1", "http://[::1"}, // does not parse: left for the exporter to refuse
	} {
		if got := withPath(tc.endpoint, "/v1/traces"); got != tc.want {
			t.Errorf("withPath(%q) = %q, want %q", tc.endpoint, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func attrMap(set *attribute.Set) map[string]string {
	m := map[string]string{}
	for _, kv := range set.ToSlice() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestResource(t *testing.T) {
	// The config says more than the environment.
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=env,team=edge")
	for _, tc := range []struct {
		name     string
		tel      config.Telemetry
		instance string
		want     map[string]string
		absent   []string
	}{
		{
			name: "all", instance: "host-1:9901",
			tel: config.Telemetry{ServiceName: "gw", Resource: map[string]string{"deployment.environment": "staging", "service.namespace": "edge"}},
			want: map[string]string{"service.name": "gw", "service.version": "1.2.3", "service.instance.id": "host-1:9901",
				"deployment.environment": "staging", "service.namespace": "edge", "team": "edge", "telemetry.sdk.language": "go"},
		},
		{
			name:   "no instance",
			tel:    config.Telemetry{ServiceName: "plexus"},
			want:   map[string]string{"service.name": "plexus", "service.version": "1.2.3", "deployment.environment": "env", "team": "edge"},
			absent: []string{"service.instance.id"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Resource(&tc.tel, "1.2.3", tc.instance)
			if err != nil {
				t.Fatal(err)
			}
			got := attrMap(res.Set())
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			for _, k := range tc.absent {
				if v, ok := got[k]; ok {
					t.Errorf("%s = %q, want none", k, v)
				}
			}
		})
	}
}

func testResource(t *testing.T) *resource.Resource {
	t.Helper()
	res, err := Resource(&config.Telemetry{ServiceName: "plexus-test"}, "0.0.1", "test-1")
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestNewTracingOff(t *testing.T) {
	tr, err := NewTracing(nil, testResource(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Enabled() || tr.Provider != nil {
		t.Error("tracing without config is enabled")
	}
	_, span := tr.Tracer.Start(context.Background(), "request")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Errorf("tracing without config made a real span: %+v", span.SpanContext())
	}
	span.End()
	if err := tr.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func remoteParent(sampled bool) context.Context {
	var flags trace.TraceFlags
	if sampled {
		flags = trace.FlagsSampled
	}
	return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		SpanID:     trace.SpanID{1, 2, 3, 4, 5, 6, 7, 8},
		TraceFlags: flags,
		Remote:     true,
	}))
}

func TestNewTracing(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sampling float64
		parent   func() context.Context
		recorded bool
	}{
		{"root, sampling 1", 1, context.Background, true},
		{"root, sampling 0", 0, context.Background, false},
		// Parent-based: the caller's decision wins over the ratio, either way.
		{"sampled parent, sampling 0", 0, func() context.Context { return remoteParent(true) }, true},
		{"unsampled parent, sampling 1", 1, func() context.Context { return remoteParent(false) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tr, err := NewTracing(&config.Tracing{
				Sampling:    ptr(tc.sampling),
				FilterSpans: true,
				Exporter:    config.Exporter{Type: config.ExportStdout, Timeout: time.Second},
			}, testResource(t), exp)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Shutdown(context.Background())
			if !tr.Enabled() || !tr.FilterSpans {
				t.Errorf("Enabled() %v, FilterSpans %v; want both", tr.Enabled(), tr.FilterSpans)
			}
			ctx := tc.parent()
			_, span := tr.Tracer.Start(ctx, "request")
			if span.IsRecording() != tc.recorded || span.SpanContext().IsSampled() != tc.recorded {
				t.Errorf("recording %v, sampled %v; want %v", span.IsRecording(), span.SpanContext().IsSampled(), tc.recorded)
			}
			span.End()
			if err := tr.Provider.ForceFlush(context.Background()); err != nil {
				t.Fatal(err)
			}
			spans := exp.GetSpans()
			if want := map[bool]int{true: 1, false: 0}[tc.recorded]; len(spans) != want {
				t.Fatalf("%d spans exported, want %d", len(spans), want)
			}
			if len(spans) == 1 {
				s := spans[0]
				if parent := trace.SpanContextFromContext(ctx); parent.IsValid() &&
					(s.SpanContext.TraceID() != parent.TraceID() || s.Parent.SpanID() != parent.SpanID()) {
					t.Errorf("span %v, parent %v; want a child of %v", s.SpanContext, s.Parent, parent)
				}
				if got := attrMap(s.Resource.Set())["service.name"]; got != "plexus-test" {
					t.Errorf("span resource service.name %q", got)
				}
				if s.InstrumentationScope.Name != Scope {
					t.Errorf("span scope %q, want %q", s.InstrumentationScope.Name, Scope)
				}
			}
		})
	}
}

func TestNewTracingRatio(t *testing.T) {
	const n, ratio = 4000, 0.25
	tr, err := NewTracing(&config.Tracing{
		Sampling: ptr(ratio),
		Exporter: config.Exporter{Type: config.ExportStdout, Timeout: time.Second},
	}, testResource(t), tracetest.NewNoopExporter())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Shutdown(context.Background())
	sampled := 0
	for range n {
		_, span := tr.Tracer.Start(context.Background(), "request")
		if span.SpanContext().IsSampled() {
			sampled++
		}
		span.End()
	}
	// Binomial(4000, 0.25): mean 1000, standard deviation 27; ±200 is over 7 of them.
	if sampled < 800 || sampled > 1200 {
		t.Errorf("%d of %d root spans sampled at %v", sampled, n, ratio)
	}
}

func metricsConfig(prom bool) *config.Telemetry {
	return &config.Telemetry{ServiceName: "plexus-test", Metrics: config.Metrics{
		Enabled: ptr(true), Prometheus: ptr(prom), Interval: time.Minute,
	}}
}

func newMetrics(t *testing.T, tel *config.Telemetry) *Metrics {
	t.Helper()
	m, err := NewMetrics(tel, testResource(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

func TestNewMetricsPrometheus(t *testing.T) {
	m := newMetrics(t, metricsConfig(true))
	if m.Prometheus() == nil {
		t.Fatal("Prometheus() is nil with prometheus on")
	}
	bounds := []float64{0.01, 0.1, 1}
	h := m.Stats.Histogram("http.server.request.duration", "s", "Duration of HTTP server requests.", 1e-9, bounds)
	route := func(k Key) []attribute.KeyValue { return []attribute.KeyValue{attribute.String("http.route", k.B)} }
	for _, d := range []time.Duration{5 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond, 3 * time.Second} {
		h.With(Key{B: "/api"}, route).Record(int64(d))
	}
	m.Stats.Counter("plexus.retries", "{retry}", "Retries.").With(Key{B: "/api"}, route).Add(2)
	sdkCounter, err := m.Meter.Int64Counter("plexus.sdk.things")
	if err != nil {
		t.Fatal(err)
	}
	sdkCounter.Add(context.Background(), 5)

	rec := httptest.NewRecorder()
	m.Prometheus().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	text := rec.Body.String()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	family := func(name string, typ dto.MetricType) *dto.Metric {
		t.Helper()
		f, ok := fams[name]
		if !ok {
			t.Fatalf("no %s in\n%s", name, text)
		}
		if f.GetType() != typ || len(f.Metric) != 1 {
			t.Fatalf("%s: type %v with %d series, want %v with 1", name, f.GetType(), len(f.Metric), typ)
		}
		return f.Metric[0]
	}

	hm := family("http_server_request_duration_seconds", dto.MetricType_HISTOGRAM)
	labels := map[string]string{}
	for _, l := range hm.Label {
		labels[l.GetName()] = l.GetValue()
	}
	if labels["http_route"] != "/api" {
		t.Errorf("labels %v, want http_route=/api", labels)
	}
	ph := hm.Histogram
	if ph.GetSampleCount() != 4 || !near(ph.GetSampleSum(), 3.065) {
		t.Errorf("count %d sum %v, want 4 3.065", ph.GetSampleCount(), ph.GetSampleSum())
	}
	// Prometheus buckets are cumulative, and 10ms is in le="0.01".
	wantLe, wantCum := []float64{0.01, 0.1, 1, math.Inf(1)}, []uint64{2, 3, 3, 4}
	if len(ph.Bucket) != len(wantLe) {
		t.Fatalf("%d buckets, want %d", len(ph.Bucket), len(wantLe))
	}
	for i, b := range ph.Bucket {
		if b.GetUpperBound() != wantLe[i] || b.GetCumulativeCount() != wantCum[i] {
			t.Errorf("bucket %d: le=%v count %d, want le=%v %d", i, b.GetUpperBound(), b.GetCumulativeCount(), wantLe[i], wantCum[i])
		}
	}
	if c := family("plexus_retries_total", dto.MetricType_COUNTER); c.Counter.GetValue() != 2 {
		t.Errorf("plexus_retries_total %v, want 2", c.Counter.GetValue())
	}
	if c := family("plexus_sdk_things_total", dto.MetricType_COUNTER); c.Counter.GetValue() != 5 {
		t.Errorf("plexus_sdk_things_total %v, want 5", c.Counter.GetValue())
	}
	if !strings.Contains(text, `service_name="plexus-test"`) {
		t.Errorf("no service_name label (target_info) in\n%s", text)
	}
}

func TestNewMetricsCollect(t *testing.T) {
	m := newMetrics(t, metricsConfig(false))
	if m.Prometheus() != nil {
		t.Error("Prometheus() is not nil with prometheus off")
	}
	h := m.Stats.Histogram("http.server.request.duration", "s", "", 1e-9, []float64{0.1, 1})
	h.With(Key{B: "/api"}, func(k Key) []attribute.KeyValue { return []attribute.KeyValue{attribute.String("http.route", k.B)} }).
		Record(int64(200 * time.Millisecond))
	m.Stats.UpDown("http.server.active_requests", "{request}", "").With(Key{}, func(Key) []attribute.KeyValue { return nil }).Add(1)

	rm, err := m.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := attrMap(rm.Resource.Set())["service.name"]; got != "plexus-test" {
		t.Errorf("resource service.name %q", got)
	}
	found := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != Scope {
			continue
		}
		for _, mt := range sm.Metrics {
			found[mt.Name] = mt
		}
	}
	hd, ok := found["http.server.request.duration"].Data.(metricdata.Histogram[float64])
	if !ok || len(hd.DataPoints) != 1 {
		t.Fatalf("http.server.request.duration in scope %s: %+v", Scope, found["http.server.request.duration"])
	}
	if p := hd.DataPoints[0]; p.Count != 1 || p.BucketCounts[1] != 1 || !near(p.Sum, 0.2) {
		t.Errorf("point: count %d buckets %v sum %v", p.Count, p.BucketCounts, p.Sum)
	}
	if s, ok := found["http.server.active_requests"].Data.(metricdata.Sum[int64]); !ok || len(s.DataPoints) != 1 || s.DataPoints[0].Value != 1 || s.IsMonotonic {
		t.Errorf("http.server.active_requests: %+v", found["http.server.active_requests"].Data)
	}
	// The admin's view reads the same.
	lines := Lines(&rm, nil)
	if len(lines) != 2 || lines[0].Name != "http.server.active_requests" || lines[1].Hist == nil || lines[1].Hist.Count != 1 {
		t.Errorf("Lines: %+v", lines)
	}
}

func TestLogErrors(t *testing.T) {
	prev := otel.GetErrorHandler()
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	const interval = 200 * time.Millisecond
	LogErrors(log, interval)
	for range 3 {
		otel.Handle(errors.New("collector down"))
	}
	time.Sleep(interval + 20*time.Millisecond)
	otel.Handle(errors.New("collector refused"))
	want := `level=WARN msg="telemetry export failed" error="collector down" more_since_last=0
level=WARN msg="telemetry export failed" error="collector refused" more_since_last=2
`
	if got := buf.String(); got != want {
		t.Errorf("logged:\n%s\nwant:\n%s", got, want)
	}
}
