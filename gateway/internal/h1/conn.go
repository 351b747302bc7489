package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A connection's state, for Shutdown: it closes idle connections itself, and lets
// active ones close after their request.
const (
	stateIdle     int32 = iota // waiting for a request's first byte (or a new connection's)
	stateActive                // reading a request, running its handler or writing its response
	stateHijacked              // the handler took it over
	stateClosed                // Shutdown closed it while idle
)

// lingerTime bounds how long a connection that closes with input unread waits for
// the client to stop sending, so that the client reads the answer instead of a reset
// (the kernel resets a connection closed with unread data). net/http waits 500ms too.
const lingerTime = 500 * time.Millisecond

// conn is one connection being served. Its fields are the serving goroutine's, but
// for those a handler reaches through its request (see response and body).
type conn struct {
	srv        *Server
	rwc        net.Conn
	cr         connReader
	cw         connWriter
	bufs       *buffers
	br         *bufio.Reader
	bw         *bufio.Writer
	ctx        context.Context // the requests' contexts derive from it
	remoteAddr string
	tls        *tls.ConnectionState
	state      atomic.Int32

	// cur is the request whose handler runs, nil between handlers: a failed read or
	// write of the connection, Close, and a client found gone (watch.go) cancel its
	// context. Setting and clearing it are all the common path pays for them.
	cur atomic.Pointer[exchange]

	// What watch.go needs: wmu guards the background read's start and end, and
	// the handler's read deadline, which ending the read restores.
	wmu         sync.Mutex
	watchDone   chan struct{} // the background read's, closed when it ends; nil: none
	handlerRead time.Time     // the read deadline the handler set (ResponseController)
	seen        *exchange     // the sweeper's: cur at the previous sweep

	readDeadline     bool        // serve set a read deadline that is still on
	handlerDeadlines atomic.Bool // the handler set a deadline (ResponseController)
	linger           bool        // close with input left unread: half-close and drain first
	dropped          bool        // a handler aborted (http.ErrAbortHandler): closed at once
	afterBody        bool        // the last request had a body

	header  http.Header // the response header, cleared after each request
	scratch []byte      // header-key canonicalization
	keys    []string    // sorting response header keys
	dateSec int64
	date    []byte
}

// buffers are a connection's, pooled: connections come and go far more often than
// their buffers need to be made.
type buffers struct {
	br   *bufio.Reader
	bw   *bufio.Writer
	body []byte // a response body before its header goes out
	head []byte // a request head too long for br; a response's header fields
}

var bufPool = sync.Pool{New: func() any {
	return &buffers{
		br:   bufio.NewReaderSize(nil, bufSize),
		bw:   bufio.NewWriterSize(nil, bufSize),
		body: make([]byte, 0, bufSize),
	}
}}

func newConn(s *Server, c net.Conn, buffered []byte) *conn {
	cn := &conn{srv: s, rwc: c, header: make(http.Header)}
	cn.cr = connReader{c: cn, pre: buffered}
	cn.cw = connWriter{c: cn}
	cn.bufs = bufPool.Get().(*buffers)
	cn.br, cn.bw = cn.bufs.br, cn.bufs.bw
	cn.br.Reset(&cn.cr)
	cn.bw.Reset(&cn.cw)
	return cn
}

// connReader reads the bytes ServeConn was given, then the connection; a failed read
// cancels the current request's context, which is how a handler learns that its
// client went away.
type connReader struct {
	c   *conn
	pre []byte
	bg  bool // the background read (watch.go) reads: it judges errors itself
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(r.pre) > 0 {
		n := copy(p, r.pre)
		r.pre = r.pre[n:]
		return n, nil
	}
	n, err := r.c.rwc.Read(p)
	if err != nil && !r.bg {
		r.c.failed(err)
	}
	return n, err
}

type connWriter struct{ c *conn }

func (w *connWriter) Write(p []byte) (int, error) {
	n, err := w.c.rwc.Write(p)
	if err != nil {
		w.c.failed(err)
	}
	return n, err
}

// failed cancels the running handler's request: its connection broke.
func (c *conn) failed(err error) {
	c.cancelRequest(fmt.Errorf("h1: connection from %s: %w", c.remoteAddr, err))
}

