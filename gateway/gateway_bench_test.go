package gateway_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
)

// BenchmarkProxy measures a request through the gateway against the same request sent
// straight to the backend, in one process over loopback, with HTTP/1.1 keep-alive clients.
// Allocations count the client and the backend too; the difference is the gateway's.
//
//	go test -run X -bench Proxy -benchmem ./gateway/
func BenchmarkProxy(b *testing.B) {
	body := []byte("hello, world\n")
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Length"] = []string{"13"}
		w.Write(body)
	}))
	defer be.Close()
	backendAddr := be.Listener.Addr().String()

	cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%s]}]
routes: [{name: app, match: {path_prefix: /}, backend: app}]
`, backendAddr)))
	if err != nil {
		b.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(); err != nil {
		b.Fatal(err)
	}
	defer g.Shutdown(b.Context())

	for _, target := range []struct{ name, addr string }{
		{"direct", backendAddr},
		{"gateway", g.Addrs()["web"]},
	} {
		b.Run(target.name, func(b *testing.B) {
			p := new(http.Protocols)
			p.SetHTTP1(true)
			client := &http.Client{Transport: &http.Transport{
				Protocols:           p,
				MaxIdleConnsPerHost: 64,
				DialContext:         (&net.Dialer{}).DialContext,
			}}
			url := "http://" + target.addr + "/"
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
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}
