// Package h1 is the gateway's HTTP/1.1 server: it reads requests off a connection,
// hands them to a standard http.Handler as *http.Request and http.ResponseWriter
// (with http.Flusher, http.Hijacker and what http.ResponseController looks for), and
// writes the responses, as RFC 9112 (https://www.rfc-editor.org/rfc/rfc9112) and
// RFC 9110 (https://www.rfc-editor.org/rfc/rfc9110) say.
//
// # Why not net/http's server
//
// Profiles of the gateway put net/http's HTTP/1 server path among its costs: per
// request it starts a background read (a goroutine, an extra read system call and
// two deadline changes, so that it can notice a client that went away), allocates
// about twenty objects, and parses the header section through net/textproto. This
// server serves each connection in one goroutine, and adds a background read only
// for a handler that is still running after a while (see below): requests are
// parsed straight from the connection's pooled read buffer (one string holds the
// whole head, and header keys and values are pieces of it), the response goes out
// through a pooled write buffer, and BenchmarkServer compares the two.
//
// # Where it differs from net/http on purpose
//
// It is stricter on input (each is a 400 and a close unless noted), as Envoy is;
// TestDifferential holds each case against net/http's server. As in net/http, a
// bare LF ending a line is accepted, a bare CR is not, and two Host fields are a
// 400.
//
//   - Transfer-Encoding with Content-Length is refused (RFC 9112 section 6.1 allows
//     it, net/http lets Transfer-Encoding win): the pair is what request smuggling
//     is made of, and no honest client sends it.
//   - Transfer-Encoding in an HTTP/1.0 request is refused (net/http ignores it and
//     uses Content-Length, which a proxy in front may not have done).
//   - A Transfer-Encoding list is read as one (several fields are joined): chunked
//     must be last and only once (else 400, RFC 9112 section 6.3), and another coding
//     is a 501.
//   - obs-fold (a header line starting with SP or HTAB) is refused (RFC 9112 section
//     5.2 allows that; net/http joins the lines).
//   - A Host value must be uri-host [":" port] (RFC 3986 section 3.2.2), not just
//     free of bad bytes (net/http takes "a:8x"); CONNECT needs its Host too, as every
//     HTTP/1.1 request does (net/http exempts it).
//   - HTTP/1.x other than 1.0 and 1.1 gets 505 (net/http serves 1.2 as 1.1).
//   - The request-target must be in the form its method allows (RFC 9112 section
//     3.2): "*" only for OPTIONS, authority-form only and always for CONNECT, and an
//     absolute-form must have a scheme and a host.
//   - More than 500 header fields (or trailer fields) are a 431.
//   - A chunk-size line must end in CRLF, its size must fit in 63 bits, and its chunk
//     extensions may hold no control bytes; the line may be 4 KiB long. (Whitespace
//     after the size is refused, as net/http does, though RFC 9112 allows it before
//     a ";".)
//   - A trailer section is checked as a header section is (net/http drops a bad one
//     silently), and bounded by MaxHeaderBytes.
//   - CONNECT's authority-form needs a port.
//   - A request head (request line and header section) may be MaxHeaderBytes long
//     exactly; net/http allows 4 KiB more.
//   - Up to 4 bytes of CR LF / LF before a request line are skipped (RFC 9112 section
//     2.2) after a request with a body, as net/http does after a POST; elsewhere an
//     empty line is a 400.
//   - Trailer fields that may not be trailers (Content-Length, Transfer-Encoding,
//     Host, Trailer, ...; httpguts.ValidTrailerHeader) are dropped from
//     Request.Trailer; net/http keeps them.
//
// And on output and behaviour:
//
//   - There is no background read per request. One goroutine per Server sweeps the
//     connections every quarter of a second, and a handler found running at two
//     sweeps in a row, whose request body is all read (or that had none), gets
//     its connection read in the background then: EOF or an error cancels the
//     request's context, as net/http's read does, and bytes (a pipelined request)
//     are kept for the next request. So a client that goes away is noticed within
//     half a second or so while its handler computes, and at once when a read or
//     write of the connection fails; a handler still reading its body, in full
//     duplex, or hijacked is not watched. The sweeper ends with Close or Shutdown
//     (or when there are no connections left).
//   - Close cancels the contexts of the requests in their handlers (the cause wraps
//     http.ErrServerClosed) and closes every connection; Shutdown does the former
//     when its ctx ends first (net/http leaves those handlers running). A request cut
//     off so gets no more of its response once its handler returns: it ends as an
//     aborted one (below), so that a client cannot take half a body for all of it.
//   - A handler that panics with http.ErrAbortHandler gets no response at all: the
//     connection closes at once, and nothing more is written, not what is buffered
//     nor a last chunk (a response that began stays cut short). That is how the
//     gateway resets a stream. Other panics are logged, answered with a 500 if
//     nothing went out yet, and close the connection.
//   - As in net/http, a response field (in a 1xx response, the final header section
//     or the trailers) whose name is not a token is dropped, CR and LF in a value
//     become spaces, and a trailer that may not be one (httpguts.ValidTrailerHeader)
//     is dropped: a handler cannot add fields of its own making.
//   - A 408 goes out when ReadHeaderTimeout expires in the middle of a head
//     (net/http just closes).
//   - Content-Type is not sniffed: a response without one goes without one. The
//     gateway's responses come from backends, which set it or chose not to.
//   - An unknown status code's reason phrase is "status NNN".
//   - 1xx responses are not sent to HTTP/1.0 clients (RFC 9110 section 15.2). As in
//     net/http, response fields go out sorted by name, and a response to HTTP/1.0
//     says HTTP/1.0.
//   - A 101 the handler does not follow with Hijack closes the connection after it.
//   - Without EnableFullDuplex, the response header going out (first Flush, or more
//     than 4 KiB of body written) ends the request body as net/http does: what is
//     left of it, up to 256 KiB, is read and thrown away (more closes the
//     connection after the response), and further Body reads fail with
//     http.ErrBodyReadAfterClose. That keeps clients that send the whole request
//     before they read from deadlocking (Go issue 15527).
//   - The response header map is the connection's, cleared after each request: a
//     handler must not keep w.Header() after it returns (net/http documents that
//     the ResponseWriter may not be used then).
//   - Errors the server answers itself carry a fixed reason text, a Content-Length
//     and Connection: close, and the connection is then half-closed and drained for
//     up to half a second so the client sees the answer rather than a reset.
//   - http.ServerContextKey is not set (there is no *http.Server);
//     http.LocalAddrContextKey is.
package h1

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/1.x on the connections Serve accepts or ServeConn is given. Its
// fields must not change once it serves.
type Server struct {
	// Handler answers each request; nil is http.DefaultServeMux.
	Handler http.Handler
	// MaxHeaderBytes bounds a request's head (request line and header section, and a
	// chunked body's trailer section); 0 is 1 MiB, net/http's default. Over it the
	// client gets a 431 and the connection closes.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds the time from the first byte of a request (or, on a new
	// connection, from its start, TLS handshake included) to the end of its header
	// section; 0 is none.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds a keep-alive connection's wait for its next request (and a new
	// connection's wait for its first when ReadHeaderTimeout is 0); 0 is none.
	IdleTimeout time.Duration
	// ConnContext, if not nil, returns the context of a connection's requests, given
	// the base context (with http.LocalAddrContextKey set).
	ConnContext func(ctx context.Context, c net.Conn) context.Context
	// BaseContext, if not nil, returns the context every connection's starts from;
	// nil is context.Background().
	BaseContext func() context.Context
	// Log gets protocol errors (bad requests, timeouts, handler misuse) at debug
	// level and handler panics at error level; nil discards them.
	Log *slog.Logger

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	drained   chan struct{} // closed when shutting and conns is empty
	sweep     *sweeper      // running while there are connections (watch.go)
	shutting  atomic.Bool
	watches   atomic.Int64 // background reads started, for tests
}

