package gateway_test

// The HTTP/2 cases of RFC 9113 that h2spec checks and net/http's server gets wrong on its
// own (issue 11, defect 14), over h2c with prior knowledge and over TLS: a raw client
// writes the frames and reads back exactly what the gateway answers.

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/internal/testutil"
)

// h2Gateway is a gateway with an h2c listener, an h2 listener over TLS and an
// http1+h2c one, all routed to a backend that counts the requests it gets.
type h2Gateway struct {
	addrs map[string]string
	roots *x509.CertPool
	hits  atomic.Int64 // requests that reached the backend
}

func startH2Gateway(t *testing.T) *h2Gateway {
	t.Helper()
	g := &h2Gateway{}
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "hello")
	}))
	t.Cleanup(be.Close)
	dir := t.TempDir()
	c := testutil.WriteCert(t, dir)
	cert, key := c.CertFile, c.KeyFile
	g.roots = x509.NewCertPool()
	g.roots.AppendCertsFromPEM(c.CertPEM)
	_, g.addrs = startGatewayWith(t, fmt.Sprintf(`
listeners:
  - {name: h2c, address: 127.0.0.1:0, protocols: [h2c]}
  - {name: h2, address: 127.0.0.1:0, protocols: [h2], tls: {cert: %s, key: %s}}
  - {name: mixed, address: 127.0.0.1:0, protocols: [http1, h2c]}
backends: [{name: be, endpoints: [%s]}]
routes: [{name: all, match: {path_prefix: /}, backend: be}]
`, cert, key, be.Listener.Addr()), gateway.Options{})
	return g
}

// eachH2 runs f over h2c and over TLS, as subtests.
func (g *h2Gateway) eachH2(t *testing.T, f func(t *testing.T, dial func(*testing.T) *h2Client)) {
	t.Run("h2c", func(t *testing.T) {
		f(t, func(t *testing.T) *h2Client { return dialH2(t, g.addrs["h2c"], nil) })
	})
	t.Run("tls", func(t *testing.T) {
		f(t, func(t *testing.T) *h2Client {
			return dialH2(t, g.addrs["h2"], &tls.Config{RootCAs: g.roots, NextProtos: []string{"h2"}})
		})
	})
}

// TestH2RejectsConnectionSpecificFields: a request with a connection-specific field, or
// with te other than "trailers", is malformed (RFC 9113 8.2.2; h2spec http2/8.1.2.2/1 and
// /2): a stream error PROTOCOL_ERROR, and it does not reach the backend. A request after it
// on the same connection, with the field now in the HPACK dynamic table, is reset too;
// so are one split over HEADERS and CONTINUATION and one with padding and a priority;
// a well-formed one after them gets 200.
func TestH2RejectsConnectionSpecificFields(t *testing.T) {
	g := startH2Gateway(t)
	cases := []struct {
		name   string
		fields []string
	}{
		{"connection", []string{"connection", "keep-alive"}},
		{"keep-alive", []string{"keep-alive", "timeout=5"}},
		{"proxy-connection", []string{"proxy-connection", "keep-alive"}},
		{"transfer-encoding", []string{"transfer-encoding", "chunked"}},
		{"upgrade", []string{"upgrade", "websocket"}},
		{"te other than trailers", []string{"trailers", "test", "te", "trailers, deflate"}},
	}
	g.eachH2(t, func(t *testing.T, dial func(*testing.T) *h2Client) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := dial(t)
				before := g.hits.Load()
				c.request(1, tc.fields...)
				c.wantReset(1, http2.ErrCodeProtocol)
				c.request(3, tc.fields...) // now an indexed field
				c.wantReset(3, http2.ErrCodeProtocol)
				block := c.encode("GET", tc.fields...)
				c.writeHeaders(http2.HeadersFrameParam{StreamID: 5, EndStream: true, BlockFragment: block[:len(block)/2]})
				if err := c.fr.WriteContinuation(5, true, block[len(block)/2:]); err != nil {
					t.Fatal(err)
				}
				c.wantReset(5, http2.ErrCodeProtocol)
				c.writeHeaders(http2.HeadersFrameParam{StreamID: 7, EndStream: true, EndHeaders: true, PadLength: 3,
					Priority: http2.PriorityParam{Weight: 7}, BlockFragment: c.encode("GET", tc.fields...)})
				c.wantReset(7, http2.ErrCodeProtocol)
				if n := g.hits.Load() - before; n != 0 {
					t.Fatalf("%d malformed requests reached the backend", n)
				}
				c.request(9, "te", "trailers")
				c.wantStatus(9, 200)
			})
		}
	})
}

