package gateway

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/plexus-mesh/plexus/gateway/internal/counters"
	"github.com/plexus-mesh/plexus/gateway/internal/stream"
	"github.com/plexus-mesh/plexus/gateway/internal/upstream"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// Filter callback phases, as metrics and spans name them.
type phase uint8

const (
	phaseRequestHeaders phase = iota
	phaseRequestBody
	phaseRequestTrailers
	phaseResponseHeaders
	phaseResponseBody
	phaseResponseTrailers
	numPhases
)

var phaseNames = [numPhases]string{"on_request_headers", "on_request_body", "on_request_trailers", "on_response_headers", "on_response_body", "on_response_trailers"}

// observe registers the metrics read from state at collection time: filters' pools and
// failures, backends' load, the Wasm runtime's compiles, and the metrics filters define.
func (g *Gateway) observe() error {
	m := g.metrics.Meter
	instances, err1 := m.Int64ObservableGauge("plexus.wasm.instances", metric.WithUnit("{instance}"),
		metric.WithDescription("Live instances of a filter's module, by state (idle or in use)."))
	memory, err2 := m.Int64ObservableGauge("plexus.wasm.memory", metric.WithUnit("By"),
		metric.WithDescription("Linear memory of a filter's live instances."))
	failures, err3 := m.Int64ObservableCounter("plexus.filter.failures", metric.WithUnit("{failure}"),
		metric.WithDescription("Filter failures, by kind (error.type: trap, timeout, out of memory, ABI violation, no instance)."))
	restarts, err4 := m.Int64ObservableCounter("plexus.filter.restarts", metric.WithUnit("{instance}"),
		metric.WithDescription("Instances made to replace failed ones."))
	upActive, err5 := m.Int64ObservableGauge("plexus.upstream.active_requests", metric.WithUnit("{request}"),
		metric.WithDescription("Requests in flight to a backend, against its circuit breaker's max_requests."))
	overflows, err6 := m.Int64ObservableCounter("plexus.upstream.overflows", metric.WithUnit("{request}"),
		metric.WithDescription("Requests a backend's circuit breaker turned away."))
	healthy, err7 := m.Int64ObservableGauge("plexus.upstream.endpoint.healthy", metric.WithUnit("{endpoint}"),
		metric.WithDescription("1 while an endpoint takes requests, 0 while it is out: failing its health checks, ejected as an outlier, or refusing connections."))
	transitions, err14 := m.Int64ObservableCounter("plexus.upstream.health_transitions", metric.WithUnit("{transition}"),
		metric.WithDescription("Endpoints the health checks moved in or out of the rotation, by the state they moved to (to: healthy, unhealthy)."))
	ejections, err15 := m.Int64ObservableCounter("plexus.upstream.ejections", metric.WithUnit("{ejection}"),
		metric.WithDescription("Endpoints outlier detection ejected, by reason (consecutive_5xx, consecutive_gateway_failure, success_rate)."))
	retryOverflows, err16 := m.Int64ObservableCounter("plexus.upstream.retry_overflows", metric.WithUnit("{retry}"),
		metric.WithDescription("Retries not made because the backend's max_retries or retry budget was spent."))
	pendingOverflows, err17 := m.Int64ObservableCounter("plexus.upstream.pending_overflows", metric.WithUnit("{request}"),
		metric.WithDescription("Requests turned away because max_pending_requests were waiting for a connection already."))
	panics, err18 := m.Int64ObservableGauge("plexus.upstream.panic", metric.WithUnit("1"),
		metric.WithDescription("1 while too few of a backend's endpoints are healthy (panic_threshold) and requests go to all of them."))
	membership, err19 := m.Int64ObservableCounter("plexus.upstream.membership_changes", metric.WithUnit("{endpoint}"),
		metric.WithDescription("Endpoints discovery added to or removed from a backend (change: added, removed)."))
	compiles, err8 := m.Int64ObservableCounter("plexus.wasm.compiles", metric.WithUnit("{module}"),
		metric.WithDescription("Wasm modules compiled."))
	compileTime, err9 := m.Float64ObservableCounter("plexus.wasm.compile.duration", metric.WithUnit("s"),
		metric.WithDescription("Time spent compiling Wasm modules."))
	hits, err10 := m.Int64ObservableCounter("plexus.wasm.cache.hits", metric.WithUnit("{module}"),
		metric.WithDescription("Module loads served from the compilation cache."))
	logLines, err11 := m.Int64ObservableCounter("plexus.access_log.lines", metric.WithUnit("{line}"),
		metric.WithDescription("Access log lines, by outcome (written, dropped because the sink fell behind or failed) and sink."))
	logErrors, err12 := m.Int64ObservableCounter("plexus.access_log.write_errors", metric.WithUnit("{error}"),
		metric.WithDescription("Failed writes to an access log sink; the lines are kept for the next write, up to a bound."))
	breaker, err13 := m.Int64ObservableGauge("plexus.redis.breaker.state", metric.WithUnit("1"),
		metric.WithDescription("The Redis circuit breaker's state: 1 for the state it is in (closed, open, half_open), 0 for the others."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6, err7, err8, err9, err10, err11, err12, err13, err14, err15, err16, err17, err18, err19); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		s := g.snap.Load()
		if s == nil {
			return nil
		}
		for _, fc := range s.cfg.Filters {
			f := s.filters[fc.Name]
			st := f.Stats()
			name := attribute.String("plexus.filter", fc.Name)
			o.ObserveInt64(instances, int64(st.InUse), metric.WithAttributes(name, attribute.String("state", "in_use")))
			o.ObserveInt64(instances, int64(st.Instances-st.InUse), metric.WithAttributes(name, attribute.String("state", "idle")))
			o.ObserveInt64(memory, st.MemoryBytes, metric.WithAttributes(name))
			o.ObserveInt64(restarts, int64(st.Restarts), metric.WithAttributes(name))
			for _, kind := range failureKinds {
				o.ObserveInt64(failures, int64(st.Failures[kind]), metric.WithAttributes(name, attribute.String("error.type", kind)))
			}
		}
		now := time.Now().UnixNano()
		for _, bc := range s.cfg.Backends {
			b := s.backends[bc.Name]
			name := attribute.String("plexus.backend", b.Name)
			o.ObserveInt64(upActive, b.Active.Load(), metric.WithAttributes(name))
			o.ObserveInt64(overflows, b.Overflows.Load(), metric.WithAttributes(name))
			o.ObserveInt64(transitions, b.Stats.BecameHealthy.Load(), metric.WithAttributes(name, attribute.String("to", "healthy")))
			o.ObserveInt64(transitions, b.Stats.BecameUnhealthy.Load(), metric.WithAttributes(name, attribute.String("to", "unhealthy")))
			for i, why := range upstream.EjectReasons {
				o.ObserveInt64(ejections, b.Stats.Ejections[i].Load(), metric.WithAttributes(name, attribute.String("reason", why)))
			}
			o.ObserveInt64(retryOverflows, b.Stats.RetryOverflows.Load(), metric.WithAttributes(name))
			o.ObserveInt64(pendingOverflows, b.Stats.PendingOverflows.Load(), metric.WithAttributes(name))
			o.ObserveInt64(membership, b.Stats.Added.Load(), metric.WithAttributes(name, attribute.String("change", "added")))
			o.ObserveInt64(membership, b.Stats.Removed.Load(), metric.WithAttributes(name, attribute.String("change", "removed")))
			p := int64(0)
			if b.Panicking() {
				p = 1
			}
			o.ObserveInt64(panics, p, metric.WithAttributes(name))
			for _, ep := range b.Endpoints() {
				up := int64(0)
				if ep.Up(now) {
					up = 1
				}
				host, port := stream.HostPort(ep.Addr)
				o.ObserveInt64(healthy, up, metric.WithAttributes(name, attribute.String("server.address", host), attribute.Int("server.port", port)))
			}
		}
		for i, l := range s.Logs {
			lines, dropped, werrs := l.Stats()
			sink := attribute.String("plexus.sink", s.cfg.Telemetry.AccessLog[i].Path)
			o.ObserveInt64(logLines, int64(lines), metric.WithAttributes(sink, attribute.String("outcome", "logged")))
			o.ObserveInt64(logLines, int64(dropped), metric.WithAttributes(sink, attribute.String("outcome", "dropped")))
			o.ObserveInt64(logErrors, int64(werrs), metric.WithAttributes(sink))
		}
		if sv := g.svc; sv != nil && sv.breaker != nil {
			now := sv.breaker.State()
			for _, st := range []counters.BreakerState{counters.BreakerClosed, counters.BreakerOpen, counters.BreakerHalfOpen} {
				v := int64(0)
				if st == now {
					v = 1
				}
				o.ObserveInt64(breaker, v, metric.WithAttributes(attribute.String("state", st.String())))
			}
		}
		rs := g.wasm.Stats()
		o.ObserveInt64(compiles, int64(rs.Compiles))
		o.ObserveFloat64(compileTime, rs.CompileTime.Seconds())
		o.ObserveInt64(hits, int64(rs.CacheHits))
		return nil
	}, instances, memory, failures, restarts, upActive, overflows, healthy, compiles, compileTime, hits, logLines, logErrors, breaker,
		transitions, ejections, retryOverflows, pendingOverflows, panics, membership)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	g.metrics.Stats.AddProducer(g.filterMetrics)
	return nil
}

