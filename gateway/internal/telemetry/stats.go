package telemetry

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Stats holds the metrics recorded on every request: counters, up-down counters and
// histograms kept in atomics, which OpenTelemetry readers (the Prometheus endpoint, an OTLP
// exporter) collect through Produce, as any metric.Producer.
//
// Why not the SDK's own instruments: on this 2-core machine a Record on a histogram shared
// by concurrent requests costs about 250 ns (attribute set lookup, a lock, exemplar
// reservoir), and a request records six of them; here a record is a map read and three
// atomic adds. See gateway/RATIONALE.md, "Metrics on the request path".
type Stats struct {
	start time.Time
	scope instrumentation.Scope

	mu       sync.Mutex
	families []family
	extra    []func() []metricdata.Metrics // more metrics, produced at collection
}

type family interface {
	collect(start, now time.Time) metricdata.Metrics
}

// NewStats makes an empty set of metrics, reported under scope.
func NewStats(scope string) *Stats {
	return &Stats{start: time.Now(), scope: instrumentation.Scope{Name: scope}}
}

// Start is when counting began: the start time of every cumulative series.
func (s *Stats) Start() time.Time { return s.start }

// Produce is metric.Producer's: every series, cumulative since NewStats.
func (s *Stats) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	s.mu.Lock()
	fams := slices.Clone(s.families)
	extra := slices.Clone(s.extra)
	s.mu.Unlock()
	sm := metricdata.ScopeMetrics{Scope: s.scope}
	for _, f := range fams {
		if m := f.collect(s.start, now); m.Data != nil {
			sm.Metrics = append(sm.Metrics, m)
		}
	}
	for _, f := range extra {
		sm.Metrics = append(sm.Metrics, f()...)
	}
	return []metricdata.ScopeMetrics{sm}, nil
}

// AddProducer adds metrics made by f at each collection (metrics kept elsewhere, such as
// the ones filters define).
func (s *Stats) AddProducer(f func() []metricdata.Metrics) {
	s.mu.Lock()
	s.extra = append(s.extra, f)
	s.mu.Unlock()
}

func (s *Stats) add(f family) {
	s.mu.Lock()
	s.families = append(s.families, f)
	s.mu.Unlock()
}

// Key identifies a series of a family: the values of its attributes, as the family's user
// lays them out. It is a map key, so a look-up allocates nothing.
type Key struct {
	A, B, C, D, E, F string
	N                int
}

// series is a family's series by key. Series are added seldom and read on every request:
// reads load a map that never changes; an addition copies it.
type series[T any] struct {
	m  atomic.Pointer[map[Key]*T]
	mu sync.Mutex
}

func (s *series[T]) get(k Key) *T {
	if m := s.m.Load(); m != nil {
		return (*m)[k]
	}
	return nil
}

func (s *series[T]) make(k Key, mk func() *T) *T {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.m.Load()
	if old != nil {
		if v := (*old)[k]; v != nil {
			return v
		}
	}
	m := make(map[Key]*T, 1+len(ptrMap(old)))
	for k, v := range ptrMap(old) {
		m[k] = v
	}
	v := mk()
	m[k] = v
	s.m.Store(&m)
	return v
}

func ptrMap[T any](m *map[Key]*T) map[Key]*T {
	if m == nil {
		return nil
	}
	return *m
}

func (s *series[T]) each(f func(*T)) {
	for _, v := range ptrMap(s.m.Load()) {
		f(v)
	}
}

type meta struct {
	name, unit, desc string
}

// Counter is one series of a CounterVec: a sum that only grows, or, made by UpDownVec,
// one that goes both ways.
type Counter struct {
	attrs attribute.Set
	v     atomic.Int64
}

// Add adds n.
func (c *Counter) Add(n int64) { c.v.Add(n) }

// Value is the sum so far.
func (c *Counter) Value() int64 { return c.v.Load() }

// CounterVec is a family of counters.
type CounterVec struct {
	meta
	monotonic bool
	s         series[Counter]
}

// Counter adds a family of monotonic sums.
func (s *Stats) Counter(name, unit, desc string) *CounterVec {
	v := &CounterVec{meta: meta{name, unit, desc}, monotonic: true}
	s.add(v)
	return v
}

// UpDown adds a family of sums that go up and down (requests in flight).
func (s *Stats) UpDown(name, unit, desc string) *CounterVec {
	v := &CounterVec{meta: meta{name, unit, desc}}
	s.add(v)
	return v
}

// With is the series of k, made with the attributes attrs(k) says when it has none. attrs
// is called only then; a function that reads nothing but k costs no allocation.
func (v *CounterVec) With(k Key, attrs func(Key) []attribute.KeyValue) *Counter {
	if c := v.s.get(k); c != nil {
		return c
	}
	return v.s.make(k, func() *Counter { return &Counter{attrs: attribute.NewSet(attrs(k)...)} })
}

