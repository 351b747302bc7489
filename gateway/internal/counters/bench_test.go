package counters

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/plexus-mesh/plexus/internal/testredis"
)

var (
	benchLimit = Limit{Rate: 1000, Period: time.Second, Burst: 100}
	benchKeys  = func() []string {
		keys := make([]string, 1024)
		for i := range keys {
			keys[i] = fmt.Sprint("key", i)
		}
		return keys
	}()
)

// benchParallelism × GOMAXPROCS goroutines ask at once, as concurrent
// requests through a gateway do: a Redis decision waits on the network,
// and one goroutine per core would measure latency, not throughput.
const benchParallelism = 8

// benchStores returns Local and Redis (on a real redis-server), with the hook
// that counts Redis round trips (nil for Local).
func benchStores(b *testing.B) []struct {
	name  string
	store Store
	hook  *testredis.RoundTrips
} {
	srv := startRedis(b)
	c := redis.NewClient(&redis.Options{Addr: srv.addr, MaxRetries: -1, DialerRetries: 1, DisableIdentity: true})
	b.Cleanup(func() { c.Close() })
	hook := &testredis.RoundTrips{}
	c.AddHook(hook)
	local := NewLocal()
	b.Cleanup(func() { local.Close() })
	return []struct {
		name  string
		store Store
		hook  *testredis.RoundTrips
	}{
		{"local", local, nil},
		{"redis", NewRedis(c, "bench:"), hook},
	}
}

func reportDecisions(b *testing.B, decisions int, hook *testredis.RoundTrips) {
	b.ReportMetric(float64(decisions)/b.Elapsed().Seconds(), "decisions/s")
	rt := 0.0
	if hook != nil {
		rt = float64(hook.Total())
	}
	b.ReportMetric(rt/float64(decisions), "roundtrips/decision")
	b.ReportMetric(rt/float64(b.N), "roundtrips/op")
}

// BenchmarkAllow is one decision per op from parallel goroutines over 1024
// keys. Its roundtrips/op for Redis is the "exactly 1".
func BenchmarkAllow(b *testing.B) {
	for _, s := range benchStores(b) {
		b.Run(s.name, func(b *testing.B) {
			ctx := context.Background()
			if _, err := s.store.Allow(ctx, "warm", benchLimit, 1); err != nil { // load the script
				b.Fatal(err)
			}
			if s.hook != nil {
				s.hook.Reset()
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(benchParallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					k := benchKeys[next.Add(1)%uint64(len(benchKeys))]
					if _, err := s.store.Allow(ctx, k, benchLimit, 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportDecisions(b, b.N, s.hook)
		})
	}
}

// BenchmarkAllowMany is 8 decisions per op, as a route with several limits
// would ask them.
func BenchmarkAllowMany(b *testing.B) {
	const batch = 8
	for _, s := range benchStores(b) {
		b.Run(s.name, func(b *testing.B) {
			ctx := context.Background()
			if _, err := s.store.Allow(ctx, "warm", benchLimit, 1); err != nil {
				b.Fatal(err)
			}
			if s.hook != nil {
				s.hook.Reset()
			}
			var next atomic.Uint64
			b.ReportAllocs()
			b.ResetTimer()
			b.SetParallelism(benchParallelism)
			b.RunParallel(func(pb *testing.PB) {
				reqs := make([]Request, batch)
				for pb.Next() {
					n := next.Add(1)
					for i := range reqs {
						reqs[i] = Request{Key: benchKeys[(n*batch+uint64(i))%uint64(len(benchKeys))], Limit: benchLimit, Cost: 1}
					}
					if _, err := s.store.AllowMany(ctx, reqs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportDecisions(b, b.N*batch, s.hook)
		})
	}
}
