package gateway_test

import (
	"fmt"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
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
	backend := benchBackend(b)
	c := wasmbuild.C(b, "examples/c/hello")
	wat := wasmbuild.WATFile(b, "examples/wat/hello.wat")
	goHello := wasmbuild.Go(b, "examples/go/hello")
	_, gw := startGatewayWith(b, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%[1]s]}]
filters:
  - {name: c, module: "file:%[2]s"}
  - {name: wat, module: "file:%[3]s"}
  - {name: go, module: "file:%[4]s"}
  - {name: c-trusted, module: "file:%[2]s", limits: {no_callback_deadline: true}}
  - {name: wat-trusted, module: "file:%[3]s", limits: {no_callback_deadline: true}}
  - {name: go-trusted, module: "file:%[4]s", limits: {no_callback_deadline: true}}
routes:
  - {name: c, match: {path: /c}, filters: [c], backend: app}
  - {name: wat, match: {path: /wat}, filters: [wat], backend: app}
  - {name: go, match: {path: /go}, filters: [go], backend: app}
  - {name: chain3, match: {path: /chain3}, filters: [go, c, wat], backend: app}
  - {name: c-trusted, match: {path: /c-trusted}, filters: [c-trusted], backend: app}
  - {name: chain3-trusted, match: {path: /chain3-trusted}, filters: [go-trusted, c-trusted, wat-trusted], backend: app}
  - {name: none, match: {path_prefix: /}, backend: app}
`, backend, c, wat, goHello), gateway.Options{})
	for _, path := range []string{"/none", "/c", "/wat", "/go", "/chain3", "/c-trusted", "/chain3-trusted"} {
		b.Run(path[1:], func(b *testing.B) { hammer(b, "http://"+gw["web"]+path) })
	}
}
