package registry

import (
	"context"
	"net/http/httptest"
	"testing"
)

// BenchmarkModuleLoad: what a gateway pays for a 3 MiB module: a pull from a registry on
// loopback (resolve, manifest, layer, each digest checked), against a hit in the on-disk
// cache (read, and its SHA-256 checked) in the same run.
func BenchmarkModuleLoad(b *testing.B) {
	srv, err := NewServer(b.TempDir(), ServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	host := ts.URL[len("http://"):]
	c, _ := NewClient(ClientOptions{NoDockerConfig: true})
	ctx := context.Background()
	wasm := testModule(3 << 20)
	ref := host + "/bench/m:1"
	if _, err := c.Push(ctx, ref, wasm, Meta{}); err != nil {
		b.Fatal(err)
	}
	b.Run("pull", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(wasm)))
		for b.Loop() {
			if _, err := c.Pull(ctx, ref); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cache", func(b *testing.B) {
		p, err := c.Pull(ctx, ref)
		if err != nil {
			b.Fatal(err)
		}
		dir := b.TempDir()
		cc, err := OpenCache(dir, 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cc.Put(p, nil); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(len(wasm)))
		for b.Loop() {
			cc, _ := OpenCache(dir, 0) // a new process: nothing in memory
			if _, ok := cc.Get(p.Desc.Digest); !ok {
				b.Fatal("miss")
			}
		}
	})
}
