package proxywasm

import (
	"context"
	"log/slog"
	"testing"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// BenchmarkStream is one request through a filter: NewStream, OnRequestHeaders,
// OnResponseHeaders, Close. nop is the baseline (every callback returns at once);
// onecall reads :path in proxy_on_request_headers (one host call, which calls back into
// the guest's malloc); gosdk is testdata/gofilter, built with the upstream Go SDK (its
// default path: three header edits, a metric, a log line at stream end).
func BenchmarkStream(b *testing.B) {
	modules := []struct {
		name string
		wasm func(testing.TB) []byte
	}{
		{"nop", func(t testing.TB) []byte { return wasmbuild.WAT(t, nopWAT) }},
		{"onecall", func(t testing.TB) []byte { return wasmbuild.WAT(t, onecallWAT) }},
		{"gosdk", goFilter},
	}
	// One compilation cache: each module compiles once. Filter logs (the Go filter logs a
	// line per stream) are discarded: the test's log sink would grow without bound.
	r, err := NewRuntime(context.Background(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(context.Background())
	for _, m := range modules {
		wasm := m.wasm(b)
		for _, parallel := range []bool{false, true} {
			name := m.name
			if parallel {
				name += "/parallel"
			}
			b.Run(name, func(b *testing.B) {
				p, err := r.Load(context.Background(), wasm, Config{Name: m.name}, &fakeHost{})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				run := func(req, resp *Headers) {
					s, err := p.NewStream(context.Background(), nil)
					if err != nil {
						b.Fatal(err)
					}
					req.Fields = req.Fields[:3]
					resp.Fields = resp.Fields[:1]
					if _, err := s.OnRequestHeaders(req, true); err != nil {
						b.Fatal(err)
					}
					if _, err := s.OnResponseHeaders(resp, true); err != nil {
						b.Fatal(err)
					}
					s.Close()
				}
				newHeaders := func() (*Headers, *Headers) {
					return &Headers{Fields: make([]Field, 3, 8)}, &Headers{Fields: make([]Field, 1, 4)}
				}
				b.ReportAllocs()
				if !parallel {
					req, resp := newHeaders()
					copy(req.Fields, []Field{{":method", "GET"}, {":path", "/bench"}, {":authority", "a"}})
					resp.Fields[0] = Field{":status", "200"}
					for b.Loop() {
						run(req, resp)
					}
					return
				}
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					req, resp := newHeaders()
					copy(req.Fields, []Field{{":method", "GET"}, {":path", "/bench"}, {":authority", "a"}})
					resp.Fields[0] = Field{":status", "200"}
					for pb.Next() {
						run(req, resp)
					}
				})
			})
		}
	}
}
