package main

// The gate example (examples/gate), one filter in seven languages built from source, each
// through the real gateway with the same behaviour test.

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// gateExamples are the gate example's folders, and how to build each.
var gateExamples = []struct {
	lang, kind, dir string
	sdk             bool // on a plexus SDK (sdk/): it also counts allowed requests in a shared counter
}{
	{"go", "go", "examples/gate/go", false},
	{"go-plexus", "go", "examples/gate/go-plexus", true},
	{"c", "c", "examples/gate/c", true},
	{"cpp", "cpp", "examples/gate/cpp", true},
	{"rust", "rust", "examples/gate/rust", true},
	{"assemblyscript", "as", "examples/gate/assemblyscript", true},
	{"wat", "wat", "examples/gate/wat/gate.wat", false},
}

// TestGateExamples: every gate example, on a route of its own, marks the request and its
// response with x-gate: LANG, answers x-deny: yes itself with 403 ("denied by LANG\n", the
// backend never asked), and counts both in its metric gate_requests; those on a plexus SDK
// (Go, C and C++, Rust, AssemblyScript) also count the allowed requests in a shared
// counter of plexus's, whose value the response carries as x-gate-count, and send a
// request with x-gate-backend: NAME to that backend (plexus.route.*), none refused.
func TestGateExamples(t *testing.T) {
	t.Parallel()
	app, other := startBackend(t, echo("app")), startBackend(t, echo("other"))
	var filters, routes strings.Builder
	for _, ex := range gateExamples {
		// A vm_id each: the shared counters are namespaced by it.
		fmt.Fprintf(&filters, "  - {name: gate-%s, vm_id: %s, module: \"file:%s\"}\n", ex.lang, ex.lang, module(t, ex.kind, ex.dir))
		fmt.Fprintf(&routes, "  - {name: %s, match: {path_prefix: /%s/}, filters: [gate-%s], backend: app}\n", ex.lang, ex.lang, ex.lang)
	}
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%s]}, {name: other, endpoints: [%s]}]
filters:
%sroutes:
%s`, app.addr, other.addr, filters.String(), routes.String()))
	for _, ex := range gateExamples {
		t.Run(ex.lang, func(t *testing.T) {
			for i, c := range []*http.Client{h1Client(), h2cClient()} {
				resp, body := get(t, c, g.url("web", "/"+ex.lang+"/x"))
				e := decodeEcho(t, body)
				if resp.StatusCode != 200 || e.Header.Get("X-Gate") != ex.lang || resp.Header.Get("X-Gate") != ex.lang {
					t.Errorf("a request: %d, upstream x-gate %q, response x-gate %q; want 200 and %s on both",
						resp.StatusCode, e.Header.Get("X-Gate"), resp.Header.Get("X-Gate"), ex.lang)
				}
				if ex.sdk && resp.Header.Get("X-Gate-Count") != strconv.Itoa(i+1) {
					t.Errorf("the shared counter after %d allowed requests: x-gate-count %q", i+1, resp.Header.Get("X-Gate-Count"))
				}
			}
			resp, body := get(t, h1Client(), g.url("web", "/"+ex.lang+"/x"), "X-Deny", "yes")
			if resp.StatusCode != 403 || body != "denied by "+ex.lang+"\n" || resp.Header.Get("X-Gate") != ex.lang || resp.Header.Get("X-Backend") != "" {
				t.Errorf("x-deny: yes: %d %q, x-gate %q, x-backend %q; want 403 from the filter", resp.StatusCode, body, resp.Header.Get("X-Gate"), resp.Header.Get("X-Backend"))
			}
			if ex.sdk {
				// Routing through plexus's services: the backend the filter names, with a
				// timeout and a retry policy the gateway takes (a bad argument would be logged).
				_, body := get(t, h1Client(), g.url("web", "/"+ex.lang+"/x"), "X-Gate-Backend", "other")
				if e := decodeEcho(t, body); e.Backend != "other" {
					t.Errorf("x-gate-backend: other: the request went to %s", e.Backend)
				}
			}
			_, metrics := get(t, h1Client(), "http://"+g.addr("admin")+"/metrics")
			re := regexp.MustCompile(`(?m)^gate_requests_total\{[^}]*plexus_filter="gate-` + regexp.QuoteMeta(ex.lang) + `"[^}]*\} (\S+)$`)
			want := map[bool]string{true: "4", false: "3"}[ex.sdk]
			if m := re.FindStringSubmatch(metrics); m == nil || m[1] != want {
				t.Errorf("gate_requests of gate-%s: %v; want %s (the passed and the denied)\n%s", ex.lang, m, want, grepLines(metrics, "gate_requests"))
			}
		})
	}
	if bad := g.findLogs("filter's host service call has bad arguments"); len(bad) > 0 {
		t.Errorf("a filter's call of plexus's services was refused: %v", bad)
	}
}
