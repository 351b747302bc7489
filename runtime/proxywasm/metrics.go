package proxywasm

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Metrics are shared by name and kind across every instance of every filter of a Runtime:
// each instance defines them in its root context, and they are one series.

type metricStore struct {
	mu    sync.RWMutex
	byKey map[metricKey]uint32
	list  []*metric
}

type metricKey struct {
	name string
	kind uint32
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

func (m *metricStore) define(kind uint32, name []byte) (uint32, status) {
	if kind > metricHistogram {
		return 0, statusBadArgument
	}
	m.mu.RLock()
	id, ok := m.byKey[metricKey{string(name), kind}]
	m.mu.RUnlock()
	if ok {
		return id, statusOK
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	key := metricKey{string(name), kind}
	if id, ok := m.byKey[key]; ok {
		return id, statusOK
	}
	if m.byKey == nil {
		m.byKey = map[metricKey]uint32{}
	}
	mt := &metric{name: key.name, kind: kind}
	if kind == metricHistogram {
		mt.hist = make([]uint64, len(HistogramBounds)+1)
	}
	m.list = append(m.list, mt)
	id = uint32(len(m.list))
	m.byKey[key] = id
	return id, statusOK
}

func (m *metricStore) get(id uint32) *metric {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if id == 0 || int(id) > len(m.list) {
		return nil
	}
	return m.list[id-1]
}

func (m *metricStore) snapshot() []Metric {
	m.mu.RLock()
	list := append([]*metric(nil), m.list...)
	m.mu.RUnlock()
	out := make([]Metric, 0, len(list))
	for _, mt := range list {
		x := Metric{Name: mt.name, Kind: metricKinds[mt.kind], Value: mt.value.Load()}
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
	id, st := i.p.r.metrics.define(u32(s, 0), name)
	if st != statusOK {
		return st
	}
	i.putU32(u32(s, 3), id)
	return statusOK
}

// hostIncrementMetric adds delta: a counter only goes up (BAD_ARGUMENT otherwise), a gauge
// either way; a histogram takes proxy_record_metric.
func hostIncrementMetric(i *instance, s []uint64) status {
	mt := i.p.r.metrics.get(u32(s, 0))
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
	mt := i.p.r.metrics.get(u32(s, 0))
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
	mt := i.p.r.metrics.get(u32(s, 0))
	if mt == nil {
		return statusNotFound
	}
	if !i.mem.WriteUint64Le(u32(s, 1), uint64(mt.value.Load())) {
		return statusInvalidMemoryAccess
	}
	return statusOK
}
