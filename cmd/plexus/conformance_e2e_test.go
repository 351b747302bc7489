package main

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// TestConformanceRun: `plexus conformance run` plays the whole host suite against plexus
// in-process, prints the table per ABI function, writes JUnit XML and the YAML report, and
// exits 0; a profile that is not one is refused.
func TestConformanceRun(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	junit, report := filepath.Join(dir, "junit.xml"), filepath.Join(dir, "report.yaml")
	out := plexusCmd(t, "conformance", "run", "--junit", junit, "--report", report)
	if !strings.Contains(out, "ABI FUNCTION") || !strings.Contains(out, "0 failed") {
		t.Errorf("plexus conformance run printed:\n%s", out)
	}
	var suites struct {
		Suites []struct {
			Tests int `xml:"tests,attr"`
		} `xml:"testsuite"`
	}
	b, _ := os.ReadFile(junit)
	if err := xml.Unmarshal(b, &suites); err != nil || len(suites.Suites) == 0 || suites.Suites[0].Tests == 0 {
		t.Errorf("JUnit XML (%v):\n%s", err, b)
	}
	if y, _ := os.ReadFile(report); !strings.Contains(string(y), "kind: ProxyWasmConformanceReport") || !strings.Contains(string(y), "result: pass") {
		t.Errorf("YAML report:\n%s", y)
	}
	if err := exec.Command(plexusBin, "conformance", "run", "--profile", "nope").Run(); err == nil {
		t.Error("an unknown profile was taken")
	}
}

// TestConformanceBlackBox: `plexus conformance config` writes the suite's config for the
// run's backends; a gateway (`plexus run`) serves it; `plexus conformance run --target`
// plays the suite against that gateway from outside, and it passes.
func TestConformanceBlackBox(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	app, callout := deadAddr(t), deadAddr(t)
	plexusCmd(t, "conformance", "config", "--dir", dir, "--app", app, "--callout", callout, "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0")
	yaml, err := os.ReadFile(filepath.Join(dir, "plexus.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	g := startGateway(t, string(yaml))
	out := plexusCmd(t, "conformance", "run", "--target", "http://"+g.addr("web"), "--app", app, "--callout", callout)
	if !strings.Contains(out, " 0 failed") || strings.Contains(out, "FAIL") {
		t.Errorf("black-box run:\n%s", out)
	}
}

// TestConformanceCheck: `plexus conformance check` passes a well-behaved filter built on
// the upstream Go SDK, with exit 0, writes its host-call trace and passes it against that
// golden trace, and fails one that traps, with exit 1.
func TestConformanceCheck(t *testing.T) {
	t.Parallel()
	good := wasmbuild.Go(t, "conformance/filters/go/headers")
	trace := filepath.Join(t.TempDir(), "golden.trace")
	if out := plexusCmd(t, "conformance", "check", good, "--requests", "40", "--seed", "1", "--trace-out", trace); !strings.Contains(out, "PASS") || !strings.Contains(out, "ABI: 0.2.") {
		t.Errorf("check of a good filter:\n%s", out)
	}
	if b, _ := os.ReadFile(trace); !strings.Contains(string(b), "# request 1") || !strings.Contains(string(b), "proxy_add_header_map_value OK") {
		t.Errorf("the golden trace:\n%s", b)
	}
	if out := plexusCmd(t, "conformance", "check", good, "--requests", "10", "--golden", trace); !strings.Contains(out, "the host-call trace is the golden one") {
		t.Errorf("check against its own golden trace:\n%s", out)
	}
	var out strings.Builder
	cmd := exec.Command(plexusBin, "conformance", "check", filepath.Join(wasmbuild.ModuleRoot(t), "conformance/filters/wat/trap.wasm"), "--requests", "20")
	cmd.Stdout = &out
	if err := cmd.Run(); err == nil || !strings.Contains(out.String(), "filter failure: trap") {
		t.Errorf("check of a trapping filter: %v\n%s", err, out.String())
	}
}
