package registry

import (
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// conformanceTool is the OCI Distribution Spec's own conformance test, a program the Go
// module proxy serves at this version.
const conformanceTool = "github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111"

// TestDistributionConformance runs the distribution spec's conformance suite (v1.1: pull,
// push, chunked and monolithic uploads, mounts, content discovery, referrers, deletion,
// sha256 and sha512, every data shape it has) against the server, as a registry's
// conformance is checked upstream. Sparse manifests (whose blobs were never pushed) are
// left out: the spec lets a registry refuse them, and this one does, so that nothing it
// serves points at nothing.
func TestDistributionConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the conformance tool")
	}
	bin := t.TempDir()
	install := exec.Command("go", "install", conformanceTool)
	install.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", conformanceTool, err, out)
	}
	srv, err := NewServer(t.TempDir(), ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	results := t.TempDir()
	run := exec.Command(filepath.Join(bin, "conformance"))
	run.Dir = results
	run.Env = append(os.Environ(),
		"OCI_REGISTRY="+strings.TrimPrefix(ts.URL, "http://"),
		"OCI_TLS=disabled",
		"OCI_VERSION=1.1",
		"OCI_REPO1=conformance/repo1",
		"OCI_REPO2=conformance/repo2",
		"OCI_RESULTS_DIR="+results,
		"OCI_API_BLOBS_UPLOAD_CANCEL=true",
		"OCI_API_BLOBS_DIGEST_HEADER=true",
		"OCI_API_MANIFESTS_DIGEST_HEADER=true",
		"OCI_DATA_SPARSE=false",
	)
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the distribution spec's conformance suite failed (%v):\n%s", err, out)
	}
	if !strings.Contains(string(out), "Referrers.....................:       Pass") {
		t.Errorf("the suite did not report the referrers API as passing:\n%s", out)
	}
}
