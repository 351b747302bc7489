package conformance

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// TestCheck: the checker passes a well-behaved filter (reporting its ABI, its callbacks
// and their mean times), and fails one that traps, one whose memory grows with every
// request, and modules that break the spec's shape: no ABI marker, an import whose
// signature is not the spec's; a misspelt callback is a warning.
func TestCheck(t *testing.T) {
	good, _ := files.ReadFile("filters/wat/headers.wasm")
	trap, _ := files.ReadFile("filters/wat/trap.wasm")
	leak := wasmbuild.WAT(t, wasmbuild.WATFilter(``, `  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (memory.grow (i32.const 1)))
    (i32.const 0))`))
	noMarker := wasmbuild.WAT(t, `(module (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0)))`)
	badImport := wasmbuild.WAT(t, wasmbuild.WATFilter(`  (import "env" "proxy_log" (func (param i32 i32) (result i32)))`, ``))
	typo := wasmbuild.WAT(t, wasmbuild.WATFilter(``, `  (func (export "proxy_on_request_header") (param i32 i32 i32) (result i32) (i32.const 0))`))
	for _, tc := range []struct {
		name   string
		wasm   []byte
		failed bool
		says   []string
	}{
		{"good", good, false, []string{"INFO  ABI: 0.2.1", "proxy_on_request_headers", "time per callback, µs", "PASS"}},
		{"trap", trap, true, []string{"met a filter failure: trap", "FAIL"}},
		{"leak", leak, true, []string{"memory grew by", "a leak?"}},
		{"no marker", noMarker, true, []string{"no ABI marker"}},
		{"bad import", badImport, true, []string{"import env.proxy_log has the signature (i32, i32) -> (i32); the spec's has 3 parameters"}},
		{"typo", typo, false, []string{"WARN  export proxy_on_request_header is no Proxy-Wasm callback"}},
	} {
		rep, err := Check(context.Background(), tc.wasm, CheckOptions{Requests: 60, Seed: 7})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var out bytes.Buffer
		rep.WriteText(&out)
		if rep.Failed() != tc.failed {
			t.Errorf("%s: failed %v, want %v:\n%s", tc.name, rep.Failed(), tc.failed, out.String())
		}
		for _, s := range tc.says {
			if !strings.Contains(out.String(), s) {
				t.Errorf("%s: the report does not say %q:\n%s", tc.name, s, out.String())
			}
		}
	}
}

// TestCheckTrace: the checker records the host calls a filter makes for its trace
// requests, in order, with their statuses; the same filter checked against that trace
// passes, a trace that differs fails and says where.
func TestCheckTrace(t *testing.T) {
	good, _ := files.ReadFile("filters/wat/headers.wasm")
	rep, err := Check(context.Background(), good, CheckOptions{Requests: 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(rep.Trace, "\n")
	for _, want := range []string{"# request 1: GET /trace?q=1 with x-trace: 1\nproxy_add_header_map_value OK\nproxy_replace_header_map_value OK\nproxy_remove_header_map_value OK\nproxy_get_header_map_value NOT_FOUND\nproxy_add_header_map_value OK\n# request 2"} {
		if !strings.Contains(got, want) {
			t.Errorf("trace:\n%s\nwant it to contain:\n%s", got, want)
		}
	}
	again, err := Check(context.Background(), good, CheckOptions{Requests: 10, Seed: 1, Golden: rep.Trace})
	if err != nil || again.Failed() {
		t.Fatalf("the same filter against its own trace: %v %+v", err, again.Findings)
	}
	wrong := append([]string{}, rep.Trace...)
	wrong[1] = "proxy_log OK"
	bad, err := Check(context.Background(), good, CheckOptions{Requests: 10, Seed: 1, Golden: wrong})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	bad.WriteText(&out)
	if !bad.Failed() || !strings.Contains(out.String(), `line 2: "proxy_add_header_map_value OK", the golden trace has "proxy_log OK"`) {
		t.Errorf("against a trace that differs:\n%s", out.String())
	}
}
