package telemetry

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// produce is what s produces, by metric name; it fails on a second scope or a name twice.
func produce(t testing.TB, s *Stats) map[string]metricdata.Metrics {
	t.Helper()
	sms, err := s.Produce(context.Background())
	if err != nil {
		t.Fatalf("Produce: %v", err)
	}
	if len(sms) != 1 {
		t.Fatalf("Produce: %d scopes, want 1", len(sms))
	}
	if got := sms[0].Scope.Name; got != "test" {
		t.Errorf("scope %q, want %q", got, "test")
	}
	out := map[string]metricdata.Metrics{}
	for _, m := range sms[0].Metrics {
		if _, dup := out[m.Name]; dup {
			t.Fatalf("metric %s produced twice", m.Name)
		}
		out[m.Name] = m
	}
	return out
}

// histPoints is the histogram's points by their attributes' encoding.
func histPoints(t testing.TB, m metricdata.Metrics) map[string]metricdata.HistogramDataPoint[float64] {
	t.Helper()
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s: data is %T, want metricdata.Histogram[float64]", m.Name, m.Data)
	}
	if h.Temporality != metricdata.CumulativeTemporality {
		t.Errorf("%s: temporality %v, want cumulative", m.Name, h.Temporality)
	}
	out := map[string]metricdata.HistogramDataPoint[float64]{}
	for _, p := range h.DataPoints {
		k := p.Attributes.Encoded(attribute.DefaultEncoder())
		if _, dup := out[k]; dup {
			t.Fatalf("%s: two points with attributes %q", m.Name, k)
		}
		out[k] = p
	}
	return out
}

// sumPoints is the sum's points by their attributes' encoding.
func sumPoints(t testing.TB, m metricdata.Metrics, monotonic bool) map[string]metricdata.DataPoint[int64] {
	t.Helper()
	s, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s: data is %T, want metricdata.Sum[int64]", m.Name, m.Data)
	}
	if s.Temporality != metricdata.CumulativeTemporality {
		t.Errorf("%s: temporality %v, want cumulative", m.Name, s.Temporality)
	}
	if s.IsMonotonic != monotonic {
		t.Errorf("%s: monotonic %v, want %v", m.Name, s.IsMonotonic, monotonic)
	}
	out := map[string]metricdata.DataPoint[int64]{}
	for _, p := range s.DataPoints {
		k := p.Attributes.Encoded(attribute.DefaultEncoder())
		if _, dup := out[k]; dup {
			t.Fatalf("%s: two points with attributes %q", m.Name, k)
		}
		out[k] = p
	}
	return out
}

func enc(kvs ...attribute.KeyValue) string {
	s := attribute.NewSet(kvs...)
	return s.Encoded(attribute.DefaultEncoder())
}

