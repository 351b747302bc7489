// Package telemetry builds plexus's OpenTelemetry pipelines from the config's telemetry:
// a tracer provider (sampling, an OTLP or stdout exporter) and a meter provider whose
// readers are the admin listener's Prometheus endpoint, an optional OTLP or stdout push,
// and the admin's own /stats view. Metrics recorded on every request are kept in Stats and
// collected as a metric.Producer.
//
// Names follow the OpenTelemetry HTTP semantic conventions
// (https://opentelemetry.io/docs/specs/semconv/http/http-metrics/); what they do not
// cover is named plexus.*.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/stdio"
)

// Scope is the instrumentation scope of everything plexus reports.
const Scope = "github.com/plexus-mesh/plexus/gateway"

// Propagator carries W3C trace context and baggage, as Envoy's and Istio's OpenTelemetry
// tracers do.
var Propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Resource describes this gateway: service.name and the config's resource attributes,
// over what OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME say.
func Resource(t *config.Telemetry, version, instance string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{
		attribute.String("service.name", t.ServiceName),
		attribute.String("service.version", version),
	}
	if instance != "" {
		attrs = append(attrs, attribute.String("service.instance.id", instance))
	}
	for k, v := range t.Resource {
		attrs = append(attrs, attribute.String(k, v))
	}
	return resource.New(context.Background(), resource.WithFromEnv(), resource.WithTelemetrySDK(), resource.WithAttributes(attrs...))
}

// Metrics is the meter provider and its readers.
type Metrics struct {
	Stats    *Stats
	Provider *sdkmetric.MeterProvider
	Meter    metric.Meter

	prometheus http.Handler            // nil when off
	view       *sdkmetric.ManualReader // /stats
}

// NewMetrics builds the metrics pipeline for t. extra, when not nil, makes one more reader
// (tests read metrics with a ManualReader), given the producer of Stats.
func NewMetrics(t *config.Telemetry, res *resource.Resource, extra func(sdkmetric.Producer) sdkmetric.Reader) (*Metrics, error) {
	m := &Metrics{Stats: NewStats(Scope)}
	m.view = sdkmetric.NewManualReader(sdkmetric.WithProducer(m.Stats))
	opts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(m.view)}
	if *t.Metrics.Prometheus {
		reg := promclient.NewRegistry()
		exp, err := prometheus.New(prometheus.WithRegisterer(reg), prometheus.WithProducer(m.Stats))
		if err != nil {
			return nil, fmt.Errorf("telemetry: prometheus: %w", err)
		}
		opts = append(opts, sdkmetric.WithReader(exp))
		m.prometheus = promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
	}
	if e := t.Metrics.Exporter; e != nil {
		exp, err := metricExporter(e)
		if err != nil {
			return nil, fmt.Errorf("telemetry: metrics exporter %s: %w", e.Type, err)
		}
		opts = append(opts, sdkmetric.WithReader(sdkmetric.NewPeriodicReader(exp,
			sdkmetric.WithInterval(t.Metrics.Interval), sdkmetric.WithTimeout(e.Timeout), sdkmetric.WithProducer(m.Stats))))
	}
	if extra != nil {
		opts = append(opts, sdkmetric.WithReader(extra(m.Stats)))
	}
	m.Provider = sdkmetric.NewMeterProvider(opts...)
	m.Meter = m.Provider.Meter(Scope)
	return m, nil
}

// Prometheus serves the metrics as Prometheus text, or is nil when that is off.
func (m *Metrics) Prometheus() http.Handler { return m.prometheus }

// Collect reads every metric now, for the admin's /stats.
func (m *Metrics) Collect(ctx context.Context) (metricdata.ResourceMetrics, error) {
	var rm metricdata.ResourceMetrics
	err := m.view.Collect(ctx, &rm)
	return rm, err
}

// Shutdown pushes what is left and stops the readers.
func (m *Metrics) Shutdown(ctx context.Context) error { return m.Provider.Shutdown(ctx) }

func metricExporter(e *config.Exporter) (sdkmetric.Exporter, error) {
	ctx := context.Background()
	switch e.Type {
	case config.ExportOTLPGRPC:
		return otlpmetricgrpc.New(ctx, otlpOptions(e, "", otlpSetters[otlpmetricgrpc.Option]{
			otlpmetricgrpc.WithTimeout, otlpmetricgrpc.WithEndpoint, nil, otlpmetricgrpc.WithInsecure, otlpmetricgrpc.WithHeaders})...)
	case config.ExportOTLPHTTP:
		return otlpmetrichttp.New(ctx, otlpOptions(e, "/v1/metrics", otlpSetters[otlpmetrichttp.Option]{
			otlpmetrichttp.WithTimeout, otlpmetrichttp.WithEndpoint, otlpmetrichttp.WithEndpointURL, otlpmetrichttp.WithInsecure, otlpmetrichttp.WithHeaders})...)
	case config.ExportStdout:
		return stdoutmetric.New(stdoutmetric.WithWriter(stdout))
	}
	return nil, errors.New("unknown exporter type")
}

