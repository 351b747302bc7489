package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestProgressBar: a blob's line is redrawn as it moves and ends when it is whole; output
// that is not a terminal gets none.
func TestProgressBar(t *testing.T) {
	var buf bytes.Buffer
	bar := progressBar(&buf)
	d := ocispec.Descriptor{Digest: digest.FromString("x"), Size: 2 << 20}
	bar(d, 0)
	bar(d, 2<<20)
	out := buf.String()
	if !strings.HasPrefix(out, "\r"+d.Digest.Encoded()[:12]+" [") || !strings.HasSuffix(out, "2.0 MiB / 2.0 MiB\n") || !strings.Contains(out, strings.Repeat("=", 30)) {
		t.Errorf("progress bar: %q", out)
	}
	if isTerminal(&buf) {
		t.Error("a buffer is taken for a terminal")
	}
}