// cancelRequest cancels the context of the request whose handler runs, if one does;
// any goroutine may call it.
func (c *conn) cancelRequest(cause error) {
	if ex := c.cur.Load(); ex != nil {
		ex.cancel(cause)
	}
}

// serve runs the connection's requests one after the other until it ends.
func (c *conn) serve() {
	defer c.end()
	s := c.srv
	ctx := context.Background()
	if s.BaseContext != nil {
		ctx = s.BaseContext()
	}
	ctx = context.WithValue(ctx, http.LocalAddrContextKey, c.rwc.LocalAddr())
	if s.ConnContext != nil {
		if ctx = s.ConnContext(ctx, c.rwc); ctx == nil {
			panic("h1: ConnContext returned nil")
		}
	}
	c.ctx = ctx
	c.remoteAddr = c.rwc.RemoteAddr().String()

	// A new connection's first request, TLS handshake included, must arrive within
	// ReadHeaderTimeout; without one, within IdleTimeout.
	var deadline time.Time
	if d := s.ReadHeaderTimeout; d > 0 {
		deadline = time.Now().Add(d)
	} else if d := s.IdleTimeout; d > 0 {
		deadline = time.Now().Add(d)
	}
	if !deadline.IsZero() {
		c.setReadDeadline(deadline)
	}
	if tc, ok := c.rwc.(*tls.Conn); ok {
		if err := c.handshake(tc, deadline); err != nil {
			s.log().Debug("h1: TLS handshake failed", "remote", c.remoteAddr, "err", err)
			return
		}
	}
	for first := true; ; first = false {
		if !c.awaitRequest(first) {
			return
		}
		ex, perr := c.readRequest()
		if perr != nil {
			c.replyError(perr)
			return
		}
		if !c.serveRequest(ex) {
			return
		}
	}
}

func (c *conn) handshake(tc *tls.Conn, deadline time.Time) error {
	if !deadline.IsZero() {
		tc.SetWriteDeadline(deadline)
		defer tc.SetWriteDeadline(time.Time{})
	}
	if err := tc.Handshake(); err != nil {
		return err
	}
	st := tc.ConnectionState()
	c.tls = &st
	return nil
}

// awaitRequest waits, idle, for the first byte of the next request, and reports
// whether there is one to read (not when the client closed, the wait timed out, or
// Shutdown began or closed the connection).
func (c *conn) awaitRequest(first bool) bool {
	s := c.srv
	c.state.Store(stateIdle)
	if s.shutting.Load() {
		return false
	}
	if c.br.Buffered() == 0 && len(c.cr.pre) == 0 {
		if !first && s.IdleTimeout > 0 {
			c.setReadDeadline(time.Now().Add(s.IdleTimeout))
		}
		if _, err := c.br.Peek(1); err != nil {
			if !quietReadError(err) {
				s.log().Debug("h1: read failed", "remote", c.remoteAddr, "err", err)
			}
			return false
		}
	}
	if !c.state.CompareAndSwap(stateIdle, stateActive) {
		return false // Shutdown closed it
	}
	switch {
	case s.ReadHeaderTimeout > 0 && !first:
		c.setReadDeadline(time.Now().Add(s.ReadHeaderTimeout))
	case s.ReadHeaderTimeout == 0 && c.readDeadline:
		c.setReadDeadline(time.Time{})
	}
	return true
}

func (c *conn) setReadDeadline(t time.Time) {
	c.rwc.SetReadDeadline(t)
	c.readDeadline = !t.IsZero()
}

// quietReadError reports whether err is how connections normally end: the client
// closed, the server closed it, or an idle wait timed out.
func quietReadError(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.ECONNRESET)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readRequest reads and parses the next request's head. A *protoError is what the
// client gets told (with status 0: nothing, the connection just closes).
func (c *conn) readRequest() (*exchange, *protoError) {
	raw, err := c.readHead()
	if err != nil {
		return nil, err
	}
	if c.readDeadline {
		c.setReadDeadline(time.Time{})
	}
	return c.parseRequest(raw)
}

