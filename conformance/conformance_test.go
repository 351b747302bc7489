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
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
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
	// Every ABI function has its row, and each passed (or cannot be tested on any host).
	rows := rep.ABITable()
	if len(rows) != len(ABI) {
		t.Errorf("the ABI table has %d rows; want %d", len(rows), len(ABI))
	}
	for _, row := range rows {
		if row.Result != "pass" && row.Result != "n/a" {
			t.Errorf("ABI function %s: %s", row.Function, row.Result)
		}
		if !strings.Contains(out.String(), row.Function+"  ") {
			t.Errorf("the text report has no row for %s", row.Function)
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
		{`[{name: a, profile: http, abi: [proxy_get_headers], filters: [{name: f, module: wat/headers}], request: {path: /}}]`, `"proxy_get_headers" is not a function of Proxy-Wasm 0.2.1`},
		{`[{name: a, profile: l4, filters: [{name: f, module: wat/stream}], request: {protocol: tcp, path: /}}]`, `a tcp request is only a body`},
		{`[{name: a, profile: http, filters: [{name: f, module: wat/headers}], callout_backend: {delay: soon}, request: {path: /}}]`, `backend delay "soon"`},
		{`[{name: a, profile: http, filters: [{name: f, module: wat/close}], request: {path: /}, expect: {reset: true, response: {status: 200}}}]`, `a reset request gets no response`},
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

// TestHostSuiteCoversABI: every function of Proxy-Wasm 0.2.1 that a host can be tested on
// is exercised by a scenario of the host suite, and every host function of the list is one
// plexus implements.
func TestHostSuiteCoversABI(t *testing.T) {
	s, err := HostSuite()
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, sc := range s.Scenarios {
		for _, fn := range sc.ABI {
			named[fn] = true
		}
	}
	for _, fn := range ABI {
		if !fn.Callback {
			if _, _, ok := proxywasm.HostFunction(fn.Name); !ok {
				t.Errorf("%s: plexus does not implement it", fn.Name)
			}
		}
		if fn.Untestable == "" && !named[fn.Name] {
			t.Errorf("%s: no scenario of the host suite exercises it", fn.Name)
		}
	}
}
