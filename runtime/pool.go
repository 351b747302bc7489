package runtime

import (
	"context"
	"errors"
	"sync"
)

var (
	// ErrPoolClosed is returned by Get on a closed pool.
	ErrPoolClosed = errors.New("runtime: pool closed")
	// ErrNoInstance is returned by Get when a failed instance may not be replaced yet
	// (restarts are rate-limited).
	ErrNoInstance = errors.New("runtime: no instance: restarts rate-limited after repeated failures")
)

// Pool is a bounded pool of instances: a mutex-protected LIFO of idle ones (the most
// recently used instance is the warmest in the CPU caches), at most Max live, and callers
// that find every instance busy wait in line. A channel-based pool costs several times more
// under contention (DESIGN.md, "Where the time goes").
//
// An instance that failed is Discarded, never Put back; the next Get that needs an instance
// creates a fresh one, but such restarts take a token from Restarts, and Get fails with
// ErrNoInstance when there is none.
type Pool[T comparable] struct {
	New       func(context.Context) (T, error) // creates an instance
	Close     func(T)                          // disposes of one
	Max       int
	Restarts  *Bucket // nil: restarts are not limited
	OnRestart func()  // called when a failed instance is replaced; may be nil

	mu       sync.Mutex
	idle     []T
	live     int // idle, in use, and being created
	inUse    int
	failed   int // discarded and not yet replaced
	restarts int
	waiters  []chan grant[T]
	closed   bool
}

type grant[T any] struct {
	v     T
	retry bool // no instance handed over: a slot came free, try again
}

// PoolStats is a snapshot of a pool.
type PoolStats struct {
	Live, InUse, Idle, Restarts int
}

// Get takes an idle instance, creates one if fewer than Max are live, or waits for one while
// ctx lives.
func (p *Pool[T]) Get(ctx context.Context) (T, error) {
	var zero T
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return zero, ErrPoolClosed
		}
		if n := len(p.idle); n > 0 {
			v := p.idle[n-1]
			p.idle[n-1] = zero
			p.idle = p.idle[:n-1]
			p.inUse++
			p.mu.Unlock()
			return v, nil
		}
		if p.live < p.Max {
			return p.create(ctx) // unlocks
		}
		ch := make(chan grant[T], 1)
		p.waiters = append(p.waiters, ch)
		p.mu.Unlock()
		select {
		case g := <-ch:
			if !g.retry {
				return g.v, nil
			}
		case <-ctx.Done():
			p.mu.Lock()
			for i, w := range p.waiters {
				if w == ch {
					p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
					p.mu.Unlock()
					return zero, ctx.Err()
				}
			}
			p.mu.Unlock()
			// Something was handed to us as we gave up: pass it on.
			if g := <-ch; !g.retry {
				p.Put(g.v)
			} else {
				p.mu.Lock()
				p.wakeLocked()
				p.mu.Unlock()
			}
			return zero, ctx.Err()
		}
	}
}

// create is called with p.mu held and releases it.
func (p *Pool[T]) create(ctx context.Context) (T, error) {
	var zero T
	restart := p.failed > 0
	if restart {
		if p.Restarts != nil && !p.Restarts.Allow() {
			// The slot stays free: the next waiter must hear of it too, or it would wait
			// for an instance no one will put back.
			p.wakeLocked()
			p.mu.Unlock()
			return zero, ErrNoInstance
		}
		p.failed--
		p.restarts++
	}
	p.live++
	p.inUse++
	p.mu.Unlock()
	if restart && p.OnRestart != nil {
		p.OnRestart()
	}
	v, err := p.New(ctx)
	if err != nil {
		p.mu.Lock()
		p.live--
		p.inUse--
		if restart {
			p.failed++ // the replacement failed too: the next try is a restart again
		}
		p.wakeLocked()
		p.mu.Unlock()
		return zero, err
	}
	return v, nil
}

// wakeLocked tells the first waiter, if any, that a slot came free.
func (p *Pool[T]) wakeLocked() {
	if len(p.waiters) > 0 {
		ch := p.waiters[0]
		p.waiters = p.waiters[1:]
		ch <- grant[T]{retry: true}
	}
}

// Put returns a healthy instance: to the first waiter, or to the idle list.
func (p *Pool[T]) Put(v T) {
	p.mu.Lock()
	if p.closed {
		p.live--
		p.inUse--
		p.mu.Unlock()
		p.Close(v)
		return
	}
	if len(p.waiters) > 0 {
		ch := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		ch <- grant[T]{v: v}
		return
	}
	p.idle = append(p.idle, v)
	p.inUse--
	p.mu.Unlock()
}

// Discard disposes of an instance that failed; it is replaced on demand.
func (p *Pool[T]) Discard(v T) {
	p.mu.Lock()
	p.live--
	p.inUse--
	if !p.closed {
		p.failed++
		p.wakeLocked()
	}
	p.mu.Unlock()
	p.Close(v)
}

// Remove disposes of an instance that is not failed but must go (its owner closes).
func (p *Pool[T]) Remove(v T) {
	p.mu.Lock()
	p.live--
	p.inUse--
	p.wakeLocked()
	p.mu.Unlock()
	p.Close(v)
}

// TakeIdle takes v out of the idle list, if it is there, for the caller to use (to deliver
// a timer or a callout to it) and Put back.
func (p *Pool[T]) TakeIdle(v T) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.idle) - 1; i >= 0; i-- {
		if p.idle[i] == v {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			p.inUse++
			return true
		}
	}
	return false
}

// Stats is a snapshot of the pool's counts.
func (p *Pool[T]) Stats() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PoolStats{Live: p.live, InUse: p.inUse, Idle: len(p.idle), Restarts: p.restarts}
}

// Shutdown closes idle instances now and every busy one when it is Put back; Get fails
// from now on. It reports whether no instance is live any more.
func (p *Pool[T]) Shutdown() bool {
	p.mu.Lock()
	if p.closed {
		done := p.live == 0
		p.mu.Unlock()
		return done
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.live -= len(idle)
	for _, ch := range p.waiters {
		ch <- grant[T]{retry: true}
	}
	p.waiters = nil
	done := p.live == 0
	p.mu.Unlock()
	for _, v := range idle {
		p.Close(v)
	}
	return done
}

// Live is the number of live instances.
func (p *Pool[T]) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.live
}

// ErrPoolFull is returned by Get when every instance is busy and as many callers as the
// pool allows are waiting already: the caller should be turned away at once.
var ErrPoolFull = errors.New("runtime: every instance busy and too many requests waiting")