// keyAttrs reads nothing but k, so that With costs no allocation.
func keyAttrs(k Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("a", k.A), attribute.Int("n", k.N)}
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func TestHistogramBuckets(t *testing.T) {
	for _, tc := range []struct {
		name       string
		scale      float64
		bounds     []float64
		wantBounds []int64 // in the recording unit
		values     []int64
		buckets    []uint64
		max        int64
	}{
		{
			name: "bytes", scale: 1, bounds: []float64{0, 10, 100}, wantBounds: []int64{0, 10, 100},
			// Upper bounds are inclusive (le): 0, 10 and 100 go in their own bound's bucket.
			values:  []int64{-5, 0, 1, 10, 11, 100, 101, 1 << 40},
			buckets: []uint64{2, 2, 2, 2},
			max:     1 << 40,
		},
		{
			// 0.7/1e-9 and 1/1e-9 are 699999999.99… and 999999999.99… in float64: a bound
			// truncated rather than rounded would put 0.7 s and 1 s in the next bucket.
			name: "seconds", scale: 1e-9, bounds: []float64{0.005, 0.1, 0.7, 1},
			wantBounds: []int64{5e6, 1e8, 7e8, 1e9},
			values:     []int64{0, 5e6, 5e6 + 1, 1e8, 7e8, 7e8 + 1, 1e9, 1e9 + 1, 3e9},
			buckets:    []uint64{2, 2, 1, 2, 2},
			max:        3e9,
		},
		{
			name: "negative and zero", scale: 1, bounds: []float64{-10, 0, 10}, wantBounds: []int64{-10, 0, 10},
			values:  []int64{-20, -10, -9, 0, 5},
			buckets: []uint64{2, 2, 1, 0},
			max:     5,
		},
		{
			name: "no bounds", scale: 1, bounds: nil, wantBounds: nil,
			values:  []int64{-1, 0, 7},
			buckets: []uint64{3},
			max:     7,
		},
		{
			name: "only overflow", scale: 1, bounds: []float64{1, 2}, wantBounds: []int64{1, 2},
			values:  []int64{3, 4, 5},
			buckets: []uint64{0, 0, 3},
			max:     5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewStats("test")
			v := s.Histogram("h", "u", "d", tc.scale, tc.bounds)
			if !slices.Equal(v.bounds, tc.wantBounds) {
				t.Fatalf("integer bounds %v, want %v", v.bounds, tc.wantBounds)
			}
			h := v.With(Key{A: "x"}, keyAttrs)
			var sum int64
			for _, x := range tc.values {
				h.Record(x)
				sum += x
			}
			if got := h.Count(); got != uint64(len(tc.values)) {
				t.Errorf("Count() = %d, want %d", got, len(tc.values))
			}
			if got := h.Sum(); got != sum {
				t.Errorf("Sum() = %d, want %d", got, sum)
			}
			p := histPoints(t, produce(t, s)["h"])[enc(keyAttrs(Key{A: "x"})...)]
			if !slices.Equal(p.BucketCounts, tc.buckets) {
				t.Errorf("buckets %v, want %v", p.BucketCounts, tc.buckets)
			}
			if !slices.Equal(p.Bounds, tc.bounds) {
				t.Errorf("bounds %v, want %v", p.Bounds, tc.bounds)
			}
			if p.Count != uint64(len(tc.values)) {
				t.Errorf("count %d, want %d", p.Count, len(tc.values))
			}
			if want := float64(sum) * tc.scale; !near(p.Sum, want) {
				t.Errorf("sum %v, want %v", p.Sum, want)
			}
			if mx, ok := p.Max.Value(); !ok || !near(mx, float64(tc.max)*tc.scale) {
				t.Errorf("max %v (defined %v), want %v", mx, ok, float64(tc.max)*tc.scale)
			}
		})
	}
}

