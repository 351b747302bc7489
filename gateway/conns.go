package gateway

// A listener's connections, where HTTP/1.1 is one of its protocols: the gateway accepts
// them itself and serves HTTP/1.1 with its own server (internal/h1), which costs less per
// request than net/http's (no goroutine nor read syscall of its own per request, no
// textproto: issue 18); HTTP/2 goes to the HTTP/2 server behind the h2 guard, as before.
// Which one a connection speaks is what net/http would decide: over TLS, the protocol
// ALPN negotiated; in the clear, the HTTP/2 client preface (h2c with prior knowledge) or
// anything else.

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/plexus-mesh/plexus/gateway/internal/h1"
	"github.com/plexus-mesh/plexus/gateway/internal/l4"
	"github.com/plexus-mesh/plexus/gateway/internal/stream"
)

// connServer serves one listener's TCP connections.
type connServer struct {
	h1      *h1.Server
	h2      *http.Server // its TLSNextProto serves HTTP/2 through the guard (guardH2)
	handler http.Handler
	tls     *tls.Config // nil: in the clear
	h2c     bool        // in the clear: the HTTP/2 preface means h2c
	log     *slog.Logger
	// handshake bounds a TLS handshake and, in the clear, the wait for the bytes that say
	// which protocol the client speaks.
	handshake time.Duration

	mu      sync.Mutex
	ln      net.Listener
	pending map[net.Conn]struct{} // accepted, protocol not yet known, or served as HTTP/2
	closed  bool
	wg      sync.WaitGroup
}

// newConnServer is the server of connections for srv's listener, whose TLS config, if
// any, is tlsConf. srv must have been through guardH2 when it serves HTTP/2.
func newConnServer(srv *http.Server, tlsConf *tls.Config, log *slog.Logger) *connServer {
	p := srv.Protocols
	cs := &connServer{
		h2:        srv,
		handler:   srv.Handler,
		h2c:       p.UnencryptedHTTP2(),
		log:       log,
		handshake: srv.ReadHeaderTimeout,
		pending:   map[net.Conn]struct{}{},
	}
	if cs.handshake <= 0 {
		cs.handshake = 10 * time.Second
	}
	if tlsConf != nil {
		cs.tls = tlsConf.Clone()
		cs.tls.NextProtos = nil
		if p.HTTP2() {
			cs.tls.NextProtos = append(cs.tls.NextProtos, http2.NextProtoTLS)
		}
		cs.tls.NextProtos = append(cs.tls.NextProtos, "http/1.1")
	}
	cs.h1 = &h1.Server{
		Handler:           srv.Handler,
		MaxHeaderBytes:    srv.MaxHeaderBytes,
		ReadHeaderTimeout: srv.ReadHeaderTimeout,
		IdleTimeout:       srv.IdleTimeout,
		ConnContext:       func(ctx context.Context, _ net.Conn) context.Context { return stream.ConnContext(ctx) }, // h1 sets the local address
		Log:               log,
	}
	return cs
}

// connContext is an HTTP/2 connection's context as net/http makes it for the stream
// stage: its local address (the request's destination.address) and its connection.id.
func connContext(ctx context.Context, c net.Conn) context.Context {
	return stream.ConnContext(context.WithValue(ctx, http.LocalAddrContextKey, c.LocalAddr()))
}

// Serve accepts connections on ln until Shutdown or Close, and returns
// http.ErrServerClosed then.
func (cs *connServer) Serve(ln net.Listener) error {
	cs.mu.Lock()
	if cs.closed {
		cs.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	cs.ln = ln
	cs.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			cs.mu.Lock()
			closed := cs.closed
			cs.mu.Unlock()
			if closed {
				return http.ErrServerClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Out of file descriptors, or the like: wait and try again, as net/http
			// does, rather than spin or stop serving.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			cs.log.Warn("accept failed; retrying", "error", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !cs.hold(c) {
			c.Close()
			continue
		}
		go cs.serveConn(c)
	}
}

// hold counts c among the connections Shutdown waits for; false once the server closed.
func (cs *connServer) hold(c net.Conn) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	cs.pending[c] = struct{}{}
	cs.wg.Add(1)
	return true
}

func (cs *connServer) release(c net.Conn) {
	cs.mu.Lock()
	delete(cs.pending, c)
	cs.mu.Unlock()
	cs.wg.Done()
}

