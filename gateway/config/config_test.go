package config

import (
	"bytes"
	"fmt"
	"github.com/plexus-mesh/plexus/internal/wasmbuild"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const good = `
listeners:
  - name: web
    address: 127.0.0.1:0
backends:
  - name: app
    endpoints: [127.0.0.1:9000]
routes:
  - name: api
    match: {path_prefix: /api, headers: [{name: x-env, exact: prod}]}
    rewrite: {strip_prefix: true}
    backend: app
    retry: {attempts: 3}
  - name: split
    match: {hosts: ["*.example.com"]}
    backends: [{name: app, weight: 9}, {name: app}]
  - name: hello
    direct_response: {body: hi}
`

func TestLoadDefaults(t *testing.T) {
	c, err := Parse("good.yaml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if got := strings.Join(l.Protocols, ","); got != "http1,h2c" {
		t.Errorf("protocols = %s", got)
	}
	if l.Limits.MaxHeaderBytes != DefaultMaxHeaderBytes || l.Limits.MaxRequestBodyBytes != DefaultMaxRequestBodyBytes ||
		l.Limits.MaxConcurrentStreams != DefaultMaxConcurrentStreams || l.Drain != DefaultDrainTimeout {
		t.Errorf("limits not defaulted: %+v", l.Limits)
	}
	if c.Admin.Address != DefaultAdminAddress {
		t.Errorf("admin = %q", c.Admin.Address)
	}
	if b := c.Backends[0]; b.Protocol != "http1" || b.Balance != "round_robin" || b.ConnectTimeout != 2*time.Second {
		t.Errorf("backend not defaulted: %+v", b)
	}
	r := c.Routes[0]
	if *r.Timeout != DefaultRouteTimeout || r.Retry.Backoff.Base != DefaultBackoffBase || len(r.Retry.RetryOn) == 0 {
		t.Errorf("route not defaulted: timeout %v retry %+v", *r.Timeout, r.Retry)
	}
	if w := c.Routes[1].Backends[1].Weight; w != 1 {
		t.Errorf("weight = %d", w)
	}
	if d := c.Routes[2].DirectResponse; d.Status != 200 {
		t.Errorf("direct status = %d", d.Status)
	}
	if b := c.Backends[0]; b.CircuitBreaker.MaxRequests != DefaultMaxRequests {
		t.Errorf("max_requests = %d", b.CircuitBreaker.MaxRequests)
	}
	if tm := c.Telemetry; tm == nil || tm.ServiceName != "plexus" || tm.Tracing != nil || !*tm.Metrics.Prometheus || tm.Metrics.Interval != DefaultMetricsInterval {
		t.Errorf("telemetry not defaulted: %+v", tm)
	}
	if got := c.Where("routes[1].match.hosts[0]"); got != "good.yaml:15:21" {
		t.Errorf("Where = %s", got)
	}
}

func TestRedisDefaults(t *testing.T) {
	c, err := Parse("good.yaml", []byte(good+"redis: {address: 127.0.0.1:6379}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redis
	if r.Mode != RedisSingle || r.DialTimeout != DefaultRedisDialTimeout || r.ReadTimeout != DefaultRedisReadTimeout || r.WriteTimeout != DefaultRedisWriteTimeout {
		t.Errorf("redis not defaulted: %+v", r)
	}
	if red := c.Redacted().(map[string]any)["redis"]; red == nil {
		t.Error("redis missing from the redacted config")
	}
	c, err = Parse("good.yaml", []byte(good+"redis: {address: 127.0.0.1:6379, password: hunter2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if pw := c.Redacted().(map[string]any)["redis"].(map[string]any)["password"]; pw != "[redacted]" {
		t.Errorf("redis password shown as %v", pw)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string // each must appear, in order
	}{
		{"unknown top-level key", "listenrs: []\n", []string{`bad.yaml:1:1: unknown field "listenrs"`}},
		{"unknown route key", good + "    bakend: app\n", []string{`bad.yaml:19:5: unknown field "bakend"`}},
		{"missing backend", strings.Replace(good, "backend: app", "backend: nope", 1), []string{`bad.yaml:12:14: route "api": no backend named "nope" (declared: app)`}},
		{"missing weighted backend", strings.Replace(good, "{name: app, weight: 9}", "{name: gone, weight: 9}", 1), []string{`bad.yaml:16:23: route "split": no backend named "gone"`}},
		{"missing filter", good + "    filters: [auth]\n", []string{`bad.yaml:19:15: route "hello": no filter named "auth" (none are declared)`}},
		{"bad duration", strings.Replace(good, "attempts: 3", "attempts: 3, per_try_timeout: 5x", 1), []string{`bad.yaml:13:43: `, `invalid duration`}},
		{"two actions", strings.Replace(good, "direct_response: {body: hi}", "direct_response: {body: hi}\n    backend: app", 1), []string{`bad.yaml:17:5: route "hello" needs exactly one of backend, backends, direct_response and redirect (it has 2)`}},
		{"duplicate route", good + "  - name: api\n    backend: app\n", []string{`bad.yaml:19:11: route "api" is declared twice (first at bad.yaml:9:11)`}},
		{"bad regex", strings.Replace(good, "path_prefix: /api,", "path_regex: \"/a(\",", 1), []string{`bad.yaml:10:25: bad regular expression`}},
		{"h2 without tls", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    protocols: [http1, h2]", 1), []string{`bad.yaml:5:24: listener "web": h2 needs tls: {cert, key}`}},
		{"bad address", strings.Replace(good, "127.0.0.1:9000", "localhost", 1), []string{`bad.yaml:7:17: address "localhost": want host:port`}},
		{"strip without prefix", strings.Replace(good, "path_prefix: /api,", "path: /api,", 1), []string{`bad.yaml:11:14: route "api": strip_prefix and prefix rewrite the matched path_prefix`}},
		{"tcp beside http", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    protocols: [http1, tcp]\n    tcp: {backend: app}", 1), []string{`bad.yaml:5:24: listener "web": tcp is an L4 listener of its own: it cannot share a listener with HTTP protocols`}},
		{"tcp without its block", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    protocols: [tcp]", 1), []string{`bad.yaml:3:5: listener "web": protocols [tcp] needs tcp: {backend: NAME}`}},
		{"tcp block on http", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    protocols: [http1]\n    tcp: {backend: app}", 1), []string{`bad.yaml:6:10: listener "web": tcp is for protocols [tcp]`}},
		{"tcp sni to no backend", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    tcp: {sni: [{server_names: [a.test], backend: nope}]}", 1), []string{`bad.yaml:5:51: listener "web": no backend named "nope" (declared: app)`}},
		{"tcp sni without names", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    tcp: {sni: [{backend: app}]}", 1), []string{`missing required field "server_names" in sni route`}},
		{"tcp without a backend", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    tcp: {idle_timeout: 1m}", 1), []string{`bad.yaml:5:10: listener "web": tcp needs a backend, or sni routes to backends`}},
		{"tcp to no backend", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    tcp: {backend: nope, filters: [gate]}", 1), []string{`bad.yaml:5:20: listener "web": no backend named "nope" (declared: app)`, `bad.yaml:5:36: listener "web": no filter named "gate" (none are declared)`}},
		{"endpoint without an address", strings.Replace(good, "[127.0.0.1:9000]", "[{metadata: {plexus: {zone: a}}}]", 1), []string{`bad.yaml:7:17: endpoint has no address`}},
		{"unknown endpoint field", strings.Replace(good, "[127.0.0.1:9000]", "[{address: 127.0.0.1:9000, weigth: 2}]", 1), []string{`bad.yaml:7:43: unknown field "weigth" in endpoint (want address, weight, metadata)`}},
		{"endpoint metadata not namespaced", strings.Replace(good, "[127.0.0.1:9000]", "[{address: 127.0.0.1:9000, metadata: {zone: a}}]", 1), []string{`bad.yaml:7:17: backend "app": endpoint 127.0.0.1:9000: metadata namespace "zone" must be a map of values`}},
		{"bad endpoint address", strings.Replace(good, "[127.0.0.1:9000]", "[{address: nowhere}]", 1), []string{`bad.yaml:7:17: address "nowhere": want host:port`}},
		{"endpoint weight 0", strings.Replace(good, "[127.0.0.1:9000]", "[{address: 127.0.0.1:9000, weight: 0}]", 1), []string{`bad.yaml:7:51: endpoint weight "0": want 1 to 10000`}},
		{"ring_hash without hash_on", strings.Replace(good, "[127.0.0.1:9000]", "[127.0.0.1:9000]\n    balance: ring_hash", 1), []string{`bad.yaml:8:14: backend "app": balance ring_hash hashes on something`}},
		{"hash_on without a hash", strings.Replace(good, "[127.0.0.1:9000]", "[127.0.0.1:9000]\n    hash_on: {header: x-user}", 1), []string{`bad.yaml:8:14: backend "app": hash_on is for balance ring_hash or maglev, not round_robin`}},
		{"hash_on two things", strings.Replace(good, "[127.0.0.1:9000]", "[127.0.0.1:9000]\n    balance: maglev\n    hash_on: {header: x-user, source_ip: true}", 1), []string{`backend "app": hash_on: give one of header, cookie or source_ip`}},
		{"unknown balance", strings.Replace(good, "[127.0.0.1:9000]", "[127.0.0.1:9000]\n    balance: fastest", 1), []string{`bad.yaml:8:14: invalid value "fastest" for balance; expected one of: round_robin, least_request, random, ring_hash, maglev`}},
		{"syntax", "listeners:\n  - name: [\n", []string{`bad.yaml:`}},
		{"tls files missing", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    tls: {cert: nope.pem, key: nope-key.pem}", 1), []string{`bad.yaml:5:17: listener "web": cannot load certificate`}},
		{"sampling out of range", good + "telemetry:\n  tracing: {sampling: 1.5, exporter: {type: stdout}}\n", []string{`bad.yaml:20:23: sampling 1.5 must be between 0 and 1`}},
		{"unknown exporter", good + "telemetry:\n  tracing: {exporter: {type: jaeger}}\n", []string{`bad.yaml:20:30: invalid value "jaeger" for type`}},
		{"grpc exporter with a URL", good + "telemetry:\n  metrics: {exporter: {type: otlp_grpc, endpoint: \"http://c:4317\"}}\n", []string{`bad.yaml:20:51: otlp_grpc takes host:port, not a URL`}},
		{"unknown access log field", good + "telemetry:\n  access_log: [{fields: [method, response_cod]}]\n", []string{`bad.yaml:20:34: accesslog: unknown field "response_cod"; known fields are`}},
		{"bad access log status", good + "telemetry:\n  access_log: [{status: [5xx, 6xx]}]\n", []string{`bad.yaml:20:31: accesslog: status filter entry "6xx"`}},
		{"access log field twice", good + "telemetry:\n  access_log: [{fields: [method, method]}]\n", []string{`bad.yaml:20:25: accesslog: field "method" is listed twice`}},
		{"insecure with a URL", good + "telemetry:\n  tracing: {exporter: {type: otlp_http, endpoint: \"https://c\", insecure: true}}\n", []string{`bad.yaml:20:74: insecure asks for plain text, and the https:// endpoint for TLS`}},
		{"redis without an address", good + "redis: {db: 1}\n", []string{`bad.yaml:19:8: redis: give address (one server), or addresses with mode cluster or sentinel`}},
		{"redis cluster with address", good + "redis: {mode: cluster, address: \"r:6379\"}\n", []string{`bad.yaml:19:8: redis: mode cluster needs addresses`}},
		{"redis sentinel without master", good + "redis: {mode: sentinel, addresses: [\"s:26379\"]}\n", []string{`bad.yaml:19:8: redis: master_name goes with mode sentinel`}},
		{"redis bad address", good + "redis: {address: localhost}\n", []string{`bad.yaml:19:18: address "localhost": want host:port (missing port in address)`}},
		{"redis cluster db", good + "redis: {mode: cluster, addresses: [\"a:1\", \"b:2\"], db: 2}\n", []string{`bad.yaml:19:55: redis: a cluster has only database 0`}},
		{"negative max_requests", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    circuit_breaker: {max_requests: -1}", 1), []string{`bad.yaml:8:37: backend "app": max_requests must not be negative`}},
		{"discovery beside endpoints", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    discovery: {type: dns, name: \"api.internal:80\"}", 1), []string{`bad.yaml:7:16: backend "app": discovery dns finds the endpoints; leave endpoints out`}},
		{"dns without a port", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "discovery: {type: dns, name: api.internal}", 1), []string{`bad.yaml:7:34: address "api.internal": want host:port`}},
		{"srv with a port", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "discovery: {type: srv, name: \"_http._tcp.api:80\"}", 1), []string{`backend "app": srv name "_http._tcp.api:80": the records give the ports`}},
		{"redis discovery without redis", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "discovery: {type: redis, service: api}", 1), []string{`bad.yaml:7:23: backend "app": discovery redis reads the redis: server, and there is none`}},
		{"endpoints file missing", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "discovery: {type: file, path: nope.yaml}", 1), []string{`bad.yaml:7:35: backend "app": open `, `nope.yaml: no such file`}},
		{"no endpoints", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "balance: random", 1), []string{`backend "app" has no endpoints (list them, or give discovery)`}},
		{"slow start on a hash", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    balance: maglev\n    hash_on: {source_ip: true}\n    slow_start: {window: 30s}", 1), []string{`backend "app": slow_start is for balance round_robin, least_request and random, not maglev`}},
		{"health check bad status", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    health_check: {path: /healthz, expected_statuses: [\"200-99\"]}", 1), []string{`bad.yaml:8:56: backend "app": expected status "200-99": want a code from 100 to 599`}},
		{"tcp health check with a path", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    health_check: {type: tcp, path: /healthz}", 1), []string{`backend "app": path is for type http, not tcp`}},
		{"health check threshold 0", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    health_check: {unhealthy_threshold: -1}", 1), []string{`backend "app": unhealthy_threshold must be at least 1`}},
		{"ejection times upside down", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    outlier_detection: {base_ejection_time: 1m, max_ejection_time: 10s}", 1), []string{`backend "app": max_ejection_time 10s is below base_ejection_time 1m0s`}},
		{"panic over 100", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    panic_threshold: 120", 1), []string{`bad.yaml:8:22: backend "app": 120 is not a percentage from 0 to 100`}},
		{"retry budget over 100", strings.Replace(good, "endpoints: [127.0.0.1:9000]", "endpoints: [127.0.0.1:9000]\n    circuit_breaker: {retry_budget: {budget_percent: 150}}", 1), []string{`backend "app": budget_percent 150: want more than 0, at most 100`}},
		{"host with two wildcards", strings.Replace(good, "path_prefix: /api,", "path_prefix: /api, hosts: [\"*.api.*\"],", 1), []string{`bad.yaml:10:`, `route "api": host "*.api.*" may have a * at its start or at its end, not both`}},
		{"host with an inner wildcard", strings.Replace(good, "path_prefix: /api,", "path_prefix: /api, hosts: [\"a*b\"],", 1), []string{`bad.yaml:10:`, `route "api": host "a*b" may have a * only at its start or its end`}},
		{"host with a path", strings.Replace(good, "path_prefix: /api,", "path_prefix: /api, hosts: [\"a.com/x\"],", 1), []string{`bad.yaml:10:`, `route "api": host "a.com/x" must be a host name`}},
		{"stats tag without a group", good + "telemetry:\n  metrics: {stats_tags: [{tag_name: m, regex: \"_m=x\"}]}\n", []string{`bad.yaml:20:`, `regex "_m=x" needs a capture group`}},
		{"stats tag name", good + "telemetry:\n  metrics: {stats_tags: [{tag_name: 1m, regex: \"(_m=x)\"}]}\n", []string{`bad.yaml:20:`, `tag_name "1m" must be a label name`}},
		{"route metadata not a map of maps", good + "    metadata: {plexus: 3}\n", []string{`bad.yaml:19:`, `route "hello": metadata namespace "plexus" must be a map of values`}},
		{"grpc match with a path", good + "  - name: g\n    match: {path: /x, grpc: {service: shop.Orders}}\n    backend: app\n", []string{`bad.yaml:20:29: route "g": match.grpc is the path /SERVICE/METHOD: use it without path`}},
		{"grpc service with a slash", good + "  - name: g\n    match: {grpc: {service: shop/Orders}}\n    backend: app\n", []string{`bad.yaml:20:29: route "g": "shop/Orders" is not a service's full name`}},
		{"grpc method with a dot", good + "  - name: g\n    match: {grpc: {service: shop.Orders, method: a.b}}\n    backend: app\n", []string{`route "g": "a.b" is not a method name like Get`}},
		{"grpc without a service", good + "  - name: g\n    match: {grpc: {method: Get}}\n    backend: app\n", []string{`missing required field "service" in grpc match`}},
		{"transcode without a backend", strings.Replace(good, "direct_response: {body: hi}", "direct_response: {body: hi}\n    grpc: {transcode: {protos: [a.proto]}}", 1), []string{`bad.yaml:19:23: route "hello": transcoding forwards to a gRPC backend: the route needs backend or backends`}},
		{"transcode to HTTP/1.1", strings.Replace(good, "retry: {attempts: 3}", "retry: {attempts: 3}\n    grpc: {transcode: {protos: [a.proto]}}", 1), []string{`bad.yaml:14:23: route "api": backend "app" speaks HTTP/1.1, and gRPC needs HTTP/2`}},
		{"transcode without protos", good + "    backend: app\n    grpc: {transcode: {services: [a.B]}}\n", []string{`missing required field "protos" in transcode`}},
		{"grpc retry status unknown", strings.Replace(good, "retry: {attempts: 3}", "retry: {attempts: 3, retry_on: [unavailable, aborted]}", 1), []string{`bad.yaml:13:`, `invalid value "aborted" for retry_on`}},
		{"grpc services without HTTP/2", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:0\n    protocols: [http1]\n    grpc: {health: true}", 1), []string{`bad.yaml:6:11: listener "web": gRPC services need HTTP/2: add h2c (or h2 with tls) to protocols`}},
		{"several at once", strings.Replace(strings.Replace(good, "backend: app", "backend: x", 1), "retry: {attempts: 3}", "retry: {attempts: 30}", 1),
			[]string{`bad.yaml:12:14: route "api": no backend named "x"`, `bad.yaml:13:23: route "api": attempts 30 must be between 1 and 10`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatal("loaded; want an error")
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q\nlacks %q", msg, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestRedacted(t *testing.T) {
	dir := t.TempDir()
	c, err := Parse(filepath.Join(dir, "x.yaml"), []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	c.Listeners[0].TLS = &ListenerTLS{Cert: "c.pem", Key: "k.pem"}
	m := c.Redacted().(map[string]any)
	l := m["listeners"].([]any)[0].(map[string]any)
	if tls := l["tls"].(map[string]any); tls["key"] != "[redacted]" || tls["cert"] != "c.pem" {
		t.Errorf("tls = %v", tls)
	}
	if got := l["limits"].(map[string]any)["max_header_bytes"]; got != "64KiB" {
		t.Errorf("max_header_bytes = %v", got)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"512": 512, "64KiB": 64 << 10, "32MiB": 32 << 20, "1 GiB": 1 << 30, "2KB": 2000, "-1": -1} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "12XB", "KiB", "99999999999999GiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) succeeded", in)
		}
	}
}

// TestSchemaFresh fails when plexus.schema.json no longer matches the Go types.
func TestSchemaFresh(t *testing.T) {
	onDisk, err := os.ReadFile("plexus.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, Schema()) {
		t.Fatal("plexus.schema.json is stale: run go generate ./gateway/config")
	}
}

func TestExamplesValidate(t *testing.T) {
	files, _ := filepath.Glob("../../examples/*/plexus.yaml")
	if len(files) == 0 {
		t.Fatal("no example configs found")
	}
	// The quickstart runs the hello filter, built where its run.sh puts it.
	wasmbuild.Place(t, wasmbuild.Go(t, "examples/go/hello"), "../../examples/go/hello.wasm")
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestRouteListsFilterTwice(t *testing.T) {
	dir := t.TempDir()
	wasm := filepath.Join(dir, "f.wasm")
	os.WriteFile(wasm, []byte("\x00asm"), 0o644)
	_, err := Parse(filepath.Join(dir, "x.yaml"), []byte(good+"    filters: [f, f]\nfilters:\n  - {name: f, module: \"file:f.wasm\"}\n"))
	if err == nil || !strings.Contains(err.Error(), `x.yaml:19:18: route "hello" lists filter "f" twice`) {
		t.Fatalf("err = %v", err)
	}
}

func TestNode(t *testing.T) {
	c, err := Parse("node.yaml", []byte(good+`node:
  id: gw-1
  cluster: edge
  metadata:
    region: eu-west-1
    replicas: 3
    labels: {tier: gold}
    zones: [a, b]
`))
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node
	if n == nil || n.ID != "gw-1" || n.Cluster != "edge" {
		t.Fatalf("node = %+v", n)
	}
	if n.Metadata["region"] != "eu-west-1" || n.Metadata["replicas"] != 3 ||
		n.Metadata["labels"].(map[string]any)["tier"] != "gold" || len(n.Metadata["zones"].([]any)) != 2 {
		t.Errorf("metadata = %#v", n.Metadata)
	}
	if got := c.Where("node.metadata.labels.tier"); got != "node.yaml:25:20" {
		t.Errorf("Where = %s", got)
	}
	if m := c.Redacted().(map[string]any)["node"].(map[string]any); m["cluster"] != "edge" {
		t.Errorf("redacted node = %v", m)
	}

	for _, tt := range []struct{ name, yaml, want string }{
		{"unknown key", "node: {id: a, zone: b}\n", `bad.yaml:19:15: unknown field "zone"`},
		{"not JSON", "node:\n  metadata: {ratio: .nan}\n", `bad.yaml:20:13: node metadata cannot be handed to filters as JSON`},
		{"not a map", "node: {metadata: [a]}\n", `bad.yaml:19:18: expected a mapping`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(good+tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestAdminAddress(t *testing.T) {
	// good's listener binds 127.0.0.1:0; these replace it or add an admin: block.
	withAdmin := func(admin string) string { return "admin: " + admin + "\n" + good }
	withListener := func(admin, listener string) string {
		return "admin: " + admin + "\n" + strings.Replace(good, "address: 127.0.0.1:0", "address: "+listener, 1)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"every interface", withAdmin("{address: 0.0.0.0:9901}"),
			`bad.yaml:1:18: admin address 0.0.0.0:9901 listens on every interface: the admin listener has no authentication`},
		{"every interface, IPv6", withAdmin(`{address: "[::]:9901"}`),
			`bad.yaml:1:18: admin address [::]:9901 listens on every interface`},
		{"no host", withAdmin(`{address: ":9901"}`),
			`bad.yaml:1:18: admin address :9901 listens on every interface`},
		{"another address", withAdmin("{address: 10.1.2.3:9901}"),
			`bad.yaml:1:18: admin address 10.1.2.3:9901 is not a loopback address`},
		{"a host name", withAdmin("{address: gw.example.com:9901}"),
			`bad.yaml:1:18: admin address gw.example.com:9901 is not a loopback address`},
		{"how to allow it", withAdmin("{address: 0.0.0.0:9901}"),
			`use a loopback address like 127.0.0.1:9901, or set admin.allow_remote: true to serve it to other hosts`},
		{"a listener's address", withListener("{address: 127.0.0.1:8080}", "127.0.0.1:8080"),
			`bad.yaml:1:18: admin address 127.0.0.1:8080 is also the address of listener "web" (at bad.yaml:5:14); give the admin listener a port of its own`},
		{"a listener on every interface", withListener("{address: 127.0.0.1:8080}", "0.0.0.0:8080"),
			`bad.yaml:1:18: admin address 127.0.0.1:8080 is also the address of listener "web" (at bad.yaml:5:14)`},
		{"admin on every interface", withListener("{address: \"[::]:8080\", allow_remote: true}", "127.0.0.1:8080"),
			`bad.yaml:1:18: admin address [::]:8080 is also the address of listener "web"`},
		{"localhost and 127.0.0.1", withListener("{address: localhost:8080}", "127.0.0.1:8080"),
			`bad.yaml:1:18: admin address localhost:8080 is also the address of listener "web"`},
		{"the default admin address", strings.Replace(good, "address: 127.0.0.1:0", "address: 127.0.0.1:9901", 1),
			`bad.yaml:4:14: listener "web": address 127.0.0.1:9901 takes the admin listener's default address 127.0.0.1:9901; give the listener another port, or set admin.address`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant %q", err, tt.want)
			}
		})
	}

	for _, tt := range []struct{ name, yaml string }{
		{"loopback", withAdmin("{address: 127.0.0.1:9901}")},
		{"the rest of 127/8", withAdmin("{address: 127.0.0.2:9901}")},
		{"IPv6 loopback", withAdmin(`{address: "[::1]:9901"}`)},
		{"localhost", withAdmin("{address: LocalHost:9901}")},
		{"allowed to be remote", withAdmin("{address: 0.0.0.0:9901, allow_remote: true}")},
		{"a remote name, allowed", withAdmin("{address: gw.example.com:9901, allow_remote: true}")},
		{"port 0 twice", withListener("{address: 127.0.0.1:0}", "127.0.0.1:0")},
		{"port 0 on every interface", withListener("{address: 0.0.0.0:0, allow_remote: true}", "0.0.0.0:0")},
		{"other port", withListener("{address: 127.0.0.1:9901}", "0.0.0.0:8080")},
		{"other loopback address", withListener("{address: 127.0.0.2:8080}", "127.0.0.1:8080")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse("ok.yaml", []byte(tt.yaml)); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}

func TestRedactedFilterConfig(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f.wasm"), []byte("\x00asm"), 0o644)
	const filters = `filters:
  - name: f
    module: "file:f.wasm"
    config: {api_key: hunter2}
    vm_config: "token=s3cret"
redis: {address: 127.0.0.1:6379, password: hunter3}
`
	for _, tt := range []struct {
		admin string
		show  bool
	}{{"", false}, {"admin: {show_filter_config: false}\n", false}, {"admin: {show_filter_config: true}\n", true}} {
		c, err := Parse(filepath.Join(dir, "x.yaml"), []byte(tt.admin+good+filters))
		if err != nil {
			t.Fatal(err)
		}
		m := c.Redacted().(map[string]any)
		f := m["filters"].([]any)[0].(map[string]any)
		if tt.show {
			if fmt.Sprint(f["config"]) != "map[api_key:hunter2]" || f["vm_config"] != "token=s3cret" {
				t.Errorf("%q: filter shown as %v, want its config and vm_config", tt.admin, f)
			}
		} else if f["config"] != "[redacted]" || f["vm_config"] != "[redacted]" {
			t.Errorf("%q: filter shown as %v, want config and vm_config [redacted]", tt.admin, f)
		}
		if f["module"] != "file:f.wasm" || f["name"] != "f" {
			t.Errorf("%q: filter shown as %v, want its name and module", tt.admin, f)
		}
		// A field tagged secret stays redacted either way.
		if pw := m["redis"].(map[string]any)["password"]; pw != "[redacted]" {
			t.Errorf("%q: redis password shown as %v", tt.admin, pw)
		}
	}
}

// TestEndpointForms: an endpoint is "host:port" or a mapping with its metadata; a reload
// that moves the metadata in the file without changing it is the same backend.
func TestEndpointForms(t *testing.T) {
	doc := strings.Replace(good, "[127.0.0.1:9000]", "[127.0.0.1:9000, {address: 127.0.0.1:9001, metadata: {plexus: {zone: b}}}]", 1)
	c, err := Parse("good.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	eps := c.Backends[0].Endpoints
	if len(eps) != 2 || eps[0].Address != "127.0.0.1:9000" || eps[0].Metadata != nil || eps[1].Address != "127.0.0.1:9001" {
		t.Fatalf("endpoints %+v", eps)
	}
	md, err := eps[1].MetadataMap()
	if err != nil || md["plexus"]["zone"] != "b" {
		t.Errorf("metadata %v, %v; want plexus.zone b", md, err)
	}
	moved, err := Parse("good.yaml", []byte("\n\n"+doc))
	if err != nil {
		t.Fatal(err)
	}
	if !SameMetadata(eps[1].Metadata, moved.Backends[0].Endpoints[1].Metadata) {
		t.Error("the same metadata two lines down is not the same")
	}
	red := c.Redacted().(map[string]any)["backends"].([]any)[0].(map[string]any)["endpoints"].([]any)
	if red[0] != "127.0.0.1:9000" || red[1].(map[string]any)["address"] != "127.0.0.1:9001" {
		t.Errorf("redacted endpoints %v", red)
	}
}

// TestIncludeFile: a value tagged !file PATH in a filter's configuration is the file's
// contents, PATH relative to the config's directory, and the config says which files it
// read, with their digests; a file that cannot be read is an error at the tag.
func TestIncludeFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "f.wasm"), []byte("\x00asm"), 0o644)
	os.MkdirAll(filepath.Join(dir, "keys"), 0o755)
	os.WriteFile(filepath.Join(dir, "keys", "jwks.json"), []byte(`{"keys": []}`), 0o644)
	os.WriteFile(filepath.Join(dir, "vm.txt"), []byte("vm settings"), 0o644)
	filters := `filters:
  - name: f
    module: "file:f.wasm"
    config: {issuer: x, jwks: !file keys/jwks.json}
    vm_config: !file vm.txt
`
	c, err := Parse(filepath.Join(dir, "x.yaml"), []byte(good+filters))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := c.Filters[0].ConfigBytes(); string(b) != `{"issuer":"x","jwks":"{\"keys\": []}"}` {
		t.Errorf("config %s", b)
	}
	if b, _ := c.Filters[0].VMConfigBytes(); string(b) != "vm settings" {
		t.Errorf("vm_config %q", b)
	}
	inc := c.Included()
	if len(inc) != 2 || !strings.HasPrefix(inc[filepath.Join(dir, "keys", "jwks.json")], "sha256:") {
		t.Errorf("included %v", inc)
	}
	_, err = Parse(filepath.Join(dir, "x.yaml"), []byte(good+strings.Replace(filters, "keys/jwks.json", "keys/nope.json", 1)))
	if err == nil || !strings.Contains(err.Error(), `x.yaml:22:31: filter "f": !file keys/nope.json: open `) {
		t.Errorf("a file that is not there: %v", err)
	}
}
