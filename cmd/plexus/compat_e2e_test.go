package main

// End-to-end tests of the host semantics that filters written for Envoy rely on, each with
// a filter on the upstream proxy-wasm-go-sdk (conformance/filters/go).

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/plexus-mesh/plexus/internal/testutil"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
)

// TestHostPatterns: routes match the request's host as Envoy's virtual hosts match their
// domains: without the request's port, and with one wildcard at the start or the end of a
// pattern (*-canary, api.*); a host that a filter sets is matched the same way, and the
// route it leads to is taken.
func TestHostPatterns(t *testing.T) {
	t.Parallel()
	canary, api, www, app := startBackend(t, echo("canary")), startBackend(t, echo("api")), startBackend(t, echo("www")), startBackend(t, echo("app"))
	mod := wasmbuild.Go(t, "conformance/filters/go/authority")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: canary, endpoints: [%s]}
  - {name: api, endpoints: [%s]}
  - {name: www, endpoints: [%s]}
  - {name: app, endpoints: [%s]}
filters: [{name: authority, module: "file:%s"}]
routes:
  - {name: canary, match: {hosts: ["*-canary"]}, backend: canary}
  - {name: api, match: {hosts: ["api.*"]}, backend: api}
  - {name: www, match: {hosts: ["www.example.com:8443"]}, backend: www}
  - {name: rest, match: {path_prefix: /}, filters: [authority], backend: app}
`, canary.addr, api.addr, www.addr, app.addr, mod))
	c := h1Client()
	for _, tc := range []struct {
		hdr      []string
		backend  string
		wantHost string
	}{
		{[]string{"host", "web-canary:8080"}, "canary", "web-canary:8080"},
		{[]string{"host", "api.example.com:443"}, "api", "api.example.com:443"},
		{[]string{"host", "WWW.Example.com"}, "www", "WWW.Example.com"},
		{[]string{"host", "www.example.com:80"}, "www", "www.example.com:80"},
		{[]string{"host", "www.example.org"}, "app", "www.example.org"},
		{[]string{"host", "-canary"}, "app", "-canary"},
		{[]string{"host", "elsewhere", "x-authority", "api.internal:9000"}, "api", "api.internal:9000"},
	} {
		resp, body := get(t, c, g.url("web", "/x"), tc.hdr...)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%q: %d %s", tc.hdr, resp.StatusCode, body)
			continue
		}
		if e := decodeEcho(t, body); e.Backend != tc.backend || e.Host != tc.wantHost {
			t.Errorf("%q: backend %s got host %q; want %s with %q", tc.hdr, e.Backend, e.Host, tc.backend, tc.wantHost)
		}
	}
}

// TestCalloutPseudoHeaders: an HTTP callout needs :method, :path and :authority, as Envoy
// checks them: without one of them, or with an empty :method or :path, DispatchHttpCall
// fails with BadArgument; an empty :authority is allowed, and the callout then goes with
// the cluster's name as its host.
func TestCalloutPseudoHeaders(t *testing.T) {
	t.Parallel()
	auth, app := startBackend(t, echo("auth")), startBackend(t, echo("app"))
	mod := wasmbuild.Go(t, "conformance/filters/go/callout")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: auth, endpoints: [%s]}
  - {name: app, endpoints: [%s]}
filters: [{name: callout, module: "file:%s"}]
routes: [{name: app, match: {path_prefix: /}, filters: [callout], backend: app}]
`, auth.addr, app.addr, mod))
	c := h1Client()
	for mode, wantHost := range map[string]string{"all": "auth.internal", "empty-authority": "auth"} {
		resp, body := get(t, c, g.url("web", "/x"), "x-callout", mode)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Callout-Status") != "200" {
			t.Errorf("%s: %d, callout status %q: %s", mode, resp.StatusCode, resp.Header.Get("X-Callout-Status"), body)
			continue
		}
		if e := decodeEcho(t, body); e.Backend != "auth" || e.Path != "/check" || e.Host != wantHost {
			t.Errorf("%s: the callout reached %s %s with host %q; want auth /check with %q", mode, e.Backend, e.Path, e.Host, wantHost)
		}
	}
	for _, mode := range []string{"no-authority", "no-path", "empty-path", "no-method", "empty-method"} {
		resp, body := get(t, c, g.url("web", "/x"), "x-callout", mode)
		if resp.StatusCode != http.StatusInternalServerError || body != "error status returned by host: bad argument" {
			t.Errorf("%s: %d %q; want 500 and the SDK's error for BadArgument", mode, resp.StatusCode, body)
		}
	}
}

