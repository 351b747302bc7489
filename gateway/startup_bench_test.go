package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// BenchmarkStartup is how long a gateway takes from its config to serving (New, then Start),
// with no filter (the baseline), and with a Go filter on the upstream SDK or a C filter
// whose compiled code is in the compilation cache's directory already, as on a restart:
// ns/op is the time to ready (Shutdown is not counted), each iteration a new Runtime, as a
// new process has. The reload rows are a running gateway loading the same module for a
// filter whose configuration changed: compiled in this process already.
//
//	go test -run X -bench Startup ./gateway/
func BenchmarkStartup(b *testing.B) {
	backend := benchBackend(b)
	cacheDir := b.TempDir()
	modules := map[string]string{
		"go": wasmbuild.Go(b, "examples/go/hello"),
		"c":  wasmbuild.C(b, "examples/c/hello"),
	}
	for _, name := range []string{"none", "c", "go"} {
		yaml := fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%s]}]
routes: [{name: r, match: {path_prefix: /}, backend: app}]
`, backend)
		if m := modules[name]; m != "" {
			yaml = fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1]}]
backends: [{name: app, endpoints: [%s]}]
filters: [{name: f, module: "file:%s"}]
routes: [{name: r, match: {path_prefix: /}, filters: [f], backend: app}]
`, backend, m)
		}
		cfg, err := config.Parse(b.TempDir()+"/plexus.yaml", []byte(yaml))
		if err != nil {
			b.Fatal(err)
		}
		start := func() {
			g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), CacheDir: cacheDir})
			if err != nil {
				b.Fatal(err)
			}
			if err := g.Start(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			g.Shutdown(ctx)
			b.StartTimer()
		}
		start() // the compile, into the cache's directory
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				start()
			}
		})
		if name == "none" {
			continue
		}
		b.Run(name+"/reload", func(b *testing.B) {
			g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler), CacheDir: cacheDir})
			if err != nil {
				b.Fatal(err)
			}
			if err := g.Start(); err != nil {
				b.Fatal(err)
			}
			defer g.Shutdown(context.Background())
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				n++
				next, err := config.Parse(b.TempDir()+"/plexus.yaml", []byte(strings.Replace(yaml, `module: "file:`, fmt.Sprintf(`config: {n: %d}, module: "file:`, n), 1)))
				if err != nil {
					b.Fatal(err)
				}
				if err := g.Reload(next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
