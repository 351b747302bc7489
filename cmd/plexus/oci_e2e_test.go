package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	"github.com/plexus-mesh/plexus/registry"
)

// versionWAT is a filter that adds x-version: V to every response.
func versionWAT(v string) string {
	return wasmbuild.WATFilter(`  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))`,
		fmt.Sprintf(`  (data (i32.const 0) "x-version")
  (data (i32.const 16) %q)
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 0) (i32.const 9) (i32.const 16) (i32.const %d)))
    (i32.const 0))`, v, len(v)))
}

// startRegistry runs `plexus registry serve` on a port the OS picks and returns its
// address and a function that stops it.
func startRegistry(t *testing.T, args ...string) (string, func()) {
	t.Helper()
	cmd := exec.Command(plexusBin, append([]string{"registry", "serve", "--addr", "127.0.0.1:0", "--root", t.TempDir(), "--log-format", "json"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() { once.Do(func() { cmd.Process.Kill(); cmd.Wait() }) }
	t.Cleanup(stop)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "registry listening" {
				addr <- m["address"].(string)
			}
		}
	}()
	select {
	case a := <-addr:
		return a, stop
	case <-time.After(30 * time.Second):
		t.Fatal("plexus registry serve did not say where it listens")
	}
	return "", nil
}

// plexusCmd runs the plexus binary with args and returns its standard output.
func plexusCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := exec.Command(plexusBin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("plexus %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// TestOCIFilter: a filter pushed with `plexus push` to `plexus registry serve` (plain HTTP
// to loopback without being told), inspected and pulled back byte for byte, runs in the
// gateway from oci://REF:TAG under pull_policy Always; a new version pushed to the tag is
// pulled, verified and swapped in while requests keep coming, and none of them fails; a
// version that does not load is refused, and the one before serves on.
// /filters shows the reference and digest, /metrics the pulls and the swap.
func TestOCIFilter(t *testing.T) {
	t.Parallel()
	reg, _ := startRegistry(t)
	app := startBackend(t, echo("app"))
	v1, v2 := wasmbuild.WATPath(t, versionWAT("1")), wasmbuild.WATPath(t, versionWAT("2"))
	ref := reg + "/filters/version:live"
	d1 := strings.TrimSpace(plexusCmd(t, "push", v1, ref, "--description", "adds x-version"))
	if !strings.HasPrefix(d1, "sha256:") {
		t.Fatalf("plexus push printed %q; want the digest", d1)
	}
	if in := plexusCmd(t, "inspect", "oci://"+ref); !strings.Contains(in, d1) || !strings.Contains(in, "adds x-version") || !strings.Contains(in, "cncf") {
		t.Errorf("plexus inspect:\n%s\nwant the digest, the description and the layout", in)
	}
	pulled := filepath.Join(t.TempDir(), "v.wasm")
	plexusCmd(t, "pull", ref, "-o", pulled)
	if a, b := mustRead(t, v1), mustRead(t, pulled); !bytes.Equal(a, b) {
		t.Fatalf("pulled %d bytes; want the %d pushed", len(b), len(a))
	}

	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
registry: {refresh_interval: 100ms}
filters: [{name: version, module: "oci://%s", pull_policy: Always}]
routes: [{name: app, match: {path_prefix: /}, filters: [version], backend: app}]
`, app.addr, ref))
	c := h1Client()
	if resp, _ := get(t, c, g.url("web", "/")); resp.Header.Get("X-Version") != "1" {
		t.Fatalf("x-version %q; want 1, from the pulled filter", resp.Header.Get("X-Version"))
	}
	var filters struct{ Filters []map[string]any }
	_, body := get(t, c, "http://"+g.addr("admin")+"/filters")
	json.Unmarshal([]byte(body), &filters)
	if f := filters.Filters[0]; f["source"] != "oci://"+ref+"@"+d1 || f["manifest_digest"] != d1 {
		t.Errorf("/filters shows source %v, manifest_digest %v; want oci://%s@%s", f["source"], f["manifest_digest"], ref, d1)
	}

	// Requests keep coming while v2 is pushed and swapped in.
	var failed, sawV2 atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			cl := h1Client()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := cl.Get(g.url("web", "/"))
				if err != nil {
					failed.Add(1)
					failures.Store(err.Error(), true)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				switch v := resp.Header.Get("X-Version"); {
				case resp.StatusCode != 200:
					failed.Add(1)
					failures.Store(resp.Status, true)
				case v == "2":
					sawV2.Add(1)
				case v != "1":
					failed.Add(1)
					failures.Store("x-version "+v, true)
				}
			}
		})
	}
	d2 := strings.TrimSpace(plexusCmd(t, "push", v2, ref))
	testutil.Eventually(t, "responses from v2", func() bool { return sawV2.Load() > 20 })
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		var why []string
		failures.Range(func(k, _ any) bool { why = append(why, k.(string)); return true })
		t.Errorf("%d requests failed during the swap: %v", n, why)
	}
	swap := g.waitLog("registry: swapped in a new digest", 1)[0]
	if swap["from"] != d1 || swap["to"] != d2 {
		t.Errorf("the swap's log line: %v; want from %s to %s", swap, d1, d2)
	}
	// A version that does not load (a Wasm header, then nothing a compiler takes) is
	// refused, and v2 serves on.
	broken := filepath.Join(t.TempDir(), "broken.wasm")
	os.WriteFile(broken, []byte("\x00asm\x01\x00\x00\x00\x01\xff\xff"), 0o644)
	d3 := strings.TrimSpace(plexusCmd(t, "push", broken, ref))
	refused := g.waitLog("registry: the tag's new digest did not load; the previous module serves on", 1)[0]
	if refused["refused"] != d3 || refused["digest"] != d2 {
		t.Errorf("the refusal's log line: %v; want %s refused, %s serving", refused, d3, d2)
	}
	if resp, _ := get(t, c, g.url("web", "/")); resp.StatusCode != 200 || resp.Header.Get("X-Version") != "2" {
		t.Errorf("after a broken version was pushed: %d, x-version %q; want v2 serving", resp.StatusCode, resp.Header.Get("X-Version"))
	}
	_, metrics := get(t, c, "http://"+g.addr("admin")+"/metrics")
	for _, m := range [][]string{
		{"plexus_registry_pull_duration_seconds_count{", `plexus_filter="version"`, `plexus_result="ok"`},
		{"plexus_registry_pull_size_bytes_total{", `plexus_filter="version"`},
		{"plexus_registry_swaps_total{", `plexus_filter="version"`},
	} {
		if !hasSeries(metrics, m[0], m[1:]...) {
			t.Errorf("/metrics has no %s with %v", m[0], m[1:])
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOCIFilterUnavailable: a gateway whose filters' modules cannot be pulled (the
// registry is out of reach, or has no such tag yet) starts anyway; each route applies its
// filter's failure policy (open: without it; closed: 503); once the module is pushed, the
// refresher pulls it and the filter runs. A registry's mirror serves when it is down. A digest reference, once cached, loads with the
// registry gone.
func TestOCIFilterUnavailable(t *testing.T) {
	t.Parallel()
	reg, stopReg := startRegistry(t)
	app := startBackend(t, echo("app"))
	dead := deadAddr(t)
	plexusCmd(t, "push", wasmbuild.WATPath(t, versionWAT("mirrored")), reg+"/filters/mirrored:1")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%[1]s]}]
registry: {refresh_interval: 100ms, pull_retries: 0, pull_timeout: 5s, mirrors: {"%[2]s": ["%[3]s"]}}
filters:
  - {name: gone, module: "oci://%[2]s/filters/gone:1", failure: open}
  - {name: later, module: "oci://%[3]s/filters/later:1", failure: closed}
  - {name: mirrored, module: "oci://%[2]s/filters/mirrored:1"}
routes:
  - {name: open, match: {path: /open}, filters: [gone], backend: app}
  - {name: closed, match: {path: /closed}, filters: [later], backend: app}
  - {name: mirrored, match: {path: /mirrored}, filters: [mirrored], backend: app}
`, app.addr, dead, reg))
	c := h1Client()
	if resp, _ := get(t, c, g.url("web", "/mirrored")); resp.Header.Get("X-Version") != "mirrored" {
		t.Errorf("a filter whose registry is down but whose mirror has it: x-version %q; want mirrored", resp.Header.Get("X-Version"))
	}
	if resp, _ := get(t, c, g.url("web", "/open")); resp.StatusCode != 200 {
		t.Errorf("a fail-open filter that could not be pulled: %d; want 200, without it", resp.StatusCode)
	}
	if resp, _ := get(t, c, g.url("web", "/closed")); resp.StatusCode != 503 || !strings.Contains(resp.Header.Get("X-Plexus-Error"), "later") {
		t.Errorf("a fail-closed filter that could not be pulled: %d %q; want 503 naming it", resp.StatusCode, resp.Header.Get("X-Plexus-Error"))
	}
	if n := len(g.findLogs("filter unavailable: its module could not be pulled; its routes apply its failure policy until a pull succeeds")); n != 2 {
		t.Errorf("%d log lines say a filter is unavailable; want 2", n)
	}
	d := strings.TrimSpace(plexusCmd(t, "push", wasmbuild.WATPath(t, versionWAT("later")), reg+"/filters/later:1"))
	testutil.Eventually(t, "the pushed filter in force", func() bool {
		resp, err := c.Get(g.url("web", "/closed"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200 && resp.Header.Get("X-Version") == "later"
	})

	// By digest: cached, it needs no registry, in a new gateway too.
	stopReg()
	g2 := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
registry: {pull_retries: 0, pull_timeout: 2s}
filters: [{name: pinned, module: "oci://%s/filters/later@%s"}]
routes: [{name: app, match: {path_prefix: /}, filters: [pinned], backend: app}]
`, app.addr, reg, d))
	if resp, _ := get(t, c, g2.url("web", "/")); resp.Header.Get("X-Version") != "later" {
		t.Errorf("a cached digest reference with the registry gone: x-version %q; want later", resp.Header.Get("X-Version"))
	}
}

// hasSeries reports whether a Prometheus exposition has a series of name with labels.
func hasSeries(metrics, name string, labels ...string) bool {
	for _, l := range strings.Split(metrics, "\n") {
		if !strings.HasPrefix(l, name) {
			continue
		}
		ok := true
		for _, lb := range labels {
			ok = ok && strings.Contains(l, lb)
		}
		if ok {
			return true
		}
	}
	return false
}

// writeKeyPair writes an ECDSA P-256 key pair as PEM (PKCS #8 and PKIX), as openssl and
// cosign's public keys are, and returns the two paths.
func writeKeyPair(t *testing.T, dir, name string) (priv, pub string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	pubDer, _ := x509.MarshalPKIXPublicKey(k.Public())
	priv, pub = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".pub")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDer}), 0o644)
	return priv, pub
}

// TestOCISigned: under registry.verify, a filter signed with `plexus push --sign` by one
// of the policy's keys loads; one signed by another key, or unsigned, is refused (never
// cached or run), and its route applies the failure policy; a repository no policy
// matches loads unsigned.
func TestOCISigned(t *testing.T) {
	t.Parallel()
	reg, _ := startRegistry(t)
	app := startBackend(t, echo("app"))
	dir := t.TempDir()
	trusted, trustedPub := writeKeyPair(t, dir, "trusted")
	stranger, _ := writeKeyPair(t, dir, "stranger")
	_, alsoPub := writeKeyPair(t, dir, "also")
	mod := wasmbuild.WATPath(t, versionWAT("signed"))
	plexusCmd(t, "push", mod, reg+"/filters/signed:1", "--sign", trusted)
	plexusCmd(t, "push", mod, reg+"/filters/stranger:1", "--sign", stranger)
	plexusCmd(t, "push", mod, reg+"/filters/unsigned:1")
	plexusCmd(t, "push", mod, reg+"/open/anything:1")
	if in := plexusCmd(t, "inspect", reg+"/filters/signed:1"); !strings.Contains(in, "application/vnd.dev.cosign.artifact.sig.v1+json") {
		t.Errorf("plexus inspect does not list the signature:\n%s", in)
	}
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%[1]s]}]
registry:
  pull_retries: 0
  refresh_interval: 1h
  verify: [{match: "%[2]s/filters/*", keys: [%[3]s, %[4]s]}]
filters:
  - {name: signed, module: "oci://%[2]s/filters/signed:1"}
  - {name: stranger, module: "oci://%[2]s/filters/stranger:1"}
  - {name: unsigned, module: "oci://%[2]s/filters/unsigned:1"}
  - {name: elsewhere, module: "oci://%[2]s/open/anything:1"}
routes:
  - {name: signed, match: {path: /signed}, filters: [signed], backend: app}
  - {name: stranger, match: {path: /stranger}, filters: [stranger], backend: app}
  - {name: unsigned, match: {path: /unsigned}, filters: [unsigned], backend: app}
  - {name: elsewhere, match: {path: /elsewhere}, filters: [elsewhere], backend: app}
`, app.addr, reg, alsoPub, trustedPub))
	c := h1Client()
	for _, tc := range []struct {
		path    string
		status  int
		version string
	}{{"/signed", 200, "signed"}, {"/stranger", 503, ""}, {"/unsigned", 503, ""}, {"/elsewhere", 200, "signed"}} {
		resp, _ := get(t, c, g.url("web", tc.path))
		if resp.StatusCode != tc.status || resp.Header.Get("X-Version") != tc.version {
			t.Errorf("%s: %d, x-version %q; want %d, %q", tc.path, resp.StatusCode, resp.Header.Get("X-Version"), tc.status, tc.version)
		}
	}
	if n := len(g.findLogs("registry: pull refused: not signed by a key the policy trusts")); n != 2 {
		t.Errorf("%d refusals logged; want 2 (the stranger's signature, the unsigned one)", n)
	}
}

// TestRegistryAuthCLI: `plexus registry serve --htpasswd` turns away a push without
// credentials, with a message that says so, and takes one with --username and
// --password-stdin.
func TestRegistryAuthCLI(t *testing.T) {
	t.Parallel()
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(htpasswd, append([]byte("ci:"), hash...), 0o600)
	reg, _ := startRegistry(t, "--htpasswd", htpasswd)
	mod := wasmbuild.WATPath(t, versionWAT("auth"))
	ref := reg + "/filters/auth:1"
	var errb bytes.Buffer
	cmd := exec.Command(plexusBin, "push", mod, ref)
	cmd.Env = append(os.Environ(), "DOCKER_CONFIG="+t.TempDir())
	cmd.Stderr = &errb
	if err := cmd.Run(); err == nil || !strings.Contains(errb.String(), "the registry asks for credentials") {
		t.Errorf("push without credentials: %v, %q; want it refused as unauthorized", err, errb.String())
	}
	var out bytes.Buffer
	cmd = exec.Command(plexusBin, "push", mod, ref, "--username", "ci", "--password-stdin")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader("s3cret\n"), &out, &errb
	if err := cmd.Run(); err != nil || !strings.HasPrefix(out.String(), "sha256:") {
		t.Errorf("push with --password-stdin: %v, %q, %q", err, out.String(), errb.String())
	}
}

// TestRegistryTLS: `plexus registry serve --tls-cert --tls-key` serves HTTPS, on loopback
// too (the client asks, as docker does, and takes TLS when it is there); push verifies the
// registry with --ca, and refuses it as an unknown authority without.
func TestRegistryTLS(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t, t.TempDir())
	reg, _ := startRegistry(t, "--tls-cert", cert.certFile, "--tls-key", cert.keyFile)
	mod := wasmbuild.WATPath(t, versionWAT("tls"))
	var errb bytes.Buffer
	cmd := exec.Command(plexusBin, "push", mod, reg+"/filters/tls:1")
	cmd.Stderr = &errb
	if err := cmd.Run(); err == nil || !strings.Contains(errb.String(), "certificate") {
		t.Errorf("push to a registry whose CA is not trusted: %v, %q; want a certificate error", err, errb.String())
	}
	d := strings.TrimSpace(plexusCmd(t, "push", mod, reg+"/filters/tls:1", "--ca", cert.certFile))
	if out := plexusCmd(t, "inspect", reg+"/filters/tls:1", "--ca", cert.certFile); !strings.Contains(out, d) {
		t.Errorf("inspect over TLS:\n%s\nwant %s", out, d)
	}
}