// TestEnvoyForeignFunctions: Envoy's foreign functions answer a filter on the upstream Go
// SDK as Envoy's do: compress gives zlib's format (which Go's compress/zlib reads back),
// uncompress reverses it, and fails with SERIALIZATION_FAILURE (status 3, which that SDK
// does not name) on what is not zlib; clear_route_cache is OK.
func TestEnvoyForeignFunctions(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	mod := wasmbuild.Go(t, "conformance/filters/go/zlib")
	// A callback deadline far from the default 100ms: inflating 16 MiB before the host
	// memory limit refuses the rest takes longer than that on a busy machine, and what is
	// checked here is the limit, not the speed.
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters: [{name: zlib, module: "file:%s", limits: {callback_timeout: 10s}}]
routes: [{name: app, match: {path_prefix: /}, filters: [zlib], backend: app}]
`, app.addr, mod))
	c := h1Client()

	data := "hello, hello, hello, hello, world"
	resp, body := get(t, c, g.url("web", "/c"), "x-data", data)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Route-Cache") != "ok" {
		t.Fatalf("compress: %d, clear_route_cache %q: %q", resp.StatusCode, resp.Header.Get("X-Route-Cache"), body)
	}
	zr, err := zlib.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatalf("compress gave what zlib cannot read: %v", err)
	}
	if got, err := io.ReadAll(zr); err != nil || string(got) != data {
		t.Errorf("compress, read back with compress/zlib: %q, %v", got, err)
	}

	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB
	var zb bytes.Buffer
	zw := zlib.NewWriter(&zb)
	zw.Write([]byte(big))
	zw.Close()
	resp, body = do(t, c, "POST", g.url("web", "/u"), bytes.NewReader(zb.Bytes()), "x-mode", "uncompress")
	if resp.StatusCode != http.StatusOK || body != big {
		t.Errorf("uncompress of compress/zlib's %d bytes: %d, %d bytes back", zb.Len(), resp.StatusCode, len(body))
	}
	// 32 MiB of zeros in some 32 KiB: past the filter's host memory limit (16 MiB), refused.
	zb.Reset()
	zw = zlib.NewWriter(&zb)
	zw.Write(make([]byte, 32<<20))
	zw.Close()
	resp, body = do(t, c, "POST", g.url("web", "/u"), bytes.NewReader(zb.Bytes()), "x-mode", "uncompress")
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(body, "internal failure") {
		t.Errorf("uncompress of %d bytes into 32 MiB: %d %.80q; want 500 and INTERNAL_FAILURE", zb.Len(), resp.StatusCode, body)
	}
	resp, body = do(t, c, "POST", g.url("web", "/u"), strings.NewReader("not zlib at all"), "x-mode", "uncompress")
	if resp.StatusCode != http.StatusInternalServerError || body != "unknown status code: 3" {
		t.Errorf("uncompress of what is not zlib: %d %q; want 500 and status 3 (SERIALIZATION_FAILURE)", resp.StatusCode, body)
	}
}

// TestCalloutFromPluginStart: a filter may call out from proxy_on_plugin_start, at startup
// and on a reload, to a backend of the config being loaded (a new one, on the reload),
// as under Envoy; the config loads, and the answer reaches the filter.
func TestCalloutFromPluginStart(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	one := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from one") }))
	two := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "from two") }))
	mod := wasmbuild.Go(t, "conformance/filters/go/startcall")
	conf := func(cluster, addr string) string {
		return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}, {name: %s, endpoints: [%s]}]
filters: [{name: startcall, module: "file:%s", config: {cluster: %s}, limits: {instances: 1}}]
routes: [{name: app, match: {path_prefix: /}, filters: [startcall], backend: app}]
`, app.addr, cluster, addr, mod, cluster)
	}
	g := startGateway(t, conf("one", one.addr))
	c := h1Client()
	fetched := func(want string) func() bool {
		return func() bool {
			resp, body := get(t, c, g.url("web", "/"))
			return resp.StatusCode == http.StatusOK && decodeEcho(t, body).Header.Get("X-Fetched") == want
		}
	}
	testutil.Eventually(t, "x-fetched: from one", fetched("from one"))
	g.writeConfig(conf("two", two.addr)) // a backend only the new config has
	g.waitLog("config reloaded", 1)
	testutil.Eventually(t, "x-fetched: from two", fetched("from two"))
}

