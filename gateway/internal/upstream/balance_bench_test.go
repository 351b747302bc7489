package upstream

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// BenchmarkBalanceMixedLatency sends requests from 16 clients at once to a backend of four
// endpoints on loopback, one of which takes 20ms to answer and the others 1ms, through each
// balancer, and reports the mean and 99th percentile latency of a request (ms). Round
// robin sends the slow endpoint a quarter of the requests whatever its queue; least
// request sees its requests in flight pile up and sends it fewer.
func BenchmarkBalanceMixedLatency(b *testing.B) {
	var addrs []config.Endpoint
	for _, d := range []time.Duration{20 * time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			time.Sleep(d)
			io.WriteString(w, "ok")
		}))
		b.Cleanup(srv.Close)
		addrs = append(addrs, config.Endpoint{Address: srv.Listener.Addr().String()})
	}
	for _, policy := range []string{config.BalanceRoundRobin, config.BalanceLeastRequest} {
		b.Run(policy, func(b *testing.B) {
			cl, err := NewCluster(config.Backend{Name: "mixed", Endpoints: addrs, Balance: policy,
				ConnectTimeout: time.Second, MaxIdle: 64, IdleTimeout: time.Minute}, &config.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer cl.Close()
			b.ReportAllocs()
			var mu sync.Mutex
			var took []time.Duration
			work := make(chan struct{})
			var wg sync.WaitGroup
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var mine []time.Duration
					for range work {
						ep := cl.Pick(nil)
						req, _ := http.NewRequest(http.MethodGet, "http://"+ep.Addr+"/", nil)
						start := time.Now()
						ep.Stats.Active.Add(1)
						resp, err := cl.RoundTrip(ep, req)
						if err == nil {
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
						}
						ep.Stats.Active.Add(-1)
						if err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(start))
					}
					mu.Lock()
					took = append(took, mine...)
					mu.Unlock()
				}()
			}
			b.ResetTimer()
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			wg.Wait()
			b.StopTimer()
			slices.Sort(took)
			var sum time.Duration
			for _, d := range took {
				sum += d
			}
			if len(took) > 0 {
				b.ReportMetric(float64(sum.Microseconds())/float64(len(took))/1000, "mean-ms")
				b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
			}
		})
	}
}

// BenchmarkPick is the cost of one pick among 8 endpoints: a plain backend (the baseline),
// and one with outlier detection, health checks' state, panic mode and slow start, with one
// endpoint ejected and one in its slow-start window.
func BenchmarkPick(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  config.Backend
	}{
		{"plain", config.Backend{Balance: config.BalanceRoundRobin}},
		{"resilient", config.Backend{Balance: config.BalanceRoundRobin, PanicThreshold: ptr(50),
			Outlier:   &config.Outlier{Consecutive5xx: ptr(5), Interval: time.Hour, BaseEjectionTime: time.Minute, MaxEjectionTime: time.Hour, MaxEjectionPercent: 50},
			SlowStart: &config.SlowStart{Window: time.Hour, Aggression: 1, MinWeightPercent: 10}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			cfg := tc.cfg
			cfg.Name = "bench"
			for i := range 8 {
				cfg.Endpoints = append(cfg.Endpoints, config.Endpoint{Address: fmt.Sprintf("10.0.0.%d:80", i+1)})
			}
			cl, err := NewCluster(cfg, &config.Config{})
			if err != nil {
				b.Fatal(err)
			}
			if cl.outlier != nil {
				eps := cl.Endpoints()
				eps[0].ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
				eps[1].warmFrom.Store(time.Now().UnixNano())
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if ep := cl.Pick(nil); ep != nil {
						cl.Observe(ep, 200, false)
					}
				}
			})
		})
	}
}
