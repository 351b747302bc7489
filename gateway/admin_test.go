package gateway_test

// The admin listener's guards (profiles only when asked, filter configs redacted, a warning
// when other hosts can reach it) and reloads that pick up a module rebuilt on disk, through
// the real gateway.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// adminFetch GETs path on the admin listener and returns the status and body.
func adminFetch(t *testing.T, admin, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + admin + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func TestAdminPprof(t *testing.T) {
	const yaml = `
admin: {address: 127.0.0.1:0%s}
listeners: [{name: web, address: 127.0.0.1:0}]
routes: [{name: ok, direct_response: {body: ok}}]
`
	g, addrs := startGatewayWith(t, fmt.Sprintf(yaml, ""), gateway.Options{})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1"} {
		if code, body := adminFetch(t, addrs["admin"], path); code != http.StatusNotFound || !strings.Contains(body, "admin.pprof: true") {
			t.Errorf("GET %s without admin.pprof: %d %q, want 404 saying how to turn it on", path, code, body)
		}
	}

	// A reload turns them on (and the admin listener stays where it is).
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "plexus.yaml"), []byte(fmt.Sprintf(yaml, ", pprof: true")))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	if code, body := adminFetch(t, addrs["admin"], "/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("GET /debug/pprof/ with admin.pprof: %d, want 200 and the index of profiles:\n%s", code, body)
	}
	if code, body := adminFetch(t, addrs["admin"], "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "plexus-mesh/plexus/gateway") {
		t.Errorf("GET /debug/pprof/goroutine with admin.pprof: %d, want 200 and a dump naming the gateway's code", code)
	}
}

func TestAdminStartsWithPprof(t *testing.T) {
	_, addrs := startGatewayWith(t, `
admin: {address: 127.0.0.1:0, pprof: true}
listeners: [{name: web, address: 127.0.0.1:0}]
routes: [{name: ok, direct_response: {body: ok}}]
`, gateway.Options{})
	if code, _ := adminFetch(t, addrs["admin"], "/debug/pprof/heap?debug=1"); code != 200 {
		t.Errorf("GET /debug/pprof/heap with admin.pprof: %d, want 200", code)
	}
}

func TestAdminConfigRedactsFilterConfig(t *testing.T) {
	hello := wasmbuild.WATFile(t, "examples/wat/hello.wat")
	const yaml = `
admin: {address: 127.0.0.1:0%[2]s}
listeners: [{name: web, address: 127.0.0.1:0}]
filters:
  - {name: hello, module: "file:%[1]s", config: {api_key: hunter2}, vm_config: "token=s3cret"}
telemetry:
  tracing: {sampling: 0, exporter: {type: otlp_http, endpoint: "127.0.0.1:1", insecure: true, headers: {authorization: "Bearer letmein"}}}
routes: [{name: ok, filters: [hello], direct_response: {body: ok}}]
`
	filterShown := func(t *testing.T, admin string) (map[string]any, string) {
		t.Helper()
		code, body := adminFetch(t, admin, "/config")
		if code != 200 {
			t.Fatalf("GET /config: %d %s", code, body)
		}
		var shown struct {
			Config struct {
				Filters   []map[string]any
				Telemetry map[string]any
			}
		}
		if err := json.Unmarshal([]byte(body), &shown); err != nil || len(shown.Config.Filters) != 1 {
			t.Fatalf("/config: %v\n%s", err, body)
		}
		if strings.Contains(body, "letmein") {
			t.Errorf("/config shows the exporter's headers, which are secret:\n%s", body)
		}
		return shown.Config.Filters[0], body
	}

	t.Run("by default", func(t *testing.T) {
		_, addrs := startGatewayWith(t, fmt.Sprintf(yaml, hello, ""), gateway.Options{})
		f, body := filterShown(t, addrs["admin"])
		if f["config"] != "[redacted]" || f["vm_config"] != "[redacted]" {
			t.Errorf("/config filter: %v, want config and vm_config [redacted]", f)
		}
		if strings.Contains(body, "hunter2") || strings.Contains(body, "s3cret") {
			t.Errorf("/config shows a filter's configuration:\n%s", body)
		}
		if f["name"] != "hello" || f["module"] != "file:"+hello {
			t.Errorf("/config filter: %v, want its name and module shown", f)
		}
	})
	t.Run("with show_filter_config", func(t *testing.T) {
		_, addrs := startGatewayWith(t, fmt.Sprintf(yaml, hello, ", show_filter_config: true"), gateway.Options{})
		f, _ := filterShown(t, addrs["admin"])
		if fmt.Sprint(f["config"]) != "map[api_key:hunter2]" || f["vm_config"] != "token=s3cret" {
			t.Errorf("/config filter: %v, want its config and vm_config", f)
		}
	})
}

