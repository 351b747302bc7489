package counters

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testredis"
)

// countingStore counts the calls that reach a store and keeps the keys
// AllowMany was asked about.
type countingStore struct {
	Store
	calls atomic.Int64
	mu    sync.Mutex
	keys  [][]string // per AllowMany call
}

func (s *countingStore) Allow(ctx context.Context, key string, limit Limit, cost int64) (Decision, error) {
	s.calls.Add(1)
	return s.Store.Allow(ctx, key, limit, cost)
}

func (s *countingStore) AllowMany(ctx context.Context, reqs []Request) ([]Decision, error) {
	s.calls.Add(1)
	keys := make([]string, len(reqs))
	for i, r := range reqs {
		keys[i] = r.Key
	}
	s.mu.Lock()
	s.keys = append(s.keys, keys)
	s.mu.Unlock()
	return s.Store.AllowMany(ctx, reqs)
}

func (s *countingStore) lastKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1]
}

// denyBackend is a store behind a DenyCache, with a count of the requests
// that reach it (calls for Local, round trips for Redis) and the clock it
// runs on, for the cache.
type denyBackend struct {
	name string
	make func(t *testing.T) (Store, func() int64, testClock)
}

func denyBackends(t *testing.T) []denyBackend {
	srv := startRedis(t)
	c := srv.client(t)
	hook := &testredis.RoundTrips{}
	c.AddHook(hook)
	return []denyBackend{
		{"local", func(t *testing.T) (Store, func() int64, testClock) {
			l, clock := fakeLocal(t)
			s := &countingStore{Store: l}
			return s, s.calls.Load, clock.clock()
		}},
		{"redis", func(t *testing.T) (Store, func() int64, testClock) {
			// The hook is shared: these subtests do not run in parallel.
			r := NewRedis(c, t.Name()+":")
			if _, err := r.Allow(context.Background(), "warm", perHour3, 1); err != nil { // loads the script
				t.Fatal(err)
			}
			hook.Reset()
			return r, hook.Total, realClock
		}},
	}
}

