package counters

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/plexus-mesh/plexus/internal/testredis"
)

// commandCalls reads how many times the server ran a command (INFO
// commandstats), to check the client-side count from the server's side.
func commandCalls(t *testing.T, c *redis.Client, name string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		rest, ok := strings.CutPrefix(line, "cmdstat_"+name+":calls=")
		if ok {
			n, _ := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
			return n
		}
	}
	return 0
}

func TestRedisOneRoundTrip(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	c := srv.client(t)
	hook := &testredis.RoundTrips{}
	c.AddHook(hook)
	s := NewRedis(c, "rt:")
	ctx := context.Background()
	lim := Limit{Rate: 100, Period: time.Second, Burst: 5}

	// The first calls load the scripts (NOSCRIPT, then EVAL) and dial.
	if _, err := s.Allow(ctx, "warm", lim, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, "warm-n", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	evalsha, eval := commandCalls(t, raw, "evalsha"), commandCalls(t, raw, "eval")

	tests := []struct {
		name           string
		call           func() error
		cmds, pipes    int64
		evalsha, evals int64
	}{
		{"Allow", func() error { _, err := s.Allow(ctx, "a", lim, 1); return err }, 1, 0, 1, 0},
		{"Allow denied", func() error { _, err := s.Allow(ctx, "a", lim, 50); return err }, 1, 0, 1, 0},
		{"AllowMany of 8 keys", func() error {
			reqs := make([]Request, 8)
			for i := range reqs {
				reqs[i] = Request{Key: fmt.Sprint("m", i), Limit: lim, Cost: 1}
			}
			_, err := s.AllowMany(ctx, reqs)
			return err
		}, 0, 1, 8, 0},
		{"Incr with a window", func() error { _, err := s.Incr(ctx, "n", 1, time.Minute); return err }, 1, 0, 1, 0},
		{"Incr", func() error { _, err := s.Incr(ctx, "n0", 1, 0); return err }, 1, 0, 0, 0},
		{"Get", func() error { _, _, err := s.Get(ctx, "n"); return err }, 1, 0, 0, 0},
	}
	for _, tt := range tests {
		hook.Reset()
		for i := 0; i < 10; i++ {
			if err := tt.call(); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
		}
		if c, p := hook.Commands.Load(), hook.Pipelines.Load(); c != 10*tt.cmds || p != 10*tt.pipes {
			t.Errorf("%s ×10: %d commands and %d pipelines, want %d and %d", tt.name, c, p, 10*tt.cmds, 10*tt.pipes)
		}
		es, e := commandCalls(t, raw, "evalsha"), commandCalls(t, raw, "eval")
		if es-evalsha != 10*tt.evalsha || e-eval != 0 {
			t.Errorf("%s ×10: the server ran EVALSHA %d times and EVAL %d times, want %d and 0", tt.name, es-evalsha, e-eval, 10*tt.evalsha)
		}
		evalsha, eval = es, e
	}
}

// After SCRIPT FLUSH (or a failover to a server that never saw the script)
// EVALSHA answers NOSCRIPT; the call is sent again with EVAL, which also
// loads the script, and the key's state is kept.
func TestRedisNoScript(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	c := srv.client(t)
	hook := &testredis.RoundTrips{}
	c.AddHook(hook)
	s := NewRedis(c, "ns:")
	ctx := context.Background()
	lim := Limit{Rate: 1, Period: time.Hour, Burst: 10}
	flush := func() {
		t.Helper()
		if err := raw.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}

	remaining := int64(10)
	for round := 0; round < 3; round++ {
		flush()
		hook.Reset()
		d, err := s.Allow(ctx, "k", lim, 1)
		remaining--
		if err != nil || !d.Allowed || d.Remaining != remaining {
			t.Fatalf("round %d, after SCRIPT FLUSH: %+v, %v; want allowed, %d remaining", round, d, err, remaining)
		}
		if n := hook.Total(); n != 2 {
			t.Errorf("round %d: %d round trips after a flush, want 2 (EVALSHA, EVAL)", round, n)
		}
		hook.Reset()
		d, err = s.Allow(ctx, "k", lim, 1)
		remaining--
		if err != nil || d.Remaining != remaining {
			t.Fatalf("round %d, loaded again: %+v, %v", round, d, err)
		}
		if n := hook.Total(); n != 1 {
			t.Errorf("round %d: %d round trips once reloaded, want 1", round, n)
		}
	}

	flush()
	hook.Reset()
	ds, err := s.AllowMany(ctx, []Request{{"k", lim, 1}, {"j", lim, 2}, {"k", lim, 0}})
	if err != nil {
		t.Fatal(err)
	}
	if got := []int64{ds[0].Remaining, ds[1].Remaining, ds[2].Remaining}; !slices.Equal(got, []int64{3, 8, 3}) {
		t.Fatalf("AllowMany after a flush: remaining %v, want [3 8 3] (%+v)", got, ds)
	}
	if p := hook.Pipelines.Load(); p != 2 {
		t.Errorf("AllowMany after a flush: %d pipelines, want 2", p)
	}

	flush()
	for i := int64(1); i <= 2; i++ {
		if v, err := s.Incr(ctx, "n", 1, time.Minute); err != nil || v != i {
			t.Fatalf("Incr after a flush: %d, %v; want %d", v, err, i)
		}
	}
}

func TestRedisPrefix(t *testing.T) {
	srv := startRedis(t)
	raw := srv.client(t)
	s := NewRedis(srv.client(t), "plexus:test:")
	ctx := context.Background()
	if _, err := s.Allow(ctx, "lim", perHour3, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AllowMany(ctx, []Request{{"many", perHour3, 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, "win", 7, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, "forever", 3, 0); err != nil {
		t.Fatal(err)
	}
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{"plexus:test:forever", "plexus:test:lim", "plexus:test:many", "plexus:test:win"}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	if v, err := raw.Get(ctx, "plexus:test:win").Int64(); err != nil || v != 7 {
		t.Fatalf("raw GET = %d, %v", v, err)
	}
	if v, ok, err := s.Get(ctx, "forever"); err != nil || !ok || v != 3 {
		t.Fatalf("Get = %d, %v, %v", v, ok, err)
	}
	ttls := map[string][2]time.Duration{ // min, max
		"plexus:test:lim":     {time.Hour - time.Second, time.Hour},
		"plexus:test:win":     {time.Minute - time.Second, time.Minute},
		"plexus:test:forever": {-1, -1},
	}
	for k, r := range ttls {
		ttl, err := raw.PTTL(ctx, k).Result()
		if err != nil || ttl < r[0] || ttl > r[1] {
			t.Errorf("PTTL %s = %v, %v; want in [%v, %v]", k, ttl, err, r[0], r[1])
		}
	}
	// A key that does not hold an integer is an error, not a zero.
	raw.Set(ctx, "plexus:test:text", "hello", 0)
	if _, _, err := s.Get(ctx, "text"); !errors.Is(err, ErrRedis) {
		t.Fatalf("Get of a string: %v, want ErrRedis", err)
	}
}

// With Redis gone every call fails at once (no retries here), with an
// error that wraps ErrRedis and says "counters: redis:".
func TestRedisDown(t *testing.T) {
	srv := startRedis(t)
	s := NewRedis(srv.client(t), "down:")
	ctx := context.Background()
	if _, err := s.Allow(ctx, "k", perHour3, 1); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	calls := []struct {
		name string
		call func() error
	}{
		{"Allow", func() error { _, err := s.Allow(ctx, "k", perHour3, 1); return err }},
		{"AllowMany", func() error {
			_, err := s.AllowMany(ctx, []Request{{"k", perHour3, 1}, {"j", perHour3, 1}})
			return err
		}},
		{"Incr", func() error { _, err := s.Incr(ctx, "n", 1, 0); return err }},
		{"Incr with a window", func() error { _, err := s.Incr(ctx, "n", 1, time.Second); return err }},
		{"Get", func() error { _, _, err := s.Get(ctx, "n"); return err }},
	}
	for _, c := range calls {
		start := time.Now()
		err := c.call()
		took := time.Since(start)
		if !errors.Is(err, ErrRedis) || !strings.HasPrefix(err.Error(), "counters: redis: ") {
			t.Errorf("%s with Redis down: %v, want an error wrapping ErrRedis", c.name, err)
		}
		if took > 500*time.Millisecond {
			t.Errorf("%s with Redis down took %v", c.name, took)
		}
		t.Logf("%s: %v after %v", c.name, err, took)
	}
}

// The Lua script is the Go function gcra, checked on the exact steps and on
// random ones with now passed in (ARGV[5]) instead of read with TIME.
func TestRedisScriptMatchesGo(t *testing.T) {
	srv := startRedis(t)
	c := srv.client(t)
	ctx := context.Background()
	run := func(key string, p params, n, now int64) (micros, int64) {
		t.Helper()
		m, err := parseDecision(gcraScript.Run(ctx, c, []string{key}, append(gcraArgs(p, n), now)...))
		if err != nil {
			t.Fatal(err)
		}
		tat, err := c.Get(ctx, key).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatal(err)
		}
		return m, tat
	}

	p, _ := Limit{Rate: 1, Period: time.Second, Burst: 3}.params()
	base := time.Now().UnixMicro() // expiries are on the real clock: keep TATs near it
	for i, s := range gcraSteps {
		m, tat := run("steps", p, s.cost, base+s.now)
		if m != s.want || tat != base+s.stored {
			t.Fatalf("step %d: script %+v, TAT %d; want %+v, TAT %d", i, m, tat-base, s.want, s.stored)
		}
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for k := 0; k < 20; k++ {
		key := fmt.Sprint("rand", k)
		lim := Limit{
			Rate:   1 + rng.Int64N(1000),
			Period: time.Duration(100+rng.Int64N(100_000)) * time.Millisecond,
			Burst:  1 + rng.Int64N(20),
		}
		p, err := lim.params()
		if err != nil {
			t.Fatal(err)
		}
		if p.t < 100_000 { // expiries must outlast the test's real time
			continue
		}
		now := time.Now().UnixMicro()
		tat := int64(0)
		for step := 0; step < 50; step++ {
			now += rng.Int64N(2*p.t) - p.t/4 // sometimes backwards, as after a failover
			n := rng.Int64N(p.burst + 2)
			stored, write, want := gcra(tat, now, p, n)
			got, gotTAT := run(key, p, n, now)
			if write {
				tat = stored
			}
			if got != want || gotTAT != tat {
				t.Fatalf("%+v step %d (now %d, cost %d): script %+v TAT %d, Go %+v TAT %d", lim, step, now, n, got, gotTAT, want, tat)
			}
		}
	}
}

// A Redis that accepts connections but stops answering (here: SIGSTOP)
// costs a call no more than the client's read timeout.
func TestRedisStalled(t *testing.T) {
	srv := startRedis(t)
	s := NewRedis(srv.client(t), "stall:")
	ctx := context.Background()
	if _, err := s.Allow(ctx, "k", perHour3, 1); err != nil {
		t.Fatal(err)
	}
	srv.Stall()
	defer srv.Resume()
	for _, call := range []func() error{
		func() error { _, err := s.Allow(ctx, "k", perHour3, 1); return err },
		func() error { _, err := s.AllowMany(ctx, []Request{{"k", perHour3, 1}}); return err },
	} {
		start := time.Now()
		err := call()
		took := time.Since(start)
		if !errors.Is(err, ErrRedis) || took > 500*time.Millisecond {
			t.Errorf("with Redis stalled: %v after %v; want an ErrRedis within the 50ms read timeout", err, took)
		}
		t.Logf("%v after %v", err, took)
	}
}