func TestAdminRemoteWarning(t *testing.T) {
	const warning = "admin listener is reachable from other hosts"
	for _, tt := range []struct {
		admin string
		warn  bool
	}{
		{"{address: 127.0.0.1:0}", false},
		{"{address: 0.0.0.0:0, allow_remote: true}", true},
	} {
		var logs lockedBuffer
		_, addrs := startGatewayWith(t, `
admin: `+tt.admin+`
listeners: [{name: web, address: 127.0.0.1:0}]
routes: [{name: ok, direct_response: {body: ok}}]
`, gateway.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if got := strings.Contains(logs.String(), warning); got != tt.warn {
			t.Errorf("admin %s: warned %v, want %v; logs:\n%s", tt.admin, got, tt.warn, logs.String())
		}
		if tt.warn && !strings.Contains(logs.String(), "address="+addrs["admin"]) {
			t.Errorf("the warning does not name the address %s:\n%s", addrs["admin"], logs.String())
		}
	}
}

// helloVariant is examples/wat/hello.wat answering with x-hello: value (three bytes) instead
// of "wat": a module with other bytes and other behaviour.
func helloVariant(t *testing.T, value string) []byte {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(wasmbuild.ModuleRoot(t), "examples/wat/hello.wat"))
	if err != nil {
		t.Fatal(err)
	}
	const data = `(data (i32.const 1040) "wat")`
	if len(value) != 3 || !strings.Contains(string(src), data) {
		t.Fatalf("hello.wat has no %s to replace with %q", data, value)
	}
	return wasmbuild.WAT(t, strings.Replace(string(src), data, `(data (i32.const 1040) "`+value+`")`, 1))
}

// writeAtomically writes data to path as editors and build tools do: to a temporary file,
// renamed over path.
func writeAtomically(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// xHello is the x-hello header of a response from url.
func xHello(t *testing.T, url string) string {
	t.Helper()
	return get(t, url).Header.Get("X-Hello")
}

// waitHello polls url until its x-hello is want.
func waitHello(t *testing.T, url, want string) {
	t.Helper()
	testutil.Eventually(t, "x-hello: "+want+" (the rebuilt module)", func() bool { return xHello(t, url) == want })
}

// moduleGateway writes a config naming the module at dir/modPath, with that module holding
// wasm, and starts a gateway on it. It returns the gateway, the config file and the URL of
// the filtered route.
func moduleGateway(t *testing.T, dir, modPath string, wasm []byte, o gateway.Options) (*gateway.Gateway, string, string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, modPath)), 0o755); err != nil {
		t.Fatal(err)
	}
	writeAtomically(t, filepath.Join(dir, modPath), wasm)
	file := filepath.Join(dir, "plexus.yaml")
	writeAtomically(t, file, []byte(moduleConfig(modPath)))
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.CacheDir = wasmbuild.CacheDir() + "/gateway-tests"
	g, err := gateway.New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return g, file, "http://" + g.Addrs()["web"] + "/"
}

