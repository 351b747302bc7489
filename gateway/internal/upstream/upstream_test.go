package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

func hello(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	fmt.Fprintf(w, "hello %s", r.URL.Path)
}

func TestKeepAliveReuse(t *testing.T) {
	ts, accepted := newHTTPServer(t, http.HandlerFunc(hello))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	for i := range 100 {
		path := fmt.Sprintf("/r%d", i)
		resp, body := do(t, p, newReq(t, "GET", addr, path, nil))
		if resp.StatusCode != 200 || body != "hello "+path {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
	wantStats(t, p, Stats{Open: 1, Idle: 1})
	if p.Addr() != addr {
		t.Errorf("Addr() = %q", p.Addr())
	}
}

func TestConcurrent(t *testing.T) {
	ts, accepted := newHTTPServer(t, http.HandlerFunc(hello))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for g := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				path := fmt.Sprintf("/g%d/%d", g, i)
				var body io.Reader
				method := "GET"
				if i%3 == 0 {
					method, body = "POST", strings.NewReader("some body")
				}
				resp, err := p.RoundTrip(newReq(t, method, addr, path, body))
				if err != nil {
					errs <- err
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(b) != "hello "+path {
					errs <- fmt.Errorf("%s: %q %v", path, b, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := p.Stats()
	if st.Open != st.Idle || st.Open > 50 || st.Open < 1 {
		t.Errorf("stats after the burst: %+v", st)
	}
	if n := accepted.Load(); n > 50 {
		t.Errorf("server accepted %d connections for 50 concurrent clients", n)
	}
}

// trailerBody sets the request trailer when it reaches EOF, the way a proxy fills in
// the trailers of a body it is forwarding.
type trailerBody struct {
	r   io.Reader
	req *http.Request
	val string
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.req.Trailer.Set("X-Checksum", b.val)
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

func TestRequestBody(t *testing.T) {
	ts, accepted := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "n=%d sum=%x te=%v cl=%d trailer=%q host=%s", n, h.Sum(nil)[:4],
			r.TransferEncoding, r.ContentLength, r.Trailer.Get("X-Checksum"), r.Host)
	}))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:4]) }

	tests := []struct {
		name    string
		data    []byte
		cl      int64 // req.ContentLength
		opaque  bool  // hide the body's type from NewRequest
		trailer string
		want    string
	}{
		{name: "length", data: []byte("hello"), cl: 5,
			want: fmt.Sprintf("n=5 sum=%s te=[] cl=5 trailer=\"\"", sum([]byte("hello")))},
		{name: "length large", data: big, cl: int64(len(big)),
			want: fmt.Sprintf("n=%d sum=%s te=[] cl=%d", len(big), sum(big), len(big))},
		{name: "chunked", data: []byte("hello"), cl: -1,
			want: fmt.Sprintf("n=5 sum=%s te=[chunked] cl=-1 trailer=\"\"", sum([]byte("hello")))},
		{name: "chunked large", data: big, cl: -1,
			want: fmt.Sprintf("n=%d sum=%s te=[chunked] cl=-1", len(big), sum(big))},
		{name: "unknown length as zero", data: []byte("abc"), cl: 0, opaque: true,
			want: fmt.Sprintf("n=3 sum=%s te=[chunked]", sum([]byte("abc")))},
		{name: "chunked with trailer", data: []byte("payload"), cl: -1, trailer: "c0ffee",
			want: fmt.Sprintf("n=7 sum=%s te=[chunked] cl=-1 trailer=\"c0ffee\"", sum([]byte("payload")))},
		{name: "empty chunked with trailer", data: nil, cl: -1, trailer: "e",
			want: "n=0 sum=e3b0c442 te=[chunked] cl=-1 trailer=\"e\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = bytes.NewReader(tt.data)
			if tt.opaque {
				body = io.MultiReader(body)
			}
			req := newReq(t, "POST", addr, "/", body)
			req.ContentLength = tt.cl
			// Framing comes from ContentLength, whatever the header map says.
			req.Header.Set("Content-Length", "999")
			req.Header.Set("Transfer-Encoding", "gzip")
			req.Header.Set("Host", "evil.example")
			if tt.trailer != "" {
				req.Trailer = http.Header{"X-Checksum": nil}
				req.Body = &trailerBody{r: bytes.NewReader(tt.data), req: req, val: tt.trailer}
			}
			resp, got := do(t, p, req)
			if resp.StatusCode != 200 || !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got %d %q\nwant prefix %q", resp.StatusCode, got, tt.want)
			}
			if !strings.HasSuffix(got, "host="+addr) {
				t.Errorf("server saw %q, want host=%s", got, addr)
			}
		})
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1 (bodies must not prevent reuse)", n)
	}
}

