package upstream

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

const (
	max1xx = 5 // informational responses tolerated before the final one, as net/http does

	// writeGrace is how long a finished response waits for its request body to finish
	// writing before the connection is given up instead of reused. A backend that
	// answered early may never read the rest, but one that read it all usually has
	// its last bytes acknowledged within microseconds of answering.
	writeGrace = 50 * time.Millisecond

	copyBufSize = 32 << 10
)

// RoundTrip sends req and returns the response once its header has arrived.
//
// req is used as an outbound request: Method, URL (only the request-target),
// Host, Header, Body, ContentLength, Trailer, Close and the context. Host,
// Content-Length and Transfer-Encoding in req.Header are ignored: framing follows
// Body and ContentLength (> 0: Content-Length, 0 or -1 with a Body: chunked).
// req.Body is always closed, also on error. Errors are *Error.
//
// The response body must be read to EOF for the connection to be reused; closing it
// earlier closes the connection. For 101 Switching Protocols, resp.Body is an
// io.ReadWriteCloser over the connection, which then belongs to the caller.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	pl, err := makePlan(req)
	if err != nil {
		closeBody(req)
		return nil, &Error{Kind: KindProtocol, Err: err}
	}
	ctx := req.Context()
	if ctx.Err() != nil {
		closeBody(req)
		return nil, ctxError(ctx)
	}
	for fresh := false; ; fresh = true {
		c, err := p.get(ctx, fresh)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		if tr := httptrace.ContextClientTrace(ctx); tr != nil && tr.GotConn != nil {
			// As net/http's transport does: who traces the request learns its connection.
			tr.GotConn(httptrace.GotConnInfo{Conn: c.nc, Reused: c.reused})
		}
		resp, retry, err := c.roundTrip(ctx, req, &pl)
		if err == nil {
			return resp, nil
		}
		// retry is only ever reported for a reused connection, and the second
		// attempt dials, so there is at most one retry.
		if !retry {
			return nil, err
		}
	}
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// roundTrip is one attempt on c. retry reports that c turned out to be a keep-alive
// connection the server had already closed, and that nothing was lost: no response
// byte arrived and req.Body, if any, was not read. req.Body is closed unless retry.
func (c *conn) roundTrip(ctx context.Context, req *http.Request, pl *plan) (resp *http.Response, retry bool, err error) {
	// Cancellation closes the connection, which fails whatever read or write is in
	// progress; no goroutine waits on ctx.Done.
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, c.abort)
	}
	start := c.nread
	c.readErr = nil

	if pl.framing != frameNone {
		c.bodyState.Store(bodyUntouched)
		c.reqBodyErr.Store(nil)
	}
	// The head is sent on its own, before any of the body is read: in a full-duplex
	// exchange the client sends its body only after it sees the response header,
	// which the backend cannot send before it has our head. Sending it from this
	// goroutine also means a dead keep-alive connection is found before the body
	// is touched, so the request can still be retried.
	writeHead(c.bw, req, pl)
	err = c.bw.Flush()
	if err == nil && pl.framing != frameNone {
		c.body = bodySpec{rc: req.Body, framing: pl.framing, length: pl.length, trailer: req.Trailer}
		c.writing = true
		go c.writeBody()
	}
	if err == nil {
		resp, err = c.readResponse(req)
	}
	if err != nil {
		stopped := stop == nil || stop()
		c.close()
		retry = stopped && c.reused && c.nread == start && isDeadConn(err) && ctx.Err() == nil
		if pl.framing != frameNone {
			// Take the body back unless the goroutine has started on it. Taken back,
			// it is ours to resend or to close; otherwise the goroutine closes it.
			if c.bodyState.CompareAndSwap(bodyUntouched, bodyReclaimed) {
				if !retry {
					req.Body.Close()
				}
			} else {
				retry = false
			}
		}
		return nil, retry, c.failure(ctx, err)
	}

	if resp.StatusCode == http.StatusSwitchingProtocols {
		return c.switchProtocols(ctx, resp, stop)
	}
	reuse := !resp.Close && !pl.close && resp.ProtoAtLeast(1, 1)
	if resp.Body == http.NoBody {
		c.release(stop, reuse)
		return resp, false, nil
	}
	resp.Body = &body{c: c, ctx: ctx, rc: resp.Body, stop: stop, reuse: reuse}
	return resp, false, nil
}

