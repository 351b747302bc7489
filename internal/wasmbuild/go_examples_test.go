package wasmbuild

import (
	"encoding/binary"
	"io"
	"log"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// The tests here run each Go example's built .wasm in the Go SDK's own host emulator
// (proxytest, which loads the module with wazero and plays Envoy), and check that the filter
// does what its README says. They test the filters, not plexus's host: the gateway's
// end-to-end tests run the same modules through runtime/proxywasm.

func init() {
	// The emulator logs every host call with the log package; the tests read what they need
	// from it through HostEmulator instead.
	log.SetOutput(io.Discard)
}

// emulate builds the example, loads it and starts its VM and plugin. The emulator is global
// to the SDK, so emulate holds it (one test at a time) until the test ends; the build and
// the compile before that run in parallel.
func emulate(t *testing.T, dir string, opt *proxytest.EmulatorOption) proxytest.HostEmulator {
	t.Helper()
	bin, err := os.ReadFile(Go(t, dir))
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
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("OnPluginStart failed; critical logs: %q", host.GetCriticalLogs())
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("error logs: %q", host.GetErrorLogs())
		}
	})
	return host
}

func config(s string) *proxytest.EmulatorOption {
	return proxytest.NewEmulatorOption().WithPluginConfiguration([]byte(s))
}

func value(hs [][2]string, key string) string {
	for _, h := range hs {
		if h[0] == key {
			return h[1]
		}
	}
	return ""
}

func has(hs [][2]string, key string) bool {
	for _, h := range hs {
		if h[0] == key {
			return true
		}
	}
	return false
}

var (
	reqHeaders  = [][2]string{{":method", "GET"}, {":path", "/a/b?c=1"}, {":authority", "example.test"}, {":scheme", "http"}}
	respHeaders = [][2]string{{":status", "200"}, {"content-type", "text/plain"}}
)

func with(hs [][2]string, more ...[2]string) [][2]string {
	return append(append([][2]string(nil), hs...), more...)
}

func TestGoExampleHello(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/hello", config(`{"header":"x-greeting","value":"hi"}`))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, reqHeaders, true)
	host.CallOnResponseHeaders(id, respHeaders, false)
	if got := value(host.GetCurrentResponseHeaders(id), "x-greeting"); got != "hi" {
		t.Errorf("x-greeting = %q, want hi", got)
	}
}

func TestGoExampleHelloRejectsBadConfig(t *testing.T) {
	t.Parallel()
	bin, err := os.ReadFile(Go(t, "examples/go/hello"))
	if err != nil {
		t.Fatal(err)
	}
	vm, err := proxytest.NewWasmVMContext(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	host, reset := proxytest.NewHostEmulator(config(`{"header":""}`).WithVMContext(vm))
	defer reset()
	host.StartVM()
	if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
		t.Errorf("an empty header name: OnPluginStart = %v, want failed", st)
	}
}

func TestGoExampleHTTPHeaders(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/http_headers", config(""))
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, with(reqHeaders, [2]string{"x-remove-me", "1"}), true)
	req := host.GetCurrentRequestHeaders(id)
	if has(req, "x-remove-me") || value(req, "x-wasm-request") != "http_headers" {
		t.Errorf("request headers after the filter: %q", req)
	}
	host.CallOnResponseHeaders(id, with(respHeaders, [2]string{"x-powered-by", "php"}), false)
	resp := host.GetCurrentResponseHeaders(id)
	if has(resp, "x-powered-by") || value(resp, "x-wasm-response") != "http_headers" || value(resp, "x-request-header-count") != "5" {
		t.Errorf("response headers after the filter: %q", resp)
	}
	if logs := strings.Join(host.GetInfoLogs(), "\n"); !strings.Contains(logs, "request header x-remove-me: 1") {
		t.Errorf("info logs lack the request headers:\n%s", logs)
	}
}