func TestDenyCache(t *testing.T) {
	for _, be := range denyBackends(t) {
		t.Run(be.name, func(t *testing.T) {
			t.Run("until retry after", func(t *testing.T) {
				s, reached, clk := be.make(t)
				c := newDenyCache(s, 0, clk.micros)
				ctx := context.Background()
				lim := Limit{Rate: 10, Period: 1000 * clk.unit, Burst: 2} // T = 100 units
				for i := 0; i < 2; i++ {
					if d, err := c.Allow(ctx, "k", lim, 1); err != nil || !d.Allowed || d.Cached {
						t.Fatalf("request %d: %+v, %v", i, d, err)
					}
				}
				d, err := c.Allow(ctx, "k", lim, 1)
				if err != nil || d.Allowed || d.Cached || reached() != 3 {
					t.Fatalf("the denial: %+v, %v, %d calls to the store; want it denied by the store", d, err, reached())
				}
				clk.checkDecision(t, "the denial", d, Decision{RetryAfter: 100 * clk.unit, ResetAfter: 200 * clk.unit})
				last := d
				for i := 0; i < 5; i++ {
					d, err := c.Allow(ctx, "k", lim, 1)
					if err != nil || d.Allowed || !d.Cached || d.Remaining != 0 ||
						d.RetryAfter <= 0 || d.RetryAfter > last.RetryAfter || d.ResetAfter-d.RetryAfter != last.ResetAfter-last.RetryAfter {
						t.Fatalf("cached denial %d: %+v, %v (after %+v)", i, d, err, last)
					}
					last = d
				}
				if n := reached(); n != 3 {
					t.Fatalf("%d calls reached the store, want the 3 before the denial", n)
				}
				// Another key is not denied.
				if d, err := c.Allow(ctx, "other", lim, 1); err != nil || !d.Allowed {
					t.Fatalf("another key: %+v, %v", d, err)
				}
				if n := reached(); n != 4 {
					t.Fatalf("%d calls reached the store, want 4", n)
				}

				clk.sleep(last.RetryAfter + 5*clk.unit)
				d, err = c.Allow(ctx, "k", lim, 1)
				if err != nil || !d.Allowed || d.Cached || reached() != 5 {
					t.Fatalf("after RetryAfter: %+v, %v, %d calls; want allowed by the store", d, err, reached())
				}
				// Denied again, from the cache at once: the allowed decision
				// raised what the cache remembers.
				if d, err := c.Allow(ctx, "k", lim, 1); err != nil || d.Allowed || !d.Cached || reached() != 5 {
					t.Fatalf("right after: %+v, %v, %d calls", d, err, reached())
				}
			})

			t.Run("costs", func(t *testing.T) {
				s, reached, clk := be.make(t)
				c := newDenyCache(s, 0, clk.micros)
				ctx := context.Background()
				lim := Limit{Rate: 1, Period: time.Hour, Burst: 5}
				h := time.Hour
				steps := []struct {
					cost   int64
					want   Decision
					cached bool
				}{
					{4, Decision{Allowed: true, Remaining: 1, ResetAfter: 4 * h}, false},
					{2, Decision{Remaining: 1, RetryAfter: h, ResetAfter: 4 * h}, false},
					// The same cost, and more: from the cache, as the store would say.
					{2, Decision{Remaining: 1, RetryAfter: h, ResetAfter: 4 * h}, true},
					{3, Decision{Remaining: 1, RetryAfter: 2 * h, ResetAfter: 4 * h}, true},
					{5, Decision{Remaining: 1, RetryAfter: 4 * h, ResetAfter: 4 * h}, true},
					// Above Burst: the store says never.
					{6, Decision{Remaining: 1, RetryAfter: -1, ResetAfter: 4 * h}, false},
					// 0 and what fits go to the store.
					{0, Decision{Allowed: true, Remaining: 1, ResetAfter: 4 * h}, false},
					{1, Decision{Allowed: true, Remaining: 0, ResetAfter: 5 * h}, false},
					// Now a unit cost is denied too.
					{1, Decision{Remaining: 0, RetryAfter: h, ResetAfter: 5 * h}, true},
				}
				calls := reached()
				for i, st := range steps {
					d, err := c.Allow(ctx, "k", lim, st.cost)
					if err != nil {
						t.Fatal(err)
					}
					what := fmt.Sprintf("step %d (cost %d)", i, st.cost)
					clk.checkDecision(t, what, d, st.want)
					n := reached()
					if d.Cached != st.cached || (n == calls) != st.cached {
						t.Fatalf("%s: cached %v, %d calls to the store; want cached %v", what, d.Cached, n-calls, st.cached)
					}
					calls = n
				}
				// A negative cost reaches the store, which refuses it.
				if _, err := c.Allow(ctx, "k", lim, -1); !errors.Is(err, ErrInvalid) {
					t.Fatalf("negative cost: %v", err)
				}
			})

			t.Run("allow many", func(t *testing.T) {
				s, reached, clk := be.make(t)
				c := newDenyCache(s, 0, clk.micros)
				ctx := context.Background()
				lim := Limit{Rate: 1, Period: time.Hour, Burst: 1}
				// hot is denied by the store in the batch and remembered.
				ds, err := c.AllowMany(ctx, []Request{{"hot", lim, 1}, {"hot", lim, 1}})
				if err != nil || !ds[0].Allowed || ds[1].Allowed || ds[1].Cached {
					t.Fatalf("first batch: %+v, %v", ds, err)
				}
				calls := reached()
				if calls != 1 {
					t.Fatalf("first batch: %d calls", calls)
				}
				if cs, ok := s.(*countingStore); ok {
					cs.keys = nil
				}
				ds, err = c.AllowMany(ctx, []Request{{"hot", lim, 1}, {"cold", lim, 1}, {"hot", lim, 1}, {"cold2", lim, 1}, {"cold", lim, 1}})
				if err != nil {
					t.Fatal(err)
				}
				got := make([]string, len(ds))
				for i, d := range ds {
					got[i] = fmt.Sprintf("%v/%v", d.Allowed, d.Cached)
				}
				want := []string{"false/true", "true/false", "false/true", "true/false", "false/false"}
				if !slices.Equal(got, want) {
					t.Fatalf("mixed batch: allowed/cached %v, want %v", got, want)
				}
				if n := reached() - calls; n != 1 {
					t.Fatalf("mixed batch: %d calls to the store, want 1", n)
				}
				if cs, ok := s.(*countingStore); ok {
					if keys := cs.lastKeys(); !slices.Equal(keys, []string{"cold", "cold2", "cold"}) {
						t.Fatalf("the store was asked about %q, want only the uncached requests", keys)
					}
				}
				// All cached: the store is not asked.
				calls = reached()
				ds, err = c.AllowMany(ctx, []Request{{"hot", lim, 1}, {"cold", lim, 1}, {"hot", lim, 1}})
				if err != nil || len(ds) != 3 || !ds[0].Cached || !ds[1].Cached || !ds[2].Cached {
					t.Fatalf("all cached: %+v, %v", ds, err)
				}
				if n := reached() - calls; n != 0 {
					t.Fatalf("all cached: %d calls to the store", n)
				}
				// An invalid request fails the batch, cached ones or not.
				if _, err := c.AllowMany(ctx, []Request{{"hot", lim, 1}, {"x", Limit{}, 1}}); !errors.Is(err, ErrInvalid) {
					t.Fatalf("invalid request in a batch: %v", err)
				}
				if ds, err := c.AllowMany(ctx, nil); err != nil || len(ds) != 0 {
					t.Fatalf("empty batch: %v, %v", ds, err)
				}
			})
		})
	}
}

