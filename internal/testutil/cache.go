package testutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// CacheDir returns the directory for the named cache of the tests ("wasmbuild" for
// built modules, say): kept between runs, so that a run reuses what an earlier one
// built, and never in the user's own cache (os.UserCacheDir), which is the real
// plexus's. It is under $PLEXUS_TEST_CACHE when that is set, else under os.TempDir()
// in a directory of the user's own, plexus-test-cache-UID. What writes to the
// directory makes it (wasmbuild does, and so does wazero's cache).
func CacheDir(name string) string {
	return filepath.Join(cacheRoot(), name)
}

// GatewayCacheDir is the directory for the compiled modules of the gateways tests
// start: gateway.Options.CacheDir in process, and plexus's --cache-dir
// ($PLEXUS_CACHE_DIR) for the binary. One for all of them, so that each compiles a
// module once; wazero writes its cache's files whole, by rename.
func GatewayCacheDir() string { return CacheDir("gateway") }

var cacheRoot = sync.OnceValue(func() string {
	if d := os.Getenv("PLEXUS_TEST_CACHE"); d != "" {
		return d
	}
	dir := filepath.Join(os.TempDir(), "plexus-test-cache")
	if uid := os.Getuid(); uid >= 0 {
		dir += "-" + strconv.Itoa(uid)
	}
	// The temp dir is everyone's: a directory made there by another user could hand
	// the tests modules (and native code, in wazero's cache) of theirs. Use it only if
	// it is this user's and no one else can write to it.
	err := os.Mkdir(dir, 0o700)
	if err == nil || errors.Is(err, fs.ErrExist) {
		err = checkPrivate(dir)
	}
	if err == nil {
		return dir
	}
	tmp, terr := os.MkdirTemp("", "plexus-test-cache-")
	if terr != nil {
		panic(fmt.Sprintf("testutil: no directory for the tests' cache: %v; %v", err, terr))
	}
	fmt.Fprintf(os.Stderr, "testutil: not caching in %s (%v): using %s for this run; set PLEXUS_TEST_CACHE to keep builds between runs\n", dir, err, tmp)
	return tmp
})

// checkPrivate reports why dir is not a directory that only this user can write to.
func checkPrivate(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return errors.New("not a directory")
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("others can write to it (mode %v)", fi.Mode().Perm())
	}
	return checkOwner(fi)
}
