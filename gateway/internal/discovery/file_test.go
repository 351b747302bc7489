package discovery

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway/config"
)

// startFile runs the file source of path.
func startFile(t *testing.T, path string) (*logs, <-chan []config.Endpoint) {
	t.Helper()
	lg, log := newLogs(t)
	return lg, run(t, newFile(path, log))
}

func write(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeAtomic writes as editors and config tools do: a new file, renamed over the old.
func writeAtomic(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	write(t, tmp, body)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.yaml")
	write(t, path, "- 10.0.0.1:80\n- {address: 10.0.0.2:80, weight: 5}\n")
	lg, sets := startFile(t, path)
	wantSet(t, next(t, sets), "10.0.0.1:80", "10.0.0.2:80/5")

	// Written in place.
	write(t, path, "- 10.0.0.3:80\n")
	wantSet(t, next(t, sets), "10.0.0.3:80")

	// Renamed over.
	writeAtomic(t, path, "- 10.0.0.4:80\n- 10.0.0.5:80\n")
	wantSet(t, next(t, sets), "10.0.0.4:80", "10.0.0.5:80")

	// A file that does not load: logged where it is wrong, and the last set stays.
	write(t, path, "- 10.0.0.6:80\n- {address: 10.0.0.7:80, weight: 0}\n")
	lg.wait(t, 1, "level=ERROR", "does not load", "keeping the last endpoints", path+":2:34", "weight")
	write(t, path, "- 10.0.0.6:80\n- [\n")
	lg.wait(t, 1, "level=ERROR", "does not load", path+":3:1", "syntax error")
	noSet(t, sets)

	// Fixed.
	write(t, path, "- 10.0.0.6:80\n")
	wantSet(t, next(t, sets), "10.0.0.6:80")
	lg.wait(t, 1, "level=INFO", "loads again")

	// Deleted: the last set stays.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	lg.wait(t, 1, "level=WARN", "is gone", "keeping the last endpoints")
	noSet(t, sets)

	// Written again.
	write(t, path, "- 10.0.0.8:80\n")
	wantSet(t, next(t, sets), "10.0.0.8:80")

	// The same endpoints, laid out anew: read, not told.
	writeAtomic(t, path, "# the same\n-   address: 10.0.0.8:80\n    weight: 1\n")
	lg.wait(t, 1, "endpoints are the same")
	noSet(t, sets)

	// Only the metadata changes: told.
	write(t, path, "- {address: 10.0.0.8:80, metadata: {envoy.lb: {zone: a}}}\n")
	wantSet(t, next(t, sets), "10.0.0.8:80")
	write(t, path, "- {address: 10.0.0.8:80, metadata: {envoy.lb: {zone: b}}}\n")
	var eps []config.Endpoint
	select {
	case eps = <-sets:
	case <-time.After(waitFor):
		t.Fatal("the metadata change was not told")
	}
	if md, err := eps[0].MetadataMap(); err != nil || md["envoy.lb"]["zone"] != "b" {
		t.Fatalf("metadata %v (%v), want zone b", md, err)
	}
}

// A file missing at the start tells nothing until it appears.
func TestFileMissingAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.yaml")
	lg, sets := startFile(t, path)
	lg.wait(t, 1, "level=INFO", "waiting for the endpoints file")
	// Another file in the directory changes nothing.
	write(t, filepath.Join(filepath.Dir(path), "other.yaml"), "- 10.9.9.9:80\n")
	writeAtomic(t, path, "- 10.0.0.1:80\n")
	wantSet(t, next(t, sets), "10.0.0.1:80")
}