// readHead returns the request line and header section, blank line included, as
// one string (the request's header keys and values are pieces of it). The common
// case, a head in the read buffer, is one search and one copy.
func (c *conn) readHead() (string, *protoError) {
	limit := c.srv.maxHeaderBytes()
	if c.afterBody {
		c.skipEmptyLines()
	}
	resume := 0
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		var end int
		end, resume = headEnd(buf, resume)
		if end > 0 {
			if end > limit {
				return "", errHeadTooLarge
			}
			s := string(buf[:end])
			c.br.Discard(end)
			return s, nil
		}
		if len(buf) >= limit {
			return "", errHeadTooLarge
		}
		if len(buf) == c.br.Size() {
			return c.readLongHead(limit)
		}
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return "", headReadError(err)
		}
	}
}

// readLongHead goes on with a head that does not fit in the read buffer, gathering it
// in the connection's head buffer.
func (c *conn) readLongHead(limit int) (string, *protoError) {
	h := c.bufs.head[:0]
	defer func() { c.bufs.head = h[:0] }()
	resume := 0
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		old := len(h)
		h = append(h, buf...)
		var end int
		end, resume = headEnd(h, resume)
		if end > 0 {
			if end > limit {
				return "", errHeadTooLarge
			}
			c.br.Discard(end - old)
			return string(h[:end]), nil
		}
		c.br.Discard(len(buf))
		if len(h) >= limit {
			return "", errHeadTooLarge
		}
		if _, err := c.br.Peek(1); err != nil {
			return "", headReadError(err)
		}
	}
}

// headEnd returns the length of the head at the start of b (up to and including the
// blank line ending it: CRLF CRLF, or with bare LFs), or -1 and where to resume the
// search once more bytes are in.
func headEnd(b []byte, from int) (end, resume int) {
	// An empty line where the request line should be (past those skipEmptyLines
	// tolerates) is a head of its own, to be refused, not the start of one.
	if len(b) > 0 && b[0] == '\n' {
		return 1, 0
	}
	if len(b) > 1 && b[0] == '\r' && b[1] == '\n' {
		return 2, 0
	}
	for i := from; ; {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1, len(b)
		}
		p := i + j
		if p+1 >= len(b) {
			return -1, p
		}
		switch b[p+1] {
		case '\n':
			return p + 2, 0
		case '\r':
			if p+2 >= len(b) {
				return -1, p
			}
			if b[p+2] == '\n' {
				return p + 3, 0
			}
		}
		i = p + 1
	}
}

// skipEmptyLines drops up to 4 bytes of empty lines before a request line, which RFC
// 9112 section 2.2 asks a server to tolerate: old clients end a POST body with CRLF.
// As net/http, it does so only after a request with a body.
func (c *conn) skipEmptyLines() {
	for n := 0; n < 4; {
		b, err := c.br.Peek(1)
		if err != nil {
			return
		}
		switch {
		case b[0] == '\n':
			c.br.Discard(1)
			n++
		case b[0] == '\r':
			if b, err = c.br.Peek(2); err != nil || b[1] != '\n' {
				return
			}
			c.br.Discard(2)
			n += 2
		default:
			return
		}
	}
}

// headReadError turns a failed read in the middle of a head into the answer: 408 on a
// timeout, 400 when the client closed (it may still read), nothing on a reset.
func headReadError(err error) *protoError {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return &protoError{status: http.StatusRequestTimeout, reason: "request head not received in time"}
	case errors.Is(err, io.EOF):
		return &protoError{status: http.StatusBadRequest, reason: "incomplete request head"}
	}
	return &protoError{reason: "reading the request head: " + err.Error()}
}

// serveRequest runs the handler of ex and finishes its response, and reports whether
// the connection can carry another request.
func (c *conn) serveRequest(ex *exchange) bool {
	c.afterBody = ex.req.ContentLength != 0
	c.cur.Store(ex)
	p := c.runHandler(ex)
	c.cur.Store(nil)
	// Read after clearing cur, against the sweeper's store then load of cur: one
	// of the two sees the other's (see conn.startWatch).
	if ex.watch.Load() {
		c.stopWatch()
	}
	// A request the server cut off (Close, or Shutdown past its deadline) must not
	// look complete to the client: a handler that returns once its context is
	// canceled would otherwise have its response ended as if whole (the last chunk
	// of a body it never finished). It ends as an aborted one does.
	if p == returned && errors.Is(context.Cause(ex.req.Context()), errServerClosed) {
		p = abortPanic
	}
	ex.cancel(nil)
	if ex.w.isHijacked() {
		return false
	}
	switch p {
	case abortPanic:
		// The handler resets the stream (Proxy-Wasm's proxy_close_stream): the
		// client sees the connection drop, whatever of the response went out
		// cut short, and nothing more.
		ex.w.drop()
		c.dropped = true
		c.rwc.Close()
		ex.body.Close() // a handler's goroutine still reading the body is out of br now
		return false
	case otherPanic:
		ex.w.abort()
		c.linger = true
		return false
	}
	return c.finishRequest(ex)
}