func TestGoExampleHTTPBody(t *testing.T) {
	t.Parallel()
	t.Run("buffered uppercase", func(t *testing.T) {
		host := emulate(t, "examples/go/http_body", config(`{"response_body":"rewritten\n"}`))
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, with(reqHeaders, [2]string{"content-length", "11"}), false)
		if has(host.GetCurrentRequestHeaders(id), "content-length") {
			t.Error("content-length kept although the body changes")
		}
		if a := host.CallOnRequestBody(id, []byte("hello "), false); a != types.ActionPause {
			t.Errorf("first chunk: action %v, want Pause (buffer)", a)
		}
		if a := host.CallOnRequestBody(id, []byte("world"), true); a != types.ActionContinue {
			t.Errorf("last chunk: action %v, want Continue", a)
		}
		if got := string(host.GetCurrentRequestBody(id)); got != "HELLO WORLD" {
			t.Errorf("request body = %q, want HELLO WORLD", got)
		}
		host.CallOnResponseHeaders(id, respHeaders, false)
		if a := host.CallOnResponseBody(id, []byte("original"), false); a != types.ActionPause {
			t.Errorf("response chunk: action %v, want Pause", a)
		}
		host.CallOnResponseBody(id, []byte(" body"), true)
		if got := string(host.GetCurrentResponseBody(id)); got != "rewritten\n" {
			t.Errorf("response body = %q", got)
		}
	})
	t.Run("buffered replace", func(t *testing.T) {
		host := emulate(t, "examples/go/http_body", config(`{"request":"replace","request_body":"replaced"}`))
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, reqHeaders, false)
		host.CallOnRequestBody(id, []byte("anything"), true)
		if got := string(host.GetCurrentRequestBody(id)); got != "replaced" {
			t.Errorf("request body = %q, want replaced", got)
		}
	})
	t.Run("streaming", func(t *testing.T) {
		host := emulate(t, "examples/go/http_body", config(`{"mode":"streaming","chunk_suffix":"|"}`))
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, reqHeaders, false)
		var seen []string
		for i, chunk := range []string{"a", "b", "c"} {
			if a := host.CallOnRequestBody(id, []byte(chunk), i == 2); a != types.ActionContinue {
				t.Errorf("chunk %d: action %v, want Continue (stream)", i, a)
			}
			seen = append(seen, string(host.GetCurrentRequestBody(id)))
		}
		if got := strings.Join(seen, ""); got != "a|b|c|" {
			t.Errorf("chunks went on as %q, want a|b|c|", got)
		}
		host.CallOnResponseHeaders(id, respHeaders, false)
		if got := value(host.GetCurrentResponseHeaders(id), "x-request-chunks"); got != "3" {
			t.Errorf("x-request-chunks = %q, want 3", got)
		}
	})
}

func TestGoExampleHTTPRouting(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/http_routing", config(`{"header":"x-canary","value":"yes","path_prefix":"/v2"}`))
	canary := host.InitializeHttpContext()
	host.CallOnRequestHeaders(canary, with(reqHeaders, [2]string{"x-canary", "yes"}), true)
	req := host.GetCurrentRequestHeaders(canary)
	if value(req, ":path") != "/v2/a/b?c=1" || value(req, "x-route-to") != "canary" {
		t.Errorf("canary request: %q", req)
	}
	primary := host.InitializeHttpContext()
	host.CallOnRequestHeaders(primary, with(reqHeaders, [2]string{"x-canary", "no"}), true)
	req = host.GetCurrentRequestHeaders(primary)
	if value(req, ":path") != "/a/b?c=1" || value(req, "x-route-to") != "primary" {
		t.Errorf("primary request: %q", req)
	}
	host.CallOnResponseHeaders(primary, respHeaders, false)
	if got := value(host.GetCurrentResponseHeaders(primary), "x-routed"); got != "primary" {
		t.Errorf("x-routed = %q", got)
	}
}

func TestGoExampleHTTPAuthCallout(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/http_auth_callout", config(`{"cluster":"auth","path":"/check"}`))

	ok := host.InitializeHttpContext()
	if a := host.CallOnRequestHeaders(ok, with(reqHeaders, [2]string{"authorization", "Bearer good"}, [2]string{"x-auth-user", "mallory"}), true); a != types.ActionPause {
		t.Fatalf("request headers: action %v, want Pause until the auth service answers", a)
	}
	calls := host.GetCalloutAttributesFromContext(ok)
	if len(calls) != 1 || calls[0].Upstream != "auth" || value(calls[0].Headers, ":path") != "/check" ||
		value(calls[0].Headers, "authorization") != "Bearer good" {
		t.Fatalf("callouts: %+v", calls)
	}
	host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "200"}, {"x-auth-user", "alice"}}, nil, nil)
	if a := host.GetCurrentHttpStreamAction(ok); a != types.ActionContinue {
		t.Errorf("after a 200: action %v, want Continue", a)
	}
	req := host.GetCurrentRequestHeaders(ok)
	if value(req, "x-auth") != "ok" || value(req, "x-auth-user") != "alice" {
		t.Errorf("request headers after a 200: %q", req)
	}

	denied := host.InitializeHttpContext()
	host.CallOnRequestHeaders(denied, reqHeaders, true)
	calls = host.GetCalloutAttributesFromContext(denied)
	if len(calls) != 1 || has(calls[0].Headers, "authorization") {
		t.Fatalf("callouts without authorization: %+v", calls)
	}
	host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "401"}}, nil, nil)
	lr := host.GetSentLocalResponse(denied)
	if lr == nil || lr.StatusCode != 403 || !strings.Contains(string(lr.Data), "said 401") || value(lr.Headers, "x-auth") != "denied" {
		t.Errorf("after a 401: local response %+v", lr)
	}
}