func (v *CounterVec) collect(start, now time.Time) metricdata.Metrics {
	var pts []metricdata.DataPoint[int64]
	v.s.each(func(c *Counter) {
		pts = append(pts, metricdata.DataPoint[int64]{Attributes: c.attrs, StartTime: start, Time: now, Value: c.v.Load()})
	})
	if len(pts) == 0 {
		return metricdata.Metrics{}
	}
	return metricdata.Metrics{Name: v.name, Unit: v.unit, Description: v.desc, Data: metricdata.Sum[int64]{
		DataPoints: pts, Temporality: metricdata.CumulativeTemporality, IsMonotonic: v.monotonic,
	}}
}

// Histogram is one series of a HistogramVec.
type Histogram struct {
	attrs  attribute.Set
	bounds []int64 // shared by the family
	counts []atomic.Uint64
	sum    atomic.Int64
	max    atomic.Int64
}

// Record adds one value, in the family's recording unit (nanoseconds, bytes).
func (h *Histogram) Record(v int64) {
	k := len(h.bounds)
	for i, b := range h.bounds {
		if v <= b {
			k = i
			break
		}
	}
	h.counts[k].Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Count is the number of values recorded so far.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	return n
}

// Sum is the sum of the values recorded so far, in the recording unit.
func (h *Histogram) Sum() int64 { return h.sum.Load() }

// Max is the largest value recorded so far, 0 when there is none.
func (h *Histogram) Max() int64 {
	if h.Count() == 0 {
		return 0
	}
	return h.max.Load()
}

// Quantile is an upper bound on the q-th quantile (0 < q <= 1) of the values recorded so
// far: the upper bound of the bucket it falls in, or the largest value when that is lower
// (always, past the last bucket); 0 when there is none.
func (h *Histogram) Quantile(q float64) int64 {
	counts := make([]uint64, len(h.counts))
	var n uint64
	for i := range h.counts {
		counts[i] = h.counts[i].Load()
		n += counts[i]
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = max(rank, 1)
	m := h.max.Load()
	var seen uint64
	for i, c := range counts {
		if seen += c; seen >= rank && i < len(h.bounds) {
			return min(h.bounds[i], m)
		}
	}
	return m
}

// HistogramVec is a family of histograms with explicit bucket bounds.
type HistogramVec struct {
	meta
	scale  float64 // reported value = recorded value × scale
	bounds []int64
	fb     []float64
	s      series[Histogram]
}

// Histogram adds a family of histograms. Values are recorded as integers in a unit
// reported multiplied by scale (nanoseconds with scale 1e-9 report seconds); bounds are
// in the reported unit.
func (s *Stats) Histogram(name, unit, desc string, scale float64, bounds []float64) *HistogramVec {
	v := &HistogramVec{meta: meta{name, unit, desc}, scale: scale, fb: bounds}
	for _, b := range bounds {
		v.bounds = append(v.bounds, int64(math.Round(b/scale)))
	}
	s.add(v)
	return v
}

// With is the series of k, made with the attributes attrs(k) says when it has none, as
// CounterVec.With.
func (v *HistogramVec) With(k Key, attrs func(Key) []attribute.KeyValue) *Histogram {
	if h := v.s.get(k); h != nil {
		return h
	}
	return v.s.make(k, func() *Histogram {
		h := &Histogram{attrs: attribute.NewSet(attrs(k)...), bounds: v.bounds, counts: make([]atomic.Uint64, len(v.bounds)+1)}
		h.max.Store(math.MinInt64) // below any value, negative ones too
		return h
	})
}

func (v *HistogramVec) collect(start, now time.Time) metricdata.Metrics {
	var pts []metricdata.HistogramDataPoint[float64]
	v.s.each(func(h *Histogram) {
		p := metricdata.HistogramDataPoint[float64]{Attributes: h.attrs, StartTime: start, Time: now, Bounds: v.fb,
			BucketCounts: make([]uint64, len(h.counts))}
		// Buckets first, then the count as their total, so that a scrape racing with
		// records never shows a count that its buckets do not add up to.
		for i := range h.counts {
			p.BucketCounts[i] = h.counts[i].Load()
			p.Count += p.BucketCounts[i]
		}
		p.Sum = float64(h.sum.Load()) * v.scale
		if p.Count > 0 {
			p.Max = metricdata.NewExtrema(float64(h.max.Load()) * v.scale)
		}
		pts = append(pts, p)
	})
	if len(pts) == 0 {
		return metricdata.Metrics{}
	}
	return metricdata.Metrics{Name: v.name, Unit: v.unit, Description: v.desc, Data: metricdata.Histogram[float64]{
		DataPoints: pts, Temporality: metricdata.CumulativeTemporality,
	}}
}
