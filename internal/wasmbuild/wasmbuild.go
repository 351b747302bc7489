// Package wasmbuild builds Wasm modules from source for tests, so that no build output is
// committed: Go filters with GOOS=wasip1 (plain Go, -buildmode=c-shared, as the upstream
// Proxy-Wasm Go SDK wants), and WAT with wabt's wat2wasm. Outputs are cached by a hash of
// their sources, so a test run builds each module once.
package wasmbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
)

var mu sync.Mutex // one build at a time: builds are CPU-bound and this machine is small

// CacheDir is where built modules are kept: $PLEXUS_WASMBUILD_CACHE, or a folder in the
// user's cache directory.
func CacheDir() string {
	if d := os.Getenv("PLEXUS_WASMBUILD_CACHE"); d != "" {
		return d
	}
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "plexus", "wasmbuild")
}

// ModuleRoot is the directory of the repository's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// Go builds the Go main package in dir (a path relative to the module root, like
// "examples/go/http_headers") for wasip1 as a reactor and returns the .wasm path.
func Go(t testing.TB, dir string) string {
	t.Helper()
	root := ModuleRoot(t)
	abs := filepath.Join(root, dir)
	key := hashFiles(t, abs, filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum"))
	out := filepath.Join(CacheDir(), "go-"+filepath.Base(dir)+"-"+key+".wasm")
	return cached(t, out, func(tmp string) *exec.Cmd {
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", tmp, "./"+filepath.ToSlash(dir))
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		return cmd
	})
}

// WAT assembles WAT source text and returns the module bytes.
func WAT(t testing.TB, src string) []byte {
	t.Helper()
	sum := sha256.Sum256([]byte(src))
	out := filepath.Join(CacheDir(), "wat-"+hex.EncodeToString(sum[:8])+".wasm")
	in := out + ".wat"
	path := cached(t, out, func(tmp string) *exec.Cmd {
		if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		return exec.Command("wat2wasm", "--enable-all", "-o", tmp, in)
	})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cached runs build (which writes to the temp path it is given) unless out exists.
func cached(t testing.TB, out string, build func(tmp string) *exec.Cmd) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if _, err := os.Stat(out); err == nil {
		return out
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	cmd := build(tmp)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", filepath.Base(out), err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// hashFiles hashes the named files and every file under the named directories, with the
// Go version, so that a change to any source rebuilds.
func hashFiles(t testing.TB, paths ...string) string {
	t.Helper()
	h := sha256.New()
	fmt.Fprintln(h, runtime.Version())
	for _, p := range paths {
		var files []string
		filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				files = append(files, path)
			}
			return nil
		})
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
			h.Write(b)
		}
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}
