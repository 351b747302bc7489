package l4

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"time"
)

// peekServerName reads a passthrough connection's TLS ClientHello and returns the server
// name it asks for ("" for none) and the bytes read, which the backend gets first, as they
// came. crypto/tls parses the hello (the record layer, a hello split over records) and the
// handshake stops as soon as it has: nothing is written to the client.
func peekServerName(c net.Conn) (sni string, read []byte, err error) {
	c.SetReadDeadline(time.Now().Add(helloTimeout))
	defer c.SetReadDeadline(time.Time{})
	rec := &recorder{r: c}
	err = tls.Server(rec, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			sni = h.ServerName
			return nil, errHelloRead
		},
	}).Handshake()
	if errors.Is(err, errHelloRead) {
		err = nil
	}
	return sni, rec.buf.Bytes(), err
}

var errHelloRead = errors.New("l4: ClientHello read")

// recorder is the connection as the hello parser sees it: what it reads is kept, and what
// it would write (an alert) goes nowhere.
type recorder struct {
	net.Conn // nil: only the methods below are used
	r        net.Conn
	buf      bytes.Buffer
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	r.buf.Write(b[:n])
	return n, err
}

func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }

func (r *recorder) Close() error { return nil }

func (r *recorder) LocalAddr() net.Addr  { return r.r.LocalAddr() }
func (r *recorder) RemoteAddr() net.Addr { return r.r.RemoteAddr() }

func (r *recorder) SetDeadline(time.Time) error      { return nil }
func (r *recorder) SetReadDeadline(time.Time) error  { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }

// Prefixed is c, whose first bytes, prefix, were read already (a peeked ClientHello, an
// HTTP/2 preface): its reads return prefix first.
func Prefixed(c net.Conn, prefix []byte) net.Conn { return &prefixed{Conn: c, prefix: prefix} }

// prefixed is a connection whose first bytes are prefix, read already.
type prefixed struct {
	net.Conn
	prefix []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// CloseWrite half-closes the connection, when it can.
func (p *prefixed) CloseWrite() error {
	if cw, ok := p.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
