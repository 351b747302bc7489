package counters

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	denyShards = 64 // a power of two
	// denyMax is a DenyCache's default bound: 64Ki keys, a few MiB.
	denyMax = 1 << 16
	// denySweepGap is the least time between two sweeps of a full cache, in
	// µs: under an attack on more keys than the cache holds, entries expire
	// one by one, and a sweep of every entry for each would cost O(max)
	// per denial.
	denySweepGap = 100_000
)

// DenyCache is a [Store] that remembers the keys its store denied, so that
// a key under attack is denied in process, without a round trip to Redis for
// each request, until a request of its cost could pass. Incr and Get, and
// every request the cache cannot deny on its own, go to the store. See the
// package documentation for what is remembered and why a denial from the
// cache is always one the store would have made.
//
// It holds at most max keys, spread over 64 shards like [Local]'s. An entry
// expires when its key would be back to a full burst; expired entries are
// dropped when touched, and all at once when the cache is full.
type DenyCache struct {
	s      Store
	max    int64
	seed   maphash.Seed
	now    func() int64 // µs on a monotonic clock, from 1; a fake one in tests
	closed atomic.Bool
	size   atomic.Int64 // entries in the shards, at most max

	// sweepAt is at most the earliest expiry of an entry: a sweep before it
	// would free nothing. lastSweep and sweeping keep sweeps apart and one
	// at a time.
	sweepAt   atomic.Int64
	lastSweep atomic.Int64
	sweeping  atomic.Bool

	shards [denyShards]denyShard
}

type denyShard struct {
	mu sync.Mutex
	// m maps a key to a lower bound of its TAT, in µs on the cache's clock.
	m map[string]int64
	_ [48]byte // keep shards on separate cache lines
}

var _ Store = (*DenyCache)(nil)

// NewDenyCache returns a cache of s's denials holding at most max keys; max
// 0 (or less) means 65536. Close closes s.
func NewDenyCache(s Store, max int) *DenyCache {
	return newDenyCache(s, max, monotonicMicros())
}

func newDenyCache(s Store, max int, now func() int64) *DenyCache {
	if max <= 0 {
		max = denyMax
	}
	c := &DenyCache{s: s, max: int64(max), seed: maphash.MakeSeed(), now: now}
	c.sweepAt.Store(math.MaxInt64) // no entry: nothing to sweep
	c.lastSweep.Store(math.MinInt64 / 2)
	for i := range c.shards {
		c.shards[i].m = make(map[string]int64)
	}
	return c
}

func (c *DenyCache) shard(key string) *denyShard {
	return &c.shards[maphash.String(c.seed, key)&(denyShards-1)]
}

// cached decides a request at now if the key's remembered TAT is enough to
// deny it. A cost of 0 or above Burst always goes to the store: the first is
// always allowed, the second is denied forever, which the store says.
func (c *DenyCache) cached(key string, limit Limit, cost, now int64) (Decision, bool) {
	if cost < 1 || c.size.Load() == 0 {
		return Decision{}, false
	}
	s := c.shard(key)
	s.mu.Lock()
	tat, ok := s.m[key]
	if ok && tat <= now {
		delete(s.m, key)
		c.size.Add(-1)
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		return Decision{}, false
	}
	p, err := limit.params()
	if err != nil || cost > p.burst {
		return Decision{}, false
	}
	if _, _, m := gcra(tat, now, p, cost); !m.allowed {
		d := m.decision()
		d.Cached = true
		return d, true
	}
	return Decision{}, false
}

// learn updates the cache with the store's decision on key, asked at start.
// The store decided at some time after start, so start + ResetAfter is at
// most the key's TAT, on this cache's clock, and stays so: a TAT only grows,
// until it is in the past and the key expires. A denial (that can ever pass)
// remembers the key; an allowed decision only raises the bound of a key
// already remembered, so that a key under attack, allowed once every T,
// costs one round trip per T rather than two.
func (c *DenyCache) learn(key string, d Decision, start int64) {
	tat := start + d.ResetAfter.Microseconds()
	switch {
	case !d.Allowed && d.RetryAfter > 0:
		c.remember(key, tat, start)
	case d.Allowed && c.size.Load() != 0:
		s := c.shard(key)
		s.mu.Lock()
		if old, ok := s.m[key]; ok && tat > old {
			s.m[key] = tat
		}
		s.mu.Unlock()
	}
}

