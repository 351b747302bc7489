package telemetry

import (
	"bytes"
	"maps"
	"math"
	"regexp"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func set(kvs ...attribute.KeyValue) attribute.Set { return attribute.NewSet(kvs...) }

// collected is what a reader might collect: every kind Lines knows, over two scopes, with
// names and label sets out of order.
func collected() *metricdata.ResourceMetrics {
	return &metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{
		{Metrics: []metricdata.Metrics{
			{Name: "requests", Data: metricdata.Sum[int64]{IsMonotonic: true, DataPoints: []metricdata.DataPoint[int64]{
				{Attributes: set(attribute.String("route", "b"), attribute.String("method", "GET")), Value: 2},
				{Attributes: set(attribute.String("route", "a"), attribute.String("method", "GET")), Value: 7},
			}}},
			{Name: "duration", Data: metricdata.Histogram[float64]{DataPoints: []metricdata.HistogramDataPoint[float64]{{
				Attributes: set(attribute.String("route", "a")), Count: 10, Sum: 12.5,
				Bounds: []float64{1, 2, 4}, BucketCounts: []uint64{0, 10, 0, 0}, Max: metricdata.NewExtrema(2.0),
			}}}},
			{Name: "bytes", Data: metricdata.Sum[float64]{DataPoints: []metricdata.DataPoint[float64]{{Value: 1234567}}}},
			{Name: "empty", Data: metricdata.Histogram[float64]{DataPoints: []metricdata.HistogramDataPoint[float64]{{
				Bounds: []float64{1}, BucketCounts: []uint64{0, 0},
			}}}},
			{Name: "ignored", Data: metricdata.Summary{DataPoints: []metricdata.SummaryDataPoint{{Count: 1}}}},
		}},
		{Metrics: []metricdata.Metrics{
			{Name: "active", Data: metricdata.Gauge[int64]{DataPoints: []metricdata.DataPoint[int64]{
				{Attributes: set(attribute.Int("n", -3)), Value: -3},
			}}},
			{Name: "ratio", Data: metricdata.Gauge[float64]{DataPoints: []metricdata.DataPoint[float64]{{Value: 0.25}}}},
			{Name: "size", Data: metricdata.Histogram[int64]{DataPoints: []metricdata.HistogramDataPoint[int64]{{
				Count: 4, Sum: 40, Bounds: []float64{10, 100}, BucketCounts: []uint64{2, 2, 0},
			}}}},
		}},
	}}
}