// denyAll is a store that denies every request, with fixed durations.
type denyAll struct {
	Store
	retry, reset time.Duration
	calls        atomic.Int64
}

func (s *denyAll) Allow(_ context.Context, _ string, _ Limit, _ int64) (Decision, error) {
	s.calls.Add(1)
	return Decision{RetryAfter: s.retry, ResetAfter: s.reset}, nil
}

func TestDenyCacheBound(t *testing.T) {
	clock := &fakeClock{}
	clock.advance(1)
	store := &denyAll{retry: time.Second, reset: time.Second}
	c := newDenyCache(store, 10, clock.micros)
	ctx := context.Background()
	lim := Limit{Rate: 1, Period: time.Second, Burst: 1}
	deny := func(key string) Decision {
		t.Helper()
		d, err := c.Allow(ctx, key, lim, 1)
		if err != nil || d.Allowed {
			t.Fatalf("%s: %+v, %v", key, d, err)
		}
		return d
	}
	for i := 0; i < 20; i++ {
		deny(fmt.Sprint("a", i))
	}
	if n, size := c.len(), c.size.Load(); n != 10 || size != 10 {
		t.Fatalf("%d entries (size %d), want the bound, 10", n, size)
	}
	// The first ten are cached, the others were not.
	for i := 0; i < 20; i++ {
		if d := deny(fmt.Sprint("a", i)); d.Cached != (i < 10) {
			t.Fatalf("key a%d: cached %v", i, d.Cached)
		}
	}

	// Once they expire, a new denial sweeps them all away.
	clock.advance(time.Second)
	deny("b")
	if n := c.len(); n != 1 {
		t.Fatalf("after expiry and a sweep: %d entries, want 1", n)
	}
	for i := 0; i < 9; i++ {
		deny(fmt.Sprint("b", i))
	}
	// Full again, of live entries: a sweep frees nothing and is not even
	// tried; nothing is cached.
	clock.advance(200 * time.Millisecond)
	last := c.lastSweep.Load()
	deny("c")
	if n, d := c.len(), deny("c"); n != 10 || d.Cached || c.lastSweep.Load() != last {
		t.Fatalf("full of live entries: %d entries, %+v, swept %v", n, d, c.lastSweep.Load() != last)
	}
	// Entries that expire within denySweepGap of the last sweep wait for the
	// next one, or for a request on their key.
	clock.advance(time.Second)
	store.retry, store.reset = 50*time.Millisecond, 50*time.Millisecond
	deny("d") // sweeps: every b has expired
	for i := 0; i < 9; i++ {
		deny(fmt.Sprint("d", i))
	}
	clock.advance(60 * time.Millisecond) // all expired, 60ms after the sweep
	if d := deny("e"); c.len() != 10 || deny("e").Cached {
		t.Fatalf("a sweep within denySweepGap of the last: %d entries, %+v", c.len(), d)
	}
	store.retry, store.reset = time.Second, time.Second
	deny("d0") // expired, so dropped when touched; then denied again and cached
	clock.advance(50 * time.Millisecond)
	deny("f") // denySweepGap after the last sweep: d and d1..d8 go
	if n := c.len(); n != 2 {
		t.Fatalf("after denySweepGap: %d entries, want d0 and f", n)
	}
	if d := deny("d0"); !d.Cached {
		t.Fatalf("d0: %+v", d)
	}
}