// errServerClosed is the cause of the contexts Close (or Shutdown running out of
// time) cancels.
var errServerClosed = fmt.Errorf("h1: %w", http.ErrServerClosed)

const (
	defaultMaxHeaderBytes = 1 << 20
	maxFields             = 500       // header or trailer fields in one section
	maxUnreadBody         = 256 << 10 // what is left of a body that is read and thrown away
	bufSize               = 4 << 10   // connection read and write buffers, response body buffer
)

var discardLog = slog.New(slog.DiscardHandler)

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return discardLog
}

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return defaultMaxHeaderBytes
}

func (s *Server) handler() http.Handler {
	if s.Handler != nil {
		return s.Handler
	}
	return http.DefaultServeMux
}

// Serve accepts connections on l and serves each in its own goroutine, until l fails
// or Shutdown or Close is called (then it returns http.ErrServerClosed). It closes l.
func (s *Server) Serve(l net.Listener) error {
	defer l.Close()
	if !s.track(&l, true) {
		return http.ErrServerClosed
	}
	defer s.track(&l, false)
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			// Running out of file descriptors and the like pass; wait, as net/http does.
			if te, ok := err.(interface{ Temporary() bool }); ok && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log().Debug("h1: accept failed, retrying", "err", err, "delay", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		go s.ServeConn(c, nil)
	}
}

