// Package wasmbuild builds Wasm modules from source for tests, so that no build output is
// committed. It builds Proxy-Wasm filters the way their users do, with the upstream
// toolchains:
//
//   - Go: plain Go for GOOS=wasip1 with -buildmode=c-shared, as the upstream Proxy-Wasm Go
//     SDK wants (no TinyGo);
//   - C: clang for wasm32-wasi with wasi-libc, as a WASI reactor;
//   - AssemblyScript: npm ci from the example's lockfile, then asc;
//   - WAT: wabt's wat2wasm.
//
// Outputs are cached by a hash of their sources and build flags (in CacheDir, outside the
// user's cache), so a test run builds each module once, and a later run not at all. Builds
// run at most two at a time, and a file lock keeps two test processes (go test ./... runs
// packages in parallel) from building the same module at once. A missing tool fails the
// test with the tool's name and the package that brings it; scripts/deps.sh installs them
// all.
package wasmbuild

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
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
	"time"

	"github.com/plexus-mesh/plexus/internal/atomicfile"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmsection"
)

// CacheDir is where built modules are kept: $PLEXUS_WASMBUILD_CACHE, or the tests' cache
// ([testutil.CacheDir]), which is not the user's cache directory: these are test builds.
func CacheDir() string {
	if d := os.Getenv("PLEXUS_WASMBUILD_CACHE"); d != "" {
		return d
	}
	return testutil.CacheDir("wasmbuild")
}

var moduleRoot struct {
	once sync.Once
	dir  string
	err  error
}

// ModuleRoot is the directory of the repository's go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	moduleRoot.once.Do(func() {
		out, err := exec.Command("go", "env", "GOMOD").Output()
		if err != nil {
			moduleRoot.err = fmt.Errorf("go env GOMOD: %w", err)
			return
		}
		gomod := strings.TrimSpace(string(out))
		if gomod == "" || gomod == os.DevNull {
			moduleRoot.err = fmt.Errorf("wasmbuild: not inside a Go module")
			return
		}
		moduleRoot.dir = filepath.Dir(gomod)
	})
	if moduleRoot.err != nil {
		t.Fatal(moduleRoot.err)
	}
	return moduleRoot.dir
}