func TestHistogramProduce(t *testing.T) {
	s := NewStats("test")
	bounds := []float64{0.01, 0.1, 1}
	var calls atomic.Int32
	routeAttrs := func(k Key) []attribute.KeyValue {
		return []attribute.KeyValue{attribute.String("route", k.B), attribute.Int("status", k.N)}
	}
	attrs := func(k Key) []attribute.KeyValue {
		calls.Add(1)
		return routeAttrs(k)
	}
	v := s.Histogram("http.server.request.duration", "s", "Duration.", 1e-9, bounds)
	ok, fail := Key{B: "app", N: 200}, Key{B: "app", N: 503}
	for _, d := range []time.Duration{5 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 2 * time.Second} {
		v.With(ok, attrs).Record(int64(d))
	}
	v.With(fail, attrs).Record(int64(time.Second))
	v.With(Key{B: "idle"}, attrs) // a series with nothing recorded yet
	if n := calls.Load(); n != 3 {
		t.Errorf("attrs called %d times, want 3 (once per new series)", n)
	}
	before := time.Now()
	m := produce(t, s)["http.server.request.duration"]
	after := time.Now()
	if m.Unit != "s" || m.Description != "Duration." {
		t.Errorf("unit %q, description %q", m.Unit, m.Description)
	}
	pts := histPoints(t, m)
	if len(pts) != 3 {
		t.Fatalf("%d points, want 3", len(pts))
	}
	for _, tc := range []struct {
		name    string
		k       Key
		buckets []uint64
		sum     float64
		max     float64 // NaN: no max
	}{
		{"ok", ok, []uint64{1, 2, 0, 1}, 2.105, 2},
		{"fail", fail, []uint64{0, 0, 1, 0}, 1, 1},
		{"idle", Key{B: "idle"}, []uint64{0, 0, 0, 0}, 0, math.NaN()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, found := pts[enc(routeAttrs(tc.k)...)]
			if !found {
				t.Fatalf("no point with attributes %v", routeAttrs(tc.k))
			}
			if !slices.Equal(p.Bounds, bounds) {
				t.Errorf("bounds %v, want %v", p.Bounds, bounds)
			}
			if len(p.BucketCounts) != len(bounds)+1 {
				t.Errorf("%d buckets, want %d", len(p.BucketCounts), len(bounds)+1)
			}
			if !slices.Equal(p.BucketCounts, tc.buckets) {
				t.Errorf("buckets %v, want %v", p.BucketCounts, tc.buckets)
			}
			var total uint64
			for _, n := range p.BucketCounts {
				total += n
			}
			if p.Count != total {
				t.Errorf("count %d, buckets add up to %d", p.Count, total)
			}
			if !near(p.Sum, tc.sum) {
				t.Errorf("sum %v, want %v", p.Sum, tc.sum)
			}
			mx, defined := p.Max.Value()
			if math.IsNaN(tc.max) {
				if defined {
					t.Errorf("max %v on an empty series, want none", mx)
				}
			} else if !defined || !near(mx, tc.max) {
				t.Errorf("max %v (defined %v), want %v", mx, defined, tc.max)
			}
			if _, defined := p.Min.Value(); defined {
				t.Error("min defined, want none (not kept)")
			}
			if !p.StartTime.Equal(s.Start()) {
				t.Errorf("start %v, want Stats.Start() %v", p.StartTime, s.Start())
			}
			if p.Time.Before(before) || p.Time.After(after) {
				t.Errorf("time %v not within the Produce call [%v, %v]", p.Time, before, after)
			}
		})
	}
	if calls.Load() != 3 {
		t.Errorf("attrs called %d times after Produce, want 3", calls.Load())
	}
}

func TestCounters(t *testing.T) {
	s := NewStats("test")
	var calls atomic.Int32
	attrs := func(k Key) []attribute.KeyValue {
		calls.Add(1)
		return keyAttrs(k)
	}
	reqs := s.Counter("requests", "{request}", "Requests.")
	active := s.UpDown("active", "{request}", "In flight.")
	s.Counter("unused", "1", "Never given a series.")
	s.Histogram("unused.histogram", "s", "Never given a series.", 1e-9, []float64{1})

	reqs.With(Key{A: "GET"}, attrs).Add(1)
	reqs.With(Key{A: "GET"}, attrs).Add(2)
	reqs.With(Key{A: "GET", N: 1}, attrs).Add(5) // N alone makes another series
	reqs.With(Key{A: "POST"}, attrs)             // a series at 0
	active.With(Key{A: "GET"}, attrs).Add(3)
	active.With(Key{A: "GET"}, attrs).Add(-1)
	active.With(Key{A: "PUT"}, attrs).Add(-2)
	if c := reqs.With(Key{A: "GET"}, attrs); c.Value() != 3 {
		t.Errorf("Value() = %d, want 3", c.Value())
	}
	if reqs.With(Key{A: "GET"}, attrs) != reqs.With(Key{A: "GET"}, attrs) {
		t.Error("With returned two series for one key")
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("attrs called %d times, want 5 (once per new series)", n)
	}

	extraCalls := 0
	s.AddProducer(func() []metricdata.Metrics {
		extraCalls++
		return []metricdata.Metrics{{Name: "filter.metric", Data: metricdata.Gauge[int64]{
			DataPoints: []metricdata.DataPoint[int64]{{Value: 42}},
		}}}
	})

	got := produce(t, s)
	for _, name := range []string{"unused", "unused.histogram"} {
		if m, ok := got[name]; ok {
			t.Errorf("family %s with no series produced: %+v", name, m)
		}
	}
	for _, tc := range []struct {
		name      string
		monotonic bool
		want      map[Key]int64
	}{
		{"requests", true, map[Key]int64{{A: "GET"}: 3, {A: "GET", N: 1}: 5, {A: "POST"}: 0}},
		{"active", false, map[Key]int64{{A: "GET"}: 2, {A: "PUT"}: -2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := got[tc.name]
			if !ok {
				t.Fatalf("%s not produced", tc.name)
			}
			if m.Unit != "{request}" {
				t.Errorf("unit %q", m.Unit)
			}
			pts := sumPoints(t, m, tc.monotonic)
			if len(pts) != len(tc.want) {
				t.Errorf("%d points, want %d", len(pts), len(tc.want))
			}
			for k, want := range tc.want {
				p, ok := pts[enc(keyAttrs(k)...)]
				if !ok {
					t.Errorf("no point for %+v", k)
					continue
				}
				if p.Value != want {
					t.Errorf("%+v: %d, want %d", k, p.Value, want)
				}
				if !p.StartTime.Equal(s.Start()) {
					t.Errorf("%+v: start %v, want %v", k, p.StartTime, s.Start())
				}
			}
		})
	}
	if m, ok := got["filter.metric"]; !ok {
		t.Error("AddProducer's metric not produced")
	} else if g, ok := m.Data.(metricdata.Gauge[int64]); !ok || len(g.DataPoints) != 1 || g.DataPoints[0].Value != 42 {
		t.Errorf("AddProducer's metric: %+v", m.Data)
	}
	if extraCalls != 1 {
		t.Errorf("AddProducer's function called %d times in one Produce, want 1", extraCalls)
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("attrs called %d times after Produce, want 5", n)
	}
}