// track adds (or removes) a listener, refusing to add one once shutting down.
func (s *Server) track(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.listeners, l)
		return true
	}
	if s.shutting.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[*net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	return true
}

// ServeConn serves the connection c in the caller's goroutine until it closes, the
// client or the server ends it, or a handler hijacks it; it closes c (unless
// hijacked). buffered holds bytes already read from c (a peeked preface), which are
// served before what c reads; ServeConn does not modify them. A *tls.Conn is
// handshaken first and its state given to requests as Request.TLS.
func (s *Server) ServeConn(c net.Conn, buffered []byte) {
	cn := newConn(s, c, buffered)
	if !s.addConn(cn) {
		c.Close()
		return
	}
	cn.serve()
}

func (s *Server) addConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutting.Load() {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	s.startSweeperLocked()
	return true
}

// removeConn forgets c: it closed or was hijacked.
func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	if len(s.conns) == 0 && s.drained != nil {
		close(s.drained)
		s.drained = nil
	}
}

// Shutdown stops accepting, closes the idle connections at once and lets each active
// one finish its current request (whose response says Connection: close if it has
// not gone out yet) before it closes. It waits for all of them while ctx lives, and
// returns ctx.Err() if ctx ends first: the contexts of the requests whose handlers
// still run are canceled then, and each connection closes, its response cut short, as
// its handler returns (Close closes them at once).
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	defer s.stopSweeper()
	s.mu.Lock()
	s.closeListenersLocked()
	for c := range s.conns {
		c.closeIfIdle()
	}
	var drained chan struct{}
	if len(s.conns) > 0 {
		if s.drained == nil {
			s.drained = make(chan struct{})
		}
		drained = s.drained
	}
	s.mu.Unlock()
	if drained == nil {
		return nil
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.cancelRequest(errServerClosed)
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

// Close closes the listeners and every connection now, active or not; handlers
// still running see their request's context canceled (its cause wraps
// http.ErrServerClosed) and their connection fail.
func (s *Server) Close() error {
	s.shutting.Store(true)
	s.mu.Lock()
	err := s.closeListenersLocked()
	for c := range s.conns {
		c.cancelRequest(errServerClosed)
		c.rwc.Close()
	}
	s.mu.Unlock()
	s.stopSweeper()
	return err
}

func (s *Server) closeListenersLocked() error {
	var errs []error
	for l := range s.listeners {
		if err := (*l).Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		delete(s.listeners, l)
	}
	return errors.Join(errs...)
}