// Many goroutines denying many keys at once, with the clock moving: the
// cache never holds more than its bound, and its count stays exact.
func TestDenyCacheHammer(t *testing.T) {
	clock := &fakeClock{}
	clock.advance(1)
	store := &denyAll{retry: 50 * time.Millisecond, reset: 50 * time.Millisecond}
	const max = 100
	c := newDenyCache(store, max, clock.micros)
	ctx := context.Background()
	lim := Limit{Rate: 20, Period: time.Second, Burst: 1}
	var wg sync.WaitGroup
	var cached atomic.Int64
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				clock.advance(time.Millisecond / 10)
				d, err := c.Allow(ctx, fmt.Sprint("k", (i*7+g*13)%300), lim, 1)
				if err != nil || d.Allowed {
					t.Errorf("%+v, %v", d, err)
					return
				}
				if d.Cached {
					cached.Add(1)
				}
				if n := c.size.Load(); n > max {
					t.Errorf("%d entries, over the bound %d", n, max)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n, size := c.len(), c.size.Load(); int64(n) != size || n > max {
		t.Fatalf("%d entries, size %d", n, size)
	}
	if cached.Load() == 0 || store.calls.Load() == 0 {
		t.Fatalf("%d cached, %d to the store", cached.Load(), store.calls.Load())
	}
	t.Logf("%d cached denials, %d from the store", cached.Load(), store.calls.Load())
}

// BenchmarkDenyCache is a denial of a key under attack: from the cache,
// against the same denial from Local and from Redis, in the same run.
func BenchmarkDenyCache(b *testing.B) {
	srv := startRedis(b)
	rc := srv.client(b)
	local := NewLocal()
	b.Cleanup(func() { local.Close() })
	ctx := context.Background()
	lim := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	for _, s := range []struct {
		name  string
		store Store
	}{
		{"local", local},
		{"redis", NewRedis(rc, "bench:")},
		{"cached", NewDenyCache(NewRedis(rc, "bench-cached:"), 0)},
	} {
		for _, k := range []string{"hot", "hot"} { // allowed, then denied
			if _, err := s.store.Allow(ctx, k, lim, 1); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, _ := s.store.Allow(ctx, "hot", lim, 1); d.Allowed {
					b.Fatal("allowed")
				}
			}
		})
		b.Run(s.name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(benchParallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if d, _ := s.store.Allow(ctx, "hot", lim, 1); d.Allowed {
						b.Error("allowed")
						return
					}
				}
			})
		})
	}
}

// Forget drops every entry: the next request on a denied key goes to the store.
func TestDenyCacheForget(t *testing.T) {
	local := NewLocal()
	defer local.Close()
	c := NewDenyCache(local, 0)
	lim := Limit{Rate: 1, Period: time.Hour, Burst: 1}
	ctx := context.Background()
	c.Allow(ctx, "k", lim, 1) // allowed
	c.Allow(ctx, "k", lim, 1) // denied by the store, and remembered
	if d, _ := c.Allow(ctx, "k", lim, 1); d.Allowed || !d.Cached {
		t.Fatalf("third request: %+v, want a cached denial", d)
	}
	c.Forget()
	if n := c.len(); n != 0 {
		t.Fatalf("%d entries after Forget", n)
	}
	if d, _ := c.Allow(ctx, "k", lim, 1); d.Allowed || d.Cached {
		t.Fatalf("after Forget: %+v, want the store's denial", d)
	}
}
