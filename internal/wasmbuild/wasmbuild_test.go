package wasmbuild

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// example is one filter under examples/, found on disk so that a new one is tested without
// touching this file.
type example struct {
	kind string // "go", "c", "assemblyscript", "wat"
	path string // relative to the module root
}

func (e example) build(t testing.TB) string {
	switch e.kind {
	case "go":
		return Go(t, e.path)
	case "c":
		return C(t, e.path)
	case "assemblyscript":
		return AS(t, e.path)
	case "wat":
		return WATFile(t, e.path)
	}
	t.Fatalf("unknown kind %q", e.kind)
	return ""
}

func examples(t *testing.T) []example {
	t.Helper()
	root := ModuleRoot(t)
	var all []example
	find := func(kind, pattern, marker string) {
		matches, err := filepath.Glob(filepath.Join(root, "examples", kind, pattern))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range matches {
			if marker != "" {
				if ms, _ := filepath.Glob(filepath.Join(m, marker)); len(ms) == 0 {
					continue
				}
			}
			rel, _ := filepath.Rel(root, m)
			all = append(all, example{kind, rel})
		}
	}
	find("go", "*", "*.go")
	find("c", "*", "*.c")
	find("assemblyscript", "*", "package.json")
	find("wat", "*.wat", "")
	return all
}

// The example set the gateway's end-to-end tests rely on: none may go missing.
var wantExamples = []string{
	"examples/go/hello", "examples/go/http_headers", "examples/go/http_body",
	"examples/go/http_routing", "examples/go/http_auth_callout",
	"examples/go/dispatch_call_on_tick", "examples/go/shared_data", "examples/go/shared_queue",
	"examples/go/metrics", "examples/go/json_validation", "examples/go/properties",
	"examples/go/postpone_requests", "examples/go/vm_plugin_configuration",
	"examples/c/hello", "examples/assemblyscript/hello", "examples/wat/hello.wat",
}

// TestExamples builds every example filter from source and checks that the result is a
// Proxy-Wasm module a host can load: valid Wasm, an ABI version marker, an allocator the
// host can call, a memory, and imports only from env and WASI preview 1.
func TestExamples(t *testing.T) {
	all := examples(t)
	have := map[string]bool{}
	for _, e := range all {
		have[filepath.ToSlash(e.path)] = true
	}
	for _, w := range wantExamples {
		if !have[w] {
			t.Errorf("example %s is missing", w)
		}
	}

	var mu sync.Mutex
	var timings []string
	t.Cleanup(func() {
		sort.Strings(timings)
		t.Logf("build (or cache) time per example:\n\t%s", strings.Join(timings, "\n\t"))
	})
	rt := wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfigInterpreter())
	t.Cleanup(func() { rt.Close(context.Background()) })

	for _, e := range all {
		t.Run(filepath.ToSlash(e.path), func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			path := e.build(t)
			took := time.Since(start)
			mu.Lock()
			timings = append(timings, filepath.ToSlash(e.path)+": "+took.Round(time.Millisecond).String())
			mu.Unlock()
			bin, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkProxyWasm(rt, bin); err != nil {
				t.Errorf("%s (%s): %v", e.path, path, err)
			}
		})
	}
}

// checkProxyWasm validates bin (by compiling it) and checks its Proxy-Wasm shape.
func checkProxyWasm(rt wazero.Runtime, bin []byte) error {
	ctx := context.Background()
	m, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return err
	}
	defer m.Close(ctx)
	var problems []string
	for _, f := range m.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case "env":
			if !strings.HasPrefix(name, "proxy_") {
				problems = append(problems, "imports env."+name+", which is not a Proxy-Wasm function")
			}
		case "wasi_snapshot_preview1", "wasi_unstable":
		default:
			problems = append(problems, "imports "+mod+"."+name+" from a module the host does not serve")
		}
	}
	for _, mem := range m.ImportedMemories() {
		mod, name, _ := mem.Import()
		problems = append(problems, "imports memory "+mod+"."+name+": a filter must define its own")
	}
	exports := m.ExportedFunctions()
	if exports["proxy_abi_version_0_2_1"] == nil && exports["proxy_abi_version_0_2_0"] == nil {
		problems = append(problems, "exports neither proxy_abi_version_0_2_1 nor proxy_abi_version_0_2_0")
	}
	if exports["malloc"] == nil && exports["proxy_on_memory_allocate"] == nil {
		problems = append(problems, "exports neither malloc nor proxy_on_memory_allocate")
	}
	for _, cb := range []string{"proxy_on_context_create", "proxy_on_request_headers", "proxy_on_response_headers"} {
		if exports[cb] == nil {
			problems = append(problems, "does not export "+cb)
		}
	}
	if len(m.ExportedMemories()) == 0 {
		problems = append(problems, "exports no memory")
	}
	if len(problems) > 0 {
		return &shapeError{problems}
	}
	return nil
}

type shapeError struct{ problems []string }

func (e *shapeError) Error() string {
	return "not a Proxy-Wasm module: " + strings.Join(e.problems, "; ")
}

// Go filters are main packages for wasip1 only: without the build constraint, go build ./...
// and go vet ./... on the host would try to build them against a host that has no
// proxy_* imports.
func TestGoExamplesAreWasip1Only(t *testing.T) {
	root := ModuleRoot(t)
	files, err := filepath.Glob(filepath.Join(root, "examples", "go", "*", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no Go examples found")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(b), "//go:build wasip1\n") {
			rel, _ := filepath.Rel(root, f)
			t.Errorf("%s does not start with //go:build wasip1", rel)
		}
	}
}

// A missing tool is named with the package that brings it and the script that installs it.
func TestMissingToolSaysWhatToInstall(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for name, check := range map[string]func() error{
		"clang": func() error { return checkC() },
		"wat2wasm": func() error {
			return wat2wasm(filepath.Join(t.TempDir(), "x.wat"), filepath.Join(t.TempDir(), "x.wasm"))
		},
	} {
		err := check()
		if err == nil {
			t.Errorf("%s: no error with an empty PATH", name)
			continue
		}
		for _, want := range []string{name, "scripts/deps.sh"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: error %q does not mention %q", name, err, want)
			}
		}
	}
}