// How a handler ended.
const (
	returned   = iota
	abortPanic // panic(http.ErrAbortHandler)
	otherPanic
)

func (c *conn) runHandler(ex *exchange) (p int) {
	defer func() {
		v := recover()
		switch {
		case v == nil:
		case v == http.ErrAbortHandler:
			c.srv.log().Debug("h1: handler aborted", "remote", c.remoteAddr,
				"method", ex.req.Method, "uri", ex.req.RequestURI)
			p = abortPanic
		default:
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.srv.log().Error("h1: handler panicked", "remote", c.remoteAddr,
				"method", ex.req.Method, "uri", ex.req.RequestURI, "panic", fmt.Sprint(v), "stack", string(buf))
			p = otherPanic
		}
	}()
	c.srv.handler().ServeHTTP(&ex.w, ex.req)
	return returned
}

// finishRequest completes the response after the handler returned, settles what is
// left of the request body, and reports whether the connection can be reused.
func (c *conn) finishRequest(ex *exchange) bool {
	keep := ex.w.finish()
	// Each response goes out before the next request is read, pipelined or not: a
	// response held back for a slow next handler would wait for it.
	if err := c.bw.Flush(); err != nil {
		return false
	}
	clear(c.header)
	if c.handlerDeadlines.Load() {
		c.handlerDeadlines.Store(false)
		c.wmu.Lock()
		c.handlerRead = time.Time{}
		c.rwc.SetDeadline(time.Time{})
		c.wmu.Unlock()
		c.readDeadline = false
	}
	return keep
}

// replyError answers a request the server refused itself, and marks the connection
// to be closed gently: the client may still be sending.
func (c *conn) replyError(e *protoError) {
	c.linger = true
	if e.status == 0 {
		c.srv.log().Debug("h1: bad request", "remote", c.remoteAddr, "err", e)
		return
	}
	c.srv.log().Debug("h1: bad request", "remote", c.remoteAddr, "status", e.status, "err", e)
	c.writeError(e.status, e.reason)
}

// writeError writes a short text/plain answer with Connection: close.
func (c *conn) writeError(status int, reason string) {
	text := strconv.Itoa(status) + " " + http.StatusText(status)
	if reason != "" {
		text += ": " + reason
	}
	b := appendStatusLine(c.bufs.head[:0], true, status)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(text)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, text...)
	c.bw.Write(b)
	c.bufs.head = b[:0]
	c.bw.Flush()
}

// end closes the connection (unless hijacked) and gives its buffers back.
func (c *conn) end() {
	if c.state.Load() == stateHijacked {
		return
	}
	if !c.dropped {
		c.bw.Flush()
		if c.linger || c.br.Buffered() > 0 {
			c.lingerClose()
		}
		c.rwc.Close()
	}
	c.srv.removeConn(c)
	c.br.Reset(nil)
	c.bw.Reset(nil)
	if cap(c.bufs.head) > 64<<10 {
		c.bufs.head = nil
	}
	c.bufs.body = c.bufs.body[:0]
	bufPool.Put(c.bufs)
	c.bufs = nil
}

// lingerClose half-closes the connection and reads what the client still sends, for a
// while, so that closing with unread data does not reset the connection before the
// client read its answer.
func (c *conn) lingerClose() {
	cw, ok := c.rwc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	c.rwc.SetReadDeadline(time.Now().Add(lingerTime))
	io.CopyN(io.Discard, c.rwc, 4<<20)
}

// closeIfIdle closes the connection if it waits for a request (Shutdown).
func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		c.rwc.Close()
	}
}

// hijack hands the connection over to the handler: the server forgets it, and stops
// reading it in the background.
func (c *conn) hijack(ex *exchange) {
	c.wmu.Lock()
	ex.noWatch = true
	c.stopWatchLocked()
	c.wmu.Unlock()
	c.state.Store(stateHijacked)
	c.srv.removeConn(c)
}
