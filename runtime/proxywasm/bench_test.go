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

// BenchmarkInstanceStart is what a pool pays for one more instance of the Go SDK filter
// (testdata/gofilter): from the VM's image (image: restore its memory and globals, then
// proxy_on_configure), against starting the VM in it (boot: _initialize with Go's runtime
// start, proxy_on_vm_start, proxy_on_configure), as every instance did before VMs had
// images, and as a filter whose VM cannot be copied still does. It reports the image's
// size, the memory it keeps.
func BenchmarkInstanceStart(b *testing.B) {
	r, err := NewRuntime(context.Background(), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close(context.Background())
	wasm := goFilter(b)
	for _, mode := range []string{"boot", "image"} {
		b.Run(mode, func(b *testing.B) {
			p, err := r.Load(context.Background(), wasm, Config{Name: "start-" + mode}, &fakeHost{})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			img := p.vm.img
			if img == nil {
				b.Fatal("the VM has no image")
			}
			kept := 0
			for _, pg := range img.pages {
				kept += len(pg)
			}
			if mode == "boot" {
				p.vm.img = nil // started already, with no image: each instance boots
			}
			b.ReportAllocs()
			for b.Loop() {
				i, err := p.newInstance(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				p.retire(i)
			}
			b.ReportMetric(float64(kept), "image-bytes")
			b.ReportMetric(float64(len(img.pages)*chunkSize), "memory-bytes")
		})
	}
}