func TestResponseTrailers(t *testing.T) {
	ts, _ := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Digest")
		w.Write([]byte("part one,"))
		w.(http.Flusher).Flush()
		w.Write([]byte("part two"))
		w.Header().Set("X-Digest", "abc123")
	}))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	for range 2 {
		resp, body := do(t, p, newReq(t, "GET", addr, "/", nil))
		if body != "part one,part two" {
			t.Fatalf("body %q", body)
		}
		if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
			t.Errorf("TransferEncoding %v", resp.TransferEncoding)
		}
		if got := resp.Trailer.Get("X-Digest"); got != "abc123" {
			t.Errorf("trailer X-Digest = %q", got)
		}
	}
	wantStats(t, p, Stats{Open: 1, Idle: 1})
}

func TestNotReused(t *testing.T) {
	tests := []struct {
		name     string
		response string // written after each request, then the server waits for the client
		closeReq bool   // req.Close
		connHdr  bool   // request header Connection: close
	}{
		{name: "close-delimited HTTP/1.0", response: "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"},
		{name: "close-delimited HTTP/1.1", response: "HTTP/1.1 200 OK\r\n\r\nhello"},
		{name: "HTTP/1.0 keep-alive", response: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"},
		{name: "server Connection: close", response: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"},
		{name: "req.Close", response: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", closeReq: true},
		{name: "request Connection: close", response: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", connHdr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sawClose atomic.Int32
			srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				for {
					req, ok := readReq(br)
					if !ok {
						return
					}
					if req.Close {
						sawClose.Add(1)
					}
					io.WriteString(c, tt.response)
					if strings.HasSuffix(tt.response, "\r\n\r\nhello") && !strings.Contains(tt.response, "Length") {
						return // close-delimited: the close ends the body
					}
				}
			})
			p := newPool(t, srv.addr(), Options{})
			for range 3 {
				req := newReq(t, "GET", srv.addr(), "/", nil)
				req.Close = tt.closeReq
				if tt.connHdr {
					req.Header.Set("Connection", "close")
				}
				_, body := do(t, p, req)
				if body != "hello" {
					t.Fatalf("body %q", body)
				}
				wantStats(t, p, Stats{})
			}
			if n := srv.accepted.Load(); n != 3 {
				t.Errorf("server accepted %d connections, want 3", n)
			}
			if (tt.closeReq || tt.connHdr) && sawClose.Load() != 3 {
				t.Errorf("server saw Connection: close on %d of 3 requests", sawClose.Load())
			}
		})
	}
}

// A server that closes a keep-alive connection while it sits idle in the pool: the
// next request finds it dead, and is retried once on a new connection.
func TestRetryAfterIdleClose(t *testing.T) {
	closed := make(chan struct{}, 10)
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, ok := readReq(br); !ok {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		c.Close()
		closed <- struct{}{}
	})
	p := newPool(t, srv.addr(), Options{})
	for i := range 3 {
		_, body := do(t, p, newReq(t, "GET", srv.addr(), "/", nil))
		if body != "ok" {
			t.Fatalf("request %d: body %q", i, body)
		}
		<-closed
		time.Sleep(5 * time.Millisecond) // let the FIN arrive
	}
	if n := srv.accepted.Load(); n != 3 {
		t.Errorf("server accepted %d connections, want 3", n)
	}
	// A body that nobody has read yet can be sent again too.
	req := newReq(t, "PUT", srv.addr(), "/", strings.NewReader("data"))
	if _, err := p.RoundTrip(req); err != nil {
		// The body goroutine may legitimately win the race and read the body first,
		// in which case retrying would lose it.
		wantKind(t, err, KindReset)
	}
}

func TestFreshConnNotRetried(t *testing.T) {
	tests := []struct {
		name   string
		handle func(c net.Conn, br *bufio.Reader)
	}{
		{"close at once", func(c net.Conn, br *bufio.Reader) {}},
		{"close after the request", func(c net.Conn, br *bufio.Reader) { readReq(br) }},
		{"partial header", func(c net.Conn, br *bufio.Reader) {
			readReq(br)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, tt.handle)
			p := newPool(t, srv.addr(), Options{})
			_, err := p.RoundTrip(newReq(t, "GET", srv.addr(), "/", nil))
			wantKind(t, err, KindReset)
			if n := srv.accepted.Load(); n != 1 {
				t.Errorf("server accepted %d connections, want 1", n)
			}
			wantStats(t, p, Stats{})
		})
	}
}

func TestDialClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := newPool(t, addr, Options{DialTimeout: time.Second})
	body := &closeRecorder{Reader: strings.NewReader("x")}
	req := newReq(t, "POST", addr, "/", body)
	_, err = p.RoundTrip(req)
	wantKind(t, err, KindConnect)
	if !body.closed.Load() {
		t.Error("request body not closed")
	}
	wantStats(t, p, Stats{})
}

type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (c *closeRecorder) Close() error {
	c.closed.Store(true)
	return nil
}

// A backend that echoes while it reads would deadlock a client that writes the whole
// body before reading; so would one that reads slowly behind a client that buffers.
func TestEchoLargeBody(t *testing.T) {
	const size = 64 << 20
	ts, _ := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		io.Copy(w, r.Body)
	}))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	for _, cl := range []int64{-1, size} {
		t.Run(fmt.Sprint("cl=", cl), func(t *testing.T) {
			req := newReq(t, "POST", addr, "/", io.LimitReader(&pattern{}, size))
			req.ContentLength = cl
			req = req.WithContext(ctxTimeout(t, 60*time.Second))
			resp, err := p.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if err := checkPattern(resp.Body, size); err != nil {
				t.Fatal(err)
			}
		})
	}
	wantStats(t, p, Stats{Open: 1, Idle: 1})
}

func TestSlowBodyStreams(t *testing.T) {
	const chunks = 5
	got := make(chan string)
	ts, _ := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 100)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				got <- string(buf[:n])
			}
			if err != nil {
				break
			}
		}
		io.WriteString(w, "done")
	}))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	for _, cl := range []int64{-1, chunks * 4} {
		t.Run(fmt.Sprint("cl=", cl), func(t *testing.T) {
			pr, pw := io.Pipe()
			req := newReq(t, "POST", addr, "/", pr)
			req.ContentLength = cl
			req = req.WithContext(ctxTimeout(t, 10*time.Second))
			type result struct {
				body string
				err  error
			}
			res := make(chan result, 1)
			go func() {
				resp, err := p.RoundTrip(req)
				if err != nil {
					res <- result{err: err}
					return
				}
				b, err := io.ReadAll(resp.Body)
				res <- result{string(b), err}
			}()
			// Each piece must reach the server before the next one is written:
			// nothing may sit in a buffer waiting for more.
			for i := range chunks {
				piece := fmt.Sprintf("c%02d;", i)
				pw.Write([]byte(piece))
				select {
				case s := <-got:
					if s != piece {
						t.Fatalf("server read %q, want %q", s, piece)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("piece %d never reached the server", i)
				}
			}
			pw.Close()
			r := <-res
			if r.err != nil || r.body != "done" {
				t.Fatalf("got %q, %v", r.body, r.err)
			}
		})
	}
}

// The client sends its body only once it has the response header, which the
// backend sends before reading anything: the request head must not wait for the
// body's first bytes.
func TestFullDuplex(t *testing.T) {
	ts, _ := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).EnableFullDuplex()
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	for _, cl := range []int64{-1, 8} {
		t.Run(fmt.Sprint("cl=", cl), func(t *testing.T) {
			pr, pw := io.Pipe()
			req := newReq(t, "POST", addr, "/", pr).WithContext(ctxTimeout(t, 10*time.Second))
			req.ContentLength = cl
			resp, err := p.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			for _, msg := range []string{"ping", "pong"} {
				io.WriteString(pw, msg)
				if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != msg {
					t.Fatalf("echo %q, %v", buf, err)
				}
			}
			pw.Close()
			if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
				t.Fatalf("after the body: %q, %v", rest, err)
			}
		})
	}
	wantStats(t, p, Stats{Open: 1, Idle: 1})
}