// serveConn finds out which protocol c speaks and serves it.
func (cs *connServer) serveConn(c net.Conn) {
	defer cs.release(c)
	c.SetDeadline(time.Now().Add(cs.handshake))
	if cs.tls != nil {
		tc := tls.Server(c, cs.tls)
		if err := tc.Handshake(); err != nil {
			cs.log.Debug("TLS handshake failed", "remote", c.RemoteAddr(), "error", err)
			c.Close()
			return
		}
		c.SetDeadline(time.Time{})
		if tc.ConnectionState().NegotiatedProtocol == http2.NextProtoTLS {
			cs.serveH2(http2.NextProtoTLS, tc, tc)
			return
		}
		cs.unhold(c)
		cs.h1.ServeConn(tc, nil)
		return
	}
	if !cs.h2c {
		c.SetDeadline(time.Time{})
		cs.unhold(c)
		cs.h1.ServeConn(c, nil)
		return
	}
	buf, h2 := cs.preface(c)
	if buf == nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if h2 {
		// The guard's h2c path takes the connection as net/http hands it over: wrapped
		// in a *tls.Conn that is none, the preface read.
		rest := buf[len(http2.ClientPreface):]
		cs.serveH2(unencryptedHTTP2, tls.Client(plainConn{l4.Prefixed(c, rest)}, &tls.Config{}), c)
		return
	}
	cs.unhold(c)
	cs.h1.ServeConn(c, buf)
}

// unhold leaves c to the HTTP/1.1 server, which closes it on Shutdown itself: Shutdown
// still waits for serveConn to return.
func (cs *connServer) unhold(c net.Conn) {
	cs.mu.Lock()
	delete(cs.pending, c)
	cs.mu.Unlock()
}

// preface reads from c until its first bytes are the HTTP/2 client preface (h2 true),
// cannot be (h2 false), or c fails (nil): the bytes read so far, to be served first. An
// HTTP/1.1 request differs from the preface at its first byte ("PRI * HTTP/2.0"): it is
// handed on after the first read.
func (cs *connServer) preface(c net.Conn) (buf []byte, h2 bool) {
	want := []byte(http2.ClientPreface)
	buf = make([]byte, 0, 4096)
	for {
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		k := min(len(buf), len(want))
		if !bytes.Equal(buf[:k], want[:k]) {
			if len(buf) == 0 {
				return nil, false
			}
			return buf, false
		}
		if len(buf) >= len(want) {
			return buf, true
		}
		if err != nil {
			return nil, false
		}
	}
}

// serveH2 serves an HTTP/2 connection through the server's TLSNextProto entry proto
// (the guard); raw is the accepted connection, closed by Close.
func (cs *connServer) serveH2(proto string, tc *tls.Conn, raw net.Conn) {
	serve := cs.h2.TLSNextProto[proto]
	if serve == nil {
		raw.Close()
		return
	}
	serve(cs.h2, tc, baseContextHandler{cs.handler, connContext(context.Background(), raw)})
}

// baseContextHandler hands the HTTP/2 server a connection's base context, as net/http's
// own handler for TLSNextProto does (h2guard.go reads it).
type baseContextHandler struct {
	http.Handler
	ctx context.Context
}

func (h baseContextHandler) BaseContext() context.Context { return h.ctx }

// plainConn marks a connection in the clear handed over inside a *tls.Conn (see
// h2guard.go's unencryptedHTTP2 entry).
type plainConn struct{ net.Conn }

func (c plainConn) UnencryptedNetConn() net.Conn { return c.Conn }

// Shutdown stops accepting, drains the HTTP/1.1 connections (each finishes the request it
// is serving) and the HTTP/2 ones (GOAWAY, then their streams finish), and waits for every
// connection to end while ctx lives; then it closes what is left and returns ctx's error.
func (cs *connServer) Shutdown(ctx context.Context) error {
	cs.mu.Lock()
	cs.closed = true
	if cs.ln != nil {
		cs.ln.Close()
	}
	cs.mu.Unlock()
	// HTTP/2: net/http's Shutdown runs the graceful shutdown x/net/http2 registered on it
	// (ConfigureServer), for every connection its server serves; it serves none itself.
	cs.h2.Shutdown(ctx)
	err := cs.h1.Shutdown(ctx)
	if err != nil {
		cs.Close() // past the drain: what is left is cut off now, as net/http's Close does
	}
	done := make(chan struct{})
	go func() { cs.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		cs.Close()
		if err == nil {
			err = ctx.Err()
		}
	}
	return err
}

// Close closes the listener and every connection now.
func (cs *connServer) Close() error {
	cs.mu.Lock()
	cs.closed = true
	if cs.ln != nil {
		cs.ln.Close()
	}
	for c := range cs.pending {
		c.Close()
	}
	cs.mu.Unlock()
	cs.h2.Close()
	return cs.h1.Close()
}