func TestGoExampleDispatchCallOnTick(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/dispatch_call_on_tick", config(`{"cluster":"app","tick_ms":50}`))
	if p := host.GetTickPeriod(); p != 50 {
		t.Errorf("tick period %d, want 50", p)
	}
	for i := 0; i < 3; i++ {
		host.Tick()
	}
	calls := host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	if len(calls) != 3 || calls[0].Upstream != "app" || value(calls[2].Headers, "x-tick-call") != "3" {
		t.Fatalf("callouts after three ticks: %+v", calls)
	}
	for _, c := range calls[:2] {
		host.CallOnHttpCallResponse(c.CalloutID, [][2]string{{":status", "200"}}, nil, []byte("ok"))
	}
	if n, err := host.GetCounterMetric("dispatch_call_on_tick_responses_total"); err != nil || n != 2 {
		t.Errorf("counter = %d, %v; want 2", n, err)
	}
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, reqHeaders, true)
	host.CallOnResponseHeaders(id, respHeaders, false)
	if got := value(host.GetCurrentResponseHeaders(id), "x-tick-responses"); got != "2" {
		t.Errorf("x-tick-responses = %q, want 2", got)
	}
}

func TestGoExampleSharedData(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/shared_data", config(""))
	for want := 1; want <= 3; want++ {
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, reqHeaders, true)
		host.CallOnResponseHeaders(id, respHeaders, false)
		if got := value(host.GetCurrentResponseHeaders(id), "x-shared-counter"); got != strconv.Itoa(want) {
			t.Errorf("request %d: x-shared-counter = %q", want, got)
		}
	}
}

func TestGoExampleSharedQueue(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/shared_queue", config(""))
	var last string
	for _, p := range []string{"/one", "/two"} {
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, [][2]string{{":method", "GET"}, {":path", p}, {":authority", "x"}}, true)
		host.CallOnResponseHeaders(id, respHeaders, false)
		resp := host.GetCurrentResponseHeaders(id)
		if value(resp, "x-queue-enqueued") != "ok" {
			t.Errorf("%s: %q", p, resp)
		}
		last = value(resp, "x-queue-dequeued")
	}
	// The emulator delivers proxy_on_queue_ready within the enqueue.
	if last != "2" {
		t.Errorf("x-queue-dequeued = %q, want 2", last)
	}
	if n, err := host.GetCounterMetric("shared_queue_dequeued_total"); err != nil || n != 2 {
		t.Errorf("counter = %d, %v; want 2", n, err)
	}
	if logs := strings.Join(host.GetInfoLogs(), "\n"); !strings.Contains(logs, `dequeued "/two"`) {
		t.Errorf("info logs:\n%s", logs)
	}
}

func TestGoExampleMetrics(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/metrics", config(""))
	for i, tenant := range []string{"acme", "acme", "globex", "acme"} {
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, with(reqHeaders, [2]string{"x-tenant", tenant}), true)
		host.CallOnResponseHeaders(id, respHeaders, false)
		resp := host.GetCurrentResponseHeaders(id)
		if i == 3 && (value(resp, "x-metric-requests") != "3" || value(resp, "x-metric-in-flight") != "1") {
			t.Errorf("fourth response: %q", resp)
		}
		host.CompleteHttpContext(id)
	}
	if n, err := host.GetCounterMetric("example_requests_total.x-tenant.acme"); err != nil || n != 3 {
		t.Errorf("acme counter = %d, %v; want 3", n, err)
	}
	if n, err := host.GetCounterMetric("example_requests_total.x-tenant.globex"); err != nil || n != 1 {
		t.Errorf("globex counter = %d, %v; want 1", n, err)
	}
	if n, err := host.GetGaugeMetric("example_requests_in_flight"); err != nil || n != 0 {
		t.Errorf("in-flight gauge = %d, %v; want 0", n, err)
	}
	if _, err := host.GetHistogramMetric("example_upstream_time_ms"); err != nil {
		t.Errorf("histogram: %v", err)
	}
}