// TestFiltersOnLocalReplies: plexus's own replies on a route with filters (an upstream
// that refuses connections: 502; one too slow for the route: 504) go through the
// filters' response phase, as Envoy's router replies go through its encoder filters: a
// filter on the upstream Go SDK that marks every response marks them too.
func TestFiltersOnLocalReplies(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	slow := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	mod := wasmbuild.Go(t, "examples/go/http_headers")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: down, endpoints: [%s]}, {name: slow, endpoints: [%s]}]
filters: [{name: headers, module: "file:%s"}]
routes:
  - {name: down, match: {path: /down}, filters: [headers], backend: down}
  - {name: slow, match: {path: /slow}, filters: [headers], backend: slow, timeout: 300ms}
`, deadAddr(t), slow.addr, mod))
	c := h1Client()
	for path, want := range map[string]int{"/down": http.StatusBadGateway, "/slow": http.StatusGatewayTimeout} {
		resp, body := get(t, c, g.url("web", path))
		if resp.StatusCode != want || resp.Header.Get("X-Plexus-Error") == "" {
			t.Errorf("%s: %d %q (x-plexus-error %q); want %d from plexus", path, resp.StatusCode, body, resp.Header.Get("X-Plexus-Error"), want)
		}
		if got := resp.Header.Get("X-Wasm-Response"); got != "http_headers" {
			t.Errorf("%s: x-wasm-response %q: the filter's response phase did not run on plexus's %d", path, got, want)
		}
	}
}

// TestStatsTags: metrics a filter on the upstream Go SDK names with tags in them, as
// Istio's do, come out as one metric with the tags as Prometheus labels, by
// telemetry.metrics.stats_tags as Envoy's stats_config.stats_tags extracts them.
func TestStatsTags(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	mod := wasmbuild.Go(t, "conformance/filters/go/tagged")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters: [{name: tagged, module: "file:%s"}]
routes: [{name: app, match: {path_prefix: /}, filters: [tagged], backend: app}]
telemetry:
  metrics:
    stats_tags: [{tag_name: method, regex: '(_method=\.=(.+?);\.;)'}]
`, app.addr, mod))
	c := h1Client()
	get(t, c, g.url("web", "/"))
	get(t, c, g.url("web", "/"))
	do(t, c, "POST", g.url("web", "/"), strings.NewReader("x"))
	_, metrics := get(t, c, "http://"+g.addr("admin")+"/metrics")
	for _, want := range []string{
		`tagged_requests_total{method="GET",otel_scope_name="github.com/plexus-mesh/plexus/gateway",otel_scope_schema_url="",otel_scope_version="",plexus_filter="tagged"} 2`,
		`tagged_requests_total{method="POST",otel_scope_name="github.com/plexus-mesh/plexus/gateway",otel_scope_schema_url="",otel_scope_version="",plexus_filter="tagged"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(metrics, "method=.=") {
		t.Errorf("/metrics still has a tag in a name:\n%s", grepLines(metrics, "tagged"))
	}
}

// grepLines is the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDeclareProperty: Envoy's declare_property, from a filter on the upstream Go SDK: a
// readonly declared property is set once per request (the second set is BadArgument, the
// first value stays), one not declared can be set again, and arguments that are not
// DeclarePropertyArguments are BadArgument.
func TestDeclareProperty(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	mod := wasmbuild.Go(t, "conformance/filters/go/declare")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters: [{name: declare, module: "file:%s"}]
routes: [{name: app, match: {path_prefix: /}, filters: [declare], backend: app}]
`, app.addr, mod))
	c := h1Client()
	for range 2 { // and again on a second request: once per request
		_, body := get(t, c, g.url("web", "/"))
		e := decodeEcho(t, body)
		for k, want := range map[string]string{
			"X-Declared":    "<nil>, error status returned by host: bad argument, first <nil>",
			"X-Free":        "<nil>, <nil>, second <nil>",
			"X-Bad-Declare": "error status returned by host: bad argument",
		} {
			if got := e.Header.Get(k); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
	}
}

