package counters

import (
	"context"
	"fmt"
	"hash/maphash"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

const (
	localShards = 64 // a power of two
	// sweepEvery is how often Local drops expired keys that nobody reads.
	sweepEvery = 5 * time.Second
)

// Local is a [Store] in process memory, for a gateway with no Redis. It is
// safe for concurrent use; keys are spread over 64 shards, each with its own
// mutex, so unrelated keys rarely contend. Expired keys are dropped when
// they are next touched and by a sweep every few seconds. Times come from
// the process's monotonic clock.
type Local struct {
	seed   maphash.Seed
	now    func() int64 // µs on a monotonic clock, from 1 so that no live TAT is 0; a fake one in tests
	shards [localShards]shard
	closed atomic.Bool
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
}

type shard struct {
	mu    sync.Mutex
	m     map[string]entry
	bytes int64    // what m's keys and entries take, roughly: at most shardBytes
	scan  int64    // when full: no look for expired keys before this time (µs)
	_     [32]byte // keep shards on separate cache lines
}

// shardBytes bounds a shard's keys and entries, so that clients sending a new key with
// every request (a limit per header value, say) cannot grow the process without end:
// 64 MiB for the store. A shard that is full, with nothing expired to drop, refuses new
// keys with ErrFull.
const shardBytes = 1 << 20

// entryBytes is what one key costs a shard: its bytes, the entry, the map's slot.
func entryBytes(key string) int64 { return int64(len(key)) + 64 }

// put stores e under key, which must be new to the shard or replace an entry, and reports
// false when the shard is full. The caller holds s.mu.
func (s *shard) put(key string, e entry, now int64) bool {
	if _, ok := s.m[key]; !ok {
		if s.bytes+entryBytes(key) > shardBytes {
			if now < s.scan {
				return false
			}
			// Full: drop what has expired, and when that frees nothing look again no
			// sooner than 100ms on, so that a flood of new keys costs no scan each.
			s.dropExpired(now)
			if s.bytes+entryBytes(key) > shardBytes {
				s.scan = now + 100_000
				return false
			}
		}
		s.bytes += entryBytes(key)
	}
	s.m[key] = e
	return true
}

func (s *shard) del(key string) {
	if _, ok := s.m[key]; ok {
		delete(s.m, key)
		s.bytes -= entryBytes(key)
	}
}

func (s *shard) dropExpired(now int64) {
	for k, e := range s.m {
		if !e.live(now) {
			s.del(k)
		}
	}
}

// entry is a counter, or the TAT of a rate limit (then exp == v).
type entry struct {
	v   int64
	exp int64 // µs on Local's clock; 0 means never
}

func (e entry) live(now int64) bool { return e.exp == 0 || e.exp > now }

var _ Store = (*Local)(nil)

// NewLocal returns an empty in-process store and starts its sweep; Close
// stops it.
func NewLocal() *Local { return newLocal(sweepEvery, monotonicMicros()) }

// newLocal is NewLocal with the sweep's period and the clock given. The sweep
// runs on a real ticker whatever the clock: it only decides when to look, and
// what has expired is decided by now.
func newLocal(every time.Duration, now func() int64) *Local {
	l := &Local{
		seed: maphash.MakeSeed(),
		now:  now,
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for i := range l.shards {
		l.shards[i].m = make(map[string]entry)
	}
	go l.sweepLoop(every)
	return l
}

// monotonicMicros returns a clock that reads microseconds since it was made,
// on the process's monotonic clock, starting at 1: the clock of Local and
// DenyCache.
func monotonicMicros() func() int64 {
	base := time.Now()
	return func() int64 { return time.Since(base).Microseconds() + 1 }
}

func (l *Local) shard(key string) *shard {
	return &l.shards[maphash.String(l.seed, key)&(localShards-1)]
}

// Incr implements [Store.Incr].
func (l *Local) Incr(_ context.Context, key string, delta int64, window time.Duration) (int64, error) {
	if err := checkWindow(window); err != nil {
		return 0, err
	}
	if l.closed.Load() {
		return 0, ErrClosed
	}
	now := l.now()
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok || !e.live(now) {
		e = entry{}
		if window > 0 {
			// Redis keeps whole milliseconds (PX); round the same way.
			e.exp = now + (window + time.Millisecond - 1).Truncate(time.Millisecond).Microseconds()
		}
	}
	if (delta > 0 && e.v > math.MaxInt64-delta) || (delta < 0 && e.v < math.MinInt64-delta) {
		return 0, ErrOverflow
	}
	e.v += delta
	if !s.put(key, e, now) {
		return 0, ErrFull
	}
	return e.v, nil
}

// Get implements [Store.Get].
func (l *Local) Get(_ context.Context, key string) (int64, bool, error) {
	if l.closed.Load() {
		return 0, false, ErrClosed
	}
	now := l.now()
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	if !ok {
		return 0, false, nil
	}
	if !e.live(now) {
		s.del(key)
		return 0, false, nil
	}
	return e.v, true, nil
}

// Allow implements [Store.Allow].
func (l *Local) Allow(_ context.Context, key string, limit Limit, cost int64) (Decision, error) {
	p, err := limit.params()
	if err != nil {
		return Decision{}, err
	}
	if err := checkCost(cost); err != nil {
		return Decision{}, err
	}
	if l.closed.Load() {
		return Decision{}, ErrClosed
	}
	return l.allow(key, p, cost)
}

func (l *Local) allow(key string, p params, cost int64) (Decision, error) {
	now := l.now()
	s := l.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.m[key]
	tat := int64(0)
	if ok && e.live(now) {
		tat = e.v
	}
	stored, write, m := gcra(tat, now, p, cost)
	if write {
		if !s.put(key, entry{v: stored, exp: stored}, now) {
			return Decision{}, ErrFull
		}
	} else if ok && !e.live(now) {
		s.del(key)
	}
	return m.decision(), nil
}

// AllowMany implements [Store.AllowMany]: the requests are decided one
// after the other, each at its own time. An invalid request fails the call
// before any is decided.
func (l *Local) AllowMany(_ context.Context, reqs []Request) ([]Decision, error) {
	ps := make([]params, len(reqs))
	for i, r := range reqs {
		p, err := r.Limit.params()
		if err != nil {
			return nil, err
		}
		if err := checkCost(r.Cost); err != nil {
			return nil, err
		}
		ps[i] = p
	}
	if l.closed.Load() {
		return nil, ErrClosed
	}
	out := make([]Decision, len(reqs))
	for i, r := range reqs {
		d, err := l.allow(r.Key, ps[i], r.Cost)
		if err != nil {
			// As Redis's pipeline: the decisions before it were made and recorded.
			return nil, fmt.Errorf("%w (key %q)", err, r.Key)
		}
		out[i] = d
	}
	return out, nil
}

// Close stops the sweep; it is safe to call more than once.
func (l *Local) Close() error {
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.stop)
		<-l.done
	})
	return nil
}

func (l *Local) sweepLoop(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.sweep()
		}
	}
}

// sweep drops every expired key, one shard at a time.
func (l *Local) sweep() {
	for i := range l.shards {
		s := &l.shards[i]
		now := l.now()
		s.mu.Lock()
		s.dropExpired(now)
		s.mu.Unlock()
	}
}

// len counts live and not-yet-swept keys, for tests.
func (l *Local) len() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}