// failureKinds are proxywasm.FailureKind's names, each reported even at zero so that a
// rate over them starts from a known point.
var failureKinds = []string{
	proxywasm.FailTrap.String(), proxywasm.FailTimeout.String(), proxywasm.FailMemory.String(),
	proxywasm.FailABI.String(), proxywasm.FailNoInstance.String(),
}

// filterMetrics are the metrics filters defined (proxy_define_metric), one instrument per
// name, one series per filter: counters as monotonic sums, gauges as gauges, histograms
// with the runtime's buckets.
//
// A filter names its metrics as it likes, so a name plexus reports itself (http.*,
// plexus.*) is moved under wasmcustom. (Envoy's prefix for them) rather than add series to
// plexus's own; and a name that two filters define with different kinds gets the kind
// after it for the later kind, so that one name never holds two kinds of data.
func (g *Gateway) filterMetrics() []metricdata.Metrics {
	start, now := g.metrics.Stats.Start(), time.Now()
	type entry struct {
		i    int
		kind string
	}
	byName := map[string]entry{}
	var out []metricdata.Metrics
	for _, mt := range g.wasm.Metrics() {
		name, attrs := g.tagMetric(mt.Filter, mt.Name)
		if reservedMetricName(name) {
			name = "wasmcustom." + name
		}
		if e, ok := byName[name]; ok && e.kind != mt.Kind {
			name += "." + mt.Kind
		}
		e, ok := byName[name]
		i := e.i
		if !ok {
			i = len(out)
			byName[name] = entry{i, mt.Kind}
			out = append(out, metricdata.Metrics{Name: name, Description: "Defined by a Wasm filter (" + mt.Kind + ")."})
		}
		m := &out[i]
		switch mt.Kind {
		case "counter":
			d, _ := m.Data.(metricdata.Sum[int64])
			d.Temporality, d.IsMonotonic = metricdata.CumulativeTemporality, true
			d.DataPoints = append(d.DataPoints, metricdata.DataPoint[int64]{Attributes: attrs, StartTime: start, Time: now, Value: mt.Value})
			m.Data = d
		case "gauge":
			d, _ := m.Data.(metricdata.Gauge[int64])
			d.DataPoints = append(d.DataPoints, metricdata.DataPoint[int64]{Attributes: attrs, Time: now, Value: mt.Value})
			m.Data = d
		case "histogram":
			d, _ := m.Data.(metricdata.Histogram[float64])
			d.Temporality = metricdata.CumulativeTemporality
			d.DataPoints = append(d.DataPoints, metricdata.HistogramDataPoint[float64]{Attributes: attrs, StartTime: start, Time: now,
				Count: mt.Count, Bounds: histogramBounds, BucketCounts: mt.Histogram, Sum: float64(mt.Value)})
			m.Data = d
		}
	}
	return out
}

