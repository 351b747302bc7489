package gateway_test

import (
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
	hammerWith(b, &http.Client{Transport: &http.Transport{Protocols: p}}, "http://"+gw["web"]+"/")
}
