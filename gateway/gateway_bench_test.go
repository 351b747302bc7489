package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway"
)

// BenchmarkProxy measures a request through the gateway against the same request sent
// straight to the backend, in one process over loopback, with HTTP/1.1 keep-alive clients.
// Allocations count the client and the backend too; the difference is the gateway's.
//
//	go test -run X -bench Proxy -benchmem ./gateway/
func BenchmarkProxy(b *testing.B) {
	backend := benchBackend(b)
	_, gw := startGatewayWith(b, `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [`+backend+`]}]
routes: [{name: app, match: {path_prefix: /}, backend: app}]
`, gateway.Options{})
	b.Run("direct", func(b *testing.B) { hammer(b, "http://"+backend+"/") })
	b.Run("gateway", func(b *testing.B) { hammer(b, "http://"+gw["web"]+"/") })
}

// benchBackend serves a 13-byte answer, the smallest useful one, and returns its address.
func benchBackend(b *testing.B) string {
	body := []byte("hello, world\n")
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Length"] = []string{"13"}
		w.Write(body)
	}))
	b.Cleanup(be.Close)
	return be.Listener.Addr().String()
}

// hammer sends GET url from 8 goroutines per CPU over HTTP/1.1 keep-alive connections.
func hammer(b *testing.B, url string) {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	hammerWith(b, &http.Client{Transport: &http.Transport{Protocols: p, MaxIdleConnsPerHost: 64}}, url)
}

// hammerWith is hammer with the given client.
func hammerWith(b *testing.B, client *http.Client, url string) {
	b.ReportAllocs()
	b.SetParallelism(8)
	// CPU time of the whole process (client, gateway and backend) per request: the client
	// and the backend cost the same on every route, so differences between routes are the
	// gateway's.
	cpu0 := processCPU()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N)/1e3, "cpu-µs/op") }()
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
				b.Errorf("%s: status %d", url, resp.StatusCode)
				return
			}
		}
	})
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
