package proxywasm

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
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