func (c *DenyCache) remember(key string, tat, now int64) {
	if tat <= now {
		return
	}
	s := c.shard(key)
	for swept := false; ; swept = true {
		s.mu.Lock()
		old, ok := s.m[key]
		if ok || c.reserve() {
			if tat > old { // both are lower bounds: keep the higher
				s.m[key] = tat
			}
			s.mu.Unlock()
			c.lowerSweepAt(tat)
			return
		}
		s.mu.Unlock()
		// Full: the sweep locks every shard, so not under s.mu.
		if swept || !c.sweep(now) {
			return
		}
	}
}

// reserve takes a place for a new entry, if there is one.
func (c *DenyCache) reserve() bool {
	for {
		n := c.size.Load()
		if n >= c.max {
			return false
		}
		if c.size.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (c *DenyCache) lowerSweepAt(t int64) {
	for {
		cur := c.sweepAt.Load()
		if t >= cur || c.sweepAt.CompareAndSwap(cur, t) {
			return
		}
	}
}

// sweep drops every expired entry, if an entry may have expired and the
// last sweep was long enough ago; it reports whether it ran.
func (c *DenyCache) sweep(now int64) bool {
	if now < c.sweepAt.Load() || now < c.lastSweep.Load()+denySweepGap || !c.sweeping.CompareAndSwap(false, true) {
		return false
	}
	defer c.sweeping.Store(false)
	c.lastSweep.Store(now)
	// Entries added from here on lower sweepAt themselves.
	c.sweepAt.Store(math.MaxInt64)
	earliest := int64(math.MaxInt64)
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, tat := range s.m {
			if tat <= now {
				delete(s.m, k)
				c.size.Add(-1)
			} else {
				earliest = min(earliest, tat)
			}
		}
		s.mu.Unlock()
	}
	c.lowerSweepAt(earliest)
	return true
}

// Allow implements [Store.Allow]: from the cache when it can deny the
// request (Decision.Cached), else from the store.
func (c *DenyCache) Allow(ctx context.Context, key string, limit Limit, cost int64) (Decision, error) {
	if c.closed.Load() {
		return Decision{}, ErrClosed
	}
	now := c.now()
	if d, ok := c.cached(key, limit, cost, now); ok {
		return d, nil
	}
	d, err := c.s.Allow(ctx, key, limit, cost)
	if err == nil {
		c.learn(key, d, now)
	}
	return d, err
}

// AllowMany implements [Store.AllowMany]: the requests the cache cannot
// deny go to the store in one call, none when it can deny them all.
// Skipping a denial changes nothing for the requests after it, as a denial
// records nothing.
func (c *DenyCache) AllowMany(ctx context.Context, reqs []Request) ([]Decision, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	now := c.now()
	var out []Decision // made at the first cached decision
	hits := 0
	for i, r := range reqs {
		if d, ok := c.cached(r.Key, r.Limit, r.Cost, now); ok {
			if out == nil {
				out = make([]Decision, len(reqs))
			}
			out[i] = d
			hits++
		}
	}
	if hits == 0 {
		ds, err := c.s.AllowMany(ctx, reqs)
		if err == nil {
			for i, d := range ds {
				c.learn(reqs[i].Key, d, now)
			}
		}
		return ds, err
	}
	if hits == len(reqs) {
		return out, nil
	}
	rest := make([]Request, 0, len(reqs)-hits)
	at := make([]int, 0, len(reqs)-hits) // rest[j] is reqs[at[j]]
	for i, r := range reqs {
		if !out[i].Cached {
			rest = append(rest, r)
			at = append(at, i)
		}
	}
	ds, err := c.s.AllowMany(ctx, rest)
	if err != nil {
		return nil, err
	}
	for j, d := range ds {
		out[at[j]] = d
		c.learn(rest[j].Key, d, now)
	}
	return out, nil
}

// Incr implements [Store.Incr] with the store's.
func (c *DenyCache) Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error) {
	return c.s.Incr(ctx, key, delta, window)
}

// Get implements [Store.Get] with the store's.
func (c *DenyCache) Get(ctx context.Context, key string) (int64, bool, error) {
	return c.s.Get(ctx, key)
}

// Close closes the store; later calls return ErrClosed.
func (c *DenyCache) Close() error {
	c.closed.Store(true)
	return c.s.Close()
}

// Forget drops every entry: for when the store may have lost what the cache remembers
// of it (Redis back after a failure: restarted without persistence, failed over to a
// replica that lagged), so that no key stays denied on the strength of a TAT that is gone.
func (c *DenyCache) Forget() {
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		c.size.Add(-int64(len(s.m)))
		clear(s.m)
		s.mu.Unlock()
	}
}

// len counts the entries, expired or not, for tests.
func (c *DenyCache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
