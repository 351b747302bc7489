package gateway_test

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
)

// BenchmarkTelemetry measures a proxied request with telemetry off (the baseline), with
// metrics (the default), with metrics and traces sampled at 1% and at 100%, and with an
// access log line per request on top, one gateway each, in one run. Spans go to an
// exporter that drops them, so what is measured is the gateway's side of tracing. The
// difference in cpu-µs/op from "off" is what telemetry costs per request; bench/telemetry.sh
// measures the same on the real binary with wrk.
//
//	go test -run X -bench Telemetry -count 5 ./gateway/
func BenchmarkTelemetry(b *testing.B) {
	backend := benchBackend(b)
	logs := b.TempDir()
	for _, tc := range []struct{ name, telemetry string }{
		{"off", `{metrics: {enabled: false}}`},
		{"metrics", `{}`},
		{"metrics+traces-1%", `{tracing: {sampling: 0.01, exporter: {type: stdout}}}`},
		{"metrics+traces-100%", `{tracing: {sampling: 1, exporter: {type: stdout}}}`},
		{"metrics+traces-1%+log", `{tracing: {sampling: 0.01, exporter: {type: stdout}}, access_log: [{path: ` + filepath.Join(logs, "access.log") + `}]}`},
	} {
		cfg, err := config.Parse("bench.yaml", []byte(fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%s]}]
routes: [{name: app, match: {path_prefix: /}, backend: app}]
telemetry: %s
`, backend, tc.telemetry)))
		if err != nil {
			b.Fatal(err)
		}
		g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), SpanExporter: tracetest.NewNoopExporter()})
		if err != nil {
			b.Fatal(err)
		}
		if err := g.Start(); err != nil {
			b.Fatal(err)
		}
		b.Run(tc.name, func(b *testing.B) { hammer(b, "http://"+g.Addrs()["web"]+"/") })
		g.Shutdown(b.Context())
	}
}
