package gateway_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// garbageWAT calls plexus.rate_limit with arguments that are no rate-limit request and
// answers locally with 400 + the status the host returned (402: BAD_ARGUMENT).
const garbageWAT = `(module
  (import "env" "proxy_call_foreign_function" (func $call (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response" (func $send (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 1024) "plexus.rate_limit")
  (data (i32.const 1056) "garbage")
  (func (export "malloc") (param i32) (result i32) (i32.const 4096))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $send
      (i32.add (i32.const 400) (call $call (i32.const 1024) (i32.const 17) (i32.const 1056) (i32.const 7) (i32.const 2048) (i32.const 2052)))
      (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 1))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))`

// lockedBuffer is a log sink for a test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Without redis: the host services run in process: the same rate limits and counters,
// and shared_data: redis falls back to the process's shared data, saying so.
func TestServicesInProcess(t *testing.T) {
	be := newRecordingBackend(t)
	garbage := wasmbuild.WATPath(t, garbageWAT)
	var logs lockedBuffer
	_, addrs := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - name: limit
    module: file:%s
    config: {limits: [{name: all, key: global, rate: 3, period: 1m, burst: 3}]}
  - name: requests
    module: file:%s
    config: {header: x-client}
  - name: counter
    module: file:%s
    shared_data: redis
  - {name: garbage, module: "file:%s"}
routes:
  - {name: limit, match: {path: /limit}, filters: [limit], backend: app}
  - {name: requests, match: {path_prefix: /request}, filters: [requests], backend: app}
  - {name: counter, match: {path: /counter}, filters: [counter], backend: app}
  - {name: garbage, match: {path: /garbage}, filters: [garbage], backend: app}
`, be.addr(), wasmbuild.Go(t, "filters/ratelimit"), wasmbuild.Go(t, "examples/go/request_counter"),
		wasmbuild.Go(t, "examples/go/shared_data"), garbage), gateway.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	web := "http://" + addrs["web"]

	for n := 1; n <= 4; n++ {
		resp := get(t, web+"/limit")
		want := http.StatusOK
		if n == 4 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", n, resp.StatusCode, want)
		}
		if rem := resp.Header.Get("X-Ratelimit-Remaining"); rem != fmt.Sprint(max(0, 3-n)) || resp.Header.Get("X-Ratelimit-Limit") != "3" {
			t.Errorf("request %d: x-ratelimit-limit %q, remaining %q", n, resp.Header.Get("X-Ratelimit-Limit"), rem)
		}
		if n == 4 && resp.Header.Get("Retry-After") != "20" {
			t.Errorf("429 with retry-after %q, want 20 (a request every 20s)", resp.Header.Get("Retry-After"))
		}
	}

	for n := 1; n <= 3; n++ {
		if c := get(t, web+"/requests", "x-client", "a").Header.Get("X-Request-Count"); c != fmt.Sprint(n) {
			t.Errorf("request %d of a: count %q", n, c)
		}
	}
	if c := get(t, web+"/requests", "x-client", "b").Header.Get("X-Request-Count"); c != "1" {
		t.Errorf("b's first request: count %q", c)
	}
	if c := get(t, web+"/request-count", "x-client", "a").Header.Get("X-Request-Count"); c != "3" {
		t.Errorf("a's count read back %q, want 3", c)
	}

	// Shared data lives as long as the process: count from what is there.
	first, _ := strconv.Atoi(get(t, web+"/counter").Header.Get("X-Shared-Counter"))
	if c := get(t, web+"/counter").Header.Get("X-Shared-Counter"); first < 1 || c != fmt.Sprint(first+1) {
		t.Errorf("shared counter %d then %q", first, c)
	}
	if !strings.Contains(logs.String(), "filter declared shared_data: redis, with no redis: in the config") {
		t.Errorf("no warning that shared data stays in process:\n%s", logs.String())
	}

	if resp := get(t, web+"/garbage"); resp.StatusCode != 402 {
		t.Errorf("malformed plexus.rate_limit arguments: status %d, want 402 (400 + BAD_ARGUMENT)", resp.StatusCode)
	}
	if !strings.Contains(logs.String(), "filter's host service call has bad arguments") {
		t.Errorf("malformed arguments not logged:\n%s", logs.String())
	}
	statsHave(t, addrs["admin"], "^plexus.ratelimit",
		`plexus.ratelimit.decisions{plexus.decision="allowed",plexus.decision.source="store",plexus.filter="limit"}: 3`,
		`plexus.ratelimit.decisions{plexus.decision="denied",plexus.decision.source="store",plexus.filter="limit"}: 1`)
}
