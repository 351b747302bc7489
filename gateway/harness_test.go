package gateway_test

// The in-process harness: a gateway started on a config in this process, for the tests
// and the benchmarks of package gateway_test. (cmd/plexus's tests run the real binary;
// the package's internal tests, which cannot import a package that imports gateway,
// share the compile cache through internal/testutil.)

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/testutil"
)

// startGatewayWith runs a gateway on yaml in this process with o (a discarding logger when
// o has none; the tests' compile cache, kept across runs, when o names no cache) until the
// test ends, and returns it and its addresses by listener name ("admin" too).
func startGatewayWith(t testing.TB, yaml string, o gateway.Options) (*gateway.Gateway, map[string]string) {
	t.Helper()
	cfg, err := config.Parse(t.TempDir()+"/plexus.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.CacheDir == "" {
		o.CacheDir = testutil.GatewayCacheDir()
	}
	g, err := gateway.New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return g, g.Addrs()
}
