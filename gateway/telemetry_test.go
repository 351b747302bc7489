package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/plexus-mesh/plexus/gateway"
	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// recordingBackend answers 200 "ok" and keeps the traceparent of every request by path;
// /flaky answers 503 to every other request, starting with the first.
type recordingBackend struct {
	srv   *httptest.Server
	mu    sync.Mutex
	seen  map[string][]string // path -> traceparent of each request
	last  map[string]http.Header
	flaky atomic.Int32
}

func newRecordingBackend(t *testing.T) *recordingBackend {
	b := &recordingBackend{seen: map[string][]string{}, last: map[string]http.Header{}}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.seen[r.URL.Path] = append(b.seen[r.URL.Path], r.Header.Get("Traceparent"))
		b.last[r.URL.Path] = r.Header.Clone()
		b.mu.Unlock()
		switch {
		case r.URL.Path == "/unavailable":
			w.WriteHeader(http.StatusServiceUnavailable)
		case r.URL.Path == "/flaky" && b.flaky.Add(1)%2 == 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case strings.HasPrefix(r.URL.Path, "/slow"):
			time.Sleep(300 * time.Millisecond)
		case r.URL.Path == "/auth" && r.Header.Get("Authorization") != "let-me-in":
			w.WriteHeader(http.StatusForbidden)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *recordingBackend) addr() string { return b.srv.Listener.Addr().String() }

// header is the header of the last request for path.
func (b *recordingBackend) header(path string) http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last[path]
}

func (b *recordingBackend) traceparents(path string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.seen[path]...)
}

func get(t *testing.T, url string, hdr ...string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// spans waits until the exporter holds at least n spans and returns them.
func spans(t *testing.T, g *gateway.Gateway, exp *tracetest.InMemoryExporter, n int) tracetest.SpanStubs {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.Flush(context.Background())
		s := exp.GetSpans()
		if len(s) >= n || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func attr(s tracetest.SpanStub, key string) (attribute.Value, bool) {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value, true
		}
	}
	return attribute.Value{}, false
}

func wantAttr(t *testing.T, s tracetest.SpanStub, key string, want any) {
	t.Helper()
	v, ok := attr(s, key)
	if !ok {
		t.Errorf("span %q has no %s; it has %v", s.Name, key, s.Attributes)
		return
	}
	if got := v.AsInterface(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("span %q: %s = %v, want %v", s.Name, key, got, want)
	}
}

func byKind(ss tracetest.SpanStubs, kind trace.SpanKind) tracetest.SpanStubs {
	var out tracetest.SpanStubs
	for _, s := range ss {
		if s.SpanKind == kind {
			out = append(out, s)
		}
	}
	return out
}

// parseTraceparent splits a W3C traceparent into trace id, parent id and flags.
func parseTraceparent(t *testing.T, tp string) (traceID, parentID, flags string) {
	t.Helper()
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[0] != "00" || len(parts[1]) != 32 || len(parts[2]) != 16 {
		t.Fatalf("traceparent %q is not version 00 trace context", tp)
	}
	return parts[1], parts[2], parts[3]
}

func TestTracingSpansAndPropagation(t *testing.T) {
	be := newRecordingBackend(t)
	auth := wasmbuild.Go(t, "examples/go/http_auth_callout")
	exp := tracetest.NewInMemoryExporter()
	accessLog := filepath.Join(t.TempDir(), "access.log")
	g, addrs := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, protocols: [http1, h2c]}]
backends: [{name: app, endpoints: [%[1]s]}]
filters:
  - {name: auth, module: "file:%[2]s", config: {cluster: app, path: /auth}}
telemetry:
  tracing:
    sampling: 1
    filter_spans: true
    exporter: {type: otlp_grpc, endpoint: "127.0.0.1:1"}
  access_log: [{path: %[3]s, flush_interval: 20ms}]
routes:
  - {name: retry, match: {path: /flaky}, backend: app, retry: {attempts: 2, retry_on: [5xx]}}
  - {name: guarded, match: {path: /guarded}, filters: [auth], backend: app}
  - {name: plain, match: {path_prefix: /}, backend: app}
