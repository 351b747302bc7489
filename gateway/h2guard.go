package gateway

// The h2 guard: the client's frames on an HTTP/2 connection, looked at on their way to the
// HTTP/2 server, where that server alone breaks RFC 9113 (issue 11, defect 14):
//
//   - 8.2.2: a request with a connection-specific field (connection, keep-alive,
//     proxy-connection, transfer-encoding, upgrade), or with te other than "trailers", is
//     malformed, a stream error PROTOCOL_ERROR; the server answers 400 instead. The guard
//     decodes every field block with an HPACK decoder of its own, in step with the server's,
//     and ends a malformed one with a CONTINUATION frame holding one more field, whose name
//     is not lower case: the server's decoder then resets the stream with PROTOCOL_ERROR
//     itself (8.2.1), before any handler sees the request, and both dynamic tables stay as
//     the client's encoder left them.
//   - 6.5.3: the values of a SETTINGS frame are processed in order; the server hangs up with
//     PROTOCOL_ERROR on a frame that repeats one. The guard hands it on with each setting's
//     last value only (and none after the first invalid one, where the server stops), which
//     is where processing them in order ends up. Only a value that a later one undoes is
//     not seen on the way: it cannot overflow a window (6.9.2) or shrink the HPACK table
//     for a moment (RFC 7541 4.2). No client sends those.
//
// Everything else passes as it came: DATA payloads are read straight into the server's
// buffer, and only HEADERS, CONTINUATION and SETTINGS frames are held, one at a time. A
// frame the server rejects anyway ends the inspection; the server hangs up on it.
//
// The guard sits above TLS, so it is applied where net/http hands over a connection that
// is HTTP/2 (TLSNextProto: "h2" after ALPN, "unencrypted_http2" after the h2c preface);
// an HTTP/1.1 connection never meets it. net/http's own HTTP/2 server takes only a
// *tls.Conn there, x/net/http2's (the code net/http bundles) takes any
// net.Conn, so the guarded connections are served by x/net/http2's, with the settings of
// the http.Server's HTTP2 config.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// guardH2 makes srv serve HTTP/2, over TLS and h2c, through the h2 guard. It must be called
// before srv serves, and after srv.HTTP2 is set.
func guardH2(srv *http.Server) error {
	if p := srv.Protocols; p != nil && !p.HTTP2() && !p.UnencryptedHTTP2() {
		return nil
	}
	h2 := new(http2.Server)
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return err
	}
	serve := func(hs *http.Server, c net.Conn, h http.Handler, sawPreface bool) {
		opts := &http2.ServeConnOpts{Handler: h, BaseConfig: hs, SawClientPreface: sawPreface}
		// net/http passes the connection's base context this way (as to x/net/http2's own
		// TLSNextProto functions).
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			opts.Context = bc.BaseContext()
		}
		h2.ServeConn(c, opts)
	}
	srv.TLSNextProto[http2.NextProtoTLS] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		serve(hs, tlsH2Guard{newH2Guard(c, hs, false), c}, h, false)
	}
	srv.TLSNextProto[unencryptedHTTP2] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		// net/http wraps the plain connection (whose preface it has read) in a *tls.Conn that
		// is none, marked so that a real one is never taken for it.
		u, ok := c.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			c.Close()
			return
		}
		serve(hs, newH2Guard(u.UnencryptedNetConn(), hs, true), h, true)
	}
	return nil
}

// unencryptedHTTP2 is the TLSNextProto key under which net/http hands over an h2c
// connection with prior knowledge.
const unencryptedHTTP2 = "unencrypted_http2"

// h2Guard is a client's HTTP/2 connection as the server reads it; see the top of the file.
// Only the server's frame reader calls Read, one call at a time.
type h2Guard struct {
	net.Conn
	maxFrame uint32 // the largest frame the server reads, its SETTINGS_MAX_FRAME_SIZE
	pass     int    // bytes that go through as they come: the preface, or a frame's payload
	out      []byte // bytes for the server before any more are read
	buf      []byte // the frame held
	dec      *hpack.Decoder
	inBlock  bool   // a field block has begun and not ended
	stream   uint32 // the block's stream
	bad      bool   // the block has a connection-specific field
	done     bool   // inspection is over: everything goes through
	err      error  // the read error, for the server's every read after it
}

// tlsH2Guard keeps the connection's TLS state visible to the HTTP/2 server.
type tlsH2Guard struct {
	*h2Guard
	tc *tls.Conn
}

func (g tlsH2Guard) ConnectionState() tls.ConnectionState { return g.tc.ConnectionState() }

func newH2Guard(c net.Conn, hs *http.Server, sawPreface bool) *h2Guard {
	// Both as x/net/http2 derives them from hs.HTTP2 (config.go): they must be the server's.
	g := &h2Guard{Conn: c, maxFrame: 1 << 20}
	table := uint32(4096)
	if conf := hs.HTTP2; conf != nil {
		if v := conf.MaxReadFrameSize; v >= 1<<14 && v < 1<<24 {
			g.maxFrame = uint32(v)
		}
		if v := conf.MaxDecoderHeaderTableSize; v > 0 {
			table = uint32(v)
		}
	}
	g.dec = hpack.NewDecoder(table, g.field)
	if !sawPreface {
		g.pass = len(http2.ClientPreface)
	}
	return g
}

