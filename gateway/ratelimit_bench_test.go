package gateway_test

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/internal/testredis"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// BenchmarkRateLimit measures a request through filters/ratelimit: with no filter (the
// baseline), deciding one limit in the gateway's own store (no redis:), one limit in Redis
// (one EVALSHA per request), and two limits in Redis in one pipelined call. The c-local and
// c-redis rows decide the same one limit through examples/c/ratelimit, a C filter that does
// little besides the call: the difference from local and redis is what the Go guest costs.
// The difference in ns/op and cpu-µs/op from "none" is what a decision costs the gateway;
// redis-server's own CPU time is not in cpu-µs/op.
//
// Every limit is 10,000,000 per second, so that every request is allowed and decided by the
// store: the gateway answers keys over their limit from a cache without asking Redis. Redis
// timeouts are 1s so that a loaded machine measures capacity rather than fail-open answers.
// Metrics:
//
//	decisions/s          store decisions per second (the gateway's plexus.ratelimit.decisions,
//	                     source "store"; fail-open answers are not decisions)
//	roundtrips/decision  calls the gateway's Redis client made, a pipeline counting once
//	evalsha/decision     EVALSHA and EVAL Redis ran (INFO commandstats), one per limit
//
// bench/ratelimit.sh measures the same on the real binary with wrk.
//
//	go test -run X -bench RateLimit -benchtime 3s ./gateway/
func BenchmarkRateLimit(b *testing.B) {
	backend := benchBackend(b)
	wasm := wasmbuild.Go(b, "filters/ratelimit")
	cwasm := wasmbuild.C(b, "examples/c/ratelimit")
	rs := testredis.Start(b)
	const (
		limit  = `{name: global, key: global, rate: 10000000, period: 1s}`
		limit2 = `{name: per-ip, key: remote_address, rate: 10000000, period: 1s}`
		climit = `"global 10000000 1000 10000000"` // the C filter's: KEY RATE PERIOD_MS BURST
	)
	// Eight limits on every request, decided in one pipelined call: the store's throughput
	// when filters ask for several decisions at once.
	var limits8 []string
	for k := range 8 {
		limits8 = append(limits8, fmt.Sprintf(`{name: g%d, key: global, rate: 10000000, period: 1s}`, k))
	}
	// The store belongs to the gateway, not to a route: the in-process store needs a gateway
	// of its own.
	_, remote := startGatewayWith(b, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%[1]s]}]
redis: {address: %[2]s, dial_timeout: 1s, read_timeout: 1s, write_timeout: 1s, timeout: 1s}
filters:
  - {name: redis, module: "file:%[3]s", limits: {callback_timeout: 1s}, config: {limits: [%[4]s]}}
  - {name: redis-2keys, module: "file:%[3]s", limits: {callback_timeout: 1s}, config: {limits: [%[4]s, %[5]s]}}
  - {name: c-redis, module: "file:%[6]s", limits: {callback_timeout: 1s}, config: %[7]s}
  - {name: redis-8keys, module: "file:%[3]s", limits: {callback_timeout: 1s}, config: {limits: [%[8]s]}}
routes:
  - {name: redis, match: {path: /redis}, filters: [redis], backend: app}
  - {name: redis-2keys, match: {path: /redis-2keys}, filters: [redis-2keys], backend: app}
  - {name: c-redis, match: {path: /c-redis}, filters: [c-redis], backend: app}
  - {name: redis-8keys, match: {path: /redis-8keys}, filters: [redis-8keys], backend: app}
  - {name: none, match: {path_prefix: /}, backend: app}
