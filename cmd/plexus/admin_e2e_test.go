package main

// The admin listener's address as `plexus validate` judges it, and a filter module rebuilt
// on disk while plexus runs, through the real binary.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

func TestAdminAddressValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name, admin, listener string
		want                  []string // in the error, each in this order; none: valid
	}{
		{"a listener's address", "{address: 127.0.0.1:18080}", "127.0.0.1:18080",
			[]string{`:2:18: admin address 127.0.0.1:18080 is also the address of listener "web" (at `, `:5:14); give the admin listener a port of its own`}},
		{"a listener on every interface", "{address: 127.0.0.1:18080}", "0.0.0.0:18080",
			[]string{`:2:18: admin address 127.0.0.1:18080 is also the address of listener "web"`}},
		{"not loopback", "{address: 0.0.0.0:19901}", "127.0.0.1:0",
			[]string{`:2:18: admin address 0.0.0.0:19901 listens on every interface: the admin listener has no authentication`, `set admin.allow_remote: true`}},
		{"a remote host", "{address: \"192.0.2.1:19901\"}", "127.0.0.1:0",
			[]string{`:2:18: admin address 192.0.2.1:19901 is not a loopback address`}},
		{"allowed to be remote", "{address: 0.0.0.0:19901, allow_remote: true}", "127.0.0.1:0", nil},
		{"port 0 twice", "{address: 127.0.0.1:0}", "127.0.0.1:0", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			yaml := "\nadmin: " + tc.admin + "\nlisteners:\n  - name: web\n    address: " + tc.listener + "\nroutes: [{name: ok, direct_response: {body: ok}}]\n"
			if err := os.WriteFile(file, []byte(yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, stderr, code := lcRun(t, "validate", "--config", file)
			if tc.want == nil {
				if code != 0 || stdout != file+": ok\n" {
					t.Errorf("plexus validate: exit %d, stdout %q, stderr %q; want 0 and ok", code, stdout, stderr)
				}
				return
			}
			if code != 1 {
				t.Errorf("plexus validate: exit %d, want 1; stderr %q", code, stderr)
			}
			rest := stderr
			for i, w := range tc.want {
				if i == 0 {
					w = file + w
				}
				j := strings.Index(rest, w)
				if j < 0 {
					t.Fatalf("plexus validate says:\n%s\nwant it to say %q", stderr, w)
				}
				rest = rest[j+len(w):]
			}
		})
	}
}

// helloVariant is examples/wat/hello.wat setting x-hello: value (three bytes) instead of
// "wat": another module, with other behaviour.
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

// TestModuleRebuiltOnDisk: plexus run watches the modules its config names and reloads when
// one's content changes, whether it is copied over in place or renamed over; the config
// file itself does not change.
func TestModuleRebuiltOnDisk(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	dir := t.TempDir()
	mod := filepath.Join(dir, "filters", "hello.wasm")
	os.MkdirAll(filepath.Dir(mod), 0o755)
	if err := os.WriteFile(mod, helloVariant(t, "one"), 0o644); err != nil {
		t.Fatal(err)
	}
	g := startGatewayIn(t, dir, `
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [`+app.addr+`]}]
filters: [{name: hello, module: "file:filters/hello.wasm"}]
routes: [{name: app, filters: [hello], backend: app}]
`)
	c := h1Client()
	hello := func() string {
		resp, _ := get(t, c, g.url("web", "/"))
		return resp.Header.Get("X-Hello")
	}
	waitHello := func(want string) {
		t.Helper()
		testutil.Eventually(t, "x-hello: "+want+" (the rebuilt module picked up)", func() bool { return hello() == want })
	}
	if got := hello(); got != "one" {
		t.Fatalf("x-hello %q, want one", got)
	}

	// cp new.wasm filters/hello.wasm: the file is truncated and written in place.
	if err := os.WriteFile(mod, helloVariant(t, "two"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitHello("two")
	// go build -o, or an editor: a new file renamed over the old one.
	tmp := filepath.Join(dir, "filters", ".hello.wasm.tmp")
	if err := os.WriteFile(tmp, helloVariant(t, "tri"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, mod); err != nil {
		t.Fatal(err)
	}
	waitHello("tri")

	changed := g.findLogs("filter module changed on disk; reloading")
	if len(changed) == 0 || changed[len(changed)-1]["module"] != mod || !strings.HasPrefix(changed[len(changed)-1]["digest"].(string), "sha256:") {
		t.Errorf("log of the module's change: %v, want its path %s and new digest", changed, mod)
	}
	// /filters shows the digest of what runs now.
	if got := filterStats(t, g)["hello"].Digest; got != changed[len(changed)-1]["digest"] {
		t.Errorf("/filters digest %s, want the rebuilt module's %v", got, changed[len(changed)-1]["digest"])
	}
}