// TestH2HeadersLargerThanMaxFrameSize: a frame carrying a field block that is larger than
// the SETTINGS_MAX_FRAME_SIZE the listener advertised is a connection error FRAME_SIZE_ERROR
// (RFC 9113 4.2; h2spec http2/4.2/3, which sends five 4000-byte fields in one HEADERS
// frame). A DATA frame of exactly that size is fine (h2spec http2/4.2/1).
func TestH2HeadersLargerThanMaxFrameSize(t *testing.T) {
	g := startH2Gateway(t)
	dummies := func() []string {
		var kv []string
		for i := range 5 {
			kv = append(kv, fmt.Sprintf("x-dummy%d", i), strings.Repeat("x", 4000))
		}
		return kv
	}
	g.eachH2(t, func(t *testing.T, dial func(*testing.T) *h2Client) {
		t.Run("headers", func(t *testing.T) {
			c := dial(t)
			block := c.encode("GET", dummies()...)
			if len(block) <= int(c.maxFrame) {
				t.Fatalf("the listener advertises SETTINGS_MAX_FRAME_SIZE %d, so h2spec's %d-byte HEADERS frame is legal", c.maxFrame, len(block))
			}
			c.writeHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, EndHeaders: true, BlockFragment: block})
			c.wantGoAway(http2.ErrCodeFrameSize)
		})
		t.Run("continuation", func(t *testing.T) {
			c := dial(t)
			c.writeHeaders(http2.HeadersFrameParam{StreamID: 1, EndStream: true, BlockFragment: c.encode("GET")})
			if err := c.fr.WriteContinuation(1, true, c.encode("", dummies()...)); err != nil {
				t.Fatal(err)
			}
			c.wantGoAway(http2.ErrCodeFrameSize)
		})
		t.Run("data at the limit", func(t *testing.T) {
			c := dial(t)
			c.writeHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: c.encode("POST")})
			if err := c.fr.WriteData(1, true, bytes.Repeat([]byte("d"), int(c.maxFrame))); err != nil {
				t.Fatal(err)
			}
			c.wantStatus(1, 200)
		})
	})
}

// TestH2SettingsAppliedInOrder: the values of one SETTINGS frame are processed in the order
// they appear (RFC 9113 6.5.3; h2spec http2/6.5.3/1): after INITIAL_WINDOW_SIZE 100 then 1,
// the first DATA frame of a response carries 1 byte; after 1 then 2^31, FLOW_CONTROL_ERROR.
func TestH2SettingsAppliedInOrder(t *testing.T) {
	g := startH2Gateway(t)
	g.eachH2(t, func(t *testing.T, dial func(*testing.T) *h2Client) {
		c := dial(t)
		err := c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
		if err != nil {
			t.Fatal(err)
		}
		c.wantSettingsAck()
		c.request(1)
		c.wantStatus(1, 200)
		f := c.await(1)
		d, ok := f.(*http2.DataFrame)
		if !ok {
			t.Fatalf("got %v, want the response's first DATA frame", f)
		}
		if n := len(d.Data()); n != 1 {
			t.Fatalf("first DATA frame carries %d bytes, want 1 (the last INITIAL_WINDOW_SIZE)", n)
		}

		// An invalid value after a valid one is still seen (6.5.2).
		c = dial(t)
		err = c.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1},
			http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 31})
		if err != nil {
			t.Fatal(err)
		}
		c.wantGoAway(http2.ErrCodeFlowControl)
	})
}

// TestH2HTTP1Unaffected: HTTP/1.1 on a listener that also takes h2c is served as before.
func TestH2HTTP1Unaffected(t *testing.T) {
	g := startH2Gateway(t)
	c, err := net.Dial("tcp", g.addrs["mixed"])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testutil.Patience))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 200 ") || !strings.HasSuffix(string(b), "hello") {
		t.Fatalf("HTTP/1.1 GET on [http1, h2c]: %q, want 200 and the backend's body", b)
	}
	// and h2c prior knowledge on the same listener.
	h := dialH2(t, g.addrs["mixed"], nil)
	h.request(1)
	h.wantStatus(1, 200)
}

// h2Client is a raw HTTP/2 client: it writes frames as told and reads frames back.
type h2Client struct {
	t        *testing.T
	c        net.Conn
	fr       *http2.Framer
	enc      *hpack.Encoder
	buf      bytes.Buffer
	scheme   string
	maxFrame uint32 // the server's SETTINGS_MAX_FRAME_SIZE
}