func TestUpgrade(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		req, ok := readReq(br)
		if !ok || req.Header.Get("Upgrade") != "echo" {
			return
		}
		// The first stream bytes travel with the 101, so they sit in the client's
		// read buffer when RoundTrip returns.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nhello")
		buf := make([]byte, 4)
		for {
			if _, err := io.ReadFull(br, buf); err != nil {
				return
			}
			if string(buf) == "ping" {
				io.WriteString(c, "pong")
			}
		}
	})
	p := newPool(t, srv.addr(), Options{})
	req := newReq(t, "GET", srv.addr(), "/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body is %T, not an io.ReadWriteCloser", resp.Body)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(rw, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	for range 3 {
		if _, err := io.WriteString(rw, "ping"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rw, buf[:4]); err != nil || string(buf[:4]) != "pong" {
			t.Fatalf("read %q, %v", buf[:4], err)
		}
	}
	if st := p.Stats(); st != (Stats{Open: 1}) {
		t.Errorf("stats with the stream open: %+v", st)
	}
	rw.Close()
	wantStats(t, p, Stats{})
}

func TestResponseHeaderLimit(t *testing.T) {
	tests := []struct {
		name  string
		limit int
		pad   int // bytes of header value
		ok    bool
	}{
		{"small header under small limit", 1024, 500, true},
		{"header over small limit", 1024, 2000, false},
		{"header just under limit with body after it", 4096, 3900, true},
		{"header over default limit", 0, 100 << 10, false},
		{"many lines over limit", 2048, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var head string
			if tt.pad >= 0 {
				head = "HTTP/1.1 200 OK\r\nX-Pad: " + strings.Repeat("a", tt.pad) + "\r\nContent-Length: 4096\r\n\r\n"
			} else {
				head = "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", 1000) + "Content-Length: 4096\r\n\r\n"
			}
			resp := head + strings.Repeat("b", 4096)
			srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				if _, ok := readReq(br); ok {
					io.WriteString(c, resp)
					readReq(br)
				}
			})
			p := newPool(t, srv.addr(), Options{MaxResponseHeaderBytes: tt.limit})
			r, err := p.RoundTrip(newReq(t, "GET", srv.addr(), "/", nil))
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(r.Body)
				if len(b) != 4096 {
					t.Fatalf("body of %d bytes", len(b))
				}
				return
			}
			ue := wantKind(t, err, KindProtocol)
			if !errors.Is(ue, errHeaderTooLarge) {
				t.Errorf("error %v, want %v", ue, errHeaderTooLarge)
			}
			wantStats(t, p, Stats{})
		})
	}
}

func TestContextEnds(t *testing.T) {
	handlerDone := make(chan struct{}, 4)
	ts, _ := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// net/http notices a client's close only once the request body is consumed.
		io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/stall-body" {
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(200)
			w.Write([]byte("12345"))
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done() // the server notices the client's close
		handlerDone <- struct{}{}
	}))
	addr := ts.Listener.Addr().String()
	tests := []struct {
		name   string
		path   string
		cancel bool // cancel instead of a deadline
		body   bool
		kind   Kind
		errIs  error
		inBody bool // the context ends while the body is read
	}{
		{name: "timeout waiting for header", path: "/", kind: KindTimeout, errIs: context.DeadlineExceeded},
		{name: "timeout with request body", path: "/", body: true, kind: KindTimeout, errIs: context.DeadlineExceeded},
		{name: "canceled waiting for header", path: "/", cancel: true, kind: KindCanceled, errIs: context.Canceled},
		{name: "timeout reading body", path: "/stall-body", kind: KindTimeout, errIs: context.DeadlineExceeded, inBody: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, addr, Options{})
			var ctx context.Context
			if tt.cancel {
				c, cancel := context.WithCancel(context.Background())
				time.AfterFunc(50*time.Millisecond, cancel)
				ctx = c
			} else {
				ctx = ctxTimeout(t, 100*time.Millisecond)
			}
			var body io.Reader
			if tt.body {
				body = strings.NewReader("abc")
			}
			req := newReq(t, "POST", addr, tt.path, body).WithContext(ctx)
			resp, err := p.RoundTrip(req)
			if tt.inBody {
				if err != nil {
					t.Fatal(err)
				}
				_, err = io.ReadAll(resp.Body)
			}
			ue := wantKind(t, err, tt.kind)
			if !errors.Is(ue, tt.errIs) {
				t.Errorf("error %v is not %v", ue, tt.errIs)
			}
			wantStats(t, p, Stats{})
			select {
			case <-handlerDone:
			case <-time.After(5 * time.Second):
				t.Fatal("the server never saw the connection close")
			}
		})
	}
}

// A cause set by the caller (a per-try timeout, say) stays matchable.
func TestContextCause(t *testing.T) {
	errPerTry := errors.New("per-try timeout")
	ts, _ := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(20*time.Millisecond, func() { cancel(errPerTry) })
	_, err := p.RoundTrip(newReq(t, "GET", addr, "/", nil).WithContext(ctx))
	ue := wantKind(t, err, KindCanceled)
	if !errors.Is(ue, errPerTry) || !errors.Is(ue, context.Canceled) {
		t.Errorf("error %v should match both the cause and context.Canceled", ue)
	}
}

