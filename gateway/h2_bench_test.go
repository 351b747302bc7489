package gateway_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
)

// BenchmarkProxyH2C is BenchmarkProxy with h2c clients: the requests of 8 goroutines per
// CPU as streams over the transport's h2c connections, to an HTTP/1.1 backend. It measures
// the HTTP/2 server path, the h2 guard in front of it included.
//
//	go test -run X -bench ProxyH2C -benchmem ./gateway/
func BenchmarkProxyH2C(b *testing.B) {
	backend := benchBackend(b)
	_, gw := startGatewayWith(b, `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [h2c]}]
backends: [{name: app, endpoints: [`+backend+`]}]
routes: [{name: app, match: {path_prefix: /}, backend: app}]
`, gateway.Options{})
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	client := &http.Client{Transport: &http.Transport{Protocols: p}}
	url := "http://" + gw["web"] + "/"
	b.ReportAllocs()
	b.SetParallelism(8)
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
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}
