package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/stream"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// BenchmarkFilterStage is the gateway's own work for a request with no network around it:
// the listener's handler called directly, on routes that answer with a direct response, with
// no filter (the baseline), one small filter (C, WAT, Go on the upstream SDK) or the chain of
// all three. The difference from "none" is what a filter costs the host per request, its
// callbacks included; without sockets, the figures hold still where an end-to-end run's vary
// by a third. "one" runs requests one after another, so that every filter's pool hands out
// the same warm instance each time; "spread" keeps 64 requests in the handler at once, as 64
// connections do, so that each takes its own instance, and the instances' memory and their
// guests' heaps are cold in the CPU caches by the time each comes round again. Callbacks
// get 1s, as in BenchmarkDecisions: 64 goroutines that never wait on I/O queue for 2 cores,
// and one preempted in a host call may wait past the default 100ms.
//
//	go test -run X -bench FilterStage -benchmem ./gateway/
func BenchmarkFilterStage(b *testing.B) {
	c := wasmbuild.C(b, "examples/c/hello")
	wat := wasmbuild.WATFile(b, "examples/wat/hello.wat")
	goHello := wasmbuild.Go(b, "examples/go/hello")
	cfg, err := config.Parse(b.TempDir()+"/plexus.yaml", fmt.Appendf(nil, `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
filters:
  - {name: c, module: "file:%[1]s", limits: {instances: 64, callback_timeout: 1s}}
  - {name: wat, module: "file:%[2]s", limits: {instances: 64, callback_timeout: 1s}}
  - {name: go, module: "file:%[3]s", limits: {instances: 64, callback_timeout: 1s}}
routes:
  - {name: c, match: {path: /c}, filters: [c], direct_response: {body: ok}}
  - {name: wat, match: {path: /wat}, filters: [wat], direct_response: {body: ok}}
  - {name: go, match: {path: /go}, filters: [go], direct_response: {body: ok}}
  - {name: chain3, match: {path: /chain3}, filters: [go, c, wat], direct_response: {body: ok}}
  - {name: none, match: {path_prefix: /}, direct_response: {body: ok}}
`, c, wat, goHello))
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(cfg, Options{Logger: slog.New(slog.DiscardHandler), CacheDir: testutil.GatewayCacheDir()})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(); err != nil {
		b.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	h := g.listeners[0].srv.Handler
	for _, path := range []string{"/none", "/c", "/wat", "/go", "/chain3"} {
		for _, mode := range []string{"one", "spread"} {
			b.Run(path[1:]+"/"+mode, func(b *testing.B) {
				// serve answers one request; false (reported) when it was not a 200.
				serve := func(w *discardWriter, ctx context.Context) bool {
					r := &http.Request{Method: "GET", URL: &url.URL{Path: path}, RequestURI: path, Proto: "HTTP/1.1",
						ProtoMajor: 1, ProtoMinor: 1, Host: "bench", RemoteAddr: "127.0.0.1:5555",
						Header: http.Header{"User-Agent": {"bench"}, "Accept": {"*/*"}}}
					w.reset()
					h.ServeHTTP(w, r.WithContext(ctx))
					if w.status != http.StatusOK {
						b.Errorf("%s: status %d %v", path, w.status, w.h)
						return false
					}
					return true
				}
				b.ReportAllocs()
				if mode == "one" {
					w, ctx := &discardWriter{}, stream.ConnContext(context.Background())
					for b.Loop() {
						if !serve(w, ctx) {
							return
						}
					}
					return
				}
				b.SetParallelism(32) // 64 goroutines on 2 cores
				b.RunParallel(func(pb *testing.PB) {
					w, ctx := &discardWriter{}, stream.ConnContext(context.Background())
					for pb.Next() {
						if !serve(w, ctx) {
							return
						}
					}
				})
			})
		}
	}
}

// discardWriter is a ResponseWriter that keeps the status and drops the rest.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) reset() {
	clear(w.h)
	w.status = 0
}

func (w *discardWriter) Header() http.Header {
	if w.h == nil {
		w.h = http.Header{}
	}
	return w.h
}

func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return len(p), nil
}

// SetWriteDeadline is what the real writers have: the handler sets write deadlines.
func (w *discardWriter) SetWriteDeadline(time.Time) error { return nil }