// TestOCIRegistryFaults: the gateway retries a pull that met a registry error (503 twice,
// then the module), backing off; a registry that sends other bytes than the digests say
// is caught, the module never cached or run, and the filter left to its failure policy.
func TestOCIRegistryFaults(t *testing.T) {
	t.Parallel()
	srv, err := registry.NewServer(t.TempDir(), registry.ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var flaky atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/flaky/") && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/") && flaky.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if strings.Contains(r.URL.Path, "/lying/") && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			b[len(b)-1] ^= 0xff
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Write(b)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	defer ts.Close()
	reg := strings.TrimPrefix(ts.URL, "http://")
	plexusCmd(t, "push", wasmbuild.WATPath(t, versionWAT("flaky")), reg+"/filters/flaky:1")
	plexusCmd(t, "push", wasmbuild.WATPath(t, versionWAT("lying")), reg+"/filters/lying:1")
	flaky.Store(0)
	app := startBackend(t, echo("app"))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%[1]s]}]
registry: {pull_retries: 2, refresh_interval: 1h}
filters:
  - {name: flaky, module: "oci://%[2]s/filters/flaky:1"}
  - {name: lying, module: "oci://%[2]s/filters/lying:1", failure: closed}
routes:
  - {name: flaky, match: {path: /flaky}, filters: [flaky], backend: app}
  - {name: lying, match: {path: /lying}, filters: [lying], backend: app}
