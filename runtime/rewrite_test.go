package runtime

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRewriteKept(t *testing.T) {
	dir := t.TempDir()
	c, err := NewCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	in := []byte("\x00asm module bytes")
	sum := sha256.Sum256(in)
	calls := 0
	rewrite := func(b []byte) ([]byte, error) {
		calls++
		return append([]byte("rewritten:"), b...), nil
	}
	want := append([]byte("rewritten:"), in...)
	check := func(what string, wantCalls int) {
		t.Helper()
		out, outSum, err := c.Rewrite("r-1", in, sum, rewrite)
		if err != nil || !bytes.Equal(out, want) || outSum != sha256.Sum256(want) {
			t.Fatalf("%s: %q %x %v", what, out, outSum, err)
		}
		if calls != wantCalls {
			t.Fatalf("%s: rewritten %d times, want %d", what, calls, wantCalls)
		}
	}
	check("first", 1)
	check("kept", 1)
	// Another cache on the directory: another process.
	if c, err = NewCache(dir); err != nil {
		t.Fatal(err)
	}
	check("another process", 1)

	// A damaged file is not used, and is replaced.
	files, _ := filepath.Glob(filepath.Join(dir, "rewritten", "r-1", "*"))
	if len(files) != 1 {
		t.Fatalf("files kept: %v", files)
	}
	b, _ := os.ReadFile(files[0])
	b[len(b)-1] ^= 1
	os.WriteFile(files[0], b, 0o644)
	check("damaged", 2)
	check("replaced", 2)
	os.WriteFile(files[0], b[:10], 0o644)
	check("torn", 3)

	// Another name is another rewrite.
	if _, _, err := c.Rewrite("r-2", in, sum, rewrite); err != nil || calls != 4 {
		t.Fatalf("another name: %v, %d calls", err, calls)
	}

	// A failure is not kept.
	boom := errors.New("boom")
	other := []byte("other")
	for range 2 {
		if _, _, err := c.Rewrite("r-1", other, sha256.Sum256(other), func([]byte) ([]byte, error) { calls++; return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("failed rewrite: %v", err)
		}
	}
	if calls != 6 {
		t.Fatalf("a failed rewrite was kept: %d calls", calls)
	}

	// In memory only: nothing kept.
	mem, _ := NewCache("")
	for range 2 {
		mem.Rewrite("r-1", in, sum, rewrite)
	}
	if calls != 8 {
		t.Fatalf("a cache with no directory kept a rewrite: %d calls", calls)
	}
}
