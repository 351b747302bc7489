package telemetry

import (
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Line is one series as the admin's /stats shows it.
type Line struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  *float64          `json:"value,omitempty"` // counters and gauges
	Hist   *HistSummary      `json:"histogram,omitempty"`
	labels string            // Labels as text, for sorting and printing
}

// HistSummary is a histogram in few numbers: quantiles are estimated from its buckets.
type HistSummary struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
	Max   float64 `json:"max,omitempty"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
}

// Lines flattens collected metrics into one line per series, sorted by name and labels;
// with filter, only the series whose name matches it.
func Lines(rm *metricdata.ResourceMetrics, filter *regexp.Regexp) []Line {
	var out []Line
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if filter != nil && !filter.MatchString(m.Name) {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				out = valueLines(out, m.Name, d.DataPoints)
			case metricdata.Sum[float64]:
				out = valueLines(out, m.Name, d.DataPoints)
			case metricdata.Gauge[int64]:
				out = valueLines(out, m.Name, d.DataPoints)
			case metricdata.Gauge[float64]:
				out = valueLines(out, m.Name, d.DataPoints)
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					l := valueLine(m.Name, p.Attributes, 0)
					l.Value = nil
					l.Hist = summarize(p.Count, p.Sum, p.Bounds, p.BucketCounts)
					if mx, ok := p.Max.Value(); ok {
						// An estimate inside a bucket may pass the largest value seen.
						l.Hist.Max = mx
						l.Hist.P50, l.Hist.P90, l.Hist.P99 = min(l.Hist.P50, mx), min(l.Hist.P90, mx), min(l.Hist.P99, mx)
					}
					out = append(out, l)
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					l := valueLine(m.Name, p.Attributes, 0)
					l.Value = nil
					l.Hist = summarize(p.Count, float64(p.Sum), p.Bounds, p.BucketCounts)
					if mx, ok := p.Max.Value(); ok {
						l.Hist.Max = float64(mx)
					}
					out = append(out, l)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b Line) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return strings.Compare(a.labels, b.labels)
	})
	return out
}

func valueLines[N int64 | float64](out []Line, name string, pts []metricdata.DataPoint[N]) []Line {
	for _, p := range pts {
		out = append(out, valueLine(name, p.Attributes, float64(p.Value)))
	}
	return out
}

func valueLine(name string, set attribute.Set, v float64) Line {
	l := Line{Name: name, Value: &v}
	if set.Len() > 0 {
		l.Labels = map[string]string{}
		var b strings.Builder
		for i, kv := range set.ToSlice() {
			l.Labels[string(kv.Key)] = kv.Value.Emit()
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%q", kv.Key, kv.Value.Emit())
		}
		l.labels = b.String()
	}
	return l
}

// summarize estimates quantiles by linear interpolation inside the bucket that holds them.
func summarize(count uint64, sum float64, bounds []float64, buckets []uint64) *HistSummary {
	h := &HistSummary{Count: count, Sum: sum}
	q := func(f float64) float64 {
		if count == 0 {
			return 0
		}
		rank := f * float64(count)
		var seen float64
		for i, n := range buckets {
			if n == 0 {
				continue
			}
			if seen+float64(n) >= rank {
				lo, hi := 0.0, 0.0
				if i > 0 {
					lo = bounds[i-1]
				}
				if i < len(bounds) {
					hi = bounds[i]
				} else {
					return lo // past the last bound: all that is known is that it is above
				}
				return lo + (hi-lo)*(rank-seen)/float64(n)
			}
			seen += float64(n)
		}
		if len(bounds) == 0 {
			return 0
		}
		return bounds[len(bounds)-1] // the buckets were read while being added to
	}
	h.P50, h.P90, h.P99 = q(0.5), q(0.9), q(0.99)
	return h
}

// WriteText writes lines as Envoy's /stats does, one "name{labels}: value" per series;
// a histogram shows its count, sum and estimated quantiles.
func WriteText(w io.Writer, lines []Line) {
	for _, l := range lines {
		name := l.Name
		if l.labels != "" {
			name += "{" + l.labels + "}"
		}
		if h := l.Hist; h != nil && h.Count == 0 {
			fmt.Fprintf(w, "%s: count=0\n", name)
			continue
		}
		if l.Hist != nil {
			h := l.Hist
			fmt.Fprintf(w, "%s: count=%d sum=%s p50=%s p90=%s p99=%s max=%s\n", name, h.Count, num(h.Sum),
				num(h.P50), num(h.P90), num(h.P99), num(h.Max))
			continue
		}
		fmt.Fprintf(w, "%s: %s\n", name, num(*l.Value))
	}
}

func num(f float64) string {
	return strconv.FormatFloat(f, 'g', 6, 64)
}