// TestHammer records into overlapping series from many goroutines, making them as it goes,
// while another goroutine produces over and over. Run it with -race.
func TestHammer(t *testing.T) {
	const (
		goroutines = 8
		records    = 5000
		keys       = 13 // not a divisor of records, so the series fill unevenly
	)
	s := NewStats("test")
	bounds := []float64{1, 2, 4, 8}
	var calls [keys]atomic.Int32
	attrs := func(k Key) []attribute.KeyValue {
		calls[k.N].Add(1)
		return keyAttrs(k)
	}
	hist := s.Histogram("h", "1", "", 1, bounds)
	reqs := s.Counter("c", "1", "")
	active := s.UpDown("u", "1", "")
	ks := make([]Key, keys)
	for i := range ks {
		ks[i] = Key{A: fmt.Sprint("k", i), N: i}
	}
	// Goroutine g records value (g+i)%10 into key i%keys at its i-th record: all goroutines
	// go through the keys in the same order, so that they race to make each series.
	type want struct {
		buckets []uint64
		sum     int64
		max     int64
		count   int64
	}
	wants := make([]want, keys)
	for i := range wants {
		wants[i].buckets = make([]uint64, len(bounds)+1)
	}
	for g := range goroutines {
		for i := range records {
			k, x := i%keys, int64((g+i)%10)
			w := &wants[k]
			b := slices.IndexFunc(bounds, func(b float64) bool { return float64(x) <= b })
			if b < 0 {
				b = len(bounds)
			}
			w.buckets[b]++
			w.sum += x
			w.max = max(w.max, x)
			w.count++
		}
	}

	stop := make(chan struct{})
	var producer sync.WaitGroup
	var produced int
	producer.Go(func() {
		// Only Error here: Fatal must not be called from a goroutine other than the test's.
		last := map[string]uint64{}
		for {
			select {
			case <-stop:
				return
			default:
			}
			sms, err := s.Produce(context.Background())
			if err != nil || len(sms) != 1 {
				t.Errorf("Produce: %d scopes, error %v", len(sms), err)
				return
			}
			produced++
			for _, m := range sms[0].Metrics {
				h, ok := m.Data.(metricdata.Histogram[float64])
				if !ok {
					continue
				}
				seen := map[string]bool{}
				for _, p := range h.DataPoints {
					k := p.Attributes.Encoded(attribute.DefaultEncoder())
					if seen[k] {
						t.Errorf("%s: two points with attributes %q in one collection", m.Name, k)
					}
					seen[k] = true
					var total uint64
					for _, n := range p.BucketCounts {
						total += n
					}
					if p.Count != total {
						t.Errorf("%s: count %d, buckets add up to %d", k, p.Count, total)
					}
					if p.Count < last[k] {
						t.Errorf("%s: cumulative count went from %d down to %d", k, last[k], p.Count)
					}
					last[k] = p.Count
				}
			}
		}
	})

	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for i := range records {
				k, x := ks[i%keys], int64((g+i)%10)
				hist.With(k, attrs).Record(x)
				reqs.With(k, attrs).Add(1)
				a := active.With(k, attrs)
				a.Add(1)
				a.Add(-1)
			}
		})
	}
	close(start)
	wg.Wait()
	close(stop)
	producer.Wait()
	if produced == 0 {
		t.Error("the producer never ran")
	}

	got := produce(t, s)
	hp := histPoints(t, got["h"])
	cp := sumPoints(t, got["c"], true)
	up := sumPoints(t, got["u"], false)
	if len(hp) != keys || len(cp) != keys || len(up) != keys {
		t.Errorf("series: %d histograms, %d counters, %d up-downs; want %d each", len(hp), len(cp), len(up), keys)
	}
	var total uint64
	for i, k := range ks {
		e := enc(keyAttrs(k)...)
		w := wants[i]
		p := hp[e]
		if !slices.Equal(p.BucketCounts, w.buckets) || p.Count != uint64(w.count) || p.Sum != float64(w.sum) {
			t.Errorf("%s: buckets %v count %d sum %v, want %v %d %d", e, p.BucketCounts, p.Count, p.Sum, w.buckets, w.count, w.sum)
		}
		if mx, _ := p.Max.Value(); mx != float64(w.max) {
			t.Errorf("%s: max %v, want %d", e, mx, w.max)
		}
		if c := cp[e].Value; c != w.count {
			t.Errorf("%s: counter %d, want %d", e, c, w.count)
		}
		if u := up[e].Value; u != 0 {
			t.Errorf("%s: up-down %d, want 0", e, u)
		}
		// Three families, each making the series once.
		if n := calls[i].Load(); n != 3 {
			t.Errorf("%s: attrs called %d times, want 3 (once per family)", e, n)
		}
		total += p.Count
	}
	if total != goroutines*records {
		t.Errorf("%d records counted, want %d", total, goroutines*records)
	}
}