// A Kubernetes ConfigMap volume: the file is a symlink through ..data, a symlink to a
// timestamped directory; an update writes a new directory and renames a new ..data over
// the old one.
func TestFileConfigMap(t *testing.T) {
	dir := t.TempDir()
	version := func(n int, body string) {
		t.Helper()
		v := filepath.Join(dir, fmt.Sprintf("..2026_01_01_00_00_0%d", n))
		if err := os.Mkdir(v, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(v, "endpoints.yaml"), body)
		if err := os.Symlink(filepath.Base(v), filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	version(1, "- 10.0.0.1:80\n")
	path := filepath.Join(dir, "endpoints.yaml")
	if err := os.Symlink("..data/endpoints.yaml", path); err != nil {
		t.Fatal(err)
	}
	_, sets := startFile(t, path)
	wantSet(t, next(t, sets), "10.0.0.1:80")
	version(2, "- 10.0.0.2:80\n")
	wantSet(t, next(t, sets), "10.0.0.2:80")
	version(3, "- 10.0.0.3:80\n")
	wantSet(t, next(t, sets), "10.0.0.3:80")
}

// A burst of writes settles on the last one.
func TestFileBurst(t *testing.T) {
	path := filepath.Join(t.TempDir(), "endpoints.yaml")
	write(t, path, "- 10.0.0.1:80\n")
	_, sets := startFile(t, path)
	wantSet(t, next(t, sets), "10.0.0.1:80")
	const n = 50
	for i := range n {
		write(t, path, fmt.Sprintf("- 10.0.1.%d:80\n", i))
	}
	told := 0
	for {
		told++
		if got := next(t, sets); len(got) == 1 && got[0] == fmt.Sprintf("10.0.1.%d:80", n-1) {
			break
		}
	}
	t.Logf("%d writes, %d sets told", n, told)
}

// A file that cannot be watched (here, its directory is missing) is read every poll.
func TestFileUnwatchable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "later")
	path := filepath.Join(dir, "endpoints.yaml")
	lg, log := newLogs(t)
	src := newFile(path, log).(*fileSource)
	src.poll = 20 * time.Millisecond
	sets := run(t, src)
	lg.wait(t, 1, "level=ERROR", "cannot watch the endpoints file", "reading the endpoints file every 20ms")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, "- 10.0.0.1:80\n")
	wantSet(t, next(t, sets), "10.0.0.1:80")
	if n := lg.count("waiting for the endpoints file"); n != 1 {
		t.Errorf("logged %d times that the file is missing, want once", n)
	}
}

func TestSameEndpoints(t *testing.T) {
	load := func(body string) []config.Endpoint {
		t.Helper()
		path := filepath.Join(t.TempDir(), "e.yaml")
		write(t, path, body)
		eps, err := config.LoadEndpoints(path)
		if err != nil {
			t.Fatal(err)
		}
		return eps
	}
	base := load("- {address: a:1, metadata: {ns: {k: v, n: 1}}}\n- b:2\n")
	for _, tc := range []struct {
		body string
		same bool
	}{
		{"- address: a:1\n  metadata:\n    ns: {n: 1, k: v}\n- {address: b:2, weight: 1}\n", true},
		{"- {address: a:1, metadata: {ns: {k: v, n: 2}}}\n- b:2\n", false},
		{"- {address: a:1, metadata: {ns: {k: v, n: 1}}}\n- {address: b:2, weight: 2}\n", false},
		{"- b:2\n- {address: a:1, metadata: {ns: {k: v, n: 1}}}\n", false},
		{"- {address: a:1, metadata: {ns: {k: v, n: 1}}}\n", false},
	} {
		if got := sameEndpoints(base, load(tc.body)); got != tc.same {
			t.Errorf("%q: same %v, want %v", tc.body, got, tc.same)
		}
	}
}

// The directory removed (and the watch with it): the file is read every poll.
func TestFileDirectoryRemoved(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "endpoints.yaml")
	write(t, path, "- 10.0.0.1:80\n")
	lg, log := newLogs(t)
	src := newFile(path, log).(*fileSource)
	src.poll = 20 * time.Millisecond
	sets := run(t, src)
	wantSet(t, next(t, sets), "10.0.0.1:80")
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	lg.wait(t, 1, "level=ERROR", "directory is gone", "reading the endpoints file every 20ms")
	noSet(t, sets)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, "- 10.0.0.2:80\n")
	wantSet(t, next(t, sets), "10.0.0.2:80")
}