`, app.addr, reg))
	c := h1Client()
	if resp, _ := get(t, c, g.url("web", "/flaky")); resp.Header.Get("X-Version") != "flaky" {
		t.Errorf("a module pulled after two 503s: x-version %q; want flaky", resp.Header.Get("X-Version"))
	}
	if n := flaky.Load(); n < 3 {
		t.Errorf("the registry saw %d manifest requests; want the two that failed and the one that did not", n)
	}
	if resp, _ := get(t, c, g.url("web", "/lying")); resp.StatusCode != 503 || resp.Header.Get("X-Version") != "" {
		t.Errorf("a module whose bytes are not its digest's: %d, x-version %q; want 503, never run", resp.StatusCode, resp.Header.Get("X-Version"))
	}
	fails := g.findLogs("registry: pull failed")
	if len(fails) != 1 || fails[0]["filter"] != "lying" || fails[0]["result"] != "refused" || !strings.Contains(fmt.Sprint(fails[0]["error"]), "digest") {
		t.Errorf("pull failures logged: %v; want the lying one, refused for its digest", fails)
	}
}

// TestOCIPrivateRegistry: a registry with TLS from a private CA and basic auth: the
// gateway trusts the CA of registry.ca and logs in with registry.credentials (the
// password from a file); without the credentials the filter is unavailable.
func TestOCIPrivateRegistry(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert := newTestCert(t, dir)
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	htpasswd := filepath.Join(dir, "htpasswd")
	os.WriteFile(htpasswd, append([]byte("ci:"), hash...), 0o600)
	pwFile := filepath.Join(dir, "password")
	os.WriteFile(pwFile, []byte("s3cret\n"), 0o600)
	reg, _ := startRegistry(t, "--tls-cert", cert.certFile, "--tls-key", cert.keyFile, "--htpasswd", htpasswd)
	cmd := exec.Command(plexusBin, "push", wasmbuild.WATPath(t, versionWAT("private")), reg+"/filters/private:1", "--ca", cert.certFile, "--username", "ci", "--password-stdin")
	cmd.Stdin = strings.NewReader("s3cret\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("push: %v\n%s", err, out)
	}
	app := startBackend(t, echo("app"))
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%[1]s]}]
registry:
  pull_retries: 0
  ca: [%[3]s]
  credentials: [{host: "%[2]s", username: ci, password_file: %[4]s}]
filters: [{name: private, module: "oci://%[2]s/filters/private:1", failure: closed}]
routes: [{name: app, match: {path_prefix: /}, filters: [private], backend: app}]
`, app.addr, reg, cert.certFile, pwFile))
	if resp, _ := get(t, h1Client(), g.url("web", "/")); resp.StatusCode != 200 || resp.Header.Get("X-Version") != "private" {
		t.Errorf("a filter from a private registry: %d, x-version %q; want 200, private", resp.StatusCode, resp.Header.Get("X-Version"))
	}
	// Without credentials: unavailable, and the log says why.
	g2 := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%[1]s]}]
registry: {pull_retries: 0, ca: [%[3]s], cache: {dir: %[4]s}}
filters: [{name: private, module: "oci://%[2]s/filters/private:1", failure: closed}]
routes: [{name: app, match: {path_prefix: /}, filters: [private], backend: app}]
`, app.addr, reg, cert.certFile, t.TempDir()))
	if resp, _ := get(t, h1Client(), g2.url("web", "/")); resp.StatusCode != 503 {
		t.Errorf("without credentials: %d; want 503", resp.StatusCode)
	}
	if l := g2.findLogs("registry: pull failed"); len(l) != 1 || !strings.Contains(fmt.Sprint(l[0]["error"]), "asks for credentials") {
		t.Errorf("the pull failure's log: %v; want it to say the registry asks for credentials", l)
	}
}