func TestInvalidRequestRejected(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) { readReq(br) })
	addr := srv.addr()
	tests := []struct {
		name  string
		setup func(r *http.Request)
	}{
		{"CRLF in value", func(r *http.Request) { r.Header["X-A"] = []string{"ok\r\nX-Injected: 1"} }},
		{"LF in value", func(r *http.Request) { r.Header["X-A"] = []string{"ok\nX-Injected: 1"} }},
		{"NUL in value", func(r *http.Request) { r.Header["X-A"] = []string{"a\x00b"} }},
		{"CR in second value", func(r *http.Request) { r.Header["X-A"] = []string{"fine", "bad\r"} }},
		{"space in name", func(r *http.Request) { r.Header["X A"] = []string{"v"} }},
		{"colon in name", func(r *http.Request) { r.Header["X-A:"] = []string{"v"} }},
		{"CRLF in name", func(r *http.Request) { r.Header["X-A\r\nX-B"] = []string{"v"} }},
		{"empty name", func(r *http.Request) { r.Header[""] = []string{"v"} }},
		{"CRLF in Host", func(r *http.Request) { r.Host = "example.com\r\nX-Injected: 1" }},
		{"space in method", func(r *http.Request) { r.Method = "GET / HTTP/1.1\r\n" }},
		{"space in query", func(r *http.Request) { r.URL.RawQuery = "a=1 HTTP/1.1\r\nX: y" }},
		{"CRLF in opaque", func(r *http.Request) { r.URL.Opaque = "/a\r\nb" }},
		{"no host", func(r *http.Request) { r.Host, r.URL.Host = "", "" }},
		{"bad trailer name", func(r *http.Request) {
			r.Body, r.ContentLength = io.NopCloser(strings.NewReader("x")), -1
			r.Trailer = http.Header{"Bad Name": nil}
		}},
		{"length without body", func(r *http.Request) { r.ContentLength = 10 }},
	}
	p := newPool(t, addr, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newReq(t, "GET", addr, "/", nil)
			tt.setup(req)
			_, err := p.RoundTrip(req)
			wantKind(t, err, KindProtocol)
		})
	}
	if n := srv.accepted.Load(); n != 0 {
		t.Errorf("invalid requests reached the server (%d connections)", n)
	}
}

// A trailer value is only known after the body, so it is checked late; the bad
// value must still never be written.
func TestInvalidTrailerValue(t *testing.T) {
	var wire bytes.Buffer
	var mu sync.Mutex
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		b, _ := io.ReadAll(br)
		mu.Lock()
		wire.Write(b)
		mu.Unlock()
	})
	p := newPool(t, srv.addr(), Options{})
	req := newReq(t, "POST", srv.addr(), "/", nil)
	req.ContentLength = -1
	req.Trailer = http.Header{"X-Checksum": nil}
	req.Body = &trailerBody{r: strings.NewReader("data"), req: req, val: "v\r\nX-Injected: 1"}
	_, err := p.RoundTrip(req)
	wantKind(t, err, KindProtocol)
	wantStats(t, p, Stats{})
	testutil.Eventually(t, "server to see the close", func() bool { return srv.accepted.Load() == 1 })
	srv.ln.Close()
	time.Sleep(20 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(wire.String(), "Injected") {
		t.Errorf("the bad trailer reached the wire:\n%s", wire.String())
	}
}