// readResponse reads response headers until a final response (or a 101).
func (c *conn) readResponse(req *http.Request) (*http.Response, error) {
	for n := 0; ; n++ {
		// The budget counts bytes read from the socket, which may run a buffer's worth
		// past the header; the exact check follows the parse.
		c.limited = true
		c.budget = c.p.maxHeader + int64(c.br.Size())
		before := c.nread - int64(c.br.Buffered())
		resp, handled, err := readHead(c.br, req) // the common kind of response (head.go)
		if !handled {
			resp, err = http.ReadResponse(c.br, req)
		}
		c.limited = false
		if err != nil {
			if c.budget <= 0 {
				err = errHeaderTooLarge
			}
			return nil, err
		}
		if c.nread-int64(c.br.Buffered())-before > c.p.maxHeader {
			return nil, errHeaderTooLarge
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		// 100 Continue, 103 Early Hints and the like: the final response follows.
		if n == max1xx {
			return nil, errTooMany1xx
		}
	}
}

// failure turns what broke an attempt into an *Error.
func (c *conn) failure(ctx context.Context, err error) *Error {
	if e := c.reqBodyErr.Load(); e != nil {
		return e
	}
	if ctx.Err() != nil {
		return ctxError(ctx)
	}
	if err == errHeaderTooLarge || err == errTooMany1xx {
		return &Error{Kind: KindProtocol, Err: err}
	}
	// A parse error after the connection failed means the message was cut short,
	// not that it was malformed: "HTTP/1.1 200 OK\r\nContent-" then EOF.
	if isConnErr(err) || c.readErr != nil && isConnErr(c.readErr) {
		return &Error{Kind: KindReset, Err: err}
	}
	return &Error{Kind: KindProtocol, Err: err}
}

// release ends an exchange whose response is complete: the connection goes back to
// the pool if reuse allows and nothing else forbids it, else it is closed.
func (c *conn) release(stop func() bool, reuse bool) {
	if stop != nil && !stop() {
		// The context fired and its callback is closing the connection.
		reuse = false
	}
	if c.writing && reuse {
		reuse = c.waitWrite()
	}
	if reuse {
		c.p.put(c)
	} else {
		c.close()
	}
}

// waitWrite reports whether the request body was written completely, waiting briefly
// for the body goroutine. Without it, a connection could be reused while its previous
// request is still being sent; with an unbounded wait, a backend that answered
// without reading the body would hang us.
func (c *conn) waitWrite() bool {
	var err error
	select {
	case err = <-c.writeDone:
	default:
		t := time.NewTimer(writeGrace)
		select {
		case err = <-c.writeDone:
			t.Stop()
		case <-t.C:
			return false
		}
	}
	c.writing = false
	return err == nil
}

func (c *conn) switchProtocols(ctx context.Context, resp *http.Response, stop func() bool) (*http.Response, bool, error) {
	// The caller owns the stream's lifetime from here on; the request context only
	// covered the handshake.
	if stop != nil && !stop() {
		c.close()
		return nil, false, ctxError(ctx)
	}
	if c.writing {
		// Bytes the caller writes must not interleave with the rest of the body.
		if err := <-c.writeDone; err != nil {
			c.close()
			return nil, false, c.failure(ctx, err)
		}
		c.writing = false
	}
	resp.Body = &rawConn{c: c}
	return resp, false, nil
}

// bodySpec is the request body handed to the body goroutine.
type bodySpec struct {
	rc      io.ReadCloser
	framing int
	length  int64
	trailer http.Header
}

var copyBufs = sync.Pool{New: func() any {
	b := make([]byte, copyBufSize)
	return &b
}}

// writeBody runs in its own goroutine while the caller reads the response: a backend
// may answer before it has read the body, or stream its answer while reading it.
func (c *conn) writeBody() {
	var err error
	if c.bodyState.CompareAndSwap(bodyUntouched, bodyWriter) {
		err = c.copyBody()
		c.body.rc.Close()
	} else {
		err = errReclaimed
	}
	c.body = bodySpec{}
	c.writeDone <- err
}

var errReclaimed = &Error{Kind: KindReset, Err: io.ErrClosedPipe}

// chunkRoom is the space kept in front of each read for the chunk-size line
// (at most 4 hex digits for a 32 KiB chunk, plus CRLF).
const chunkRoom = 8

func (c *conn) copyBody() error {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	b := &c.body
	var sent int64
	for {
		var chunk []byte
		if b.framing == frameChunked {
			// Read after room for the size line and before room for the closing CRLF,
			// so that a chunk is a single write.
			chunk = buf[chunkRoom : len(buf)-2]
		} else {
			rem := b.length - sent
			if rem == 0 {
				break
			}
			chunk = buf
			if int64(len(chunk)) > rem {
				chunk = chunk[:rem]
			}
		}
		n, rerr := b.rc.Read(chunk)
		if n > 0 {
			sent += int64(n)
			out := chunk[:n]
			if b.framing == frameChunked {
				var hex [8]byte
				h := appendHex(hex[:0], n)
				h = append(h, '\r', '\n')
				start := chunkRoom - len(h)
				copy(buf[start:], h)
				end := chunkRoom + n
				buf[end], buf[end+1] = '\r', '\n'
				out = buf[start : end+2]
			}
			c.bw.Write(out)
			// Flush per read: the body streams at the pace its source delivers,
			// never held back waiting for a buffer to fill.
			if err := c.bw.Flush(); err != nil {
				// The connection broke. The response, if one comes, or the read
				// error tells the reading side; closing here could lose a response
				// already in flight (a 413 sent before the backend hung up).
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return c.bodyFailed(rerr)
		}
	}
	switch {
	case b.framing == frameLength && sent < b.length:
		return c.bodyFailed(errBodyShort)
	case b.framing == frameChunked:
		c.bw.WriteString("0\r\n")
		// Trailer values are final only now that the body reached EOF, and so are the
		// names of trailers added since the header went (by a filter): both are checked.
		for k, vv := range b.trailer {
			for _, v := range vv {
				if !validToken(k) || !validValue(v) {
					e := &Error{Kind: KindProtocol, Err: errBadTrailerV}
					if !validToken(k) {
						e.Err = errBadTrailer
					}
					c.reqBodyErr.Store(e)
					c.close()
					return e
				}
				c.bw.WriteString(k)
				c.bw.WriteString(": ")
				c.bw.WriteString(v)
				c.bw.WriteString("\r\n")
			}
		}
		c.bw.WriteString("\r\n")
		return c.bw.Flush()
	}
	return nil
}

// bodyFailed handles a request body that cannot be completed. The backend is still
// waiting for the rest, so the connection is closed to end the exchange.
func (c *conn) bodyFailed(err error) error {
	e := &Error{Kind: KindRequestBody, Err: err}
	c.reqBodyErr.Store(e)
	c.close()
	return e
}

func appendHex(b []byte, n int) []byte {
	const digits = "0123456789abcdef"
	var tmp [8]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[n&0xf]
		n >>= 4
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}