// TestSingletonFilter: a filter no route names runs all the same, as an Envoy bootstrap
// extension does: its root context ticks, keeps shared data, takes the items filters on
// routes put in its queue, and calls out with them. Both filters are on the upstream Go SDK.
func TestSingletonFilter(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	var mu sync.Mutex
	var events []string
	sink := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		events = append(events, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
	}))
	singleton, emitter := wasmbuild.Go(t, "conformance/filters/go/singleton"), wasmbuild.Go(t, "conformance/filters/go/emitter")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}, {name: sink, endpoints: [%s]}]
filters:
  - {name: singleton, module: "file:%s", vm_id: bus, limits: {instances: 1}}
  - {name: emitter, module: "file:%s", vm_id: bus}
routes: [{name: app, match: {path_prefix: /}, filters: [emitter], backend: app}]
`, app.addr, sink.addr, singleton, emitter))
	c := h1Client()
	testutil.Eventually(t, "the singleton's ticks in shared data", func() bool {
		_, body := get(t, c, g.url("web", "/tick"))
		n, err := strconv.Atoi(decodeEcho(t, body).Header.Get("X-Ticks"))
		return err == nil && n > 0
	})
	get(t, c, g.url("web", "/hello"))
	testutil.Eventually(t, "the singleton posting the queued /hello to the sink", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return slices.Contains(events, "POST /event /hello")
	})
}

// TestRouteMetadata: a route's metadata reaches a filter on the upstream Go SDK through
// the route_metadata and xds.route_metadata properties, encoded as Envoy encodes them: a
// string raw, a number as a double, a boolean as a byte, and the whole as the
// envoy.config.core.v3.Metadata message; and connection.requested_server_name is the SNI,
// response.grpc_status a gRPC answer's status; the listener certificate's subject and DNS
// name are connection.subject_local_certificate and dns_san_local_certificate, and a
// client that sent no certificate has no subject_peer_certificate.
func TestRouteMetadata(t *testing.T) {
	t.Parallel()
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/grpc" { // a trailers-only gRPC answer: the status in the headers
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "7")
			return
		}
		echo("app").ServeHTTP(w, r)
	}))
	mod := wasmbuild.Go(t, "conformance/filters/go/metadata")
	dir := t.TempDir()
	cert := newTestCert(t, dir)
	g := startGatewayIn(t, dir, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: secure, address: 127.0.0.1:0, tls: {cert: cert.pem, key: key.pem}}]
backends: [{name: app, endpoints: [%s]}]
filters: [{name: metadata, module: "file:%s"}]
routes:
  - name: app
    match: {path_prefix: /}
    filters: [metadata]
    backend: app
    metadata: {plexus: {team: payments, weight: 2.5, canary: true}, other: {x: [1, 2]}}
`, app.addr, mod))
	tc := cert.clientTLS()
	tc.ServerName = "localhost"
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 30 * time.Second}
	if resp, _ := get(t, c, "https://"+g.addr("secure")+"/grpc"); resp.Header.Get("X-Grpc-Status") != "7" {
		t.Errorf("response.grpc_status of a trailers-only answer with grpc-status 7: %q", resp.Header.Get("X-Grpc-Status"))
	}
	_, body := get(t, c, "https://"+g.addr("secure")+"/")
	e := decodeEcho(t, body)
	for k, want := range map[string]string{"X-Team": "payments", "X-Weight": "2.5", "X-Canary": "true", "X-Sni": "localhost",
		"X-Local-Subject": "CN=plexus test", "X-Local-Dns": "localhost", "X-Peer-Subject": ""} {
		if got := e.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	raw, err := base64.StdEncoding.DecodeString(e.Header.Get("X-Md"))
	if err != nil {
		t.Fatalf("x-md %q: %v", e.Header.Get("X-Md"), err)
	}
	// envoy.config.core.v3.Metadata: filter_metadata, field 1, map<string, Struct>.
	got := map[string]*structpb.Struct{}
	for len(raw) > 0 {
		num, typ, n := protowire.ConsumeTag(raw)
		if n < 0 || num != 1 || typ != protowire.BytesType {
			t.Fatalf("not a Metadata message: field %d type %d (%d)", num, typ, n)
		}
		entry, m := protowire.ConsumeBytes(raw[n:])
		raw = raw[n+m:]
		var key string
		st := &structpb.Struct{}
		for len(entry) > 0 {
			f, _, k := protowire.ConsumeTag(entry)
			v, l := protowire.ConsumeBytes(entry[k:])
			entry = entry[k+l:]
			if f == 1 {
				key = string(v)
			} else if err := proto.Unmarshal(v, st); err != nil {
				t.Fatal(err)
			}
		}
		got[key] = st
	}
	if p := got["plexus"]; p == nil || p.Fields["team"].GetStringValue() != "payments" || p.Fields["weight"].GetNumberValue() != 2.5 {
		t.Errorf("filter_metadata.plexus: %v", p)
	}
	if o := got["other"]; o == nil || len(o.Fields["x"].GetListValue().GetValues()) != 2 {
		t.Errorf("filter_metadata.other: %v", o)
	}
}