func TestRequestHead(t *testing.T) {
	heads := make(chan string, 1)
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			var head strings.Builder
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				head.WriteString(line)
				if line == "\r\n" {
					break
				}
			}
			heads <- head.String()
			io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	addr := srv.addr()
	p := newPool(t, addr, Options{})
	tests := []struct {
		name  string
		setup func(r *http.Request)
		want  []string // lines that must appear
		not   []string // substrings that must not
	}{
		{name: "path and query", setup: func(r *http.Request) { r.URL.Path, r.URL.RawQuery = "/a b/c", "x=1&y=%20" },
			want: []string{"GET /a%20b/c?x=1&y=%20 HTTP/1.1", "Host: " + addr}},
		{name: "raw path kept", setup: func(r *http.Request) { r.URL.Path, r.URL.RawPath = "/a/b", "/a%2Fb" },
			want: []string{"GET /a%2Fb HTTP/1.1"}},
		{name: "empty path", setup: func(r *http.Request) { r.URL.Path = "" }, want: []string{"GET / HTTP/1.1"}},
		{name: "force query", setup: func(r *http.Request) { r.URL.ForceQuery = true }, want: []string{"GET /p? HTTP/1.1"}},
		{name: "opaque", setup: func(r *http.Request) { r.URL.Opaque = "/x%2Fy" }, want: []string{"GET /x%2Fy HTTP/1.1"}},
		{name: "host header", setup: func(r *http.Request) {
			r.Host = "api.example"
			r.Header["Host"] = []string{"other"}
			r.Header["host"] = []string{"other"}
		}, want: []string{"Host: api.example"}, not: []string{"other"}},
		{name: "empty POST gets length", setup: func(r *http.Request) { r.Method = "POST" },
			want: []string{"POST /p HTTP/1.1", "Content-Length: 0"}, not: []string{"Transfer-Encoding"}},
		{name: "multi-valued header", setup: func(r *http.Request) { r.Header["X-Multi"] = []string{"a", "b"} },
			want: []string{"X-Multi: a", "X-Multi: b"}},
		{name: "framing headers dropped", setup: func(r *http.Request) {
			r.Header["Transfer-Encoding"] = []string{"chunked"}
			r.Header["content-length"] = []string{"12"}
		}, not: []string{"chunked", "ength: 12", "ength"}},
		{name: "req.Close", setup: func(r *http.Request) { r.Close = true }, want: []string{"Connection: close"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newReq(t, "GET", addr, "/p", nil)
			tt.setup(req)
			do(t, p, req)
			head := <-heads
			lines := strings.Split(head, "\r\n")
			for _, w := range tt.want {
				if !contains(lines, w) {
					t.Errorf("head lacks %q:\n%s", w, head)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(head, n) {
					t.Errorf("head contains %q:\n%s", n, head)
				}
			}
			if strings.Count(head, "Host:") != 1 {
				t.Errorf("want exactly one Host:\n%s", head)
			}
		})
	}
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if l == s {
			return true
		}
	}
	return false
}

func TestInformationalSkipped(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
			io.Copy(io.Discard, req.Body)
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
		}
	})
	p := newPool(t, srv.addr(), Options{})
	for range 2 {
		req := newReq(t, "PUT", srv.addr(), "/", strings.NewReader("body"))
		req.Header.Set("Expect", "100-continue")
		resp, body := do(t, p, req)
		if resp.StatusCode != 200 || body != "final" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		if resp.Header.Get("Link") != "" {
			t.Errorf("1xx header leaked into the final response")
		}
	}
	if n := srv.accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

func TestTooManyInformational(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		readReq(br)
		io.WriteString(c, strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", 10)+"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
		readReq(br)
	})
	p := newPool(t, srv.addr(), Options{})
	_, err := p.RoundTrip(newReq(t, "GET", srv.addr(), "/", nil))
	wantKind(t, err, KindProtocol)
}

func TestMalformedResponse(t *testing.T) {
	tests := []string{
		"HTTP/1.1 OK\r\n\r\n",
		"SSH-2.0-OpenSSH_9.6\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
	}
	for _, resp := range tests {
		t.Run(strings.Fields(resp)[0], func(t *testing.T) {
			srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
				readReq(br)
				io.WriteString(c, resp)
				readReq(br)
			})
			p := newPool(t, srv.addr(), Options{})
			_, err := p.RoundTrip(newReq(t, "GET", srv.addr(), "/", nil))
			wantKind(t, err, KindProtocol)
			wantStats(t, p, Stats{})
		})
	}
}

func TestCloseBeforeEOF(t *testing.T) {
	ts, accepted := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.Copy(w, io.LimitReader(&pattern{}, 8<<20))
			return
		}
		io.WriteString(w, "small")
	}))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	resp, err := p.RoundTrip(newReq(t, "GET", addr, "/big", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := resp.Body.Read(make([]byte, 10)); err == nil {
		t.Error("read after Close succeeded")
	}
	wantStats(t, p, Stats{})
	_, body := do(t, p, newReq(t, "GET", addr, "/", nil))
	if body != "small" {
		t.Fatalf("body %q", body)
	}
	if n := accepted.Load(); n != 2 {
		t.Errorf("server accepted %d connections, want 2", n)
	}
}

// A backend that answers before reading the body, then neither reads nor closes: the
// response is delivered, and the connection, with a body still half sent, is dropped.
func TestEarlyResponse(t *testing.T) {
	done := make(chan struct{})
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
		<-done // neither read nor close until the test ends
	})
	t.Cleanup(func() { close(done) })
	p := newPool(t, srv.addr(), Options{})
	body := &closeRecorder{Reader: &pattern{}}
	req := newReq(t, "POST", srv.addr(), "/", body)
	req.ContentLength = -1
	resp, got := do(t, p, req)
	if resp.StatusCode != 413 || got != "too big!" {
		t.Fatalf("got %d %q", resp.StatusCode, got)
	}
	wantStats(t, p, Stats{})
	testutil.Eventually(t, "request body closed", body.closed.Load)
}

