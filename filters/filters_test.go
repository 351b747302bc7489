//go:build !wasip1

// These tests drive the filters from the host: they build them with the Go toolchain and
// load them in wazero and the SDK's host emulator, none of which runs inside wasip1.

package filters_test

import (
	"context"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
	"github.com/tetratelabs/wazero"

	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// The tests here build each first-party filter from source and check it: that it is a
// Proxy-Wasm module a host can load, and, in the upstream SDK's host emulator (proxytest,
// which loads the module with wazero and plays the host, here with plexus's foreign
// functions faked with package wire), that it does what its README says. The gateway's
// end-to-end tests run the same modules through plexus's own host and a real Redis.

func init() {
	// The emulator logs every host call with the log package.
	log.SetOutput(io.Discard)
}

// Every directory under filters/ with Go files is a filter.
func TestFiltersBuild(t *testing.T) {
	dirs, err := filepath.Glob("*/*.go")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, f := range dirs {
		seen[filepath.Dir(f)] = true
	}
	if !seen["ratelimit"] {
		t.Fatalf("no filters found (in %v)", dirs)
	}
	rt := wazero.NewRuntimeWithConfig(context.Background(), wazero.NewRuntimeConfigInterpreter())
	t.Cleanup(func() { rt.Close(context.Background()) })
	for dir := range seen {
		t.Run(dir, func(t *testing.T) {
			for _, f := range mustGlob(t, filepath.Join(dir, "*.go")) {
				if strings.HasSuffix(f, "_test.go") {
					continue
				}
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(string(b), "//go:build wasip1\n") {
					t.Errorf("%s does not start with //go:build wasip1: go build ./... on the host would build it", f)
				}
			}
			bin, err := os.ReadFile(wasmbuild.Go(t, "filters/"+dir))
			if err != nil {
				t.Fatal(err)
			}
			if problems := checkProxyWasm(t, rt, bin); len(problems) > 0 {
				t.Errorf("filters/%s is not a Proxy-Wasm module a host can load: %s", dir, strings.Join(problems, "; "))
			}
		})
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	t.Helper()
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkProxyWasm compiles bin and lists what keeps it from being a Proxy-Wasm 0.2.x module.
func checkProxyWasm(t *testing.T, rt wazero.Runtime, bin []byte) []string {
	t.Helper()
	ctx := context.Background()
	m, err := rt.CompileModule(ctx, bin)
	if err != nil {
		return []string{err.Error()}
	}
	defer m.Close(ctx)
	var problems []string
	for _, f := range m.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch {
		case mod == "env" && strings.HasPrefix(name, "proxy_"):
		case mod == "wasi_snapshot_preview1":
		default:
			problems = append(problems, "imports "+mod+"."+name)
		}
	}
	exports := m.ExportedFunctions()
	if exports["proxy_abi_version_0_2_1"] == nil && exports["proxy_abi_version_0_2_0"] == nil {
		problems = append(problems, "exports neither proxy_abi_version_0_2_1 nor proxy_abi_version_0_2_0")
	}
	if exports["malloc"] == nil && exports["proxy_on_memory_allocate"] == nil {
		problems = append(problems, "exports neither malloc nor proxy_on_memory_allocate")
	}
	for _, cb := range []string{"proxy_on_context_create", "proxy_on_configure", "proxy_on_request_headers", "proxy_on_response_headers"} {
		if exports[cb] == nil {
			problems = append(problems, "does not export "+cb)
		}
	}
	if len(m.ExportedMemories()) == 0 {
		problems = append(problems, "exports no memory")
	}
	return problems
}

// load builds the filter, loads it in the emulator and starts its VM; the emulator is
// global to the SDK, so load holds it until the test ends.
func load(t *testing.T, dir string, opt *proxytest.EmulatorOption) proxytest.HostEmulator {
	t.Helper()
	bin, err := os.ReadFile(wasmbuild.Go(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	vm, err := proxytest.NewWasmVMContext(bin)
	if err != nil {
		t.Fatalf("loading %s: %v", dir, err)
	}
	t.Cleanup(func() { vm.Close() })
	host, reset := proxytest.NewHostEmulator(opt.WithVMContext(vm))
	t.Cleanup(reset)
	if st := host.StartVM(); st != types.OnVMStartStatusOK {
		t.Fatalf("OnVMStart failed; critical logs: %q", host.GetCriticalLogs())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("critical logs: %q\nerror logs: %q\nwarn logs: %q", host.GetCriticalLogs(), host.GetErrorLogs(), host.GetWarnLogs())
		}
	})
	return host
}

// ratelimitHost fakes plexus.rate_limit: it records the limits asked and answers with
// decide's decisions.
type ratelimitHost struct {
	proxytest.HostEmulator
	asked  [][]wire.Limit
	decide func(wire.Limit) wire.Decision
}

func startRatelimit(t *testing.T, config string, source string) *ratelimitHost {
	t.Helper()
	opt := proxytest.NewEmulatorOption().WithPluginConfiguration([]byte(config))
	if source != "" {
		opt = opt.WithProperty([]string{"source", "address"}, []byte(source))
	}
	h := &ratelimitHost{HostEmulator: load(t, "filters/ratelimit", opt)}
	h.decide = func(wire.Limit) wire.Decision { return wire.Decision{Allowed: true} }
	h.RegisterForeignFunction(wire.FuncRateLimit, func(args []byte) []byte {
		ls, err := wire.ParseLimits(args)
		if err != nil {
			t.Errorf("the filter sent malformed limits: %v", err)
			return []byte{0}
		}
		h.asked = append(h.asked, ls)
		var ds []wire.Decision
		for _, l := range ls {
			ds = append(ds, h.decide(l))
		}
		return wire.AppendDecisions(nil, ds)
	})
	if st := h.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("OnPluginStart failed; critical logs: %q", h.GetCriticalLogs())
	}
	return h
}

const ratelimitConfig = `{"limits": [
	{"name": "per-client", "key": "header:x-api-key", "rate": 10, "period": "1s", "burst": 10},
	{"name": "by-ip", "key": "remote_address", "rate": 100, "period": "1m"},
	{"name": "global", "key": "global", "rate": 1000, "period": "1s"}]}`

func request(more ...[2]string) [][2]string {
	return append([][2]string{{":method", "GET"}, {":path", "/a?b=c"}, {":authority", "example.test"}, {":scheme", "http"}}, more...)
}

var response = [][2]string{{":status", "200"}, {"content-type", "text/plain"}}

func header(hs [][2]string, key string) (string, bool) {
	for _, h := range hs {
		if h[0] == key {
			return h[1], true
		}
	}
	return "", false
}

func TestRatelimitAllowed(t *testing.T) {
	h := startRatelimit(t, ratelimitConfig, "192.0.2.7:50123")
	h.decide = func(l wire.Limit) wire.Decision {
		if strings.HasPrefix(l.Key, "ratelimit:per-client:") {
			return wire.Decision{Allowed: true, Remaining: 4, ResetAfter: 1200 * time.Millisecond}
		}
		return wire.Decision{Allowed: true, Remaining: 90, ResetAfter: time.Second}
	}
	id := h.InitializeHttpContext()
	if a := h.CallOnRequestHeaders(id, request([2]string{"x-api-key", "k1"}), true); a != types.ActionContinue {
		t.Fatalf("request headers: %v, want continue", a)
	}
	want := []wire.Limit{
		{Key: "ratelimit:per-client:k1", Rate: 10, Period: time.Second, Burst: 10, Cost: 1},
		{Key: "ratelimit:by-ip:192.0.2.7", Rate: 100, Period: time.Minute, Cost: 1},
		{Key: "ratelimit:global:", Rate: 1000, Period: time.Second, Cost: 1},
	}
	if len(h.asked) != 1 || len(h.asked[0]) != 3 {
		t.Fatalf("asked %+v, want one call with 3 limits", h.asked)
	}
	for i := range want {
		if h.asked[0][i] != want[i] {
			t.Errorf("limit %d: %+v, want %+v", i, h.asked[0][i], want[i])
		}
	}
	h.CallOnResponseHeaders(id, response, false)
	got := h.GetCurrentResponseHeaders(id)
	for k, v := range map[string]string{"x-ratelimit-limit": "10", "x-ratelimit-remaining": "4", "x-ratelimit-reset": "2"} {
		if have, _ := header(got, k); have != v {
			t.Errorf("%s: %q, want %q (response headers %q)", k, have, v, got)
		}
	}
	if h.GetSentLocalResponse(id) != nil {
		t.Error("a local reply to an allowed request")
	}
}

func TestRatelimitDenied(t *testing.T) {
	h := startRatelimit(t, ratelimitConfig, "")
	h.decide = func(l wire.Limit) wire.Decision {
		if l.Key == "ratelimit:global:" {
			return wire.Decision{RetryAfter: 1500 * time.Millisecond, ResetAfter: 2500 * time.Millisecond}
		}
		return wire.Decision{Allowed: true, Remaining: 7}
	}
	id := h.InitializeHttpContext()
	// No x-api-key and no source address: only the global limit applies.
	if a := h.CallOnRequestHeaders(id, request(), true); a != types.ActionPause {
		t.Errorf("request headers: %v, want pause", a)
	}
	if len(h.asked) != 1 || len(h.asked[0]) != 1 || h.asked[0][0].Key != "ratelimit:global:" {
		t.Errorf("asked %+v, want the global limit only", h.asked)
	}
	reply := h.GetSentLocalResponse(id)
	if reply == nil {
		t.Fatal("no local reply")
	}
	if reply.StatusCode != 429 || string(reply.Data) != "rate limited\n" {
		t.Errorf("reply %d %q, want 429 %q", reply.StatusCode, reply.Data, "rate limited\n")
	}
	for k, v := range map[string]string{"retry-after": "2", "x-ratelimit-limit": "1000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "3"} {
		if have, _ := header(reply.Headers, k); have != v {
			t.Errorf("%s: %q, want %q (reply headers %q)", k, have, v, reply.Headers)
		}
	}
}

func TestRatelimitStatusAndNoHeaders(t *testing.T) {
	h := startRatelimit(t, `{"limits": [{"name": "p", "key": "path", "rate": 1, "period": "1s"}], "status": 503, "headers": false}`, "")
	h.decide = func(wire.Limit) wire.Decision { return wire.Decision{Cached: true, RetryAfter: time.Second} }
	id := h.InitializeHttpContext()
	h.CallOnRequestHeaders(id, request(), true)
	if h.asked[0][0].Key != "ratelimit:p:/a" {
		t.Errorf("key %q, want the path without its query", h.asked[0][0].Key)
	}
	reply := h.GetSentLocalResponse(id)
	if reply == nil || reply.StatusCode != 503 {
		t.Fatalf("reply %+v, want 503", reply)
	}
	if v, _ := header(reply.Headers, "retry-after"); v != "1" {
		t.Errorf("retry-after %q, want 1", v)
	}
	if _, ok := header(reply.Headers, "x-ratelimit-limit"); ok {
		t.Errorf("x-ratelimit-limit with headers: false: %q", reply.Headers)
	}

	h.decide = func(wire.Limit) wire.Decision { return wire.Decision{Allowed: true, Remaining: 3} }
	id = h.InitializeHttpContext()
	h.CallOnRequestHeaders(id, request(), true)
	h.CallOnResponseHeaders(id, response, false)
	if _, ok := header(h.GetCurrentResponseHeaders(id), "x-ratelimit-remaining"); ok {
		t.Errorf("x-ratelimit-remaining with headers: false")
	}
}

// Fail-open decisions pass the request and say nothing about a limit.
func TestRatelimitFailOpen(t *testing.T) {
	h := startRatelimit(t, ratelimitConfig, "")
	h.decide = func(wire.Limit) wire.Decision { return wire.Decision{Allowed: true, FailOpen: true} }
	id := h.InitializeHttpContext()
	if a := h.CallOnRequestHeaders(id, request(), true); a != types.ActionContinue {
		t.Errorf("request headers: %v, want continue", a)
	}
	h.CallOnResponseHeaders(id, response, false)
	if got := h.GetCurrentResponseHeaders(id); len(got) != len(response) {
		t.Errorf("response headers %q, want them untouched", got)
	}
}

// A bad configuration fails the plugin's start with a critical log naming the problem
// (every rule is tested in internal/policy; these show the path to the log).
func TestRatelimitBadConfig(t *testing.T) {
	for _, tc := range []struct{ config, want string }{
		{``, "ratelimit: no configuration"},
		{`{"limits": [{"name": "a", "key": "cookie", "rate": 1, "period": "1s"}]}`, `unknown key source "cookie"`},
		{`{"limits": [{"name": "a", "key": "global", "rate": 1, "period": "1s"}], "colour": "red"}`, `unknown field "colour"`},
	} {
		t.Run(tc.want, func(t *testing.T) {
			host := load(t, "filters/ratelimit", proxytest.NewEmulatorOption().WithPluginConfiguration([]byte(tc.config)))
			if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
				t.Fatalf("OnPluginStart = %v, want failed", st)
			}
			if logs := strings.Join(host.GetCriticalLogs(), "\n"); !strings.Contains(logs, tc.want) {
				t.Errorf("critical logs %q do not say %q", logs, tc.want)
			}
		})
	}
}
