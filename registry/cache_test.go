package registry

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func pulled(wasm []byte) *Pulled {
	return &Pulled{Ref: "r", Wasm: wasm, Desc: ocispec.Descriptor{Digest: digest.FromBytes(append([]byte("manifest of "), wasm...)), Size: 100}}
}

// TestCache: modules by manifest digest, on disk across opens; a file changed on disk is
// a miss, never returned; past its size the least recently used go, except those in use.
func TestCache(t *testing.T) {
	dir := t.TempDir()
	c, err := OpenCache(dir, 2500)
	if err != nil {
		t.Fatal(err)
	}
	a, b, d := pulled(testModule(1000)), pulled(testModule(1000)), pulled(testModule(1000))
	for _, p := range []*Pulled{a, b} {
		if _, err := c.Put(p, nil); err != nil {
			t.Fatal(err)
		}
	}
	c.SetTag("host/f:1", a.Desc.Digest)
	// A new process: what is on disk.
	c2, _ := OpenCache(dir, 2500)
	if m, ok := c2.Get(a.Desc.Digest); !ok || len(m.Wasm) != len(a.Wasm) {
		t.Fatal("a cached module is not found again")
	}
	if d, ok := c2.Tag("host/f:1"); !ok || d != a.Desc.Digest {
		t.Errorf("the tag's digest: %s, %v", d, ok)
	}
	// b was used less recently than a; a third module evicts it, unless it is kept.
	old := time.Now().Add(-time.Hour)
	os.Chtimes(filepath.Join(dir, "sha256", b.Desc.Digest.Encoded()+".json"), old, old)
	if _, err := c2.Put(d, func(x digest.Digest) bool { return x == b.Desc.Digest }); err != nil {
		t.Fatal(err)
	}
	if _, ok := c2.Get(b.Desc.Digest); !ok {
		t.Error("a module in use was evicted")
	}
	if _, ok := c2.Get(a.Desc.Digest); ok {
		t.Error("the least recently used module not in use was kept past the cache's size")
	}
	// Damaged on disk: a miss.
	c3, _ := OpenCache(dir, 0)
	path := filepath.Join(dir, "sha256", d.Desc.Digest.Encoded()+".wasm")
	bad := append([]byte{}, d.Wasm...)
	bad[len(bad)-1] ^= 1
	os.WriteFile(path, bad, 0o644)
	if _, ok := c3.Get(d.Desc.Digest); ok {
		t.Error("a module changed on disk was returned")
	}
}
