package counters

import (
	"context"
	"time"
)

// guarded is a Store whose calls go through a Breaker.
type guarded struct {
	s Store
	b *Breaker
}

// NewGuarded returns a [Store] that makes every call to s (Incr, Get,
// Allow, AllowMany) through b: while b is open, calls fail at once with
// [ErrBreakerOpen] instead of waiting for a Redis that is down. Close closes
// s. One breaker may guard several stores that share a Redis.
func NewGuarded(s Store, b *Breaker) Store { return &guarded{s: s, b: b} }

func (g *guarded) Incr(ctx context.Context, key string, delta int64, window time.Duration) (v int64, err error) {
	err = g.b.Do(func() (err error) {
		v, err = g.s.Incr(ctx, key, delta, window)
		return err
	})
	return v, err
}

func (g *guarded) Get(ctx context.Context, key string) (v int64, ok bool, err error) {
	err = g.b.Do(func() (err error) {
		v, ok, err = g.s.Get(ctx, key)
		return err
	})
	return v, ok, err
}

func (g *guarded) Allow(ctx context.Context, key string, limit Limit, cost int64) (d Decision, err error) {
	err = g.b.Do(func() (err error) {
		d, err = g.s.Allow(ctx, key, limit, cost)
		return err
	})
	return d, err
}

func (g *guarded) AllowMany(ctx context.Context, reqs []Request) (ds []Decision, err error) {
	err = g.b.Do(func() (err error) {
		ds, err = g.s.AllowMany(ctx, reqs)
		return err
	})
	return ds, err
}

func (g *guarded) Close() error { return g.s.Close() }
