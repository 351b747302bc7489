package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPrivate(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "mine")
	open := filepath.Join(dir, "open")
	file := filepath.Join(dir, "file")
	link := filepath.Join(dir, "link")
	for _, err := range []error{
		os.Mkdir(mine, 0o700),
		os.Mkdir(open, 0o700),
		os.Chmod(open, 0o777), // the umask does not apply
		os.WriteFile(file, nil, 0o600),
		os.Symlink(mine, link),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		dir, want string // want: a substring of the error; "" for none
	}{
		{mine, ""},
		{open, "others can write to it"},
		{file, "not a directory"},
		{link, "not a directory"}, // not followed: where it points may change
		{filepath.Join(dir, "missing"), "no such file"},
	} {
		err := checkPrivate(tc.dir)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkPrivate(%s) = %v, want %q", filepath.Base(tc.dir), err, tc.want)
		}
	}
}

// The tests' cache is $PLEXUS_TEST_CACHE, or a directory of this user's that is not in
// the user's cache directory.
func TestCacheDir(t *testing.T) {
	d := CacheDir("x")
	if env := os.Getenv("PLEXUS_TEST_CACHE"); env != "" {
		if want := filepath.Join(env, "x"); d != want {
			t.Errorf("with $PLEXUS_TEST_CACHE=%s: %s, want %s", env, d, want)
		}
		return
	}
	if uc, err := os.UserCacheDir(); err == nil && strings.HasPrefix(d, uc+string(filepath.Separator)) {
		t.Errorf("CacheDir is %s, in the user's cache %s", d, uc)
	}
	if filepath.Base(d) != "x" {
		t.Errorf("CacheDir(%q) = %s", "x", d)
	}
	if err := checkPrivate(filepath.Dir(d)); err != nil {
		t.Errorf("%s: %v", filepath.Dir(d), err)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, "the third call", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}
}