// moduleConfig is a gateway whose one route runs the filter in modPath (relative to the
// config file) before a direct response.
func moduleConfig(modPath string) string {
	return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
filters: [{name: hello, module: "file:%s"}]
routes: [{name: ok, filters: [hello], direct_response: {body: ok}}]
`, modPath)
}

func configVersion(t *testing.T, g *gateway.Gateway) float64 {
	t.Helper()
	_, body := adminFetch(t, g.Addrs()["admin"], "/config")
	var m struct{ Version float64 }
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("/config: %v\n%s", err, body)
	}
	return m.Version
}

// An explicit reload of an unchanged config loads a module whose bytes changed: filters are
// keyed by their module's digest, not by the config's text.
func TestReloadPicksUpRebuiltModule(t *testing.T) {
	dir := t.TempDir()
	g, file, url := moduleGateway(t, dir, "hello.wasm", helloVariant(t, "one"), gateway.Options{})
	if got := xHello(t, url); got != "one" {
		t.Fatalf("x-hello %q, want one", got)
	}
	writeAtomically(t, filepath.Join(dir, "hello.wasm"), helloVariant(t, "two"))
	if err := g.ReloadFile(file); err != nil {
		t.Fatal(err)
	}
	if got := xHello(t, url); got != "two" {
		t.Errorf("after a reload, x-hello %q, want two (the rebuilt module's)", got)
	}
	// A reload with nothing changed keeps the filter and what it answers.
	if err := g.ReloadFile(file); err != nil {
		t.Fatal(err)
	}
	if got := xHello(t, url); got != "two" {
		t.Errorf("after a second reload, x-hello %q, want two", got)
	}
}

// The watcher reloads when a module's content changes, however it is written, and follows
// the modules as reloads change the config.
func TestWatchPicksUpRebuiltModule(t *testing.T) {
	dir := t.TempDir()
	var logs lockedBuffer
	g, file, url := moduleGateway(t, dir, "hello.wasm", helloVariant(t, "one"), gateway.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := g.Watch(ctx, file); err != nil {
		t.Fatal(err)
	}
	mod := filepath.Join(dir, "hello.wasm")

	t.Run("renamed over", func(t *testing.T) {
		writeAtomically(t, mod, helloVariant(t, "two"))
		waitHello(t, url, "two")
	})
	t.Run("written in place", func(t *testing.T) {
		if err := os.WriteFile(mod, helloVariant(t, "tri"), 0o644); err != nil {
			t.Fatal(err)
		}
		waitHello(t, url, "tri")
	})
	t.Run("same bytes", func(t *testing.T) {
		// Writing the module again with its bytes, or touching it, reloads nothing; what
		// follows it does, once.
		v := configVersion(t, g)
		writeAtomically(t, mod, helloVariant(t, "tri"))
		now := time.Now()
		os.Chtimes(mod, now, now)
		writeAtomically(t, mod, helloVariant(t, "for"))
		waitHello(t, url, "for")
		if got := configVersion(t, g); got != v+1 {
			t.Errorf("config version %v, want %v: a module whose bytes did not change was reloaded", got, v+1)
		}
	})
	t.Run("a module in another directory", func(t *testing.T) {
		// The config now names a module elsewhere: a reload not made by the watcher (as
		// SIGHUP's) moves the watch there.
		other := filepath.Join(dir, "build", "hello.wasm")
		os.MkdirAll(filepath.Dir(other), 0o755)
		writeAtomically(t, other, helloVariant(t, "fiv"))
		writeAtomically(t, file, []byte(moduleConfig("build/hello.wasm")))
		if err := g.ReloadFile(file); err != nil {
			t.Fatal(err)
		}
		waitHello(t, url, "fiv")
		writeAtomically(t, other, helloVariant(t, "six"))
		waitHello(t, url, "six")
	})
	t.Run("a broken module", func(t *testing.T) {
		// A module that does not load is refused once, and the running filter serves on.
		other := filepath.Join(dir, "build", "hello.wasm")
		before := len(logs.String())
		refused := func() int { return strings.Count(logs.String()[before:], "config reload refused") }
		writeAtomically(t, other, []byte("\x00asm\x01\x00\x00\x00 not a module"))
		testutil.Eventually(t, "the broken module's reload to be refused", func() bool { return refused() > 0 })
		if got := xHello(t, url); got != "six" {
			t.Errorf("x-hello %q after a refused reload, want six", got)
		}
		writeAtomically(t, other, helloVariant(t, "sev"))
		waitHello(t, url, "sev")
		if n := refused(); n != 1 {
			t.Errorf("%d refused reloads, want 1: a module that did not change was tried again", n)
		}
	})
	if t.Failed() {
		t.Log(logs.String())
	}
}