// dialH2 connects (over TLS with tc, negotiating h2), writes the preface and an empty
// SETTINGS frame, and reads until it has the server's SETTINGS and the ACK of its own.
// Every read and write on it has to be done within [testutil.Patience].
func dialH2(t *testing.T, addr string, tc *tls.Config) *h2Client {
	t.Helper()
	c := &h2Client{t: t, scheme: "http", maxFrame: 16384}
	var err error
	if tc != nil {
		c.scheme = "https"
		var conn *tls.Conn
		conn, err = tls.Dial("tcp", addr, tc)
		if err == nil && conn.ConnectionState().NegotiatedProtocol != "h2" {
			t.Fatalf("ALPN chose %q, want h2", conn.ConnectionState().NegotiatedProtocol)
		}
		c.c = conn
	} else {
		c.c, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.c.Close() })
	c.c.SetDeadline(time.Now().Add(testutil.Patience))
	c.fr = http2.NewFramer(c.c, c.c)
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.enc = hpack.NewEncoder(&c.buf)
	if _, err := io.WriteString(c.c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for theirs, ack := false, false; !theirs || !ack; {
		f := c.read()
		sf, ok := f.(*http2.SettingsFrame)
		switch {
		case !ok:
		case sf.IsAck():
			ack = true
		default:
			theirs = true
			if v, ok := sf.Value(http2.SettingMaxFrameSize); ok {
				c.maxFrame = v
			}
			if err := c.fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

func (c *h2Client) read() http2.Frame {
	c.t.Helper()
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.t.Fatalf("reading a frame: %v", err)
	}
	return f
}

// encode is a request block for method (none when empty) on / with the fields kv.
func (c *h2Client) encode(method string, kv ...string) []byte {
	c.buf.Reset()
	if method != "" {
		for _, f := range []hpack.HeaderField{{Name: ":method", Value: method}, {Name: ":scheme", Value: c.scheme},
			{Name: ":path", Value: "/"}, {Name: ":authority", Value: "example"}} {
			c.enc.WriteField(f)
		}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return bytes.Clone(c.buf.Bytes())
}

func (c *h2Client) writeHeaders(p http2.HeadersFrameParam) {
	c.t.Helper()
	if err := c.fr.WriteHeaders(p); err != nil {
		c.t.Fatal(err)
	}
}

// request writes a GET with the fields kv on stream id, in one HEADERS frame.
func (c *h2Client) request(id uint32, kv ...string) {
	c.t.Helper()
	c.writeHeaders(http2.HeadersFrameParam{StreamID: id, EndStream: true, EndHeaders: true, BlockFragment: c.encode("GET", kv...)})
}

// await reads up to the next frame on stream id or a GOAWAY, skipping the rest (frames
// of other streams, SETTINGS, WINDOW_UPDATE, PING).
func (c *h2Client) await(id uint32) http2.Frame {
	c.t.Helper()
	for {
		f := c.read()
		if _, ok := f.(*http2.GoAwayFrame); ok || f.Header().StreamID == id {
			return f
		}
	}
}

func (c *h2Client) wantReset(id uint32, code http2.ErrCode) {
	c.t.Helper()
	switch f := c.await(id).(type) {
	case *http2.RSTStreamFrame:
		if f.ErrCode != code {
			c.t.Fatalf("stream %d reset with %v, want %v", id, f.ErrCode, code)
		}
	case *http2.MetaHeadersFrame:
		c.t.Fatalf("stream %d answered with status %s, want RST_STREAM %v", id, f.PseudoValue("status"), code)
	default:
		c.t.Fatalf("stream %d: got %v, want RST_STREAM %v", id, f, code)
	}
}

func (c *h2Client) wantStatus(id uint32, status int) {
	c.t.Helper()
	f := c.await(id)
	h, ok := f.(*http2.MetaHeadersFrame)
	if !ok {
		c.t.Fatalf("stream %d: got %v, want a response with status %d", id, f, status)
	}
	if got := h.PseudoValue("status"); got != fmt.Sprint(status) {
		c.t.Fatalf("stream %d answered with status %s, want %d", id, got, status)
	}
}

func (c *h2Client) wantGoAway(code http2.ErrCode) {
	c.t.Helper()
	for {
		switch f := c.read().(type) {
		case *http2.GoAwayFrame:
			if f.ErrCode != code {
				c.t.Fatalf("GOAWAY %v, want %v", f.ErrCode, code)
			}
			return
		case *http2.MetaHeadersFrame:
			c.t.Fatalf("stream %d answered with status %s, want GOAWAY %v", f.StreamID, f.PseudoValue("status"), code)
		case *http2.RSTStreamFrame:
			c.t.Fatalf("stream %d reset with %v, want GOAWAY %v", f.StreamID, f.ErrCode, code)
		}
	}
}

func (c *h2Client) wantSettingsAck() {
	c.t.Helper()
	for {
		switch f := c.read().(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				return
			}
		case *http2.GoAwayFrame:
			c.t.Fatalf("GOAWAY %v, want a SETTINGS ACK", f.ErrCode)
		}
	}
}
