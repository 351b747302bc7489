package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/internal/testutil"
)

// rawServer is a TCP server whose handler speaks HTTP by hand, for behavior a
// net/http server will not produce (bad framing, early closes, 1xx, upgrades).
type rawServer struct {
	ln       net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
	wg       sync.WaitGroup
}

func newRawServer(t testing.TB, handle func(c net.Conn, br *bufio.Reader)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				handle(c, bufio.NewReader(c))
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) addr() string { return s.ln.Addr().String() }

// readReq reads one request and its body; ok is false once the client is gone.
func readReq(br *bufio.Reader) (*http.Request, bool) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	if _, err := io.Copy(io.Discard, req.Body); err != nil {
		return nil, false
	}
	return req, true
}

// newHTTPServer starts an httptest server and counts the connections it accepts.
func newHTTPServer(t testing.TB, h http.Handler) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, &n
}

func newPool(t testing.TB, addr string, o Options) *Pool {
	p := NewPool(addr, o)
	t.Cleanup(p.Close)
	return p
}

func newReq(t testing.TB, method, addr, target string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+target, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// do runs a round trip and reads the whole response body.
func do(t testing.TB, p *Pool, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

func wantKind(t testing.TB, err error, kind Kind) *Error {
	t.Helper()
	var ue *Error
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T), want *Error of kind %v", err, err, kind)
	}
	if ue.Kind != kind {
		t.Fatalf("error %v: kind %v, want %v", err, ue.Kind, kind)
	}
	return ue
}

// waitFor polls cond, for state that settles asynchronously (a server noticing a close).
func wantStats(t testing.TB, p *Pool, want Stats) {
	t.Helper()
	testutil.Eventually(t, "pool stats", func() bool { return p.Stats() == want })
}

// pattern is an endless deterministic byte stream, so that large bodies can be
// compared without holding them in memory.
type pattern struct{ off int64 }

func (r *pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(r.off*7 + r.off>>11)
		r.off++
	}
	return len(p), nil
}

func checkPattern(r io.Reader, n int64) error {
	var want pattern
	got := make([]byte, 64<<10)
	exp := make([]byte, 64<<10)
	var total int64
	for {
		k, err := r.Read(got)
		if k > 0 {
			want.Read(exp[:k])
			if string(got[:k]) != string(exp[:k]) {
				return errors.New("body differs from pattern")
			}
			total += int64(k)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if total != n {
		return errors.New("body length differs")
	}
	return nil
}

func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
