package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

var (
	// ErrPoolClosed is returned by Get on a closed pool.
	ErrPoolClosed = errors.New("runtime: pool closed")
	// ErrNoInstance is returned by Get when a failed instance may not be replaced yet
	// (restarts are rate-limited).
	ErrNoInstance = errors.New("runtime: no instance: restarts rate-limited after repeated failures")
	// ErrPoolFull is returned by Get when every instance is busy and as many callers as
	// the pool allows (MaxWaiting) are waiting already: the caller should be turned away
	// at once (the gateway answers 503).
	ErrPoolFull = errors.New("runtime: every instance busy and too many requests waiting")
)

// Pool is a bounded pool of instances: a mutex-protected LIFO of idle ones (the most
// recently used instance is the warmest in the CPU caches), at most Max live, and callers
// that find every instance busy wait in line, at most MaxWaiting of them: one more is
// turned away at once with ErrPoolFull, so that a pool stuck on a slow filter sheds load
// instead of piling up requests (issue 11, defect 1). A channel-based pool costs several
// times more under contention (DESIGN.md, "Where the time goes").
//
// An instance that failed is Discarded, never Put back; the next Get that needs an instance
// creates a fresh one, but such restarts take a token from Restarts, and Get fails with
// ErrNoInstance when there is none.
type Pool[T comparable] struct {
	New   func(context.Context) (T, error) // creates an instance
	Close func(T)                          // disposes of one
	Max   int
	// MaxWaiting bounds the callers waiting for an instance at once: 0 lets any number
	// wait, a negative value none (every instance busy means ErrPoolFull at once).
	MaxWaiting int
	Restarts   *Bucket // nil: restarts are not limited
	OnRestart  func()  // called when a failed instance is replaced; may be nil

	// waited, when set (by tests), is called with p.mu held each time a caller starts
	// waiting.
	waited func()

	mu       sync.Mutex
	idle     []T
	live     int // idle, in use, and being created
	inUse    int
	failed   int // discarded and not yet replaced
	restarts int
	waiters  []chan grant[T]
	woken    int // waiters told to try again that have not yet: still in line for MaxWaiting
	closed   bool
}

type grant[T any] struct {
	v     T
	retry bool // no instance handed over: a slot came free, try again
}

// PoolStats is a snapshot of a pool.
type PoolStats struct {
	Live, InUse, Idle, Restarts int
	Waiting                     int // callers waiting for an instance
}

// Get takes an idle instance, creates one if fewer than Max are live, or waits for one while
// ctx lives. It fails at once with ErrPoolFull when it would have to wait and MaxWaiting
// callers wait already; a wait that ctx ends fails with an error wrapping ctx.Err()
// (context.DeadlineExceeded past ctx's deadline), and the caller leaves the line.
func (p *Pool[T]) Get(ctx context.Context) (T, error) {
	var zero T
	woken := false // told a slot came free: back at the head of the line if it must wait again
	for {
		p.mu.Lock()
		if woken {
			p.woken--
		}
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
		if err := ctx.Err(); err != nil {
			p.mu.Unlock()
			return zero, waitError(err)
		}
		ch := make(chan grant[T], 1)
		switch {
		case woken:
			// A slot came free for this caller, and another took it first: it keeps its
			// place, and is not turned away from a line it was counted in all along.
			p.waiters = append(p.waiters, nil)
			copy(p.waiters[1:], p.waiters)
			p.waiters[0] = ch
		case p.MaxWaiting != 0 && len(p.waiters)+p.woken >= max(p.MaxWaiting, 0):
			p.mu.Unlock()
			return zero, ErrPoolFull
		default:
			p.waiters = append(p.waiters, ch)
		}
		if p.waited != nil {
			p.waited()
		}
		p.mu.Unlock()
		select {
		case g := <-ch:
			if !g.retry {
				return g.v, nil
			}
			woken = true
		case <-ctx.Done():
			p.mu.Lock()
			for i, w := range p.waiters {
				if w == ch {
					p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
					p.mu.Unlock()
					return zero, waitError(ctx.Err())
				}
			}
			p.mu.Unlock()
			// Something was handed to us as we gave up: pass it on.
			if g := <-ch; !g.retry {
				p.Put(g.v)
			} else {
				p.mu.Lock()
				p.woken--
				p.wakeLocked()
				p.mu.Unlock()
			}
			return zero, waitError(ctx.Err())
		}
	}
}

// waitError is the error of a Get whose ctx ended while it waited: it wraps ctx's error,
// so that callers tell a deadline (context.DeadlineExceeded) from a cancellation.
func waitError(err error) error {
	return fmt.Errorf("runtime: gave up waiting for an instance: %w", err)
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

// wakeLocked tells the first waiter, if any, that a slot came free. It stays counted
// against MaxWaiting (woken) until it has tried again.
func (p *Pool[T]) wakeLocked() {
	if len(p.waiters) > 0 {
		ch := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.woken++
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
	return PoolStats{Live: p.live, InUse: p.inUse, Idle: len(p.idle), Restarts: p.restarts, Waiting: len(p.waiters) + p.woken}
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
		p.woken++
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
