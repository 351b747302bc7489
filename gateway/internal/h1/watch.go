package h1

// Noticing a client that goes away while its handler works, without net/http's cost:
// net/http starts a background read for every request, so that a read error (the
// client closed or reset) cancels the request's context. Most requests are over
// before that could matter, so here one goroutine per Server sweeps the connections
// every sweepPeriod, and only a handler still running at two sweeps in a row gets its
// connection read in the background, once its request body is all in. The common
// path pays for setting and clearing conn.cur, and reading exchange.watch.

import (
	"fmt"
	"time"
)

// sweepPeriod is how often the sweeper looks at the connections, and so about how
// long a handler runs before its connection is watched: Envoy notices a client gone
// at once, net/http within a read; a quarter of a second is a bound a user will not
// notice, against nothing spent on requests shorter than that.
const sweepPeriod = 250 * time.Millisecond

// aLongTimeAgo is a read deadline in the past: the read waiting returns at once.
var aLongTimeAgo = time.Unix(1, 0)

// sweeper is the goroutine that sweeps a Server's connections.
type sweeper struct {
	stop chan struct{} // closed to end it
	done chan struct{} // closed when it ended
}

// startSweeperLocked starts the sweeper if none runs; s.mu is held.
func (s *Server) startSweeperLocked() {
	if s.sweep != nil {
		return
	}
	sw := &sweeper{stop: make(chan struct{}), done: make(chan struct{})}
	s.sweep = sw
	go s.sweepLoop(sw)
}

// stopSweeper ends the sweeper, if one runs, and waits for it. s.mu must not be held.
func (s *Server) stopSweeper() {
	s.mu.Lock()
	sw := s.sweep
	s.sweep = nil
	s.mu.Unlock()
	if sw != nil {
		close(sw.stop)
		<-sw.done
	}
}

// sweepLoop sweeps the connections until stopped, or until there are none (the next
// connection starts another sweeper).
func (s *Server) sweepLoop(sw *sweeper) {
	defer close(sw.done)
	t := time.NewTicker(sweepPeriod)
	defer t.Stop()
	var conns []*conn
	for {
		select {
		case <-sw.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		if len(s.conns) == 0 {
			if s.sweep == sw {
				s.sweep = nil
			}
			s.mu.Unlock()
			return
		}
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		for i, c := range conns {
			c.sweep()
			conns[i] = nil
		}
		conns = conns[:0]
	}
}

// sweep is the sweeper's look at c: a request found in its handler at two sweeps in a
// row has run for a sweep period at least, and its connection gets watched.
func (c *conn) sweep() {
	ex := c.cur.Load()
	if ex == nil || ex != c.seen {
		c.seen = ex
		return
	}
	if !ex.watched {
		ex.watched = c.startWatch(ex)
	}
}

// startWatch starts the background read of the connection of ex, if its handler
// still runs and may be watched; it reports whether that is settled (started, or
// never to be), false when a later sweep is to look again (the body is not all in).
func (c *conn) startWatch(ex *exchange) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if ex.noWatch {
		return true // hijacked, or reading the body in full duplex
	}
	if !ex.noBody && !ex.body.atEOF.Load() {
		// The handler may still read the body from br; a read past the body's
		// end would also take the next request's bytes for a sign of life.
		return false
	}
	// serveRequest clears cur and then reads watch; this sets watch and then reads
	// cur. Either it sees the handler still running, and serveRequest will see
	// watch and stop the read (waiting for wmu if need be), or it sees cur changed
	// and leaves the connection alone.
	ex.watch.Store(true)
	if c.cur.Load() != ex {
		return true
	}
	// From here to stopWatch, br is this goroutine's and the read's: the handler
	// is done with it (its body is all in, and Hijack waits for wmu).
	if c.br.Buffered() > 0 || len(c.cr.pre) > 0 {
		return true // the next request has begun: the client is there
	}
	done := make(chan struct{})
	c.watchDone = done
	c.srv.watches.Add(1)
	go c.backgroundRead(ex, done)
	return true
}

// backgroundRead waits for the connection's next bytes, into br, so that none is
// lost. Bytes mean the client is there (a pipelined request): they stay buffered for
// the serving goroutine. EOF or an error means it is gone, and the request's context
// is canceled, as net/http does. A timeout is stopWatch's, or the handler's deadline.
func (c *conn) backgroundRead(ex *exchange, done chan struct{}) {
	defer close(done)
	c.cr.bg = true
	_, err := c.br.Peek(1)
	c.cr.bg = false
	if err == nil || isTimeout(err) {
		return
	}
	ex.cancel(fmt.Errorf("h1: connection from %s: %w", c.remoteAddr, err))
}

// stopWatch ends the background read, if one runs, before the serving goroutine uses
// br again.
func (c *conn) stopWatch() {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.stopWatchLocked()
}

func (c *conn) stopWatchLocked() {
	done := c.watchDone
	if done == nil {
		return
	}
	c.watchDone = nil
	select {
	case <-done:
		return // it ended already, leaving the deadline as it was
	default:
	}
	c.rwc.SetReadDeadline(aLongTimeAgo)
	<-done
	c.rwc.SetReadDeadline(c.handlerRead)
}
