package proxywasm

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// Metrics belong to a filter (Config.Name): every instance of a filter defines them in its
// root context and they are one series, which a reload of the same filter name keeps (the
// store lives in the Runtime); two filters that define the same name have a series each
// (runtime/RATIONALE.md, "Metrics per filter"). A metric's id is its index in its filter's
// list, plus one, so that the hot path (increment, record, get) is an atomic load and an
// index into the plugin's own list: no lock, no allocation, and no way to reach another
// filter's metrics.

// metricStore holds the metrics of a Runtime's filters, by filter name.
type metricStore struct {
	mu      sync.Mutex
	filters map[string]*filterMetrics
}

// filter returns name's metrics, created empty the first time.
func (m *metricStore) filter(name string) *filterMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	fm := m.filters[name]
	if fm == nil {
		if m.filters == nil {
			m.filters = map[string]*filterMetrics{}
		}
		fm = &filterMetrics{name: name}
		m.filters[name] = fm
	}
	return fm
}

// snapshot is every filter's metrics, by filter name, each filter's in definition order.
func (m *metricStore) snapshot() []Metric {
	m.mu.Lock()
	filters := make([]*filterMetrics, 0, len(m.filters))
	for _, fm := range m.filters {
		filters = append(filters, fm)
	}
	m.mu.Unlock()
	slices.SortFunc(filters, func(a, b *filterMetrics) int { return strings.Compare(a.name, b.name) })
	var out []Metric
	for _, fm := range filters {
		out = fm.snapshot(out)
	}
	return out
}

// filterMetrics are one filter's metrics. list only grows, and is replaced whole
// (define appends under mu, then publishes the new slice header): readers load it without
// a lock, and never look past the length they loaded.
type filterMetrics struct {
	name   string
	mu     sync.RWMutex
	byName [metricHistogram + 1]map[string]uint32 // by kind, then name: ids
	list   atomic.Pointer[[]*metric]
}

type metric struct {
	name  string
	kind  uint32
	value atomic.Int64 // counter, gauge; a histogram's sum
	count atomic.Uint64
	hmu   sync.Mutex
	hist  []uint64
}

var metricKinds = [...]string{metricCounter: "counter", metricGauge: "gauge", metricHistogram: "histogram"}

func (m *filterMetrics) define(kind uint32, name []byte) (uint32, status) {
	if kind > metricHistogram {
		return 0, statusBadArgument
	}
	// Every instance defines the filter's metrics as its root context starts (some
	// filters, per request): found, a metric costs a read lock and a lookup that does not
	// allocate.
	m.mu.RLock()
	id, ok := m.byName[kind][string(name)]
	m.mu.RUnlock()
	if ok {
		return id, statusOK
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if id, ok := m.byName[kind][string(name)]; ok {
		return id, statusOK
	}
	if m.byName[kind] == nil {
		m.byName[kind] = map[string]uint32{}
	}
	mt := &metric{name: string(name), kind: kind}
	if kind == metricHistogram {
		mt.hist = make([]uint64, len(HistogramBounds)+1)
	}
	var list []*metric
	if p := m.list.Load(); p != nil {
		list = *p
	}
	// Appending in place is safe: readers of the old header never index past its length.
	list = append(list, mt)
	m.list.Store(&list)
	id = uint32(len(list))
	m.byName[kind][mt.name] = id
	return id, statusOK
}

func (m *filterMetrics) get(id uint32) *metric {
	p := m.list.Load()
	if p == nil || id == 0 || int(id) > len(*p) {
		return nil
	}
	return (*p)[id-1]
}

// snapshot appends the filter's metrics to out, in definition order.
func (m *filterMetrics) snapshot(out []Metric) []Metric {
	p := m.list.Load()
	if p == nil {
		return out
	}
	for _, mt := range *p {
		x := Metric{Filter: m.name, Name: mt.name, Kind: metricKinds[mt.kind], Value: mt.value.Load()}
		if mt.kind == metricHistogram {
			mt.hmu.Lock()
			x.Histogram = append([]uint64(nil), mt.hist...)
			x.Count = mt.count.Load()
			x.Value = mt.value.Load()
			mt.hmu.Unlock()
		}
		out = append(out, x)
	}
	return out
}

func hostDefineMetric(i *instance, s []uint64) status {
	name, ok := i.read(u32(s, 1), u32(s, 2))
	if !ok || !i.writable(u32(s, 3), 4) {
		return statusInvalidMemoryAccess
	}
	id, st := i.p.metrics.define(u32(s, 0), name)
	if st != statusOK {
		return st
	}
	i.putU32(u32(s, 3), id)
	return statusOK
}

// hostIncrementMetric adds delta: a counter only goes up (BAD_ARGUMENT otherwise), a gauge
// either way; a histogram takes proxy_record_metric.
func hostIncrementMetric(i *instance, s []uint64) status {
	mt := i.p.metrics.get(u32(s, 0))
	if mt == nil {
		return statusNotFound
	}
	delta := int64(s[1])
	switch mt.kind {
	case metricCounter:
		if delta < 0 {
			return statusBadArgument
		}
	case metricHistogram:
		return statusBadArgument
	}
	mt.value.Add(delta)
	return statusOK
}

// hostRecordMetric sets a gauge, adds to a counter (as Envoy does), records a value in a
// histogram.
func hostRecordMetric(i *instance, s []uint64) status {
	mt := i.p.metrics.get(u32(s, 0))
	if mt == nil {
		return statusNotFound
	}
	v := s[1]
	switch mt.kind {
	case metricCounter:
		mt.value.Add(int64(v))
	case metricGauge:
		mt.value.Store(int64(v))
	case metricHistogram:
		k := sort.Search(len(HistogramBounds), func(k int) bool { return HistogramBounds[k] >= v })
		mt.hmu.Lock()
		mt.hist[k]++
		mt.count.Add(1)
		mt.value.Add(int64(v))
		mt.hmu.Unlock()
	}
	return statusOK
}

// hostGetMetric returns a counter's or gauge's value, a histogram's sum.
func hostGetMetric(i *instance, s []uint64) status {
	mt := i.p.metrics.get(u32(s, 0))
	if mt == nil {
		return statusNotFound
	}
	if !i.mem.WriteUint64Le(u32(s, 1), uint64(mt.value.Load())) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}
