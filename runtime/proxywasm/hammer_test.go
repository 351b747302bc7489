package proxywasm

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestHammer runs many concurrent streams, some paused on HTTP calls answered from other
// goroutines, some failing, while ticks fire, against a pool smaller than the number of
// goroutines. Run it with -race.
func TestHammer(t *testing.T) {
	r := newRuntime(t)
	host := &fakeHost{}
	p := loadWAT(t, r, callbacksWAT, Config{MaxInstances: 3, Plugin: []byte("tick-me")}, host)
	hostile := loadWAT(t, r, hostileWAT, Config{Name: "hostile", MaxInstances: 2, CallbackTimeout: 20 * time.Millisecond}, nil)
	for i := range p.live {
		i.setU32(0x04, 1) // continue on the HTTP call response
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
			}
		}()
	}
	wg.Wait()
	if st := p.Stats(); st.InUse != 0 || len(st.Failures) != 0 {
		t.Errorf("stats %+v", st)
	}
}
