package conformance

import (
	"bytes"
	"context"
	"encoding/xml"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// TestHostSuite: plexus passes its own host suite, in-process.
func TestHostSuite(t *testing.T) {
	s, err := HostSuite()
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Scenarios) < 5 {
		t.Fatalf("the host suite has %d scenarios", len(s.Scenarios))
	}
	rep, err := Run(context.Background(), s, Options{Version: "test", Build: testBuild(t)})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	if rep.Failed() {
		t.Fatalf("plexus fails its own host suite:\n%s", out.String())
	}
	for _, fn := range []string{"proxy_add_header_map_value", "proxy_send_local_response", "proxy_set_buffer_bytes", "proxy_get_property", "proxy_set_shared_data", "proxy_log"} {
		if !strings.Contains(out.String(), fn+"  ") {
			t.Errorf("the ABI table has no row for %s:\n%s", fn, out.String())
		}
	}
	var junit struct {
		Suites []struct {
			Name  string `xml:"name,attr"`
			Cases []struct {
				Name    string    `xml:"name,attr"`
				Failure *struct{} `xml:"failure"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	var jb bytes.Buffer
	if err := rep.WriteJUnit(&jb); err != nil {
		t.Fatal(err)
	}
	if err := xml.Unmarshal(jb.Bytes(), &junit); err != nil || len(junit.Suites) == 0 {
		t.Fatalf("JUnit XML: %v\n%s", err, jb.String())
	}
	n := 0
	for _, s := range junit.Suites {
		n += len(s.Cases)
	}
	if n != len(rep.Results) {
		t.Errorf("JUnit has %d test cases; want %d", n, len(rep.Results))
	}
}

// TestScenarioFails: a scenario whose expectation plexus does not meet is reported failed,
// saying what it saw and what it wanted; the run as a whole fails.
func TestScenarioFails(t *testing.T) {
	sc, err := Parse("wrong.yaml", []byte(`
- name: wrong-expectation
  profile: http
  abi: [proxy_add_header_map_value]
  filters: [{name: headers, module: wat/headers}]
  request: {path: /}
  expect:
    upstream: {headers: {x-conformance-added: "no"}}
    response: {status: 201}
`))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), &Suite{Scenarios: sc}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed() || len(rep.Results[0].Failures) != 2 {
		t.Fatalf("a wrong expectation: failures %q; want two", rep.Results[0].Failures)
	}
	got := strings.Join(rep.Results[0].Failures, "; ")
	for _, want := range []string{`response status 200, want 201`, `upstream header x-conformance-added: ["yes"], want "no"`} {
		if !strings.Contains(got, want) {
			t.Errorf("failures %q lack %q", got, want)
		}
	}
	var y bytes.Buffer
	rep.WriteYAML(&y)
	if !strings.Contains(y.String(), "result: fail") || !strings.Contains(y.String(), "kind: ProxyWasmConformanceReport") {
		t.Errorf("YAML report:\n%s", y.String())
	}
}

// TestScenarioErrors: a scenario file that is wrong says where and what.
func TestScenarioErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{`[{name: a, profile: nope, filters: [{name: f, module: wat/headers}], request: {path: /}}]`, `profile "nope"`},
		{`[{name: a, profile: http, filters: [{name: f, module: wat/missing}], request: {path: /}}]`, `no module wat/missing`},
		{`[{name: a, profile: http, filters: [{name: f, module: wat/headers}], request: {path: /}, expekt: {}}]`, `field expekt not found`},
	} {
		if _, err := Parse("bad.yaml", []byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "bad.yaml") {
			t.Errorf("%s: %v; want an error naming bad.yaml that says %q", tc.yaml, err, tc.want)
		}
	}
}

// TestWATFixtures: every suite module is what wat2wasm makes of the source beside it.
func TestWATFixtures(t *testing.T) {
	if _, err := exec.LookPath("wat2wasm"); err != nil {
		t.Skip("wat2wasm is not installed (scripts/deps.sh installs it)")
	}
	srcs, _ := filepath.Glob("filters/wat/*.wat")
	if len(srcs) == 0 {
		t.Fatal("no WAT sources")
	}
	for _, src := range srcs {
		out := filepath.Join(t.TempDir(), "m.wasm")
		if b, err := exec.Command("wat2wasm", src, "-o", out).CombinedOutput(); err != nil {
			t.Fatalf("wat2wasm %s: %v\n%s", src, err, b)
		}
		want, _ := os.ReadFile(out)
		got, err := os.ReadFile(strings.TrimSuffix(src, ".wat") + ".wasm")
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s.wasm is not wat2wasm's output of %s: run wat2wasm %s -o %s", strings.TrimSuffix(filepath.Base(src), ".wat"), src, src, strings.TrimSuffix(src, ".wat")+".wasm")
		}
	}
}

// freeAddr is a loopback address no one listens on, for a backend the run starts later.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestBlackBox: the host suite's config (Config) served by a gateway that runs on its own,
// and the suite played against it over HTTP (RunTarget): the same scenarios pass.
func TestBlackBox(t *testing.T) {
	s, err := HostSuite()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	app, callout := freeAddr(t), freeAddr(t)
	if err := Config(s, dir, ConfigOptions{App: app, Callout: callout, Build: testBuild(t)}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(filepath.Join(dir, "plexus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	rep, err := RunTarget(context.Background(), s, Target{URL: "http://" + g.Addrs()["web"], App: app, Callout: callout}, Options{Build: testBuild(t)})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	if rep.Failed() || len(rep.Results) != len(s.Scenarios) {
		t.Fatalf("black-box run:\n%s", out.String())
	}
}

// testBuild builds go/NAME modules as the tests build every Go filter: once, cached.
func testBuild(t *testing.T) func(string) ([]byte, error) {
	return func(m string) ([]byte, error) {
		return os.ReadFile(wasmbuild.Go(t, "conformance/filters/"+m))
	}
}

// TestSkipsWithoutBuilder: with no way to build go/ modules their scenarios are skipped,
// said so, and do not fail the run.
func TestSkipsWithoutBuilder(t *testing.T) {
	s, err := HostSuite()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(context.Background(), s, Options{Only: "-go"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) == 0 || rep.Failed() || !strings.Contains(rep.Results[0].Skipped, "needs Go") {
		t.Errorf("a go/ scenario without a builder: %+v", rep.Results)
	}
}
