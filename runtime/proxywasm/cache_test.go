package proxywasm

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// TestUnusableCacheDir: a cache directory that cannot be made only costs compile time; the
// runtime still loads and runs filters, and says why once.
func TestUnusableCacheDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	r, err := NewRuntime(context.Background(), Options{CacheDir: filepath.Join(file, "cache"), Logger: slog.New(sink)})
	if err != nil {
		t.Fatalf("NewRuntime: %v", err)
	}
	defer r.Close(context.Background())
	p := loadWAT(t, r, nopWAT, Config{}, nil)
	s, err := p.NewStream(context.Background(), &StreamInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.OnRequestHeaders(&Headers{}, true); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if !sink.has("no compilation cache on disk") {
		t.Errorf("no warning logged: %v", sink.messages())
	}
}

// TestRuntimeStats: each Load counts as a compile or a cache hit (from memory, or from the
// directory an earlier Runtime filled), and as a load or a failure.
func TestRuntimeStats(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	nop := wasmbuild.WAT(t, nopWAT)
	r, err := NewRuntime(ctx, Options{CacheDir: dir, Logger: slog.New(&logSink{})})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close(ctx)
	check := func(r *Runtime, want RuntimeStats) {
		t.Helper()
		got := r.Stats()
		if (got.CompileTime > 0) != (got.Compiles > 0) {
			t.Errorf("CompileTime %v for %d compiles", got.CompileTime, got.Compiles)
		}
		got.CompileTime = 0
		if got != want {
			t.Errorf("Stats() = %+v, want %+v", got, want)
		}
	}
	load := func(r *Runtime, wasm []byte, cfg Config) {
		t.Helper()
		p, err := r.Load(ctx, wasm, cfg, &fakeHost{})
		if err != nil {
			t.Fatal(err)
		}
		p.Close()
	}
	check(r, RuntimeStats{})
	load(r, nop, Config{Name: "a"})
	check(r, RuntimeStats{Compiles: 1, Loads: 1})
	compiled := r.Stats().CompileTime
	load(r, nop, Config{Name: "b"}) // the same module, under another name, after a closed: from memory
	check(r, RuntimeStats{Compiles: 1, CacheHits: 1, Loads: 2})
	if d := r.Stats().CompileTime; d != compiled {
		t.Errorf("a cache hit added %v to CompileTime", d-compiled)
	}
	load(r, nop, Config{Name: "c", CallbackTimeout: -1}) // no deadline: not rewritten, other code
	check(r, RuntimeStats{Compiles: 2, CacheHits: 1, Loads: 3})
	if _, err := r.Load(ctx, wasmbuild.WAT(t, noabiWAT), Config{}, &fakeHost{}); err == nil {
		t.Fatal("a module with no ABI marker loaded")
	}
	check(r, RuntimeStats{Compiles: 3, CacheHits: 1, Loads: 3, LoadFailures: 1}) // compiled, then refused
	if _, err := r.Load(ctx, []byte("not wasm"), Config{}, &fakeHost{}); err == nil {
		t.Fatal("garbage loaded")
	}
	check(r, RuntimeStats{Compiles: 3, CacheHits: 1, Loads: 3, LoadFailures: 2})

	// Another Runtime (another process) on the same directory.
	r2, err := NewRuntime(ctx, Options{CacheDir: dir, Logger: slog.New(&logSink{})})
	if err != nil {
		t.Fatal(err)
	}
	load(r2, nop, Config{Name: "a"})
	load(r2, nop, Config{Name: "c", CallbackTimeout: -1})
	check(r2, RuntimeStats{CacheHits: 2, Loads: 2})
	r2.Close(ctx)
	if _, err := r2.Load(ctx, nop, Config{}, &fakeHost{}); err == nil {
		t.Fatal("a closed runtime loaded")
	}
	check(r2, RuntimeStats{CacheHits: 2, Loads: 2, LoadFailures: 1})

	// In memory only.
	r3 := newRuntime(t)
	load(r3, nop, Config{Name: "a"})
	load(r3, nop, Config{Name: "a"})
	check(r3, RuntimeStats{Compiles: 1, CacheHits: 1, Loads: 2})
}
