package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Pool. Zero values get the documented defaults.
type Options struct {
	DialTimeout time.Duration // default 2s
	// MaxIdle is how many idle keep-alive connections the pool keeps; default 128.
	// A negative value keeps none: every connection is closed after its request.
	MaxIdle int
	// IdleTimeout: an idle connection older than this is closed, not reused; default
	// 60s. Keep it below the backend's own keep-alive timeout, so that the pool rather
	// than the server ends a quiet connection.
	IdleTimeout time.Duration
	// TLS, when non-nil, makes the pool dial TLS. The pool uses a clone with NextProtos
	// forced to http/1.1 (this client speaks nothing else) and ServerName defaulting
	// to the host part of the address.
	TLS *tls.Config
	// MaxResponseHeaderBytes bounds a response header block; default 64 KiB. A bigger
	// one fails the attempt with KindProtocol.
	MaxResponseHeaderBytes int

	limit *connLimit // the backend's max_connections over all its pools; nil: none
}

const (
	defaultDialTimeout = 2 * time.Second
	defaultMaxIdle     = 128
	defaultIdleTimeout = 60 * time.Second
	defaultMaxHeader   = 64 << 10

	// Both buffers live as long as the connection. 4 KiB holds a typical request or
	// response header whole, so a bodyless round trip is one write and one read.
	readBufSize  = 4 << 10
	writeBufSize = 4 << 10
)

// Stats is a snapshot of a pool's connections.
type Stats struct {
	Open int // connections open: idle, in use, or handed over by a 101 response
	Idle int // of those, idle in the pool
}

// Pool holds keep-alive HTTP/1.1 connections to one endpoint address ("host:port").
// It is safe for concurrent use.
type Pool struct {
	addr        string
	dialer      net.Dialer
	tls         *tls.Config
	maxIdle     int
	idleTimeout time.Duration
	maxHeader   int64
	limit       *connLimit

	mu     sync.Mutex
	idle   []*conn // a stack: the most recently used connection is the warmest
	open   int
	closed bool
}

// NewPool returns a pool for addr. It dials nothing until the first request.
func NewPool(addr string, o Options) *Pool {
	p := &Pool{
		addr:        addr,
		maxIdle:     o.MaxIdle,
		idleTimeout: o.IdleTimeout,
		maxHeader:   int64(o.MaxResponseHeaderBytes),
		limit:       o.limit,
	}
	if p.limit != nil {
		p.limit.add(p)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = defaultDialTimeout
	}
	p.dialer = net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	switch {
	case p.maxIdle == 0:
		p.maxIdle = defaultMaxIdle
	case p.maxIdle < 0:
		p.maxIdle = 0
	}
	if p.idleTimeout <= 0 {
		p.idleTimeout = defaultIdleTimeout
	}
	if p.maxHeader <= 0 {
		p.maxHeader = defaultMaxHeader
	}
	if o.TLS != nil {
		p.tls = o.TLS.Clone()
		if p.tls.ServerName == "" {
			if host, _, err := net.SplitHostPort(addr); err == nil {
				p.tls.ServerName = host
			}
		}
		p.tls.NextProtos = []string{"http/1.1"}
	}
	return p
}

// Addr returns the endpoint address the pool dials.
func (p *Pool) Addr() string { return p.addr }

// Stats reports the pool's connections now.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Open: p.open, Idle: len(p.idle)}
}

// Close closes the idle connections. Connections in use close when their request
// ends instead of returning to the pool. The pool still serves requests afterwards,
// on connections it dials and closes per request, so that a request racing a
// configuration reload does not fail.
func (p *Pool) Close() {
	if p.limit != nil {
		p.limit.remove(p)
	}
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// get returns an idle connection, or dials one. fresh skips the idle stack: a retry
// after a dead idle connection must not pick another that died the same way.
//
// Under the backend's max_connections, a connection to dial waits for a place (connLimit).
func (p *Pool) get(ctx context.Context, fresh bool) (*conn, error) {
	for {
		if !fresh {
			if c := p.pop(); c != nil {
				return c, nil
			}
		}
		if p.limit == nil {
			return p.dial(ctx)
		}
		ok, err := p.limit.take(ctx)
		if err != nil {
			return nil, err
		}
		if ok {
			c, err := p.dial(ctx)
			if err != nil {
				p.limit.release()
			}
			return c, err
		}
		fresh = false // a connection came free: an idle one of ours will do now
	}
}

// popColdest takes the pool's least recently used idle connection, nil when none is idle.
func (p *Pool) popColdest() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) == 0 {
		return nil
	}
	c := p.idle[0]
	copy(p.idle, p.idle[1:])
	p.idle[len(p.idle)-1] = nil
	p.idle = p.idle[:len(p.idle)-1]
	return c
}