// statsTag is one of telemetry.metrics.stats_tags.
type statsTag struct {
	name string
	re   *regexp.Regexp
}

// tagMetric is the name a filter's metric is exported under, and its series' attributes:
// the filter's name, and the tags stats_tags take out of the metric's name, as Envoy's
// tag extractors do: the first capture group is cut from the name, the second (or the
// first, when it is the only one) is the value.
func (g *Gateway) tagMetric(filter, name string) (string, attribute.Set) {
	attrs := []attribute.KeyValue{attribute.String("plexus.filter", filter)}
	for _, t := range g.statsTags {
		m := t.re.FindStringSubmatchIndex(name)
		if m == nil || m[2] < 0 {
			continue
		}
		v := name[m[2]:m[3]]
		if len(m) >= 6 && m[4] >= 0 {
			v = name[m[4]:m[5]]
		}
		attrs = append(attrs, attribute.String(t.name, v))
		name = name[:m[2]] + name[m[3]:]
	}
	return name, attribute.NewSet(attrs...)
}

// reservedMetricName reports whether name is one of the namespaces plexus reports in.
func reservedMetricName(name string) bool {
	for _, p := range []string{"http.", "plexus.", "rpc.", "otel.", "target_info"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

var histogramBounds = func() []float64 {
	b := make([]float64, len(proxywasm.HistogramBounds))
	for i, v := range proxywasm.HistogramBounds {
		b[i] = float64(v)
	}
	return b
}()
