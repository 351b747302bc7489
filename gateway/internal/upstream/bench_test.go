package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The benchmarks run the same round trip through this package and through a tuned
// http.Transport, against the same servers, so that one run gives both figures.
// Allocations are counted process-wide, so the httptest variants include the
// server's own; the raw variants use a server that does not allocate per request,
// which leaves the client's share.

func benchHandler(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "hello, world")
}

var benchResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Length: 12\r\n\r\nhello, world")

// newFixedServer answers every request with benchResponse, without parsing beyond
// finding the end of each request head, and without allocating per request.
func newFixedServer(tb testing.TB) string {
	srv := newRawServer(tb, func(c net.Conn, _ *bufio.Reader) {
		buf := make([]byte, 16<<10)
		var have int
		for {
			n, err := c.Read(buf[have:])
			if err != nil {
				return
			}
			have += n
			for {
				i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				if _, err := c.Write(benchResponse); err != nil {
					return
				}
				have = copy(buf, buf[i+4:have])
			}
		}
	})
	return srv.addr()
}

type roundTripper interface {
	RoundTrip(*http.Request) (*http.Response, error)
}

// benchRoundTrips runs GETs through rt. withCtx gives each request its own
// cancelable context, as a proxy forwarding a server's request does; that costs
// both clients their cancellation hook.
func benchRoundTrips(b *testing.B, rt roundTripper, addr string, withCtx bool) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		base, _ := http.NewRequest("GET", "http://"+addr+"/bench", nil)
		base.Header.Set("User-Agent", "bench")
		for pb.Next() {
			req := base
			var cancel context.CancelFunc = func() {}
			if withCtx {
				var ctx context.Context
				ctx, cancel = context.WithCancel(context.Background())
				req = base.WithContext(ctx)
			}
			resp, err := rt.RoundTrip(req)
			if err != nil {
				cancel()
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			cancel()
		}
	})
}

func benchTransport() *http.Transport {
	return &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
}

var benchCases = []struct {
	name    string
	raw     bool
	withCtx bool
}{
	{"httptest", false, false},
	{"raw", true, false},
	{"raw-ctx", true, true},
}

func benchServer(b *testing.B, raw bool) string {
	if raw {
		return newFixedServer(b)
	}
	ts, _ := newHTTPServer(b, http.HandlerFunc(benchHandler))
	return ts.Listener.Addr().String()
}

func BenchmarkRoundTrip(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			addr := benchServer(b, bc.raw)
			benchRoundTrips(b, newPool(b, addr, Options{}), addr, bc.withCtx)
		})
	}
}

func BenchmarkTransportRoundTrip(b *testing.B) {
	for _, bc := range benchCases {
		b.Run(bc.name, func(b *testing.B) {
			addr := benchServer(b, bc.raw)
			tr := benchTransport()
			defer tr.CloseIdleConnections()
			benchRoundTrips(b, tr, addr, bc.withCtx)
		})
	}
}

// TestAllocs keeps the bodyless keep-alive round trip within its allocation budget.
func TestAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	addr := newFixedServer(t)
	p := newPool(t, addr, Options{})
	req, _ := http.NewRequest("GET", "http://"+addr+"/bench", nil)
	req.Header.Set("User-Agent", "bench")
	roundTrip := func() {
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	roundTrip() // dial outside the measurement
	allocs := testing.AllocsPerRun(200, roundTrip)
	t.Logf("%.1f allocations per round trip", allocs)
	if allocs > 15 {
		t.Errorf("%.1f allocations per round trip, budget 15", allocs)
	}
	if st := p.Stats(); st.Open != 1 {
		t.Errorf("stats %+v: the round trips did not share one connection", st)
	}
}