type failingBody struct{ n int }

func (b *failingBody) Read(p []byte) (int, error) {
	if b.n > 0 {
		b.n--
		return copy(p, "some bytes"), nil
	}
	return 0, errors.New("client went away")
}

func (b *failingBody) Close() error { return nil }

func TestRequestBodyFails(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, br *bufio.Reader) { readReq(br) })
	for _, cl := range []int64{-1, 1000} {
		t.Run(fmt.Sprint("cl=", cl), func(t *testing.T) {
			p := newPool(t, srv.addr(), Options{})
			req := newReq(t, "POST", srv.addr(), "/", nil)
			req.Body, req.ContentLength = &failingBody{n: 3}, cl
			_, err := p.RoundTrip(req)
			ue := wantKind(t, err, KindRequestBody)
			if !strings.Contains(ue.Error(), "client went away") {
				t.Errorf("error %v", ue)
			}
			wantStats(t, p, Stats{})
		})
	}
	t.Run("short", func(t *testing.T) {
		p := newPool(t, srv.addr(), Options{})
		req := newReq(t, "POST", srv.addr(), "/", strings.NewReader("abc"))
		req.ContentLength = 10
		_, err := p.RoundTrip(req)
		wantKind(t, err, KindRequestBody)
	})
}

func TestIdleLimits(t *testing.T) {
	ts, accepted := newHTTPServer(t, http.HandlerFunc(hello))
	addr := ts.Listener.Addr().String()

	t.Run("MaxIdle", func(t *testing.T) {
		p := newPool(t, addr, Options{MaxIdle: 2})
		// Five responses held unread keep five connections busy.
		var resps []*http.Response
		for range 5 {
			resp, err := p.RoundTrip(newReq(t, "GET", addr, "/", nil))
			if err != nil {
				t.Fatal(err)
			}
			resps = append(resps, resp)
		}
		if st := p.Stats(); st != (Stats{Open: 5}) {
			t.Errorf("stats with 5 in use: %+v", st)
		}
		for _, r := range resps {
			io.ReadAll(r.Body)
			r.Body.Close()
		}
		wantStats(t, p, Stats{Open: 2, Idle: 2})
	})
	t.Run("no pooling", func(t *testing.T) {
		p := newPool(t, addr, Options{MaxIdle: -1})
		do(t, p, newReq(t, "GET", addr, "/", nil))
		wantStats(t, p, Stats{})
	})
	t.Run("IdleTimeout", func(t *testing.T) {
		p := newPool(t, addr, Options{IdleTimeout: 20 * time.Millisecond})
		before := accepted.Load()
		do(t, p, newReq(t, "GET", addr, "/", nil))
		time.Sleep(50 * time.Millisecond)
		do(t, p, newReq(t, "GET", addr, "/", nil))
		if n := accepted.Load() - before; n != 2 {
			t.Errorf("%d connections for two requests an idle timeout apart, want 2", n)
		}
		wantStats(t, p, Stats{Open: 1, Idle: 1})
	})
	t.Run("cold connection retired", func(t *testing.T) {
		const timeout = 200 * time.Millisecond
		p := newPool(t, addr, Options{IdleTimeout: timeout})
		r1, err1 := p.RoundTrip(newReq(t, "GET", addr, "/", nil))
		r2, err2 := p.RoundTrip(newReq(t, "GET", addr, "/", nil))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		io.ReadAll(r1.Body) // bottom of the stack
		io.ReadAll(r2.Body) // top
		wantStats(t, p, Stats{Open: 2, Idle: 2})
		// Keep using the top one: the bottom one expires, and a put retires it
		// although nothing ever pops it.
		time.Sleep(timeout * 6 / 10)
		do(t, p, newReq(t, "GET", addr, "/", nil))
		time.Sleep(timeout * 6 / 10)
		do(t, p, newReq(t, "GET", addr, "/", nil))
		wantStats(t, p, Stats{Open: 1, Idle: 1})
	})
	t.Run("Close", func(t *testing.T) {
		p := newPool(t, addr, Options{})
		resp, err := p.RoundTrip(newReq(t, "GET", addr, "/", nil)) // in flight across Close
		if err != nil {
			t.Fatal(err)
		}
		do(t, p, newReq(t, "GET", addr, "/", nil))
		wantStats(t, p, Stats{Open: 2, Idle: 1})
		p.Close()
		wantStats(t, p, Stats{Open: 1})
		io.ReadAll(resp.Body)
		wantStats(t, p, Stats{})
		// Still usable, without pooling.
		do(t, p, newReq(t, "GET", addr, "/", nil))
		wantStats(t, p, Stats{})
	})
}

