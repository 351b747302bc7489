package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
)

// Cache is the wazero compilation cache of a process: every module is compiled once per
// digest and kept in memory until the cache closes; with a directory, compiled code also
// persists across processes (a Go-built filter takes over a second to compile, a fraction
// of that to load from disk).
type Cache struct {
	cc  wazero.CompilationCache
	dir string

	mu       sync.Mutex        // one Compile at a time
	compiled map[[33]byte]bool // what wazero holds in memory: sha256 of the bytes, interruptible
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

// Compile compiles wasm with wrt, a runtime of this cache that NewRuntime made with the
// given interruptible, and says whether a cache served it (hit) and how long the compile
// took, not counting the wait for another Compile of the cache to finish.
//
// A hit is a compile that generated no machine code: wazero found the module's code in
// memory or in the cache directory. wazero does not say which (its cache is internal), so
// Compile tells them apart from what it can see:
//
//   - In memory: every runtime of a cache shares one wazero engine, which keys compiled
//     code by the sha256 of the module's bytes and the runtime's termination checks
//     (interruptible), and keeps it until the cache closes, since plexus never closes a
//     CompiledModule. So a module this cache compiled before, with the same interruptible,
//     is a hit; Compile remembers which it compiled. (A wazero.CompiledModule itself
//     cannot be kept and handed to another runtime: it holds the type ids of the runtime
//     that compiled it. Hence no cache of plexus's own: wazero's engine is one already.)
//   - In the directory: wazero writes a file there for each module it compiles (under a
//     subdirectory per wazero version), and none for one it loads from there. So a
//     compile after which no file in the directory is new or rewritten is a hit.
//
// Compiles of one cache run one at a time, so that the files a compile finds new are its
// own, and so that two runtimes compiling the same module at once do not both compile it
// (wazero checks its cache before compiling and does not hold a lock while compiling:
// its docs advise compiling one module in one goroutine). Another process compiling into
// the same directory at the same moment could make a hit from the directory look like a
// compile, never the reverse.
func (c *Cache) Compile(ctx context.Context, wrt wazero.Runtime, interruptible bool, wasm []byte) (compiled wazero.CompiledModule, hit bool, took time.Duration, err error) {
	return c.CompileSum(ctx, wrt, interruptible, wasm, sha256.Sum256(wasm))
}

// CompileSum is Compile of wasm whose sha256 the caller has already: sum.
func (c *Cache) CompileSum(ctx context.Context, wrt wazero.Runtime, interruptible bool, wasm []byte, sum [32]byte) (compiled wazero.CompiledModule, hit bool, took time.Duration, err error) {
	var key [33]byte
	copy(key[:], sum[:])
	if interruptible {
		key[32] = 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	inMemory := c.compiled[key]
	var before map[string]fileStamp
	if !inMemory && c.dir != "" {
		before = c.files()
	}
	compiled, err = wrt.CompileModule(ctx, wasm)
	took = time.Since(start)
	if err != nil {
		return nil, false, took, err
	}
	switch {
	case inMemory:
		hit = true
	case c.dir != "":
		hit = true
		for name, st := range c.files() {
			if old, ok := before[name]; !ok || old != st {
				hit = false
				break
			}
		}
	}
	if c.compiled == nil {
		c.compiled = map[[33]byte]bool{}
	}
	c.compiled[key] = true
	return compiled, hit, took, nil
}

// fileStamp tells a file apart from the one that had its name before.
type fileStamp struct{ size, mod int64 }

// files lists the regular files of the cache directory and of its subdirectories (wazero
// keeps a subdirectory per wazero version, GOARCH and GOOS), leaving out the temporary
// files wazero writes before renaming them.
func (c *Cache) files() map[string]fileStamp {
	out := map[string]fileStamp{}
	var list func(dir string, depth int)
	list = func(dir string, depth int) {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			path := filepath.Join(dir, e.Name())
			switch {
			case e.IsDir():
				if depth == 0 {
					list(path, 1)
				}
			case e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".tmp"):
				if info, err := e.Info(); err == nil {
					out[path] = fileStamp{info.Size(), info.ModTime().UnixNano()}
				}
			}
		}
	}
	list(c.dir, 0)
	return out
}

// Close releases the cache. Runtimes that use it must be closed first.
func (c *Cache) Close(ctx context.Context) error { return c.cc.Close(ctx) }

// Digest is the content digest of a module, "sha256:<hex>", as OCI registries name it.
func Digest(wasm []byte) string { return DigestOf(sha256.Sum256(wasm)) }

// DigestOf is Digest of a module whose sha256 is sum.
func DigestOf(sum [32]byte) string { return "sha256:" + hex.EncodeToString(sum[:]) }
