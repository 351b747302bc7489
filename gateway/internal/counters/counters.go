package counters

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Store keeps counters and makes rate-limit decisions. [Local] and [Redis]
// implement it with the same semantics; see the package documentation.
type Store interface {
	// Incr adds delta to key and returns the new value. A key created by
	// Incr expires window after its creation (a fixed window); window 0
	// means never.
	Incr(ctx context.Context, key string, delta int64, window time.Duration) (int64, error)
	// Get returns key's value, and false when it does not exist (or expired).
	Get(ctx context.Context, key string) (int64, bool, error)
	// Allow decides one request of the given cost against limit on key by
	// GCRA, and records it when allowed.
	Allow(ctx context.Context, key string, limit Limit, cost int64) (Decision, error)
	// AllowMany decides several requests in one round trip; the decisions
	// are in the order of reqs.
	AllowMany(ctx context.Context, reqs []Request) ([]Decision, error)
	// Close releases what the store holds; later calls return ErrClosed.
	Close() error
}

// Limit is Rate requests per Period, in bursts of up to Burst.
type Limit struct {
	Rate   int64
	Period time.Duration
	Burst  int64 // at least 1: the number of requests admitted at once from idle
}

// Request is one decision asked of [Store.AllowMany].
type Request struct {
	Key   string
	Limit Limit
	Cost  int64
}

// Decision is the outcome of one rate-limit request.
type Decision struct {
	Allowed bool
	// Remaining is how many more requests of cost 1 would be allowed now.
	Remaining int64
	// RetryAfter is how long until this request would be allowed: 0 when
	// allowed, negative when it never can be (its cost is above Burst).
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to a full burst.
	ResetAfter time.Duration
	// Cached is true when a [DenyCache] denied the request from what it
	// remembers, without asking the store; Remaining and the durations are
	// then computed from what the store last said about the key.
	Cached bool
}

var (
	// ErrInvalid is wrapped by errors about the arguments: a bad Limit, a
	// negative cost or window. Other errors mean the store failed.
	ErrInvalid = errors.New("counters: invalid argument")
	// ErrRedis is wrapped by every error that comes from Redis or from the
	// connection to it.
	ErrRedis = errors.New("counters: redis")
	// ErrClosed is returned by a store after Close.
	ErrClosed = errors.New("counters: store closed")
	// ErrOverflow is returned by Local when an increment would overflow int64
	// (Redis answers with an error too).
	ErrOverflow = errors.New("counters: increment would overflow")
	// ErrFull is returned by Local for a new key when its memory bound is
	// reached and no key has expired: the store is unavailable to that key,
	// as a store in Redis that cannot be reached is.
	ErrFull = errors.New("counters: in-process store full")
)

// maxSpan bounds L = Burst×T in microseconds, so that every time the Lua
// script handles (a Unix time in µs plus L) stays below 2^53, where Lua's
// doubles are exact integers.
const maxSpan = 1 << 50

// params are a Limit in the units both implementations compute in.
type params struct {
	t     int64 // emission interval, µs
	l     int64 // Burst×T, µs
	burst int64
}

func (lim Limit) params() (params, error) {
	if lim.Rate < 1 || lim.Period <= 0 || lim.Burst < 1 {
		return params{}, fmt.Errorf("%w: limit %+v: need Rate >= 1, Period > 0 and Burst >= 1", ErrInvalid, lim)
	}
	ns := int64(lim.Period) / lim.Rate
	if int64(lim.Period)%lim.Rate != 0 {
		ns++
	}
	t := (ns + 999) / 1000 // ceil(ceil(x)/1000) == ceil(x/1000)
	if lim.Burst > maxSpan/t {
		return params{}, fmt.Errorf("%w: limit %+v: Burst × Period/Rate is too long", ErrInvalid, lim)
	}
	return params{t: t, l: lim.Burst * t, burst: lim.Burst}, nil
}

func checkCost(cost int64) error {
	if cost < 0 {
		return fmt.Errorf("%w: negative cost %d", ErrInvalid, cost)
	}
	return nil
}

// maxWindow bounds a counter's window: Redis refuses an expiry whose time in ms overflows,
// and Local adds it to its clock.
const maxWindow = 100 * 365 * 24 * time.Hour

func checkWindow(window time.Duration) error {
	if window < 0 || window > maxWindow {
		return fmt.Errorf("%w: window %v: want 0 (never expires) up to 100 years", ErrInvalid, window)
	}
	return nil
}

// micros is a decision in microseconds, as the Lua script returns it.
type micros struct {
	allowed                 bool
	remaining, retry, reset int64
}

func (m micros) decision() Decision {
	return Decision{
		Allowed:    m.allowed,
		Remaining:  m.remaining,
		RetryAfter: time.Duration(m.retry) * time.Microsecond,
		ResetAfter: time.Duration(m.reset) * time.Microsecond,
	}
}

// gcra decides a request of cost n at now against the stored TAT (0 when
// the key is missing), and returns the TAT to store and whether to store it.
// gcra.lua is the same function, line for line; keep them together.
func gcra(tat, now int64, p params, n int64) (stored int64, write bool, m micros) {
	if tat < now {
		tat = now
	}
	remaining := func(s int64) int64 {
		r := (p.l - (s - now)) / p.t
		if r < 0 { // a smaller limit than the one TAT was stored under
			r = 0
		}
		return r
	}
	if n > p.burst {
		return tat, false, micros{remaining: remaining(tat), retry: -1, reset: tat - now}
	}
	next := tat + n*p.t
	if next-now > p.l {
		return tat, false, micros{remaining: remaining(tat), retry: next - p.l - now, reset: tat - now}
	}
	return next, n > 0, micros{allowed: true, remaining: remaining(next), reset: next - now}
}