// TestSharedVM: filters that share a vm_id and a module share one VM, as in Envoy: a
// filter on the upstream Go SDK sees one proxy_on_vm_start, however many instances its
// two plugins' pools grow to, and what it left in the VM (a Go variable) is in every
// instance; each plugin has a root context id of its own, ticks once per period (not once
// per instance), and a plugin a reload adds joins the VM that runs, without starting it
// again.
func TestSharedVM(t *testing.T) {
	t.Parallel()
	const n = 4
	var mu sync.Mutex
	arrived, all := 0, make(chan struct{})
	// Holds the first n requests until all n are in: each holds an instance of both
	// plugins meanwhile (their response phase is still to come), so both pools grow to n.
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if arrived++; arrived == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-r.Context().Done():
		}
	}))
	mod := wasmbuild.Go(t, "conformance/filters/go/vmshare")
	conf := func(second string) string {
		return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends: [{name: app, endpoints: [%s]}]
filters:
  - {name: a, module: "file:%s", vm_id: shared, config: a}
  - {name: b, module: "file:%s", vm_id: shared, config: %s}
routes: [{name: app, match: {path_prefix: /}, filters: [a, b], backend: app}]
`, app.addr, mod, mod, second)
	}
	g := startGateway(t, conf("b"))
	c := h1Client()
	var wg sync.WaitGroup
	resps := make([]http.Header, n)
	for k := range n {
		wg.Go(func() {
			resp, _ := get(t, c, g.url("web", "/"))
			resps[k] = resp.Header
		})
	}
	wg.Wait()
	instances := map[string]bool{}
	roots := map[string]string{}
	for _, h := range resps {
		for _, p := range []string{"a", "b"} {
			if got := h.Get("X-" + p + "-Vm-Starts"); got != "1" {
				t.Errorf("plugin %s: vm_starts %q after its pool grew to %d instances; want 1: one proxy_on_vm_start for the VM", p, got, n)
			}
			if got := h.Get("X-" + p + "-Mark"); got != "started" {
				t.Errorf("plugin %s: the Go variable proxy_on_vm_start set is %q in an instance; want \"started\" in every one", p, got)
			}
			roots[p] = h.Get("X-" + p + "-Root")
		}
		instances[h.Get("X-A-Instance")] = true
	}
	if len(instances) != n {
		t.Errorf("plugin a answered from %d instances; want %d (the test holds %d requests at once)", len(instances), n, n)
	}
	if roots["a"] == roots["b"] || roots["a"] == "0" || roots["b"] == "0" {
		t.Errorf("root context ids a=%q b=%q; want two distinct ids", roots["a"], roots["b"])
	}

	// Ticks: once per plugin per 20 ms period, whichever of its n instances set it.
	ticks := func() int {
		resp, _ := get(t, c, g.url("web", "/"))
		v, _ := strconv.Atoi(resp.Header.Get("X-A-Ticks"))
		return v
	}
	start := time.Now()
	t0 := ticks()
	time.Sleep(500 * time.Millisecond)
	t1 := ticks()
	window := time.Since(start)
	// At most one tick per period, and the ticks fired before the window that reach the
	// filter in it: one due per instance at most.
	if most := int(window/(20*time.Millisecond)) + n; t1-t0 > most || t1 <= t0 {
		t.Errorf("plugin a ticked %d times in %v; want at least once, and at most %d: once per period, not once per instance", t1-t0, window, most)
	}

	// A reload that changes b's config: the new plugin joins the VM that a keeps running.
	g.writeConfig(conf("b2"))
	g.waitLog("config reloaded", 1)
	resp, _ := get(t, c, g.url("web", "/"))
	if got := resp.Header.Get("X-B2-Vm-Starts"); got != "1" {
		t.Errorf("after the reload, vm_starts %q; want 1: the new plugin joins the VM", got)
	}
	if got := resp.Header.Get("X-B2-Root"); got == "" || got == roots["a"] || got == roots["b"] {
		t.Errorf("after the reload, the new plugin's root context id is %q; want one of its own (a has %s, the old b %s)", got, roots["a"], roots["b"])
	}
}

// TestFilterState: what one filter on the upstream Go SDK sets with proxy_set_property,
// the next filter of the request reads, by its path and as Envoy's
// filter_state.wasm.PATH; connection.id is the client connection's (the same for two
// requests on one connection, over HTTP/1.1 and h2c, another for another connection),
// request.total_size counts the headers and the body, the backend's metadata is
// cluster_metadata and xds.cluster_metadata, and the listener's metadata and direction
// listener_metadata and listener_direction.
func TestFilterState(t *testing.T) {
	t.Parallel()
	app := startBackend(t, echo("app"))
	mod := wasmbuild.Go(t, "conformance/filters/go/attrs")
	conf := func(zone string) string {
		return fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0, direction: outbound, metadata: {plexus: {zone: %s}}}]
backends: [{name: app, endpoints: [%s], metadata: {plexus: {team: storage}}}]
filters:
  - {name: setter, module: "file:%s", config: set}
  - {name: getter, module: "file:%s", config: get}
routes: [{name: app, match: {path_prefix: /}, filters: [setter, getter], backend: app}]
`, zone, app.addr, mod, mod)
	}
	g := startGateway(t, conf("eu-west"))
	body := strings.Repeat("b", 100)
	conns := map[string]string{}
	for _, proto := range []string{"h1", "h2c"} {
		c := h1Client()
		if proto == "h2c" {
			c = h2cClient()
		}
		var first string
		for k, user := range []string{"alice", "bob"} {
			_, raw := do(t, c, "POST", g.url("web", "/"), strings.NewReader(body), "x-user", user)
			e := decodeEcho(t, raw)
			if got, state := e.Header.Get("X-User"), e.Header.Get("X-State"); got != user || state != user {
				t.Errorf("%s: the second filter read %q by its path and %q as filter_state; want %q, set by the first", proto, got, state, user)
			}
			if a, b := e.Header.Get("X-Cluster-Team"), e.Header.Get("X-Xds-Cluster-Team"); a != "storage" || b != "storage" {
				t.Errorf("%s: cluster_metadata %q, xds.cluster_metadata %q; want the backend's \"storage\"", proto, a, b)
			}
			if z := e.Header.Get("X-Listener-Zone"); z != "eu-west" {
				t.Errorf("%s: listener_metadata plexus.zone %q; want the listener's \"eu-west\"", proto, z)
			}
			if d := e.Header.Get("X-Direction"); d != "2" {
				t.Errorf("%s: listener_direction %q; want 2, outbound", proto, d)
			}
			total, _ := strconv.Atoi(e.Header.Get("X-Total"))
			if total <= len(body) || total > len(body)+2048 {
				t.Errorf("%s: request.total_size %d; want the body's %d bytes and the headers'", proto, total, len(body))
			}
			conn := e.Header.Get("X-Conn")
			if conn == "" || conn == "0" {
				t.Fatalf("%s: connection.id %q; want a number", proto, conn)
			}
			if k == 0 {
				first = conn
			} else if conn != first {
				t.Errorf("%s: connection.id %s, then %s on the same connection; want one", proto, first, conn)
			}
		}
		if other, ok := conns[first]; ok {
			t.Errorf("connection.id %s for the %s connection and the %s one; want one each", first, other, proto)
		}
		conns[first] = proto
	}
	// Listener metadata may change on reload.
	g.writeConfig(conf("eu-north"))
	g.waitLog("config reloaded", 1)
	_, raw := do(t, h1Client(), "POST", g.url("web", "/"), strings.NewReader(body), "x-user", "carol")
	if z := decodeEcho(t, raw).Header.Get("X-Listener-Zone"); z != "eu-north" {
		t.Errorf("after a reload, listener_metadata plexus.zone %q; want the new \"eu-north\"", z)
	}
}