`, be.addr(), auth, accessLog), gateway.Options{SpanExporter: exp})
	web := "http://" + addrs["web"]

	t.Run("continues the caller's trace", func(t *testing.T) {
		exp.Reset()
		const callerTrace, callerSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
		resp := get(t, web+"/plain?x=1", "Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01", "Tracestate", "vendor=opaque", "Baggage", "tenant=acme")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		ss := spans(t, g, exp, 2)
		servers, clients := byKind(ss, trace.SpanKindServer), byKind(ss, trace.SpanKindClient)
		if len(servers) != 1 || len(clients) != 1 {
			t.Fatalf("want one server and one client span, got %d and %d: %v", len(servers), len(clients), ss.Snapshots())
		}
		srv, cli := servers[0], clients[0]
		if srv.Name != "GET /*" {
			t.Errorf("server span name %q, want %q (method and the route's path template)", srv.Name, "GET /*")
		}
		if got := srv.SpanContext.TraceID().String(); got != callerTrace {
			t.Errorf("server span trace id %s, want the caller's %s", got, callerTrace)
		}
		if got := srv.Parent.SpanID().String(); got != callerSpan || !srv.Parent.IsRemote() {
			t.Errorf("server span parent %s (remote %v), want the caller's %s", got, srv.Parent.IsRemote(), callerSpan)
		}
		wantAttr(t, srv, "http.request.method", "GET")
		wantAttr(t, srv, "http.route", "/*")
		wantAttr(t, srv, "plexus.route", "plain")
		wantAttr(t, srv, "http.response.status_code", 200)
		wantAttr(t, srv, "url.path", "/plain")
		wantAttr(t, srv, "url.query", "x=1")
		wantAttr(t, srv, "url.scheme", "http")
		wantAttr(t, srv, "network.protocol.version", "1.1")
		wantAttr(t, srv, "plexus.backend", "app")
		if cli.Parent.SpanID() != srv.SpanContext.SpanID() || cli.SpanContext.TraceID() != srv.SpanContext.TraceID() {
			t.Errorf("client span's parent is %s, want the server span %s", cli.Parent.SpanID(), srv.SpanContext.SpanID())
		}
		if cli.Name != "GET" {
			t.Errorf("client span name %q, want GET", cli.Name)
		}
		host, port, _ := strings.Cut(be.addr(), ":")
		wantAttr(t, cli, "server.address", host)
		wantAttr(t, cli, "server.port", port)
		wantAttr(t, cli, "http.response.status_code", 200)
		wantAttr(t, cli, "plexus.backend", "app")

		tps := be.traceparents("/plain")
		if len(tps) != 1 {
			t.Fatalf("backend saw %d requests", len(tps))
		}
		tid, pid, flags := parseTraceparent(t, tps[0])
		if tid != callerTrace || pid != cli.SpanContext.SpanID().String() || flags != "01" {
			t.Errorf("backend got traceparent %s; want trace %s, parent the client span %s, sampled", tps[0], callerTrace, cli.SpanContext.SpanID())
		}
		if h := be.header("/plain"); h.Get("Tracestate") != "vendor=opaque" || h.Get("Baggage") != "tenant=acme" {
			t.Errorf("backend got tracestate %q and baggage %q; want the caller's", h.Get("Tracestate"), h.Get("Baggage"))
		}
		// The access log line carries the trace.
		var line map[string]any
		testutil.Eventually(t, "the access log line of /plain?x=1", func() bool {
			for _, l := range readJSONLines(t, accessLog) {
				if l["path"] == "/plain?x=1" {
					line = l
				}
			}
			return line != nil
		})
		if line["trace_id"] != callerTrace {
			t.Errorf("access log trace_id %v, want %s", line["trace_id"], callerTrace)
		}
	})

	t.Run("each retry is an attempt span", func(t *testing.T) {
		exp.Reset()
		if resp := get(t, web+"/flaky"); resp.StatusCode != 200 {
			t.Fatalf("status %d after a retry", resp.StatusCode)
		}
		ss := spans(t, g, exp, 3)
		servers, clients := byKind(ss, trace.SpanKindServer), byKind(ss, trace.SpanKindClient)
		if len(servers) != 1 || len(clients) != 2 {
			t.Fatalf("want one server span and two attempts, got %d and %d", len(servers), len(clients))
		}
		first, second := clients[0], clients[1]
		if first.StartTime.After(second.StartTime) {
			first, second = second, first
		}
		wantAttr(t, first, "http.response.status_code", 503)
		if first.Status.Code.String() != "Error" {
			t.Errorf("the failed attempt's status is %v, want Error", first.Status.Code)
		}
		if _, ok := attr(first, "http.request.resend_count"); ok {
			t.Error("the first attempt has http.request.resend_count")
		}
		wantAttr(t, second, "http.request.resend_count", 1)
		wantAttr(t, second, "http.response.status_code", 200)
		for _, c := range clients {
			if c.Parent.SpanID() != servers[0].SpanContext.SpanID() {
				t.Errorf("attempt %s is not a child of the server span", c.SpanContext.SpanID())
			}
		}
		// Each attempt carried its own span to the backend.
		tps := be.traceparents("/flaky")
		if len(tps) < 2 {
			t.Fatalf("backend saw %d attempts", len(tps))
		}
		_, p1, _ := parseTraceparent(t, tps[len(tps)-2])
		_, p2, _ := parseTraceparent(t, tps[len(tps)-1])
		if p1 != first.SpanContext.SpanID().String() || p2 != second.SpanContext.SpanID().String() {
			t.Errorf("backend saw parents %s, %s; want the attempts' spans %s, %s", p1, p2, first.SpanContext.SpanID(), second.SpanContext.SpanID())
		}
	})

	t.Run("a filter's callout and callbacks are spans of the request", func(t *testing.T) {
		exp.Reset()
		if resp := get(t, web+"/guarded", "Authorization", "let-me-in"); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		ss := spans(t, g, exp, 4)
		servers := byKind(ss, trace.SpanKindServer)
		if len(servers) != 1 {
			t.Fatalf("%d server spans", len(servers))
		}
		srv := servers[0]
		var callout, upstream, filterSpan *tracetest.SpanStub
		for i, s := range ss {
			if _, ok := attr(s, "plexus.callout"); ok {
				callout = &ss[i]
			} else if s.SpanKind == trace.SpanKindClient {
				upstream = &ss[i]
			}
			if s.Name == "filter auth on_request_headers" {
				filterSpan = &ss[i]
			}
		}
		if callout == nil || upstream == nil || filterSpan == nil {
			t.Fatalf("want a callout span, an upstream span and a filter span; got %v", names(ss))
		}
		for _, s := range []*tracetest.SpanStub{callout, upstream, filterSpan} {
			if s.Parent.SpanID() != srv.SpanContext.SpanID() {
				t.Errorf("span %q is not a child of the server span", s.Name)
			}
		}
		wantAttr(t, *callout, "plexus.backend", "app")
		wantAttr(t, *callout, "http.response.status_code", 200)
		tps := be.traceparents("/auth")
		if len(tps) == 0 {
			t.Fatal("the auth service saw no request")
		}
		tid, pid, _ := parseTraceparent(t, tps[len(tps)-1])
		if tid != srv.SpanContext.TraceID().String() || pid != callout.SpanContext.SpanID().String() {
			t.Errorf("the callout carried traceparent %s; want the request's trace and the callout span %s", tps[len(tps)-1], callout.SpanContext.SpanID())
		}
	})

	t.Run("a local reply by a filter is on the server span", func(t *testing.T) {
		exp.Reset()
		if resp := get(t, web+"/guarded", "Authorization", "no"); resp.StatusCode != 403 {
			t.Fatalf("status %d, want the filter's 403", resp.StatusCode)
		}
		srv := byKind(spans(t, g, exp, 3), trace.SpanKindServer)
		if len(srv) != 1 {
			t.Fatalf("%d server spans", len(srv))
		}
		wantAttr(t, srv[0], "plexus.response_flags", "FL")
		wantAttr(t, srv[0], "plexus.filter", "auth")
		wantAttr(t, srv[0], "http.response.status_code", 403)
	})

	t.Run("h2c", func(t *testing.T) {
		exp.Reset()
		p := new(http.Protocols)
		p.SetUnencryptedHTTP2(true)
		c := &http.Client{Transport: &http.Transport{Protocols: p}}
		resp, err := c.Get(web + "/plain")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		srv := byKind(spans(t, g, exp, 2), trace.SpanKindServer)
		if len(srv) != 1 {
			t.Fatalf("%d server spans", len(srv))
		}
		wantAttr(t, srv[0], "network.protocol.version", "2")
	})
}

func names(ss tracetest.SpanStubs) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Name)
	}
	return out
}

func TestTracingSamplingIsParentBased(t *testing.T) {
	be := newRecordingBackend(t)
	exp := tracetest.NewInMemoryExporter()
	g, addrs := startGatewayWith(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
telemetry:
  tracing: {sampling: 0, exporter: {type: stdout}}
routes: [{name: plain, match: {path_prefix: /}, backend: app}]
`, be.addr()), gateway.Options{SpanExporter: exp})
	web := "http://" + addrs["web"]

	// A trace that starts here is not sampled at 0, but its context still goes upstream,
	// marked not sampled, so the backend's own spans join it or not alike.
	get(t, web+"/root")
	g.Flush(context.Background())
	if ss := exp.GetSpans(); len(ss) != 0 {
		t.Errorf("sampling 0 recorded %d spans of a new trace", len(ss))
	}
	tps := be.traceparents("/root")
	if len(tps) != 1 {
		t.Fatalf("backend saw %v", tps)
	}
	if _, _, flags := parseTraceparent(t, tps[0]); flags != "00" {
		t.Errorf("traceparent %s: want flags 00 (not sampled)", tps[0])
	}

	// A caller that sampled its trace gets it recorded here too.
	const callerTrace = "0af7651916cd43dd8448eb211c80319c"
	get(t, web+"/child", "Traceparent", "00-"+callerTrace+"-b7ad6b7169203331-01")
	ss := spans(t, g, exp, 2)
	if len(ss) != 2 {
		t.Fatalf("a sampled parent: want the server and client spans, got %v", names(ss))
	}
	for _, s := range ss {
		if s.SpanContext.TraceID().String() != callerTrace {
			t.Errorf("span %q is in trace %s, want %s", s.Name, s.SpanContext.TraceID(), callerTrace)
		}
	}
}