func TestGoExampleJSONValidation(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/json_validation", config(`{"required_keys":["id","name"]}`))
	for _, tc := range []struct {
		body   string
		reason string // "" when the request passes
	}{
		{`{"id":1,"name":"x","extra":true}`, ""},
		{`{"id":1}`, "missing required key(s): name"},
		{`[1,2]`, "the body is a JSON array: want a JSON object"},
		{`null`, "the body is null"},
		{`not json`, "the body is not valid JSON"},
		{`   `, "the body is empty"},
	} {
		id := host.InitializeHttpContext()
		host.CallOnRequestHeaders(id, with(reqHeaders, [2]string{"content-type", "application/json"}), false)
		half := len(tc.body) / 2
		if a := host.CallOnRequestBody(id, []byte(tc.body[:half]), false); a != types.ActionPause {
			t.Errorf("%q: first half: action %v, want Pause", tc.body, a)
		}
		a := host.CallOnRequestBody(id, []byte(tc.body[half:]), true)
		lr := host.GetSentLocalResponse(id)
		if tc.reason == "" {
			if a != types.ActionContinue || lr != nil {
				t.Errorf("%q: action %v, local response %+v; want it through", tc.body, a, lr)
			}
			continue
		}
		if lr == nil || lr.StatusCode != 400 || !strings.Contains(string(lr.Data), tc.reason) ||
			value(lr.Headers, "content-type") != "application/json" {
			t.Errorf("%q: local response %+v, want 400 with %q", tc.body, lr, tc.reason)
		}
	}
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, reqHeaders, true)
	if lr := host.GetSentLocalResponse(id); lr == nil || lr.StatusCode != 400 {
		t.Errorf("a request with no body: local response %+v, want 400", lr)
	}
}

func TestGoExampleProperties(t *testing.T) {
	t.Parallel()
	port := binary.LittleEndian.AppendUint64(nil, 54321)
	opt := config(`{"properties":["request.path","source.address","source.port","route_name","plugin_name","node.id"]}`).
		WithProperty([]string{"request", "path"}, []byte("/a/b?c=1")).
		WithProperty([]string{"source", "address"}, []byte("127.0.0.1:54321")).
		WithProperty([]string{"source", "port"}, port).
		WithProperty([]string{"route_name"}, []byte("app")).
		WithProperty([]string{"plugin_name"}, []byte("props"))
	host := emulate(t, "examples/go/properties", opt)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, reqHeaders, true)
	host.CallOnResponseHeaders(id, respHeaders, false)
	resp := host.GetCurrentResponseHeaders(id)
	for k, want := range map[string]string{
		"x-prop-request-path":   "/a/b?c=1",
		"x-prop-source-address": "127.0.0.1:54321",
		"x-prop-source-port":    "54321",
		"x-prop-route-name":     "app",
		"x-prop-plugin-name":    "props",
		"x-prop-custom":         "hello",
		"x-prop-missing":        "node.id",
	} {
		if got := value(resp, k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if v, err := host.GetProperty([]string{"example", "custom"}); err != nil || string(v) != "hello" {
		t.Errorf("the property the filter set: %q, %v", v, err)
	}
}

func TestGoExamplePostponeRequests(t *testing.T) {
	t.Parallel()
	host := emulate(t, "examples/go/postpone_requests", config(`{"delay_ms":30,"tick_ms":5}`))
	if p := host.GetTickPeriod(); p != 5 {
		t.Errorf("tick period %d, want 5", p)
	}
	a, b := host.InitializeHttpContext(), host.InitializeHttpContext()
	for _, id := range []uint32{a, b} {
		if act := host.CallOnRequestHeaders(id, reqHeaders, true); act != types.ActionPause {
			t.Fatalf("request headers: action %v, want Pause", act)
		}
	}
	host.Tick()
	if act := host.GetCurrentHttpStreamAction(a); act != types.ActionPause {
		t.Errorf("resumed on the first tick, before the delay")
	}
	// The emulator's wazero gives the guest a fake clock that moves 1ms per reading, so
	// tick until the filter sees 30ms go by rather than sleep.
	for i := 0; i < 1000 && host.GetCurrentHttpStreamAction(b) == types.ActionPause; i++ {
		host.Tick()
	}
	for _, id := range []uint32{a, b} {
		if act := host.GetCurrentHttpStreamAction(id); act != types.ActionContinue {
			t.Errorf("context %d: action %v after the delay, want Continue", id, act)
		}
		host.CallOnResponseHeaders(id, respHeaders, false)
		ms, err := strconv.Atoi(value(host.GetCurrentResponseHeaders(id), "x-postponed-ms"))
		if err != nil || ms < 30 {
			t.Errorf("context %d: x-postponed-ms %d, %v; want at least 30", id, ms, err)
		}
	}
}

func TestGoExampleVMPluginConfiguration(t *testing.T) {
	t.Parallel()
	opt := config("{\"greeting\":\n \"hi\"}").WithVMConfiguration([]byte("vm-config"))
	host := emulate(t, "examples/go/vm_plugin_configuration", opt)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, reqHeaders, true)
	host.CallOnResponseHeaders(id, respHeaders, false)
	resp := host.GetCurrentResponseHeaders(id)
	if got := value(resp, "x-vm-config"); got != "vm-config" {
		t.Errorf("x-vm-config = %q", got)
	}
	if got := value(resp, "x-plugin-config"); got != `{"greeting":  "hi"}` {
		t.Errorf("x-plugin-config = %q", got)
	}
}
