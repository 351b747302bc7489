package proxywasm

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// metricOps drives the metric host functions of hostcalls.wat on a stream the test holds.
type metricOps struct{ h *hc }

func (m metricOps) define(kind uint64, name string) uint32 {
	m.h.t.Helper()
	n, nn := m.h.put(name)
	m.h.expect("define "+name, m.h.call("proxy_define_metric", kind, n, nn, outU32), statusOK)
	return m.h.i.u32At(outU32)
}

func (m metricOps) add(id uint32, delta uint64) {
	m.h.t.Helper()
	m.h.expect("increment", m.h.call("proxy_increment_metric", uint64(id), delta), statusOK)
}

func (m metricOps) get(id uint32) int64 {
	m.h.t.Helper()
	m.h.expect("get", m.h.call("proxy_get_metric", uint64(id), outU64), statusOK)
	v, _ := m.h.i.mem.ReadUint64Le(outU64)
	return int64(v)
}

// TestMetricsPerFilter: two filters that define the same metric name count apart, and
// proxy_get_metric reads the caller's own; the instances of one filter, and a reload of
// the same filter name, share its series.
func TestMetricsPerFilter(t *testing.T) {
	r := newRuntime(t)
	a := loadWAT(t, r, hostcallsWAT, Config{Name: "a", MaxInstances: 2}, nil)
	b := loadWAT(t, r, hostcallsWAT, Config{Name: "b"}, nil)

	ma := metricOps{newHC(t, a, &StreamInfo{})}
	mb := metricOps{newHC(t, b, &StreamInfo{})}
	idA := ma.define(metricCounter, "requests_total")
	idB := mb.define(metricCounter, "requests_total")
	ma.add(idA, 3)
	mb.add(idB, 10)
	if v := ma.get(idA); v != 3 {
		t.Errorf("filter a reads %d, want its own 3", v)
	}
	if v := mb.get(idB); v != 10 {
		t.Errorf("filter b reads %d, want its own 10", v)
	}
	// Ids index the caller's own metrics: b's second metric is no id of a's.
	idB2 := mb.define(metricGauge, "b_only")
	if idB2 == idA {
		t.Fatalf("b's second metric has id %d, as a's first", idB2)
	}
	ma.h.expect("a's get of an id only b defined", ma.h.call("proxy_get_metric", uint64(idB2), outU64), statusNotFound)

	// A second instance of a (the first is held by ma's stream) shares a's metric.
	ma2 := metricOps{newHC(t, a, &StreamInfo{})}
	if ma2.h.i == ma.h.i {
		t.Fatal("one instance for two streams")
	}
	if id := ma2.define(metricCounter, "requests_total"); id != idA {
		t.Errorf("a's second instance defines id %d, want %d", id, idA)
	}
	ma2.add(idA, 1)
	if v := ma.get(idA); v != 4 {
		t.Errorf("a reads %d after its second instance added 1, want 4", v)
	}

	// A reload of a (a new plugin of the same name) goes on with its series.
	a2 := loadWAT(t, r, hostcallsWAT, Config{Name: "a", Plugin: []byte("new config")}, nil)
	m := metricOps{newHC(t, a2, &StreamInfo{})}
	if id := m.define(metricCounter, "requests_total"); id != idA {
		t.Errorf("reloaded a defines id %d, want %d", id, idA)
	}
	m.add(idA, 1)
	if v := m.get(idA); v != 5 {
		t.Errorf("reloaded a reads %d, want 5", v)
	}

	want := []Metric{
		{Filter: "a", Name: "requests_total", Kind: "counter", Value: 5},
		{Filter: "b", Name: "requests_total", Kind: "counter", Value: 10},
		{Filter: "b", Name: "b_only", Kind: "gauge"},
	}
	got := r.Metrics()
	if !slices.EqualFunc(got, want, func(x, y Metric) bool {
		return x.Filter == y.Filter && x.Name == y.Name && x.Kind == y.Kind && x.Value == y.Value
	}) {
		t.Errorf("Metrics() = %+v\nwant %+v", got, want)
	}
}

// TestMetricsHammer defines, reads and snapshots one filter's metrics from many goroutines
// at once: the list readers load without a lock grows under them. Run it with -race.
func TestMetricsHammer(t *testing.T) {
	var store metricStore
	fm := store.filter("f")
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			shared, _ := fm.define(metricCounter, []byte("shared"))
			for k := range each {
				id, st := fm.define(metricGauge, fmt.Appendf(nil, "g%d_%d", g, k))
				if st != statusOK {
					t.Errorf("define: status %d", st)
					return
				}
				fm.get(id).value.Store(int64(k))
				fm.get(shared).value.Add(1)
				if k%50 == 0 {
					_ = store.snapshot()
				}
			}
		}()
	}
	wg.Wait()
	ms := store.snapshot()
	if len(ms) != 1+goroutines*each {
		t.Fatalf("%d metrics, want %d", len(ms), 1+goroutines*each)
	}
	if ms[0].Name != "shared" || ms[0].Value != goroutines*each {
		t.Errorf("first metric %+v, want shared = %d", ms[0], goroutines*each)
	}
}