func TestLines(t *testing.T) {
	type want struct {
		name   string
		labels map[string]string
		value  float64      // when hist is nil
		hist   *HistSummary // P values checked by TestSummarize; Count, Sum, Max here
	}
	all := []want{
		{name: "active", labels: map[string]string{"n": "-3"}, value: -3},
		{name: "bytes", value: 1234567},
		{name: "duration", labels: map[string]string{"route": "a"}, hist: &HistSummary{Count: 10, Sum: 12.5, Max: 2}},
		{name: "empty", hist: &HistSummary{}},
		{name: "ratio", value: 0.25},
		// Labels sort as text: method="GET",route="a" before method="GET",route="b".
		{name: "requests", labels: map[string]string{"method": "GET", "route": "a"}, value: 7},
		{name: "requests", labels: map[string]string{"method": "GET", "route": "b"}, value: 2},
		{name: "size", hist: &HistSummary{Count: 4, Sum: 40}},
	}
	for _, tc := range []struct {
		name   string
		filter *regexp.Regexp
		want   []want
	}{
		{"all", nil, all},
		{"filtered", regexp.MustCompile(`^(requests|size)$`), []want{all[5], all[6], all[7]}},
		{"none", regexp.MustCompile(`nothing`), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Lines(collected(), tc.filter)
			if len(got) != len(tc.want) {
				for _, l := range got {
					t.Logf("line %s %v", l.Name, l.Labels)
				}
				t.Fatalf("%d lines, want %d", len(got), len(tc.want))
			}
			for i, w := range tc.want {
				l := got[i]
				if l.Name != w.name || !maps.Equal(l.Labels, w.labels) {
					t.Errorf("line %d: %s %v, want %s %v", i, l.Name, l.Labels, w.name, w.labels)
					continue
				}
				if w.hist == nil {
					if l.Hist != nil || l.Value == nil || *l.Value != w.value {
						t.Errorf("line %d (%s): value %v hist %+v, want value %v", i, l.Name, l.Value, l.Hist, w.value)
					}
					continue
				}
				if l.Value != nil || l.Hist == nil {
					t.Errorf("line %d (%s): value %v hist %v, want a histogram", i, l.Name, l.Value, l.Hist)
					continue
				}
				if h := l.Hist; h.Count != w.hist.Count || h.Sum != w.hist.Sum || h.Max != w.hist.Max {
					t.Errorf("line %d (%s): count %d sum %v max %v, want %d %v %v", i, l.Name, h.Count, h.Sum, h.Max,
						w.hist.Count, w.hist.Sum, w.hist.Max)
				}
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name          string
		bounds        []float64
		buckets       []uint64
		p50, p90, p99 float64
	}{
		// Ranks 5, 9 and 9.9 of 10 values, all between 1 and 2.
		{"one bucket", []float64{1, 2, 4}, []uint64{0, 10, 0, 0}, 1.5, 1.9, 1.99},
		// The first bucket's lower end is 0.
		{"first bucket", []float64{1, 2, 4}, []uint64{10, 0, 0, 0}, 0.5, 0.9, 0.99},
		// Rank 50 is the 30th of 60 in (10, 20]; rank 90 the 10th of 15 in (20, 30]; rank 99
		// is past the last bound, where all that is known is the bound.
		{"spread", []float64{10, 20, 30}, []uint64{20, 60, 15, 5}, 15, 20 + 10*10.0/15, 30},
		{"empty buckets between", []float64{1, 2, 3, 4}, []uint64{1, 0, 0, 1, 0}, 1, 3.8, 3.98},
		{"all in overflow", []float64{0.1, 0.5}, []uint64{0, 0, 7}, 0.5, 0.5, 0.5},
		// Rank 50 of 100 ends the first bucket exactly: its upper bound.
		{"at a bound", []float64{10, 20}, []uint64{50, 50, 0}, 10, 18, 19.8},
		{"single value", []float64{1, 2}, []uint64{0, 1, 0}, 1.5, 1.9, 1.99},
		{"count 0", []float64{1, 2}, []uint64{0, 0, 0}, 0, 0, 0},
		{"count 0, no bounds", nil, []uint64{0}, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var count uint64
			for _, n := range tc.buckets {
				count += n
			}
			h := summarize(count, 12.5, tc.bounds, tc.buckets)
			if h.Count != count || h.Sum != 12.5 {
				t.Errorf("count %d sum %v, want %d 12.5", h.Count, h.Sum, count)
			}
			for _, q := range []struct {
				name      string
				got, want float64
			}{{"p50", h.P50, tc.p50}, {"p90", h.P90, tc.p90}, {"p99", h.P99, tc.p99}} {
				if math.Abs(q.got-q.want) > 1e-9 {
					t.Errorf("%s = %v, want %v", q.name, q.got, q.want)
				}
			}
		})
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	WriteText(&b, Lines(collected(), nil))
	want := `active{n="-3"}: -3
bytes: 1.23457e+06
duration{route="a"}: count=10 sum=12.5 p50=1.5 p90=1.9 p99=1.99 max=2
empty: count=0
ratio: 0.25
requests{method="GET",route="a"}: 7
requests{method="GET",route="b"}: 2
size: count=4 sum=40 p50=10 p90=82 p99=98.2 max=0
`
	if got := b.String(); got != want {
		t.Errorf("WriteText:\n%s\nwant:\n%s", got, want)
	}

	b.Reset()
	WriteText(&b, []Line{valueLine("quoted", set(attribute.String("path", `/a"b\c`)), 1)})
	if got, want := b.String(), `quoted{path="/a\"b\\c"}: 1`+"\n"; got != want {
		t.Errorf("WriteText of a label with quotes: %q, want %q", got, want)
	}
}

// Regressions: an integer histogram's maximum reaches /stats; a histogram with no bounds
// whose count passed its buckets (read while being recorded into) does not panic.
func TestLinesIntHistogramMaxAndNoBounds(t *testing.T) {
	rm := metricdata.ResourceMetrics{ScopeMetrics: []metricdata.ScopeMetrics{{Metrics: []metricdata.Metrics{{
		Name: "h", Data: metricdata.Histogram[int64]{DataPoints: []metricdata.HistogramDataPoint[int64]{{
			Count: 1, Sum: 7, Bounds: []float64{10}, BucketCounts: []uint64{1, 0}, Max: metricdata.NewExtrema[int64](7),
		}}},
	}}}}}
	if l := Lines(&rm, nil); len(l) != 1 || l[0].Hist.Max != 7 {
		t.Errorf("lines %+v; want max 7", l)
	}
	if h := summarize(2, 1, nil, []uint64{1}); h.P99 != 0 {
		t.Errorf("p99 %v", h.P99)
	}
}