// Go builds the Go main package in dir (a path relative to the module root, like
// "examples/go/http_headers") for wasip1 as a reactor and returns the .wasm path:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o OUT ./DIR
func Go(t testing.TB, dir string) string {
	t.Helper()
	root := ModuleRoot(t)
	args := []string{"build", "-buildmode=c-shared", "-trimpath", "-o", "OUT", "./" + filepath.ToSlash(filepath.Clean(dir))}
	key := hashSources(t, recipe("go", args...), goLocalDeps(t, root, dir), nil,
		filepath.Join(root, "go.mod"), filepath.Join(root, "go.sum"))
	out := filepath.Join(CacheDir(), "go-"+filepath.Base(dir)+"-"+key+".wasm")
	return build(t, out, out, func(tmp string) error {
		cmd := exec.Command("go", withOut(args, tmp)...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		return goFirst.run(cmd)
	})
}

// Filter builds the first-party filter filters/NAME as Go does, with the JSON Schema of its
// configuration (filters/NAME/schema.json, when there is one) in the module, as
// filters/build.sh makes it; it returns the .wasm path.
func Filter(t testing.TB, name string) string {
	t.Helper()
	mod := Go(t, "filters/"+name)
	schema, err := os.ReadFile(filepath.Join(ModuleRoot(t), "filters", name, "schema.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return mod
	}
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(mod)
	if err != nil {
		t.Fatal(err)
	}
	if wasm, err = wasmsection.Set(wasm, wasmsection.ConfigSchema, schema); err != nil {
		t.Fatal(err)
	}
	// In the cache, by its contents: the path outlives the test that asked first.
	sum := sha256.Sum256(wasm)
	out := filepath.Join(CacheDir(), "filter-"+name+"-"+hex.EncodeToString(sum[:8])+".wasm")
	if _, err := os.Stat(out); err == nil {
		return out
	}
	tmp, err := os.CreateTemp(CacheDir(), ".filter-*")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmp.Write(wasm)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		os.Remove(tmp.Name())
		t.Fatal(err)
	}
	return out
}

// goLocalDeps lists the directories of the packages of this module that the Go filter in
// dir is built from, itself included (sdk/go/plexus for a filter that uses it, say): a
// change to any of them is a change to the filter. Packages from other modules are pinned
// by go.sum.
func goLocalDeps(t testing.TB, root, dir string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./"+filepath.ToSlash(filepath.Clean(dir)))
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("wasmbuild: go list %s: %v", dir, err)
	}
	var dirs []string
	for line := range strings.Lines(string(out)) {
		if d := strings.TrimSpace(line); d != "" {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	return dirs
}

// goFirst holds every Go build back until one has succeeded in this process. The first one
// compiles the runtime, the standard library and the SDK for wasip1 into the build cache;
// two of them at once on a cold cache would both do all of that. After it, a build is
// mostly the link, and two run side by side.
var goFirst gate

type gate struct {
	mu   sync.Mutex
	done bool
}

func (g *gate) run(cmd *exec.Cmd) error {
	g.mu.Lock()
	if g.done {
		g.mu.Unlock()
		return run(cmd)
	}
	defer g.mu.Unlock()
	err := run(cmd)
	g.done = err == nil
	return err
}

// CFlags are the flags C filters are built with, before the sources and -o: a WASI reactor
// (_initialize, no main), wasi-libc's malloc exported for the host, no debug sections.
// Every proxy_* callback is exported by its own export_name attribute, so
// -Wl,--export-dynamic is not needed. On Debian, clang finds wasi-libc in
// /usr/include/wasm32-wasi and /usr/lib/wasm32-wasi by itself; with $WASI_SYSROOT set (a
// wasi-sdk sysroot, say) --sysroot=$WASI_SYSROOT is added.
var CFlags = []string{
	"--target=wasm32-wasi", "-O2", "-mexec-model=reactor",
	"-Wall", "-Wextra", "-Wno-unused-parameter",
	"-Wl,--export=malloc", "-Wl,--strip-all",
}

// C compiles every .c file in dir (relative to the module root, like "examples/c/hello")
// into one Proxy-Wasm module and returns the .wasm path:
//
//	clang --target=wasm32-wasi -O2 -mexec-model=reactor ... -Wl,--export=malloc -o OUT *.c
func C(t testing.TB, dir string) string {
	t.Helper()
	root := ModuleRoot(t)
	abs := filepath.Join(root, dir)
	srcs, err := filepath.Glob(filepath.Join(abs, "*.c"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("wasmbuild: no .c files in %s", abs)
	}
	sort.Strings(srcs)
	return clang(t, "clang", "c", dir, CFlags, srcs)
}

// CXXFlags are C++'s: CFlags, C++17, and no C++ standard library (wasi-libc only), no
// exceptions, no RTTI.
var CXXFlags = append([]string{"-std=c++17", "-fno-exceptions", "-fno-rtti", "-nostdlib++"}, CFlags...)

// CPP compiles every .cc file in dir (relative to the module root, like
// "examples/gate/cpp") into one Proxy-Wasm module with clang++, and returns the .wasm
// path:
//
//	clang++ --target=wasm32-wasi -std=c++17 -fno-exceptions -nostdlib++ ... -o OUT *.cc
func CPP(t testing.TB, dir string) string {
	t.Helper()
	srcs, err := filepath.Glob(filepath.Join(ModuleRoot(t), dir, "*.cc"))
	if err != nil || len(srcs) == 0 {
		t.Fatalf("wasmbuild: no .cc files in %s", dir)
	}
	sort.Strings(srcs)
	return clang(t, "clang++", "cpp", dir, CXXFlags, srcs)
}

// clang builds srcs with compiler (clang, clang++) and flags, sdk/c on the include path.
func clang(t testing.TB, compiler, kind, dir string, base, srcs []string) string {
	t.Helper()
	root := ModuleRoot(t)
	abs := filepath.Join(root, dir)
	sdk := filepath.Join(root, "sdk", "c")
	flags := append(append([]string(nil), base...), "-I", sdk)
	if s := os.Getenv("WASI_SYSROOT"); s != "" {
		flags = append(flags, "--sysroot="+s)
	}
	key := hashSources(t, recipe(compiler, flags...), []string{abs, sdk}, nil)
	out := filepath.Join(CacheDir(), kind+"-"+filepath.Base(dir)+"-"+key+".wasm")
	return build(t, out, out, func(tmp string) error {
		if err := checkC(); err != nil {
			return err
		}
		if _, err := exec.LookPath(compiler); err != nil {
			return missing(compiler, "clang")
		}
		args := append(append(flags, "-o", tmp), srcs...)
		cmd := exec.Command(compiler, args...)
		cmd.Dir = abs
		return run(cmd)
	})
}

// RustFlags are what Rust filters are built with: rustc alone (no cargo, no crates), for
// wasm32-unknown-unknown.
var RustFlags = []string{"--edition", "2021", "--target", "wasm32-unknown-unknown", "--crate-type", "cdylib",
	"-C", "opt-level=s", "-C", "panic=abort", "-C", "strip=symbols", "-C", "lto"}

// Rust compiles the crate whose root is the one .rs file in dir (relative to the module
// root, like "examples/gate/rust"; it may include sdk/rust/plexus.rs as a module), and
// returns the .wasm path:
//
//	rustc --edition 2021 --target wasm32-unknown-unknown --crate-type cdylib ... -o OUT ROOT.rs
//
// The rustc is the first of PATH's and Debian's (/usr/bin/rustc, with
// libstd-rust-dev-wasm32) that has the standard library for wasm32-unknown-unknown.
func Rust(t testing.TB, dir string) string {
	t.Helper()
	root := ModuleRoot(t)
	abs := filepath.Join(root, dir)
	srcs, err := filepath.Glob(filepath.Join(abs, "*.rs"))
	if err != nil || len(srcs) != 1 {
		t.Fatalf("wasmbuild: want one .rs file in %s, the crate's root; have %v", abs, srcs)
	}
	sdk := filepath.Join(root, "sdk", "rust")
	key := hashSources(t, recipe("rustc", RustFlags...), []string{abs, sdk}, nil)
	out := filepath.Join(CacheDir(), "rust-"+filepath.Base(dir)+"-"+key+".wasm")
	return build(t, out, out, func(tmp string) error {
		rustc, err := rustcForWasm()
		if err != nil {
			return err
		}
		cmd := exec.Command(rustc, append(append(append([]string(nil), RustFlags...), "-o", tmp), srcs[0])...)
		cmd.Dir = abs
		return run(cmd)
	})
}

// rustcForWasm is a rustc that can build for wasm32-unknown-unknown.
func rustcForWasm() (string, error) {
	var tried []string
	for _, c := range []string{"rustc", "/usr/bin/rustc"} {
		path, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "--print", "sysroot").Output()
		if err != nil {
			continue
		}
		lib := filepath.Join(strings.TrimSpace(string(out)), "lib", "rustlib", "wasm32-unknown-unknown", "lib")
		if _, err := os.Stat(lib); err == nil {
			return path, nil
		}
		tried = append(tried, path)
	}
	if len(tried) == 0 {
		return "", missing("rustc", "rustc")
	}
	return "", missing("the Rust standard library for wasm32-unknown-unknown (none for "+strings.Join(tried, ", ")+")", "libstd-rust-dev-wasm32")
}

// checkC finds what a C build needs before running it, to say what is missing rather than
// leave the reader to decode a linker error.
func checkC() error {
	if _, err := exec.LookPath("clang"); err != nil {
		return missing("clang", "clang")
	}
	out, err := exec.Command("clang", "--target=wasm32-wasi", "-print-prog-name=wasm-ld").Output()
	ld := strings.TrimSpace(string(out))
	if err == nil && !filepath.IsAbs(ld) {
		ld, err = exec.LookPath(ld)
	} else if err == nil {
		_, err = os.Stat(ld)
	}
	if err != nil {
		return missing("wasm-ld (the WebAssembly linker clang calls)", "lld")
	}
	libc := "/usr/lib/wasm32-wasi/libc.a" // Debian's wasi-libc
	if s := os.Getenv("WASI_SYSROOT"); s != "" {
		libc = filepath.Join(s, "lib", "wasm32-wasi", "libc.a")
	}
	if _, err := os.Stat(libc); err != nil {
		return missing("wasi-libc ("+libc+")", "wasi-libc")
	}
	out, err = exec.Command("clang", "--target=wasm32-wasi", "-print-libgcc-file-name").Output()
	rt := strings.TrimSpace(string(out))
	if err == nil {
		_, err = os.Stat(rt)
	}
	if err != nil {
		return missing("compiler-rt builtins for wasm32 ("+rt+")", "libclang-rt-14-dev-wasm32 (for clang 14; libclang-rt-N-dev-wasm32 for clang N)")
	}
	return nil
}

// AS builds the AssemblyScript filter in dir (relative to the module root, like
// "examples/assemblyscript/hello") and returns the .wasm path. The directory holds
// package.json, package-lock.json, asconfig.json with a "release" target, and
// assembly/index.ts. The build installs the exact packages of the lockfile into the
// directory's own node_modules (gitignored) when they are not there yet, then compiles:
//
//	npm ci && npx asc assembly/index.ts --target release --outFile OUT
func AS(t testing.TB, dir string) string {
	t.Helper()
	root := ModuleRoot(t)
	abs := filepath.Join(root, dir)
	args := []string{"assembly/index.ts", "--target", "release", "--outFile", "OUT"}
	// sdk/assemblyscript too: an example may import it by its path.
	key := hashSources(t, recipe("asc", args...), []string{abs, filepath.Join(root, "sdk", "assemblyscript")}, []string{"node_modules", "build"})
	out := filepath.Join(CacheDir(), "as-"+filepath.Base(dir)+"-"+key+".wasm")
	// The lock is per source directory: npm ci rewrites its node_modules.
	sum := sha256.Sum256([]byte(abs))
	lock := filepath.Join(CacheDir(), "as-"+filepath.Base(dir)+"-"+hex.EncodeToString(sum[:6]))
	return build(t, out, lock, func(tmp string) error {
		for _, tool := range []string{"node", "npm"} {
			if _, err := exec.LookPath(tool); err != nil {
				return missing(tool, "nodejs and npm")
			}
		}
		if err := npmCI(abs); err != nil {
			return err
		}
		cmd := exec.Command(filepath.Join(abs, "node_modules", ".bin", "asc"), withOut(args, tmp)...)
		cmd.Dir = abs
		return run(cmd)
	})
}

// npmCI installs the lockfile's packages into dir/node_modules unless the ones there came
// from this very lockfile, which a stamp file in node_modules records.
func npmCI(dir string) error {
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return fmt.Errorf("wasmbuild: %w (an AssemblyScript example needs its lockfile: run npm install in %s)", err, dir)
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join(dir, "node_modules", ".plexus-package-lock.sha256")
	if have, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(have)) == want {
		return nil
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if err := run(cmd); err != nil {
		return fmt.Errorf("npm ci in %s: %w", dir, err)
	}
	return os.WriteFile(stamp, []byte(want+"\n"), 0o644)
}

// WATFilter is the source of a Proxy-Wasm test filter in WAT: imports, then one page of
// memory with a bump allocator (malloc), the ABI marker and the root context's callbacks,
// which every such filter has, then fields (data, globals, the stream's callbacks).
func WATFilter(imports, fields string) string {
	return `(module
` + imports + `
  (memory (export "memory") 1)
  (global $top (mut i32) (i32.const 4096))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $top))
    (global.set $top (i32.add (global.get $top) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
` + fields + `)`
}

// WAT assembles WAT source text and returns the module bytes.
func WAT(t testing.TB, src string) []byte {
	t.Helper()
	b, err := os.ReadFile(WATPath(t, src))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WATPath assembles WAT source text and returns the .wasm path, in the build cache (named
// by the source's hash, so it never changes under a reader): for a config's file: module.
func WATPath(t testing.TB, src string) string {
	t.Helper()
	sum := sha256.Sum256([]byte(src))
	out := filepath.Join(CacheDir(), "wat-"+hex.EncodeToString(sum[:8])+".wasm")
	return build(t, out, out, func(tmp string) error {
		in := tmp + ".wat"
		defer os.Remove(in)
		if err := os.WriteFile(in, []byte(src), 0o644); err != nil {
			return err
		}
		return wat2wasm(in, tmp)
	})
}

// WATFile assembles a .wat file (relative to the module root, like
// "examples/wat/hello.wat") and returns the .wasm path.
func WATFile(t testing.TB, file string) string {
	t.Helper()
	abs := filepath.Join(ModuleRoot(t), file)
	key := hashSources(t, recipe("wat2wasm"), nil, nil, abs)
	out := filepath.Join(CacheDir(), "wat-"+strings.TrimSuffix(filepath.Base(file), ".wat")+"-"+key+".wasm")
	return build(t, out, out, func(tmp string) error { return wat2wasm(abs, tmp) })
}

func wat2wasm(in, out string) error {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		return missing("wat2wasm", "wabt")
	}
	return run(exec.Command("wat2wasm", "--enable-all", "-o", out, in))
}

// missing is the error for a tool that is not installed.
func missing(what, pkg string) error {
	return fmt.Errorf("wasmbuild: %s not found: install the Debian package %s; scripts/deps.sh (make deps) installs everything the tests need", what, pkg)
}

func run(cmd *exec.Cmd) error {
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(b))
	}
	return nil
}

// withOut is args with the placeholder "OUT" replaced by out.
func withOut(args []string, out string) []string {
	r := append([]string(nil), args...)
	for i, a := range r {
		if a == "OUT" {
			r[i] = out
		}
	}
	return r
}

// recipe names a build's tool and flags, for the cache key: new flags, new module.
func recipe(tool string, args ...string) string {
	return tool + " " + strings.Join(args, " ")
}

// slots bounds concurrent builds: each is CPU-bound, go build and asc use several cores of
// their own, and the machines this runs on have two.
var slots = make(chan struct{}, 2)

// keyLocks holds one mutex per lock name, so that two tests in one process asking for the
// same module wait for one build.
var keyLocks sync.Map

// build returns out, first running do (which writes to the temp path it is given) unless
// out exists. lock names the lock that guards the build, in this process and across
// processes.
func build(t testing.TB, out, lock string, do func(tmp string) error) string {
	t.Helper()
	if _, err := os.Stat(out); err == nil {
		return out
	}
	mu, _ := keyLocks.LoadOrStore(lock, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockFile(lock + ".lock")
	if err != nil {
		t.Fatalf("wasmbuild: %v", err)
	}
	defer unlock()
	if _, err := os.Stat(out); err == nil {
		return out // another process built it while we waited
	}
	slots <- struct{}{}
	defer func() { <-slots }()
	start := time.Now()
	tmp := fmt.Sprintf("%s.%d.tmp", out, os.Getpid())
	defer os.Remove(tmp)
	if err := do(tmp); err != nil {
		t.Fatalf("wasmbuild: building %s: %v", filepath.Base(out), err)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	t.Logf("wasmbuild: built %s in %s", filepath.Base(out), time.Since(start).Round(time.Millisecond))
	return out
}

// hashSources hashes the recipe, the Go version, every file under dirs (except in
// directories named in skip, .wasm and .md files) and the named files, so that a change to any source or flag
// rebuilds.
func hashSources(t testing.TB, recipe string, dirs, skip []string, files ...string) string {
	t.Helper()
	h := sha256.New()
	fmt.Fprintln(h, recipe)
	fmt.Fprintln(h, runtime.Version())
	var all []string
	for _, d := range dirs {
		var found []string
		err := filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() {
				for _, s := range skip {
					if e.Name() == s && path != d {
						return filepath.SkipDir
					}
				}
				return nil
			}
			// Not sources: a module built by hand next to them, and docs.
			if ext := filepath.Ext(path); ext != ".wasm" && ext != ".md" {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("wasmbuild: %v", err)
		}
		sort.Strings(found)
		all = append(all, found...)
	}
	all = append(all, files...)
	for _, f := range all {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("wasmbuild: %v", err)
		}
		fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Place copies a built module to dst, where an example config names it (examples/go/hello.wasm;
// *.wasm is ignored by git). The copy lands whole, by rename, so concurrent test processes
// placing the same module never see half a file.
func Place(t testing.TB, built, dst string) {
	t.Helper()
	b, err := os.ReadFile(built)
	if err != nil {
		t.Fatal(err)
	}
	if err := atomicfile.Write(dst, b); err != nil {
		t.Fatal(err)
	}
}
