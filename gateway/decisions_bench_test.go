package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/internal/testredis"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
)

// BenchmarkDecisions is the gateway's decision path without HTTP around it: a request's
// stream on the rate-limit filter (its proxy_on_request_headers, the plexus.rate_limit
// call, the deny cache and breaker, the go-redis client, the script in Redis), on 64
// streams at once. BenchmarkRateLimit is the same through the proxy, where the proxying
// and the load generator share the machine's cores with it.
//
//	go test -run X -bench Decisions -benchtime 3s ./gateway/
func BenchmarkDecisions(b *testing.B) {
	rs := testredis.Start(b)
	goWasm := wasmbuild.Go(b, "filters/ratelimit")
	cWasm := wasmbuild.C(b, "examples/c/ratelimit")
	for _, tc := range []struct {
		name, module, config string
		redis                bool
	}{
		{"go-local", goWasm, `{limits: [{name: g, key: global, rate: 10000000, period: 1s}]}`, false},
		{"c-local", cWasm, `"global 10000000 1000 10000000"`, false},
		{"go-redis", goWasm, `{limits: [{name: g, key: global, rate: 10000000, period: 1s}]}`, true},
		{"c-redis", cWasm, `"global 10000000 1000 10000000"`, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			yaml := fmt.Sprintf(`
listeners: [{name: web, address: 127.0.0.1:0}]
filters: [{name: limit, module: "file:%s", limits: {instances: 64, callback_timeout: 1s}, config: %s}]
routes: [{name: r, filters: [limit], direct_response: {body: ok}}]
`, tc.module, tc.config)
			if tc.redis {
				// Timeouts long enough that 64 goroutines queuing for 2 cores do not make
				// calls fail: a decision that failed open would flatter the figure.
				yaml += fmt.Sprintf("redis: {address: %q, pool_size: 16, timeout: 1s, read_timeout: 1s, write_timeout: 1s}\n", rs.Addr)
			}
			cfg, err := config.Parse(b.TempDir()+"/plexus.yaml", []byte(yaml))
			if err != nil {
				b.Fatal(err)
			}
			g, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), CacheDir: testutil.GatewayCacheDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Shutdown(context.Background())
			var trips testredis.RoundTrips
			if g.redis != nil {
				g.redis.AddHook(&trips)
			}
			p := g.snap.Load().filters["limit"].Plugin
			store := g.inst.Decisions.With(telemetry.Key{A: "limit", B: "allowed", C: "store"}, decisionAttrs)
			failOpen := g.inst.Decisions.With(telemetry.Key{A: "limit", B: "allowed", C: "fail_open"}, decisionAttrs)
			var allowed, other atomic.Int64
			b.ReportAllocs()
			// 64 streams on 2 cores. Callbacks get 1s: 64 goroutines that never wait on I/O
			// queue for the cores, and one preempted may wait longer than the default 100ms.
			b.SetParallelism(32)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				info := &proxywasm.StreamInfo{SourceAddress: "127.0.0.1:5555"}
				for pb.Next() {
					s, err := p.NewStream(context.Background(), info)
					if err != nil {
						b.Error(err)
						return
					}
					h := &proxywasm.Headers{Fields: []proxywasm.Field{{Key: ":method", Value: "GET"}, {Key: ":path", Value: "/"}, {Key: ":authority", Value: "bench"}}}
					a, err := s.OnRequestHeaders(h, true)
					if err == nil && a == proxywasm.Continue && s.LocalResponse() == nil {
						allowed.Add(1)
					} else if other.Add(1) == 1 {
						b.Logf("action %v, error %v, local response %+v", a, err, s.LocalResponse())
					}
					s.Close()
				}
			})
			elapsed := time.Since(start)
			b.StopTimer()
			if n := other.Load(); n > 0 {
				b.Fatalf("%d requests not allowed: every one should be", n)
			}
			// Decisions the store made; a request allowed because Redis failed is none.
			decisions := float64(store.Value())
			if n := failOpen.Value(); n > 0 {
				b.Logf("%d of %d requests allowed without a decision (Redis failed, fail open)", n, allowed.Load())
			}
			b.ReportMetric(decisions/elapsed.Seconds(), "decisions/s")
			if tc.redis {
				b.ReportMetric(float64(trips.Total())/decisions, "roundtrips/decision")
			}
		})
	}
}