// TestWithRace has goroutines ask for a new series at once, over and over: each time they
// must all get the one series, made with one call of attrs, and all their records.
func TestWithRace(t *testing.T) {
	const goroutines, rounds = 8, 100
	for round := range rounds {
		s := NewStats("test")
		v := s.Counter("c", "1", "")
		var calls atomic.Int32
		attrs := func(k Key) []attribute.KeyValue {
			calls.Add(1)
			return keyAttrs(k)
		}
		got := make([]*Counter, goroutines)
		var ready, wg sync.WaitGroup
		ready.Add(goroutines)
		start := make(chan struct{})
		for g := range goroutines {
			wg.Go(func() {
				ready.Done()
				<-start
				// Two keys, so that one goroutine's addition can copy the map under
				// another's.
				got[g] = v.With(Key{A: "x"}, attrs)
				got[g].Add(1)
				v.With(Key{A: "y", N: g % 2}, attrs).Add(1)
			})
		}
		ready.Wait()
		close(start)
		wg.Wait()
		for g := range got {
			if got[g] != got[0] {
				t.Fatalf("round %d: goroutines %d and 0 got different series for one key", round, g)
			}
		}
		if n := got[0].Value(); n != goroutines {
			t.Fatalf("round %d: %d records, want %d", round, n, goroutines)
		}
		if n := calls.Load(); n != 3 {
			t.Fatalf("round %d: attrs called %d times for 3 keys", round, n)
		}
		pts := sumPoints(t, produce(t, s)["c"], true)
		if len(pts) != 3 || pts[enc(keyAttrs(Key{A: "y"})...)].Value != goroutines/2 {
			t.Fatalf("round %d: points %v", round, pts)
		}
	}
}

