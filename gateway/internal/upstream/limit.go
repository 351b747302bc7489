package upstream

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// connLimit is a backend's circuit_breaker.max_connections over the pools of all its
// endpoints, and max_pending_requests over the requests waiting for a connection.
//
// A request that needs a connection when the backend has max open takes one that comes
// free: an idle connection of its own endpoint if one is put back, else it closes an idle
// connection of another endpoint to open its own. With none idle anywhere, it waits (as a
// pending request) until one is; a request beyond max_pending gets KindOverflow at once.
type connLimit struct {
	max, maxPending int
	overflows       *atomic.Int64

	mu      sync.Mutex
	open    int
	pools   map[*Pool]struct{}
	wake    chan struct{} // closed, and replaced, when a connection closes or goes idle
	pending atomic.Int32  // requests waiting
}

var errOverflow = errors.New("too many requests wait for a connection (circuit_breaker.max_pending_requests)")

func newConnLimit(maxConns, maxPending int, overflows *atomic.Int64) *connLimit {
	if maxConns <= 0 {
		return nil
	}
	return &connLimit{max: maxConns, maxPending: maxPending, overflows: overflows, pools: map[*Pool]struct{}{}, wake: make(chan struct{})}
}

func (l *connLimit) add(p *Pool) {
	l.mu.Lock()
	l.pools[p] = struct{}{}
	l.mu.Unlock()
}

// remove forgets p; its connections still count until they close.
func (l *connLimit) remove(p *Pool) {
	l.mu.Lock()
	delete(l.pools, p)
	l.mu.Unlock()
}

// take reserves a connection for a pool: true when it may dial one (release gives the place
// back when that connection closes); false, nil when the caller should look for an idle
// connection of its own again first; or an error when it may not wait (or ctx ended).
func (l *connLimit) take(ctx context.Context) (bool, error) {
	l.mu.Lock()
	if l.open < l.max {
		l.open++
		l.mu.Unlock()
		return true, nil
	}
	pools := make([]*Pool, 0, len(l.pools))
	for p := range l.pools {
		pools = append(pools, p)
	}
	l.mu.Unlock()
	// Full: an idle connection anywhere (the coldest one of a pool) makes room.
	for _, p := range pools {
		if c := p.popColdest(); c != nil {
			c.close()
			return false, nil
		}
	}
	l.mu.Lock()
	if l.open < l.max {
		l.mu.Unlock()
		return false, nil
	}
	if int(l.pending.Load()) >= l.maxPending {
		l.mu.Unlock()
		l.overflows.Add(1)
		return false, &Error{Kind: KindOverflow, Err: errOverflow}
	}
	l.pending.Add(1)
	w := l.wake
	l.mu.Unlock()
	defer l.pending.Add(-1)
	select {
	case <-w:
		return false, nil
	case <-ctx.Done():
		return false, ctxError(ctx)
	}
}

// release gives back a place when a connection closes.
func (l *connLimit) release() {
	l.mu.Lock()
	l.open--
	l.signal()
	l.mu.Unlock()
}

// idled tells waiters that a connection went idle.
func (l *connLimit) idled() {
	if l.pending.Load() == 0 {
		return
	}
	l.mu.Lock()
	l.signal()
	l.mu.Unlock()
}

func (l *connLimit) signal() {
	close(l.wake)
	l.wake = make(chan struct{})
}

// Open is the connections open under the limit.
func (l *connLimit) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}
