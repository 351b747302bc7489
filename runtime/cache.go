package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"

	"github.com/tetratelabs/wazero"
)

// Cache is the wazero compilation cache of a process: every module is compiled once per
// digest and kept in memory for as long as a runtime uses it; with a directory, compiled
// code also persists across processes (a Go-built filter takes over a second to compile,
// a fraction of that to load from disk).
type Cache struct {
	cc  wazero.CompilationCache
	dir string
}

// NewCache returns a compilation cache, on disk under dir, or in memory only when dir is
// empty.
func NewCache(dir string) (*Cache, error) {
	if dir == "" {
		return &Cache{cc: wazero.NewCompilationCache()}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("runtime: compilation cache: %w", err)
	}
	cc, err := wazero.NewCompilationCacheWithDir(dir)
	if err != nil {
		return nil, fmt.Errorf("runtime: compilation cache in %s: %w", dir, err)
	}
	return &Cache{cc: cc, dir: dir}, nil
}

// Dir is the cache's directory, "" when it lives in memory only.
func (c *Cache) Dir() string { return c.dir }

// NewRuntime returns a wazero runtime in compiler mode that shares this cache and limits each
// instance's linear memory to memoryLimitPages (64 KiB pages; 0 keeps wazero's default of
// 4 GiB, for hosts that limit memory with a MemoryLimiter). With interruptible, it compiles
// wazero's termination checks into guest code, so that a call can be stopped by canceling
// its context; they cost wazero a goroutine per call into the guest (about 0.6 µs), and
// hosts use them only for modules that interrupt.Instrument cannot rewrite (RATIONALE.md).
//
// Modules compiled by runtimes that share a cache share their machine code: compiling the
// same bytes in a second runtime is a lookup.
func (c *Cache) NewRuntime(ctx context.Context, memoryLimitPages uint32, interruptible bool) wazero.Runtime {
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(c.cc).
		WithCloseOnContextDone(interruptible)
	if memoryLimitPages > 0 {
		cfg = cfg.WithMemoryLimitPages(memoryLimitPages)
	}
	return wazero.NewRuntimeWithConfig(ctx, cfg)
}

// Close releases the cache. Runtimes that use it must be closed first.
func (c *Cache) Close(ctx context.Context) error { return c.cc.Close(ctx) }

// Digest is the content digest of a module, "sha256:<hex>", as OCI registries name it.
func Digest(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return "sha256:" + hex.EncodeToString(sum[:])
}