func (g *h2Guard) Read(p []byte) (int, error) {
	for len(g.out) == 0 {
		switch {
		case g.err != nil:
			return 0, g.err
		case g.done:
			return g.Conn.Read(p)
		case g.pass > 0:
			n, err := g.Conn.Read(p[:min(len(p), g.pass)])
			g.pass -= n
			return n, err
		}
		g.err = g.next()
	}
	n := copy(p, g.out)
	g.out = g.out[n:]
	return n, nil
}

const (
	h2FrameHeaderLen = 9
	h2SettingLen     = 6
	h2MaxSettings    = 100 // the server hangs up on a frame with more: those pass as they are
)

// h2Malformed ends a malformed field block: a CONTINUATION frame (its stream id filled in)
// with one field, literal and never indexed, named "X".
var h2Malformed = []byte{0, 0, 4, byte(http2.FrameContinuation), byte(http2.FlagContinuationEndHeaders), 0, 0, 0, 0,
	0x10, 1, 'X', 0}

// next reads the next frame's header and sets what goes to the server: the header and
// payload as they are, or as the guard changed them.
func (g *h2Guard) next() error {
	if g.buf == nil {
		g.buf = make([]byte, 0, 256)
	}
	g.buf = g.buf[:h2FrameHeaderLen]
	if _, err := io.ReadFull(g.Conn, g.buf); err != nil {
		return err
	}
	h := g.buf
	n := uint32(h[0])<<16 | uint32(h[1])<<8 | uint32(h[2])
	typ, flags := http2.FrameType(h[3]), http2.Flags(h[4])
	stream := binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	g.out = g.buf
	switch {
	case n > g.maxFrame, g.inBlock != (typ == http2.FrameContinuation), g.inBlock && stream != g.stream:
		// FRAME_SIZE_ERROR, or a block not continued (6.10): the server hangs up.
		g.done = true
		return nil
	case typ == http2.FrameHeaders, typ == http2.FrameContinuation,
		typ == http2.FrameSettings && !flags.Has(http2.FlagSettingsAck) && stream == 0 && n%h2SettingLen == 0 && n <= h2MaxSettings*h2SettingLen:
	default:
		g.pass = int(n)
		return nil
	}
	g.buf = append(g.buf, make([]byte, n)...)
	if _, err := io.ReadFull(g.Conn, g.buf[h2FrameHeaderLen:]); err != nil {
		return err
	}
	g.out = g.buf
	if typ == http2.FrameSettings {
		g.settings()
		return nil
	}
	frag := g.buf[h2FrameHeaderLen:]
	if typ == http2.FrameHeaders {
		var ok bool
		if frag, ok = h2Fragment(frag, flags); !ok || stream == 0 {
			// Rejected before it is decoded: a stream error, or a connection error for
			// stream 0 or one the server expects CONTINUATION after.
			g.done = stream == 0 || !flags.Has(http2.FlagHeadersEndHeaders)
			return nil
		}
		g.inBlock, g.stream, g.bad = true, stream, false
	}
	if _, err := g.dec.Write(frag); err != nil {
		g.done = true // COMPRESSION_ERROR: the server hangs up
		return nil
	}
	if !flags.Has(http2.FlagHeadersEndHeaders) {
		return nil
	}
	g.inBlock = false
	if err := g.dec.Close(); err != nil {
		g.done = true
		return nil
	}
	if g.bad {
		g.buf[4] &^= byte(http2.FlagHeadersEndHeaders)
		g.buf = append(g.buf, h2Malformed...)
		binary.BigEndian.PutUint32(g.buf[len(g.buf)-len(h2Malformed)+5:], stream)
		g.out = g.buf
	}
	return nil
}

// h2Fragment is the field block fragment of a HEADERS frame's payload p, without its
// padding and priority, as the server's framer takes it (RFC 9113 6.2).
func h2Fragment(p []byte, flags http2.Flags) ([]byte, bool) {
	pad := 0
	if flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// field marks the block malformed when f is connection-specific (RFC 9113 8.2.2).
func (g *h2Guard) field(f hpack.HeaderField) {
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		g.bad = true
	case "te":
		if f.Value != "trailers" {
			g.bad = true
		}
	}
}

// settings rewrites the SETTINGS frame held so that it names each setting once, with its
// last value, up to the first invalid one.
func (g *h2Guard) settings() {
	p := g.buf[h2FrameHeaderLen:]
	at := func(i int) http2.Setting {
		s := p[i*h2SettingLen:]
		return http2.Setting{ID: http2.SettingID(binary.BigEndian.Uint16(s)), Val: binary.BigEndian.Uint32(s[2:])}
	}
	n := len(p) / h2SettingLen
	for i := range n {
		if at(i).Valid() != nil {
			n = i + 1
			break
		}
	}
	later := func(i int) bool {
		for j := i + 1; j < n; j++ {
			if at(j).ID == at(i).ID {
				return true
			}
		}
		return false
	}
	kept := 0
	for i := range n {
		if !later(i) {
			copy(p[kept*h2SettingLen:], p[i*h2SettingLen:(i+1)*h2SettingLen])
			kept++
		}
	}
	size := kept * h2SettingLen
	g.buf[0], g.buf[1], g.buf[2] = byte(size>>16), byte(size>>8), byte(size)
	g.buf = g.buf[:h2FrameHeaderLen+size]
	g.out = g.buf
}