// TestResponseAttributes: a filter on the upstream Go SDK reads, in its response phase,
// why the response is what it is as Envoy tells it: response.code_details (via_upstream,
// or plexus's own reason), response.flags (Envoy's bits: UF 0x20, URX 0x8000),
// upstream.request_attempt_count and upstream.transport_failure_reason; what plexus's
// connection to the backend was (upstream.local_address, and over TLS tls_version and the
// backend's certificate), the endpoint's metadata (upstream_host_metadata), and, as the
// stream ends, response.backend_latency.
func TestResponseAttributes(t *testing.T) {
	t.Parallel()
	cert := newTestCert(t, t.TempDir())
	app := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(40 * time.Millisecond)
		}
		echo("app").ServeHTTP(w, r)
	}))
	secure := startTLSBackend(t, echo("secure"), cert)
	busy := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	mod := wasmbuild.Go(t, "conformance/filters/go/attrs")
	g := startGateway(t, fmt.Sprintf(`
admin: {address: 127.0.0.1:0}
listeners: [{name: web, address: 127.0.0.1:0}]
backends:
  - {name: app, endpoints: [{address: %s, metadata: {plexus: {zone: eu-1}}}]}
  - {name: dead, endpoints: [%s]}
  - {name: busy, endpoints: [%s]}
  - {name: secure, endpoints: [%s], tls: {ca: %s, server_name: localhost}}
  - {name: untrusted, endpoints: [%[4]s], tls: {server_name: localhost}}
  - {name: secure-h2, endpoints: [%[4]s], protocol: h2, tls: {ca: %[5]s, server_name: localhost}}
filters: [{name: getter, module: "file:%[6]s", config: get}]
routes:
  - {name: dead, match: {path: /dead}, filters: [getter], backend: dead}
  - {name: busy, match: {path: /busy}, filters: [getter], backend: busy, retry: {attempts: 2, retry_on: [5xx], backoff: {base: 1ms, max: 1ms}}}
  - {name: secure, match: {path: /secure}, filters: [getter], backend: secure}
  - {name: untrusted, match: {path: /untrusted}, filters: [getter], backend: untrusted}
  - {name: secure-h2, match: {path: /secure-h2}, filters: [getter], backend: secure-h2}
  - {name: app, match: {path_prefix: /}, filters: [getter], backend: app}
`, app.addr, deadAddr(t), busy.addr, secure.addr, cert.certFile, mod))
	c := h1Client()
	for _, tc := range []struct {
		path                     string
		status                   int
		details, flags, attempts string
		tls, failure, zone       string
	}{
		{"/", 200, "via_upstream", "0", "1", "", "", "eu-1"},
		{"/busy", 503, "via_upstream", "32768", "2", "", "", ""},
		{"/dead", 502, "upstream_reset_before_response_started{connection_failure}", "32", "1", "", "connection refused", ""},
		{"/secure", 200, "via_upstream", "0", "1", "TLSv1.3", "", ""},
		{"/secure-h2", 200, "via_upstream", "0", "1", "TLSv1.3", "", ""},
		{"/untrusted", 502, "upstream_reset_before_response_started{connection_failure}", "32", "1", "", "certificate", ""},
	} {
		resp, _ := get(t, c, g.url("web", tc.path))
		h := resp.Header
		if resp.StatusCode != tc.status || h.Get("X-Details") != tc.details || h.Get("X-Flags") != tc.flags || h.Get("X-Attempts") != tc.attempts {
			t.Errorf("%s: %d, code_details %q, flags %q, attempts %q; want %d, %q, %q, %q", tc.path, resp.StatusCode,
				h.Get("X-Details"), h.Get("X-Flags"), h.Get("X-Attempts"), tc.status, tc.details, tc.flags, tc.attempts)
		}
		if f := h.Get("X-Up-Failure"); tc.failure == "" && f != "" || !strings.Contains(f, tc.failure) {
			t.Errorf("%s: upstream.transport_failure_reason %q; want one that says %q", tc.path, f, tc.failure)
		}
		if z, xz := h.Get("X-Host-Zone"), h.Get("X-Xds-Host-Zone"); z != tc.zone || xz != tc.zone {
			t.Errorf("%s: upstream_host_metadata plexus.zone %q, xds.upstream_host_metadata %q; want the endpoint's %q", tc.path, z, xz, tc.zone)
		}
		connected := tc.status == 200 || tc.path == "/busy"
		if local := h.Get("X-Up-Local"); connected {
			if ap, err := netip.ParseAddrPort(local); err != nil || !ap.Addr().IsLoopback() || ap.Port() == 0 {
				t.Errorf("%s: upstream.local_address %q; want plexus's end of the backend connection", tc.path, local)
			}
		} else if local != "" {
			t.Errorf("%s: upstream.local_address %q with no connection", tc.path, local)
		}
		if v := h.Get("X-Up-Tls"); v != tc.tls {
			t.Errorf("%s: upstream.tls_version %q; want %q", tc.path, v, tc.tls)
		}
		if tc.tls != "" && (h.Get("X-Up-Subject") != "CN=plexus test" || h.Get("X-Up-Dns") != "localhost") {
			t.Errorf("%s: upstream.subject_peer_certificate %q, dns_san_peer_certificate %q; want the backend's CN=plexus test, localhost",
				tc.path, h.Get("X-Up-Subject"), h.Get("X-Up-Dns"))
		}
	}
	// response.backend_latency: from the request's first byte to the backend to the
	// response's last byte from it, which the backend held back for 40ms.
	get(t, c, g.url("web", "/slow"))
	line := g.firstLog("attrs: /slow backend_latency ")
	ns, err := strconv.ParseInt(strings.TrimPrefix(line, "attrs: /slow backend_latency "), 10, 64)
	if err != nil || time.Duration(ns) < 40*time.Millisecond || time.Duration(ns) > time.Minute {
		t.Errorf("response.backend_latency %q; want at least the backend's 40ms, in nanoseconds", line)
	}
}
