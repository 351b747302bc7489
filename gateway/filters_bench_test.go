package gateway_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// BenchmarkFilters measures a request through routes with no filter (the baseline), one small
// C filter, one small WAT filter, one Go filter (the upstream SDK), and a chain of three
// (Go, C, WAT), in one gateway, in one run; and the C filter and a chain of three again with
// no_callback_deadline. The difference in ns/op from "none" is what the filters cost per
// request.
//
//	go test -run X -bench Filters -benchmem ./gateway/
func BenchmarkFilters(b *testing.B) {
	body := []byte("hello, world\n")
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Length"] = []string{"13"}
		w.Write(body)
	}))
	defer be.Close()
	c := wasmbuild.C(b, "examples/c/hello")
	wat := wasmbuild.WATFile(b, "examples/wat/hello.wat")
	goHello := wasmbuild.Go(b, "examples/go/hello")

	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: c, module: "file:%s"}
  - {name: wat, module: "file:%s"}
  - {name: go, module: "file:%s"}
  - {name: c-trusted, module: "file:%s", limits: {no_callback_deadline: true}}
  - {name: go-trusted, module: "file:%s", limits: {no_callback_deadline: true}}
  - {name: wat-trusted, module: "file:%s", limits: {no_callback_deadline: true}}
routes:
  - {name: c-trusted, match: {path: /c-trusted}, filters: [c-trusted], backend: app}
  - {name: chain3-trusted, match: {path: /chain3-trusted}, filters: [go-trusted, c-trusted, wat-trusted], backend: app}
  - {name: c, match: {path: /c}, filters: [c], backend: app}
  - {name: wat, match: {path: /wat}, filters: [wat], backend: app}
  - {name: go, match: {path: /go}, filters: [go], backend: app}
  - {name: chain3, match: {path: /chain3}, filters: [go, c, wat], backend: app}
  - {name: none, match: {path_prefix: /}, backend: app}
`, be.Listener.Addr(), c, wat, goHello, c, goHello, wat)))
	if err != nil {
		b.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(); err != nil {
		b.Fatal(err)
	}
	defer g.Shutdown(b.Context())
	addr := g.Addrs()["web"]

	for _, path := range []string{"/none", "/c", "/wat", "/go", "/chain3", "/c-trusted", "/chain3-trusted"} {
		b.Run(path[1:], func(b *testing.B) {
			p := new(http.Protocols)
			p.SetHTTP1(true)
			client := &http.Client{Transport: &http.Transport{Protocols: p, MaxIdleConnsPerHost: 64}}
			url := "http://" + addr + path
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("%s: status %d", path, resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