`, backend, rs.Addr, wasm, limit, limit2, cwasm, climit, strings.Join(limits8, ", ")), gateway.Options{})
	_, local := startGatewayWith(b, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%[1]s]}]
filters:
  - {name: local, module: "file:%[2]s", limits: {callback_timeout: 1s}, config: {limits: [%[3]s]}}
  - {name: c-local, module: "file:%[4]s", limits: {callback_timeout: 1s}, config: %[5]s}
routes:
  - {name: c-local, match: {path: /c-local}, filters: [c-local], backend: app}
  - {name: local, match: {path_prefix: /}, filters: [local], backend: app}
`, backend, wasm, limit, cwasm, climit), gateway.Options{})

	for _, tc := range []struct {
		name  string
		gw    map[string]string
		redis bool
	}{
		{"none", remote, false},
		{"local", local, false},
		{"c-local", local, false},
		{"redis", remote, true},
		{"c-redis", remote, true},
		{"redis-2keys", remote, true},
		{"redis-8keys", remote, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			target := "http://" + tc.gw["web"] + "/" + tc.name
			if tc.name == "none" {
				hammer(b, target)
				return
			}
			before := rateLimitCounts(b, tc.gw["admin"], tc.name)
			evals := redisEvals(b, rs)
			hammer(b, target)
			after := rateLimitCounts(b, tc.gw["admin"], tc.name)
			decisions := float64(after.decisions - before.decisions)
			if decisions == 0 {
				b.Fatal("no decisions counted: the filter decided nothing")
			}
			if n := after.failOpen - before.failOpen; n > 0 {
				b.Logf("%d answers failed open: Redis was too slow or down", n)
			}
			b.ReportMetric(decisions/b.Elapsed().Seconds(), "decisions/s")
			if tc.redis {
				b.ReportMetric(float64(after.redisCalls-before.redisCalls)/decisions, "roundtrips/decision")
				b.ReportMetric(float64(redisEvals(b, rs)-evals)/decisions, "evalsha/decision")
			}
		})
	}
}

type rateLimitCount struct {
	decisions  int64 // made by the store
	failOpen   int64 // allowed because the store could not answer
	redisCalls int64 // calls the Redis client timed, a pipeline once
}

// rateLimitCounts reads the decisions of filter so far, and the gateway's Redis calls, from
// the admin's /stats.
func rateLimitCounts(b *testing.B, admin, filter string) rateLimitCount {
	b.Helper()
	resp, err := http.Get("http://" + admin + "/stats?filter=" + url.QueryEscape(`^plexus\.(ratelimit\.decisions|redis\.duration)`))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var c rateLimitCount
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 1<<20))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "plexus.ratelimit.decisions{") && strings.Contains(line, `plexus.filter="`+filter+`"`):
			_, v, _ := strings.Cut(line, "}: ")
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("/stats: %q: %v", line, err)
			}
			switch {
			case strings.Contains(line, `plexus.decision.source="store"`):
				c.decisions += n
			case strings.Contains(line, `plexus.decision.source="fail_open"`):
				c.failOpen += n
			}
		case strings.HasPrefix(line, "plexus.redis.duration{"):
			for f := range strings.FieldsSeq(line) {
				if v, ok := strings.CutPrefix(f, "count="); ok {
					n, err := strconv.ParseInt(v, 10, 64)
					if err != nil {
						b.Fatalf("/stats: %q: %v", line, err)
					}
					c.redisCalls += n
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return c
}

// redisEvals is how many EVALSHA and EVAL (and their _ro forms) Redis has run.
func redisEvals(b *testing.B, rs *testredis.Server) int64 {
	b.Helper()
	info, err := rs.Do("INFO", "commandstats")
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for line := range strings.Lines(info) {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		switch name {
		case "cmdstat_evalsha", "cmdstat_evalsha_ro", "cmdstat_eval", "cmdstat_eval_ro":
		default:
			continue
		}
		calls, _, _ := strings.Cut(stats, ",")
		v, found := strings.CutPrefix(calls, "calls=")
		c, err := strconv.ParseInt(v, 10, 64)
		if !ok || !found || err != nil {
			b.Fatalf("INFO commandstats: %q", line)
		}
		n += c
	}
	return n
}
