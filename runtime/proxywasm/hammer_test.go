package proxywasm

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

// TestHammer runs many concurrent streams, some paused on HTTP calls answered from other
// goroutines, some failing, while ticks fire, against a pool smaller than the number of
// goroutines, and two filters count into a metric of the same name. Run it with -race.
func TestHammer(t *testing.T) {
	r := newRuntime(t)
	host := &fakeHost{}
	p := loadWAT(t, r, callbacksWAT, Config{MaxInstances: 3, Plugin: []byte("tick-me")}, host)
	hostile := loadWAT(t, r, hostileWAT, Config{Name: "hostile", MaxInstances: 2, CallbackTimeout: 20 * time.Millisecond}, nil)
	for i := range p.live {
		i.setU32(0x04, 1) // continue on the HTTP call response
	}
	meters := [2]*Plugin{
		loadWAT(t, r, hostcallsWAT, Config{Name: "meter-a", MaxInstances: 2}, nil),
		loadWAT(t, r, hostcallsWAT, Config{Name: "meter-b", MaxInstances: 2}, nil),
	}
	var counted [2]atomic.Int64
	count := func(m int) error { // defines hammer_total in a stream of meters[m] and adds 1
		s, err := meters[m].NewStream(context.Background(), &StreamInfo{})
		if err != nil {
			return err
		}
		defer s.Close()
		i := s.inst
		call := func(name string, args ...uint64) uint32 {
			res, err := i.mod.ExportedFunction("t_"+name).Call(i.ctx, args...)
			if err != nil {
				return statusInternalFailure
			}
			return uint32(res[0])
		}
		i.mem.WriteString(0x1000, "hammer_total")
		if st := call("proxy_define_metric", metricCounter, 0x1000, 12, outU32); st != statusOK {
			return fmt.Errorf("proxy_define_metric: status %d", st)
		}
		if st := call("proxy_increment_metric", uint64(i.u32At(outU32)), 1); st != statusOK {
			return fmt.Errorf("proxy_increment_metric: status %d", st)
		}
		counted[m].Add(1)
		return nil
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 50; n++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				s, err := p.NewStream(ctx, &StreamInfo{})
				if err != nil {
					t.Error(err)
					cancel()
					return
				}
				s.inst.setU32(0x00, uint32(n%3)*2) // continue, or pause on a call (op 2), or 4: close
				s.inst.setU32(0x04, 1)
				a, err := s.OnRequestHeaders(&Headers{Fields: []Field{{":path", "/"}}}, false)
				if err == nil && a == Pause {
					err = s.Wait(ctx)
				}
				if err != nil {
					t.Error(err)
				}
				body := &Body{Data: []byte("x")}
				var bw sync.WaitGroup
				bw.Add(1)
				go func() { // the body pump
					defer bw.Done()
					s.OnRequestBody(body, true)
				}()
				s.OnResponseHeaders(&Headers{}, true)
				bw.Wait()
				s.Close()
				cancel()

				if n%10 == 0 {
					hs, err := hostile.NewStream(context.Background(), nil)
					if err == nil {
						hs.OnRequestHeaders(headersN(9), true)
						hs.Close()
					}
					_ = p.Stats()
					_ = r.Metrics()
				}
				if n%5 == 0 {
					if err := count(g % 2); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	// A tick, or an HTTP call's answer that came after its stream closed, may hold an idle
	// instance for a moment after the last stream: every instance comes back, unfailed.
	testutil.Eventually(t, "every instance back in the pool", func() bool { return p.Stats().InUse == 0 })
	if st := p.Stats(); st.InUse != 0 || len(st.Failures) != 0 {
		t.Errorf("stats %+v", st)
	}
	got := map[string]int64{}
	for _, m := range r.Metrics() {
		got[m.Filter+" "+m.Name] = m.Value
	}
	if got["meter-a hammer_total"] != counted[0].Load() || got["meter-b hammer_total"] != counted[1].Load() {
		t.Errorf("metrics %v, want meter-a %d and meter-b %d", got, counted[0].Load(), counted[1].Load())
	}
}
