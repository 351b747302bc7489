package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// body is a response body. It returns the connection to the pool the moment the
// body hits EOF, since a caller copying the body to a client often finishes the
// copy long before it gets around to Close.
type body struct {
	c     *conn
	ctx   context.Context
	rc    io.ReadCloser // from http.ReadResponse
	stop  func() bool   // disarms the request's context.AfterFunc; nil if none
	reuse bool
	state atomic.Int32
	err   error // what failed the body, repeated to later reads
}

const (
	bodyOpen int32 = iota
	bodyEOF
	bodyFailed
	bodyClosed
)

func (b *body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyEOF:
		return 0, io.EOF
	case bodyClosed:
		return 0, http.ErrBodyReadAfterClose
	case bodyFailed:
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		if b.state.CompareAndSwap(bodyOpen, bodyEOF) {
			// Trailers, if any, are in resp.Trailer by now: the inner body reads
			// them before it reports EOF.
			b.c.release(b.stop, b.reuse)
		}
		return n, io.EOF
	}
	failure := b.c.failure(b.ctx, err)
	if b.state.CompareAndSwap(bodyOpen, bodyFailed) {
		b.err = failure
		if b.stop != nil {
			b.stop()
		}
		b.c.close()
		return n, failure
	}
	// Close won the race and closed the connection under us.
	return n, http.ErrBodyReadAfterClose
}

// Close before EOF closes the connection rather than draining it: draining costs
// time and backend bandwidth for bytes nobody wants, and may never end.
func (b *body) Close() error {
	if b.state.CompareAndSwap(bodyOpen, bodyClosed) {
		if b.stop != nil {
			b.stop()
		}
		b.c.close()
	}
	return nil
}

// rawConn is the connection after a 101 response, handed to the caller as the
// response body.
type rawConn struct {
	c *conn
}

// Read returns what c.br already holds first: the backend may have sent its first
// bytes in the same packet as the 101.
func (r *rawConn) Read(p []byte) (int, error) { return r.c.br.Read(p) }

func (r *rawConn) Write(p []byte) (int, error) { return r.c.nc.Write(p) }

func (r *rawConn) Close() error {
	r.c.close()
	return nil
}

// CloseWrite half-closes the connection when it supports that (TCP and TLS do), so
// that a tunnel can pass on one side's end of stream while the other still talks.
func (r *rawConn) CloseWrite() error {
	if cw, ok := r.c.nc.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

var _ io.ReadWriteCloser = (*rawConn)(nil)