func TestHeadAndNoContent(t *testing.T) {
	ts, accepted := newHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/204" {
			w.WriteHeader(204)
			return
		}
		w.Header().Set("Content-Length", "1000")
		if r.Method != "HEAD" {
			w.Write(make([]byte, 1000))
		}
	}))
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{})
	for _, tc := range []struct{ method, path string }{{"HEAD", "/"}, {"GET", "/204"}, {"HEAD", "/"}} {
		resp, err := p.RoundTrip(newReq(t, tc.method, addr, tc.path, nil))
		if err != nil {
			t.Fatal(err)
		}
		// Already back in the pool: there is no body to wait for.
		if st := p.Stats(); st != (Stats{Open: 1, Idle: 1}) {
			t.Errorf("%s %s: stats %+v", tc.method, tc.path, st)
		}
		if n, _ := io.Copy(io.Discard, resp.Body); n != 0 {
			t.Errorf("%s %s: %d body bytes", tc.method, tc.path, n)
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
}

func TestTLS(t *testing.T) {
	ts := newTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "proto=%s", r.Proto)
	}))
	roots := x509.NewCertPool()
	roots.AddCert(ts.Certificate())
	// NextProtos asking for h2 first must not matter: the pool speaks HTTP/1.1 only.
	conf := &tls.Config{RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}}
	addr := ts.Listener.Addr().String()
	p := newPool(t, addr, Options{TLS: conf})
	for range 3 {
		_, body := do(t, p, newReq(t, "GET", addr, "/", nil))
		if body != "proto=HTTP/1.1" {
			t.Fatalf("body %q", body)
		}
	}
	wantStats(t, p, Stats{Open: 1, Idle: 1})

	bad := newPool(t, addr, Options{TLS: &tls.Config{}}) // unknown CA
	_, err := bad.RoundTrip(newReq(t, "GET", addr, "/", nil))
	wantKind(t, err, KindConnect)
}

func TestErrorFormat(t *testing.T) {
	inner := errors.New("boom")
	e := &Error{Kind: KindReset, Err: inner}
	if got := e.Error(); got != "upstream reset: boom" {
		t.Errorf("Error() = %q", got)
	}
	if !errors.Is(e, inner) {
		t.Error("Unwrap does not reach the inner error")
	}
	for k, s := range map[Kind]string{KindConnect: "connect", KindReset: "reset", KindTimeout: "timeout",
		KindProtocol: "protocol", KindCanceled: "canceled", KindRequestBody: "request body", 0: "kind(0)"} {
		if k.String() != s {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), k.String(), s)
		}
	}
}

func TestMakeTarget(t *testing.T) {
	tests := []string{"http://h/", "http://h", "http://h/a%20b?c=d", "http://h/a%2Fb", "http://h/x?", "http://h/p?q", "http://h/ü"}
	for _, s := range tests {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tg := makeTarget(u)
		got := tg.a + tg.b + tg.c
		if tg.hasQuery {
			got += "?" + tg.query
		}
		if want := u.RequestURI(); got != want {
			t.Errorf("%s: target %q, RequestURI %q", s, got, want)
		}
	}
	u := &url.URL{Scheme: "http", Opaque: "//h/p", RawQuery: "x"}
	tg := makeTarget(u)
	if got := tg.a + tg.b + tg.c + "?" + tg.query; got != u.RequestURI() {
		t.Errorf("opaque: %q, want %q", got, u.RequestURI())
	}
}

func newTLSServer(t *testing.T, h http.Handler) *httptest.Server {
	ts := httptest.NewUnstartedServer(h)
	ts.EnableHTTP2 = true // offered; the client must still get HTTP/1.1
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}