func (p *Pool) pop() *conn {
	var now time.Time
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.IsZero() {
			now = time.Now()
		}
		if now.Sub(c.idleAt) <= p.idleTimeout {
			return c
		}
		c.close()
	}
}

// put returns a connection whose exchange ended cleanly to the idle stack.
func (p *Pool) put(c *conn) {
	if c.br.Buffered() > 0 {
		// Bytes nobody asked for: the stream is out of step with our requests.
		c.close()
		return
	}
	now := time.Now()
	c.idleAt = now
	c.reused = true
	var stale *conn
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.maxIdle {
		p.mu.Unlock()
		c.close()
		return
	}
	// The bottom of the stack is the coldest connection. Without a janitor goroutine
	// nothing else would ever close it while traffic keeps the top busy, so retire
	// one expired connection per put.
	if len(p.idle) > 0 && now.Sub(p.idle[0].idleAt) > p.idleTimeout {
		stale = p.idle[0]
		copy(p.idle, p.idle[1:])
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
	if stale != nil {
		stale.close()
	}
	if p.limit != nil {
		p.limit.idled()
	}
}

func (p *Pool) dial(ctx context.Context) (*conn, error) {
	nc, err := p.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx)
		}
		return nil, &Error{Kind: KindConnect, Err: err}
	}
	if p.tls != nil {
		tc := tls.Client(nc, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			if ctx.Err() != nil {
				return nil, ctxError(ctx)
			}
			return nil, &Error{Kind: KindConnect, Err: err}
		}
		if proto := tc.ConnectionState().NegotiatedProtocol; proto != "" && proto != "http/1.1" {
			nc.Close()
			return nil, &Error{Kind: KindConnect, Err: errBadALPN}
		}
		nc = tc
	}
	c := &conn{p: p, nc: nc, writeDone: make(chan error, 1)}
	c.br = bufio.NewReaderSize(c, readBufSize)
	c.bw = bufio.NewWriterSize(nc, writeBufSize)
	c.abort = c.close
	p.mu.Lock()
	p.open++
	p.mu.Unlock()
	return c, nil
}

// conn is one connection and everything that lives as long as it does.
type conn struct {
	p  *Pool
	nc net.Conn
	br *bufio.Reader // reads through conn.Read, for the header limit and byte count
	bw *bufio.Writer

	// abort is c.close as a func value made once, so that arming context.AfterFunc
	// per request does not allocate a fresh method value.
	abort func()

	closed atomic.Bool
	reused bool // served a request before; only such a conn may be silently retried
	idleAt time.Time

	// Read accounting, touched only by the goroutine reading responses.
	nread   int64 // bytes read from nc, ever
	limited bool
	budget  int64 // bytes nc may still deliver while limited
	readErr error // the last error from nc.Read, to tell a truncated header from a malformed one

	// Request body streaming. writing is owned by the reading side: it is set when
	// the body goroutine starts and cleared when its result is received.
	writing    bool
	body       bodySpec
	bodyState  atomic.Int32 // bodyUntouched, bodyWriter or bodyReclaimed
	writeDone  chan error   // the body goroutine's result; capacity 1, reused
	reqBodyErr atomic.Pointer[Error]
}

const (
	bodyUntouched int32 = iota
	bodyWriter          // the body goroutine owns req.Body: it reads and closes it
	bodyReclaimed       // RoundTrip took req.Body back before the goroutine read any of it
)

// Read is what c.br reads from. While a response header is being read it caps the
// bytes taken from the socket, so a hostile backend cannot grow the header without
// bound, and it counts bytes so that RoundTrip knows whether any response arrived.
func (c *conn) Read(b []byte) (int, error) {
	if c.limited {
		if c.budget <= 0 {
			return 0, errHeaderTooLarge
		}
		if int64(len(b)) > c.budget {
			b = b[:c.budget]
		}
	}
	n, err := c.nc.Read(b)
	c.nread += int64(n)
	c.budget -= int64(n)
	if err != nil {
		c.readErr = err
	}
	return n, err
}

// close closes the connection once, whoever gets there first: the request's context
// (through AfterFunc), the body goroutine, or the reading side.
func (c *conn) close() {
	if c.closed.Swap(true) {
		return
	}
	c.nc.Close()
	c.p.mu.Lock()
	c.p.open--
	c.p.mu.Unlock()
	if c.p.limit != nil {
		c.p.limit.release()
	}
}
