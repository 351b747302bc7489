package main

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
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