func TestWithAllocs(t *testing.T) {
	s := NewStats("test")
	h := s.Histogram("h", "s", "", 1e-9, []float64{0.001, 0.01, 0.1, 1})
	c := s.Counter("c", "1", "")
	u := s.UpDown("u", "1", "")
	k := Key{A: "GET", B: "route", C: "1.1", D: "http", N: 200}
	h.With(k, keyAttrs)
	c.With(k, keyAttrs)
	u.With(k, keyAttrs)
	if n := testing.AllocsPerRun(1000, func() {
		h.With(k, keyAttrs).Record(int64(5 * time.Millisecond))
		c.With(k, keyAttrs).Add(1)
		u.With(k, keyAttrs).Add(1)
		u.With(k, keyAttrs).Add(-1)
	}); n != 0 {
		t.Errorf("With and Record/Add on existing series: %v allocations, want 0", n)
	}
}

// BenchmarkRecord compares a record into an existing histogram series of Stats with the
// SDK's own Float64Histogram.Record on a shared series, the baseline of gateway/RATIONALE.md's
// "Metrics on the request path".
//
//	go test -run X -bench Record -cpu 1,2 ./gateway/internal/telemetry/
func BenchmarkRecord(b *testing.B) {
	bounds := []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	k := Key{A: "GET", B: "app", C: "1.1", D: "http", N: 200}
	b.Run("stats", func(b *testing.B) {
		s := NewStats("bench")
		v := s.Histogram("http.server.request.duration", "s", "", 1e-9, bounds)
		v.With(k, keyAttrs)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				v.With(k, keyAttrs).Record(int64(3 * time.Millisecond))
			}
		})
	})
	b.Run("sdk", func(b *testing.B) {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer mp.Shutdown(context.Background())
		h, err := mp.Meter("bench").Float64Histogram("http.server.request.duration",
			metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(bounds...))
		if err != nil {
			b.Fatal(err)
		}
		// The SDK at its cheapest: the attribute set made once, and the options slice too
		// (passed as opt alone, it escapes: one allocation per Record).
		opts := []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(keyAttrs(k)...))}
		ctx := context.Background()
		h.Record(ctx, 0.003, opts...)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.Record(ctx, 0.003, opts...)
			}
		})
	})
}

// Regression: a series of negative values only has a negative maximum, not 0.
func TestHistogramMaxOfNegatives(t *testing.T) {
	s := NewStats("test")
	h := s.Histogram("h", "1", "", 1, []float64{-10, 0})
	attrs := func(Key) []attribute.KeyValue { return nil }
	h.With(Key{}, attrs).Record(-20)
	h.With(Key{}, attrs).Record(-5)
	sm, _ := s.Produce(context.Background())
	p := sm[0].Metrics[0].Data.(metricdata.Histogram[float64]).DataPoints[0]
	if mx, ok := p.Max.Value(); !ok || mx != -5 {
		t.Errorf("max %v (set %v), want -5", mx, ok)
	}
}

// TestHistogramQuantile: a quantile is the upper bound of the bucket its rank falls in,
// capped by the largest value, and the largest value past the last bound.
func TestHistogramQuantile(t *testing.T) {
	s := NewStats("test")
	h := s.Histogram("t", "1", "", 1, []float64{10, 100, 1000}).With(Key{A: "a"}, func(Key) []attribute.KeyValue { return nil })
	if h.Quantile(0.5) != 0 || h.Max() != 0 {
		t.Errorf("empty: p50 %d, max %d; want 0, 0", h.Quantile(0.5), h.Max())
	}
	for range 98 {
		h.Record(5) // the first bucket
	}
	h.Record(50)
	h.Record(5000) // past the last bound
	for _, tc := range []struct {
		q    float64
		want int64
	}{{0.01, 10}, {0.5, 10}, {0.98, 10}, {0.99, 100}, {1, 5000}} {
		if got := h.Quantile(tc.q); got != tc.want {
			t.Errorf("q %v: %d, want %d", tc.q, got, tc.want)
		}
	}
	if h.Max() != 5000 {
		t.Errorf("max %d, want 5000", h.Max())
	}
	low := s.Histogram("u", "1", "", 1, []float64{10, 100}).With(Key{A: "a"}, func(Key) []attribute.KeyValue { return nil })
	low.Record(3)
	if got := low.Quantile(0.99); got != 3 {
		t.Errorf("one value of 3: p99 %d, want 3 (capped by the largest)", got)
	}
}