// otlpSetters are one OTLP exporter package's option constructors: the four packages
// (traces and metrics, over gRPC and HTTP) have the same ones, each with its own type.
type otlpSetters[O any] struct {
	timeout     func(time.Duration) O
	endpoint    func(string) O
	endpointURL func(string) O // nil for gRPC, which takes host:port only
	insecure    func() O
	headers     func(map[string]string) O
}

// otlpOptions are the options e asks for; path is the signal's URL path for a base URL.
func otlpOptions[O any](e *config.Exporter, path string, set otlpSetters[O]) []O {
	opts := []O{set.timeout(e.Timeout)}
	switch {
	case set.endpointURL != nil && isURL(e.Endpoint):
		opts = append(opts, set.endpointURL(withPath(e.Endpoint, path)))
	case e.Endpoint != "":
		opts = append(opts, set.endpoint(e.Endpoint))
	}
	if e.Insecure {
		opts = append(opts, set.insecure())
	}
	if len(e.Headers) > 0 {
		opts = append(opts, set.headers(e.Headers))
	}
	return opts
}

// stdout is where the stdout exporters write: shared with access logs on stdout, whose
// lines it never cuts into.
var stdout io.Writer = stdio.Stdout

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }

// withPath is an OTLP/HTTP endpoint URL with the signal's path when it has none: a
// collector's base URL, as users write it (and as OTEL_EXPORTER_OTLP_ENDPOINT means it),
// would otherwise be posted to as it is, at /, and answer 404.
func withPath(endpoint, path string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Path != "" && u.Path != "/" {
		return endpoint
	}
	u.Path = path
	return u.String()
}

// LogErrors sends OpenTelemetry's own errors (an export that failed: a collector down or
// refusing) to log as warnings, at most one every interval, with how many were left out.
// Without it they go through the standard log package, at info level, every one.
func LogErrors(log *slog.Logger, interval time.Duration) {
	var (
		mu      sync.Mutex
		last    time.Time
		dropped int
	)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); now.Sub(last) >= interval {
			log.Warn("telemetry export failed", "error", err, "more_since_last", dropped)
			last, dropped = now, 0
			return
		}
		dropped++
	}))
}

// Tracing is a tracer provider built from telemetry.tracing, or the no-op one.
type Tracing struct {
	Provider    *sdktrace.TracerProvider // nil when tracing is off
	Tracer      trace.Tracer
	FilterSpans bool
}

// Enabled reports whether requests are traced (and trace context propagated) at all.
func (t *Tracing) Enabled() bool { return t != nil && t.Provider != nil }

// NewTracing builds tracing for t (nil: off). exporter, when not nil, replaces the
// configured one (tests read spans with an in-memory exporter).
func NewTracing(t *config.Tracing, res *resource.Resource, exporter sdktrace.SpanExporter) (*Tracing, error) {
	if t == nil {
		return &Tracing{Tracer: noop.NewTracerProvider().Tracer(Scope)}, nil
	}
	if exporter == nil {
		var err error
		if exporter, err = spanExporter(&t.Exporter); err != nil {
			return nil, fmt.Errorf("telemetry: tracing exporter %s: %w", t.Exporter.Type, err)
		}
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(*t.Sampling))),
		sdktrace.WithBatcher(exporter, sdktrace.WithExportTimeout(t.Exporter.Timeout)),
	)
	return &Tracing{Provider: tp, Tracer: tp.Tracer(Scope), FilterSpans: t.FilterSpans}, nil
}

// Shutdown exports the spans still queued and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.Provider == nil {
		return nil
	}
	return t.Provider.Shutdown(ctx)
}

func spanExporter(e *config.Exporter) (sdktrace.SpanExporter, error) {
	ctx := context.Background()
	switch e.Type {
	case config.ExportOTLPGRPC:
		return otlptracegrpc.New(ctx, otlpOptions(e, "", otlpSetters[otlptracegrpc.Option]{
			otlptracegrpc.WithTimeout, otlptracegrpc.WithEndpoint, nil, otlptracegrpc.WithInsecure, otlptracegrpc.WithHeaders})...)
	case config.ExportOTLPHTTP:
		return otlptracehttp.New(ctx, otlpOptions(e, "/v1/traces", otlpSetters[otlptracehttp.Option]{
			otlptracehttp.WithTimeout, otlptracehttp.WithEndpoint, otlptracehttp.WithEndpointURL, otlptracehttp.WithInsecure, otlptracehttp.WithHeaders})...)
	case config.ExportStdout:
		return stdouttrace.New(stdouttrace.WithWriter(stdout))
	}
	return nil, errors.New("unknown exporter type")
}
