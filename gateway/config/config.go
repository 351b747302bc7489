// Package config is the model of plexus's one YAML file: its types, strict decoding with
// file:line:col errors, defaults and validation of every reference. A loaded *Config is an
// immutable snapshot; a reload builds a new one.
//
// The file's top-level keys are admin, node, listeners, routes, backends, filters and
// telemetry; the shape
// is the one ../shared/DESIGN.md shows. schema.json beside this file is generated from these types
// (go generate ./gateway/config) so that editors can validate the file.
package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"

	"github.com/plexus-mesh/plexus/gateway/internal/strictyaml"
)

//go:generate go run ./internal/genschema -o plexus.schema.json

// Config is the whole gateway declaration.
type Config struct {
	Admin     *Admin     `yaml:"admin" doc:"The admin listener: readiness, health, active config and routes."`
	Node      *Node      `yaml:"node" doc:"How this gateway names itself to filters: Envoy's node attributes (node.id, node.cluster, node.metadata)."`
	Listeners []Listener `yaml:"listeners" doc:"Where plexus accepts traffic." required:"true"`
	Routes    []Route    `yaml:"routes" doc:"Routes, matched in declared order; the first match wins."`
	Backends  []Backend  `yaml:"backends" doc:"Upstream services that routes forward to."`
	Filters   []Filter   `yaml:"filters" doc:"Wasm filters, each declared once and listed by name on routes."`
	Telemetry *Telemetry `yaml:"telemetry" doc:"Traces, metrics and access logs. Without it: Prometheus metrics on the admin listener's /metrics, no traces, no access log."`
	Redis     *Redis     `yaml:"redis" doc:"Where replicas share counters, rate limits and shared data. Without it, all of that is in-process state: the gateway needs no external service."`
	Registry  *Registry  `yaml:"registry" doc:"How filters with oci:// modules are pulled: credentials, plain-HTTP hosts, CAs, mirrors, the module cache, pull timeouts and how often tags are checked for a new digest."`

	file string               // the path it was loaded from
	pos  strictyaml.Positions // where each value path ("routes[2].backend") stands in file
	sum  [32]byte             // SHA-256 of the bytes it was parsed from
	// included are the files filters' configurations include (!file PATH), and the
	// digest ("sha256:HEX") of what each held when it was read.
	included map[string]string
}

// Admin is the admin listener.
type Admin struct {
	Address          string `yaml:"address" doc:"host:port of the admin listener. A loopback address unless allow_remote is set." default:"127.0.0.1:9901"`
	AllowRemote      bool   `yaml:"allow_remote" doc:"Allow an admin address that is not loopback (the admin listener has no authentication: /config, /clusters and the drain endpoints are open to whoever reaches it); logged as a warning at start."`
	Pprof            bool   `yaml:"pprof" doc:"Serve Go's profiler under /debug/pprof/ on the admin listener."`
	ShowFilterConfig bool   `yaml:"show_filter_config" doc:"Show every filter's config and vm_config in /config; without it they are redacted, since they often carry keys."`
}

// Node is what filters read as Envoy's node attributes. A reload that changes it reloads
// every filter, so that all of them see the new values.
type Node struct {
	ID       string         `yaml:"id" doc:"node.id; the gateway's host name when empty."`
	Cluster  string         `yaml:"cluster" doc:"node.cluster: the group of gateways this one belongs to."`
	Metadata map[string]any `yaml:"metadata" doc:"node.metadata: any YAML values. Filters read node.metadata.KEY (and deeper paths): a string as is, a number or a boolean as its text, a map or a list as JSON."`
}

func (Node) YAMLKind() string { return "node" }

// Listener protocols.
const (
	ProtoHTTP1 = "http1"
	ProtoH2C   = "h2c"
	ProtoH2    = "h2"
	ProtoH3    = "h3"
	ProtoTCP   = "tcp" // L4: bytes to a backend, through network filters (Listener.TCP)
)

// ListenerTCP is an L4 listener's proxying: each connection goes to one endpoint of the
// backend, its bytes through the network filters (Proxy-Wasm's on_new_connection,
// on_downstream_data, on_upstream_data, ...) both ways. With tls on the listener, TLS ends
// at plexus and the backend gets the plain bytes.
type ListenerTCP struct {
	Backend     string        `yaml:"backend" doc:"The backend connections go to (its endpoints in turn, another one after a connect failure); with sni, those whose server name no entry matches (without it, they are closed)."`
	SNI         []SNIRoute    `yaml:"sni" doc:"Backends by the server name the client's TLS ClientHello names, the first match winning: without tls on the listener, TLS passes through to the backend (the ClientHello is read, not answered); with it, the name is the one of the handshake plexus ends."`
	Filters     []string      `yaml:"filters" doc:"Network filters, by name, in the order the client's bytes go through them (the backend's go back through them in reverse)."`
	IdleTimeout time.Duration `yaml:"idle_timeout" doc:"A connection with no bytes either way for this long is closed." default:"1h"`
}

// SNIRoute sends an L4 listener's connections for some server names to a backend.
type SNIRoute struct {
	ServerNames []string `yaml:"server_names" doc:"Server names, as route hosts: exact, or with one wildcard at the start or the end (*.example.com, db-*), or * for any." required:"true"`
	Backend     string   `yaml:"backend" doc:"The backend their connections go to." required:"true"`
}

func (SNIRoute) YAMLKind() string    { return "sni route" }
func (ListenerTCP) YAMLKind() string { return "tcp" }

// Listener accepts client connections on one address.
type Listener struct {
	Name      string        `yaml:"name" doc:"Unique name of the listener." required:"true"`
	Address   string        `yaml:"address" doc:"host:port to listen on (TCP; UDP too for h3)." required:"true"`
	Protocols []string      `yaml:"protocols" doc:"http1 and h2c on plain TCP; http1, h2 and h3 with tls; or tcp alone, an L4 listener (see tcp). Default [http1, h2c] without tls, [http1, h2] with it, [tcp] with tcp." enum:"http1,h2c,h2,h3,tcp"`
	TCP       *ListenerTCP  `yaml:"tcp" doc:"For protocols [tcp]: the backend every connection goes to, and the network filters it goes through."`
	TLS       *ListenerTLS  `yaml:"tls" doc:"Certificate and key; required for h2 and h3."`
	Limits    Limits        `yaml:"limits" doc:"Per-connection and per-request limits."`
	Drain     time.Duration `yaml:"drain_timeout" doc:"How long requests in flight may take to finish on shutdown." default:"15s"`
	// Forwarded headers and path normalization happen before a route is matched.
	TrustedProxies []string      `yaml:"trusted_proxies" doc:"CIDRs (or addresses) of proxies in front of this listener whose X-Forwarded-For, X-Forwarded-Proto and Forwarded headers are kept and appended to; from any other client they are replaced by what the gateway saw."`
	Paths          Paths         `yaml:"paths" doc:"How request paths are normalized before routes are matched and the request is forwarded (Envoy's normalize_path, merge_slashes and path_with_escaped_slashes_action)."`
	Direction      string        `yaml:"direction" doc:"Which traffic the listener takes in a mesh: inbound (to the service beside it) or outbound (from it); filters read it as Envoy's listener_direction (1, 2; 0 when unset)." enum:"inbound,outbound"`
	Metadata       *yaml.Node    `yaml:"metadata" doc:"Listener metadata, which filters read as Envoy's (the listener_metadata and xds.listener_metadata properties): namespaces, each a map of values. It may change on reload."`
	GRPC           *ListenerGRPC `yaml:"grpc" doc:"gRPC services the gateway answers itself on this listener (HTTP/2: h2c or h2), before any route."`
}

func (Listener) YAMLKind() string { return "listener" }

// ListenerGRPC is the gRPC services a listener answers itself.
type ListenerGRPC struct {
	Reflection bool `yaml:"reflection" doc:"Serve gRPC server reflection (grpc.reflection.v1 and v1alpha) for the services of the routes' grpc.transcode protos, so that grpcurl and the like can list and call them."`
	Health     bool `yaml:"health" doc:"Answer grpc.health.v1.Health (Check and Watch): the service \"\" is SERVING until the gateway drains; a service a route names (match.grpc.service, or a transcoded one) is SERVING while its backend has a healthy endpoint, else NOT_SERVING."`
}

func (ListenerGRPC) YAMLKind() string { return "listener grpc" }

// Listener directions (Envoy's core.v3.TrafficDirection, as listener_direction reads).
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"
)

// DirectionCode is the listener's direction as Envoy's enum: 0 unspecified, 1 inbound,
// 2 outbound.
func (l *Listener) DirectionCode() int {
	switch l.Direction {
	case DirectionInbound:
		return 1
	case DirectionOutbound:
		return 2
	}
	return 0
}

// ListenerTLS names PEM files, read at load and on every reload.
type ListenerTLS struct {
	Cert string `yaml:"cert" doc:"PEM certificate chain file." required:"true"`
	Key  string `yaml:"key" doc:"PEM private key file." required:"true" secret:"true"`
}

func (ListenerTLS) YAMLKind() string { return "tls" }

// Limits bound what one client can make the gateway hold.
type Limits struct {
	MaxHeaderBytes       ByteSize      `yaml:"max_header_bytes" doc:"Largest request header block." default:"64KiB"`
	ReadHeaderTimeout    time.Duration `yaml:"read_header_timeout" doc:"Time allowed to read a request's header." default:"10s"`
	IdleTimeout          time.Duration `yaml:"idle_timeout" doc:"Keep-alive connections idle this long are closed." default:"90s"`
	MaxConcurrentStreams uint32        `yaml:"max_concurrent_streams" doc:"HTTP/2 and HTTP/3 streams per connection." default:"100"`
	MaxRequestBodyBytes  ByteSize      `yaml:"max_request_body_bytes" doc:"Largest request body; larger ones get 413. 0 means the default; -1 means no limit." default:"32MiB"`
	RequestBodyTimeout   time.Duration `yaml:"request_body_timeout" doc:"Longest wait for the next bytes of a request body; a client that stalls longer gets 408 (or its stream reset once the response began). 0 means the default; negative disables." default:"30s"`
	ResponseWriteTimeout time.Duration `yaml:"response_write_timeout" doc:"Longest wait for a client to take the next bytes of a response; a client that reads slower is cut off. 0 means the default; negative disables." default:"30s"`
}

func (Limits) YAMLKind() string { return "limits" }

// Escaped-slash actions (Envoy's path_with_escaped_slashes_action).
const (
	EscapedSlashesKeep     = "keep"
	EscapedSlashesReject   = "reject"
	EscapedSlashesUnescape = "unescape"
)

// Paths is a listener's path normalization policy. The normalized path is the one routes
// match and the backend receives, so that the two never disagree.
type Paths struct {
	Normalize      *bool  `yaml:"normalize" doc:"Normalize paths as RFC 3986 section 6 says: percent-encoded unreserved characters decoded (%2E is a dot), dot segments (. and ..) removed, percent-encodings upper-cased. A path that climbs above the root gets 400." default:"true"`
	MergeSlashes   *bool  `yaml:"merge_slashes" doc:"Merge runs of slashes into one (//admin is /admin)." default:"true"`
	EscapedSlashes string `yaml:"escaped_slashes" doc:"What to do with %2F and %5C in a path: keep them (they are not segment separators, for matching nor for the backend), reject the request with 400, or unescape them to / and \\ before normalizing." enum:"keep,reject,unescape" default:"keep"`
}

func (Paths) YAMLKind() string { return "paths" }

// Load-balancing policies (Backend.Balance).
const (
	BalanceRoundRobin   = "round_robin"
	BalanceLeastRequest = "least_request"
	BalanceRandom       = "random"
	BalanceRingHash     = "ring_hash"
	BalanceMaglev       = "maglev"
)

// Backend protocols.
const (
	UpstreamHTTP1 = "http1"
	UpstreamH2C   = "h2c"
	UpstreamH2    = "h2"
)

// Backend is an upstream service: a set of endpoints and how to reach them.
type Backend struct {
	Name           string         `yaml:"name" doc:"Unique name of the backend." required:"true"`
	Endpoints      []Endpoint     `yaml:"endpoints" doc:"The backend's endpoints: each host:port, or {address: host:port, weight: N, metadata: ...}. Required unless discovery finds them."`
	Discovery      *Discovery     `yaml:"discovery" doc:"Where the endpoints come from when they are not listed: DNS (A/AAAA or SRV), a watched file, or replicas registered in Redis. The set follows every change; endpoints that stay keep their connections, health and counters."`
	Balance        string         `yaml:"balance" doc:"Load-balancing policy: round_robin (weighted by the endpoints' weight), least_request (the less loaded of two endpoints picked at random, by active requests over weight), random (weighted), ring_hash or maglev (consistent hashing on hash_on: the same key, the same endpoint, on every replica)." enum:"round_robin,least_request,random,ring_hash,maglev" default:"round_robin"`
	HashOn         *HashOn        `yaml:"hash_on" doc:"For balance ring_hash and maglev: what a request's key is."`
	SlowStart      *SlowStart     `yaml:"slow_start" doc:"For balance round_robin, least_request and random: an endpoint that joins (found by discovery after the first set, or healthy again after failing its health checks) gets a share of the traffic that grows to its full weight over the window."`
	HealthCheck    *HealthCheck   `yaml:"health_check" doc:"Active health checks: each endpoint is checked every interval, and one that fails unhealthy_threshold checks in a row leaves the rotation until it passes healthy_threshold in a row."`
	Outlier        *Outlier       `yaml:"outlier_detection" doc:"Passive health: endpoints whose answers fail (consecutive 5xx or gateway errors, or a success rate far below the others') are ejected for a time that grows with each ejection."`
	PanicThreshold *int           `yaml:"panic_threshold" doc:"Percent of endpoints that must be healthy (by health checks and outlier detection) for the unhealthy ones to be passed over; below it, requests go to all of them, as in Envoy's panic mode. 0 never panics. (Endpoints that just refused a connection are passed over even then.)" default:"50"`
	Protocol       string         `yaml:"protocol" doc:"http1, h2c (HTTP/2 without TLS) or h2 (HTTP/2 over TLS)." enum:"http1,h2c,h2" default:"http1"`
	TLS            *BackendTLS    `yaml:"tls" doc:"Connect with TLS; implied by protocol h2."`
	ConnectTimeout time.Duration  `yaml:"connect_timeout" doc:"Time allowed to open a connection to an endpoint." default:"2s"`
	MaxIdle        int            `yaml:"max_idle_per_endpoint" doc:"Idle keep-alive connections kept per endpoint." default:"128"`
	IdleTimeout    time.Duration  `yaml:"idle_timeout" doc:"Idle upstream connections older than this are closed." default:"60s"`
	CircuitBreaker CircuitBreaker `yaml:"circuit_breaker" doc:"Bounds on what the gateway sends this backend at once; requests beyond them get 503 at once (response flag UO) instead of piling up."`
	Metadata       *yaml.Node     `yaml:"metadata" doc:"Cluster metadata, which filters read as Envoy's (the cluster_metadata and xds.cluster_metadata properties): namespaces, each a map of values."`
}

// MaxEndpointWeight bounds an endpoint's weight.
const MaxEndpointWeight = 10000

// HashOn is what a consistent-hash balancer hashes a request by: one of a header, a
// cookie, or the client's IP.
type HashOn struct {
	Header   string `yaml:"header" doc:"A request header's value (a request without it is spread at random)."`
	Cookie   string `yaml:"cookie" doc:"A cookie's value (a request without it is spread at random)."`
	SourceIP bool   `yaml:"source_ip" doc:"The client's IP address."`
}

func (HashOn) YAMLKind() string { return "hash_on" }

// Endpoint is one address of a backend: written as "host:port", or as a mapping with
// the address, its weight and the endpoint's metadata (Envoy's lb_endpoint metadata, which
// filters read as upstream_host_metadata).
type Endpoint struct {
	Address  string     `yaml:"address"`
	Weight   uint32     `yaml:"weight"` // 1 to 10000; 0 (left out) means 1
	Metadata *yaml.Node `yaml:"metadata"`
}

// UnmarshalYAMLNode reads "host:port" or {address: host:port, metadata: {...}}.
func (e *Endpoint) UnmarshalYAMLNode(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		e.Address = n.Value
		return nil
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch k.Value {
			case "address":
				if v.Kind != yaml.ScalarNode {
					return strictyaml.ErrorAt(v, "endpoint address: want host:port")
				}
				e.Address = v.Value
			case "metadata":
				e.Metadata = v
			case "weight":
				w, err := strconv.ParseUint(v.Value, 10, 32)
				if v.Kind != yaml.ScalarNode || err != nil || w < 1 || w > MaxEndpointWeight {
					return strictyaml.ErrorAt(v, "endpoint weight %q: want 1 to %d", v.Value, MaxEndpointWeight)
				}
				e.Weight = uint32(w)
			default:
				return strictyaml.ErrorAt(k, "unknown field %q in endpoint (want address, weight, metadata)", k.Value)
			}
		}
		if e.Address == "" {
			return strictyaml.ErrorAt(n, "endpoint has no address")
		}
		return nil
	}
	return fmt.Errorf("an endpoint is host:port, or {address: host:port, metadata: ...}")
}

// JSONSchema describes an Endpoint for editors.
func (Endpoint) JSONSchema() map[string]any {
	return map[string]any{
		"oneOf": []any{
			map[string]any{"type": "string", "description": "host:port"},
			map[string]any{
				"type":                 "object",
				"required":             []any{"address"},
				"additionalProperties": false,
				"properties": map[string]any{
					"address":  map[string]any{"type": "string", "description": "host:port"},
					"weight":   map[string]any{"type": "integer", "minimum": 1, "maximum": MaxEndpointWeight, "description": "The endpoint's share of the traffic, relative to the others' (1)."},
					"metadata": map[string]any{"type": "object", "description": "Endpoint metadata, which filters read as Envoy's upstream_host_metadata: namespaces, each a map of values."},
				},
			},
		},
	}
}

// MetadataMap is the endpoint's metadata by namespace, as Route.MetadataMap.
func (e *Endpoint) MetadataMap() (map[string]map[string]any, error) { return metadataMap(e.Metadata) }

// CircuitBreaker bounds a backend's load, as Envoy's circuit_breakers thresholds do.
type CircuitBreaker struct {
	MaxRequests        int          `yaml:"max_requests" doc:"Requests in flight to the backend at most, retries included." default:"1024"`
	MaxConnections     int          `yaml:"max_connections" doc:"Connections open to the backend's endpoints at most (for h2c and h2, per endpoint). A request that needs one more waits, as a pending request, for one to come free." default:"1024"`
	MaxPendingRequests int          `yaml:"max_pending_requests" doc:"Requests that may wait for a connection at once; one more gets 503 at once (response flag UO)." default:"1024"`
	MaxRetries         *int         `yaml:"max_retries" doc:"Retries in flight to the backend at once, over all requests (0: none); a retry beyond it is not made, and the failed attempt's answer stands. retry_budget replaces it." default:"3"`
	RetryBudget        *RetryBudget `yaml:"retry_budget" doc:"Bound retries in flight by a share of the requests in flight instead of max_retries (Envoy's retry budget), so that retries cannot multiply an overload."`
}

func (CircuitBreaker) YAMLKind() string { return "circuit breaker" }

// RetryBudget bounds a backend's retries by its load.
type RetryBudget struct {
	BudgetPercent       float64 `yaml:"budget_percent" doc:"Retries in flight at most, in percent of the requests in flight to the backend." default:"20"`
	MinRetryConcurrency *int    `yaml:"min_retry_concurrency" doc:"Retries in flight allowed whatever the load." default:"3"`
}

func (RetryBudget) YAMLKind() string { return "retry budget" }

// Discovery types (Discovery.Type).
const (
	DiscoveryStatic = "static"
	DiscoveryDNS    = "dns"
	DiscoverySRV    = "srv"
	DiscoveryFile   = "file"
	DiscoveryRedis  = "redis"
)

// Discovery is where a backend's endpoints come from, when the config does not list them.
type Discovery struct {
	Type      string        `yaml:"type" doc:"static (the endpoints listed), dns (A and AAAA records of name), srv (SRV records of name), file (a watched file), redis (replicas registered with a TTL)." enum:"static,dns,srv,file,redis" default:"static"`
	Name      string        `yaml:"name" doc:"dns: host:port, the name to resolve and the port its addresses listen on; srv: the SRV record's name (_http._tcp.api.example.com), whose targets, ports and weights are the endpoints."`
	Resolvers []string      `yaml:"resolvers" doc:"dns and srv: the DNS servers (host:port) to ask, in turn; those of /etc/resolv.conf when empty."`
	Family    string        `yaml:"family" doc:"dns and srv: the addresses to use: any (A and AAAA), v4 (A) or v6 (AAAA)." enum:"any,v4,v6" default:"any"`
	Refresh   time.Duration `yaml:"refresh" doc:"dns and srv: the longest an answer is used before asking again (a record's shorter TTL asks sooner, but never more than once a second); default 30s. redis: how often the registered endpoints are read; default 2s."`
	Path      string        `yaml:"path" doc:"file: a YAML file whose top level is a list of endpoints, as endpoints takes them (relative to this config). It is watched: a change applies at once, and a file that does not parse leaves the last good set in place."`
	Service   string        `yaml:"service" doc:"redis: the name replicas register under: the sorted set plexus:endpoints:SERVICE in the redis: server, each member an endpoint's host:port and its score the unix time in milliseconds at which it expires (plexus register does this)."`
}

func (Discovery) YAMLKind() string { return "discovery" }

// SlowStart ramps a joining endpoint's share up over a window, as Envoy's slow_start_config.
type SlowStart struct {
	Window           time.Duration `yaml:"window" doc:"How long a joining endpoint's share takes to reach its full weight." required:"true"`
	Aggression       float64       `yaml:"aggression" doc:"How the share grows: (elapsed/window)^(1/aggression) of the weight; 1 is linear, more is faster at first." default:"1"`
	MinWeightPercent int           `yaml:"min_weight_percent" doc:"The share an endpoint starts at, in percent of its weight." default:"10"`
}

func (SlowStart) YAMLKind() string { return "slow start" }

// Health check types (HealthCheck.Type).
const (
	HealthHTTP = "http"
	HealthTCP  = "tcp"
	HealthGRPC = "grpc"
)

// HealthCheck is a backend's active health checking.
type HealthCheck struct {
	Type               string        `yaml:"type" doc:"http (a GET answered with an expected status), tcp (a connection accepted) or grpc (grpc.health.v1.Health/Check answered SERVING)." enum:"http,tcp,grpc" default:"http"`
	Path               string        `yaml:"path" doc:"http: the path asked for." default:"/"`
	Host               string        `yaml:"host" doc:"http: the Host header sent; the endpoint's address when empty."`
	ExpectedStatuses   []string      `yaml:"expected_statuses" doc:"http: the statuses that pass, each a code (204) or a range (200-299); 200 alone when empty, as in Envoy."`
	Service            string        `yaml:"service" doc:"grpc: the service asked about; empty asks about the server as a whole."`
	Interval           time.Duration `yaml:"interval" doc:"Time between the checks of one endpoint." default:"5s"`
	Timeout            time.Duration `yaml:"timeout" doc:"Time a check may take; longer is a failure." default:"1s"`
	Jitter             time.Duration `yaml:"jitter" doc:"Up to this much longer between checks, at random, so that the checks of many endpoints and replicas spread out."`
	HealthyThreshold   int           `yaml:"healthy_threshold" doc:"Checks in a row that must pass for an unhealthy endpoint to come back." default:"2"`
	UnhealthyThreshold int           `yaml:"unhealthy_threshold" doc:"Checks in a row that must fail for a healthy endpoint to leave the rotation." default:"3"`
}

func (HealthCheck) YAMLKind() string { return "health check" }

// Outlier is a backend's outlier detection (passive health), as Envoy's outlier_detection.
type Outlier struct {
	Consecutive5xx            *int          `yaml:"consecutive_5xx" doc:"Answers in a row with a 5xx status, or failing to connect, reset or time out, that eject an endpoint; 0 turns it off." default:"5"`
	ConsecutiveGatewayFailure int           `yaml:"consecutive_gateway_failure" doc:"Answers in a row with 502, 503 or 504, or failing to connect, reset or time out, that eject an endpoint; 0 (the default) turns it off."`
	SuccessRate               *SuccessRate  `yaml:"success_rate" doc:"Eject endpoints whose success rate over an interval is far below the others' (statistical outliers); off when left out."`
	Interval                  time.Duration `yaml:"interval" doc:"How often success rates are computed, and ejections that ran out are ended." default:"10s"`
	BaseEjectionTime          time.Duration `yaml:"base_ejection_time" doc:"How long a first ejection lasts; each further one lasts this times the number of ejections (which falls back by one per interval the endpoint stays in)." default:"30s"`
	MaxEjectionTime           time.Duration `yaml:"max_ejection_time" doc:"The longest an ejection lasts." default:"300s"`
	MaxEjectionPercent        int           `yaml:"max_ejection_percent" doc:"Endpoints that may be ejected at once, in percent of them; one may always be." default:"10"`
}

func (Outlier) YAMLKind() string { return "outlier detection" }

// SuccessRate is the success-rate outlier detection.
type SuccessRate struct {
	MinimumHosts  int     `yaml:"minimum_hosts" doc:"Endpoints with request_volume requests in the interval needed for success rates to be compared." default:"5"`
	RequestVolume int     `yaml:"request_volume" doc:"Requests an endpoint must have answered in the interval to be compared." default:"100"`
	StdevFactor   float64 `yaml:"stdev_factor" doc:"An endpoint is ejected when its success rate is below the mean by more than this many standard deviations." default:"1.9"`
}

func (SuccessRate) YAMLKind() string { return "success rate" }

func (Backend) YAMLKind() string { return "backend" }

// BackendTLS configures TLS towards a backend.
type BackendTLS struct {
	CA                 string `yaml:"ca" doc:"PEM file of CA certificates to trust; the system pool when empty."`
	ServerName         string `yaml:"server_name" doc:"Name to verify and send as SNI; the endpoint host when empty."`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" doc:"Do not verify the backend's certificate (testing only)."`
	Cert               string `yaml:"cert" doc:"Client certificate for mutual TLS."`
	Key                string `yaml:"key" doc:"Client key for mutual TLS." secret:"true"`
}

func (BackendTLS) YAMLKind() string { return "backend tls" }

// Filter declares a Wasm filter once; routes list it by name.
type Filter struct {
	Name         string       `yaml:"name" doc:"Unique name of the filter: plugin_name, and its name in logs and metrics." required:"true"`
	Module       string       `yaml:"module" doc:"file:PATH or oci://REFERENCE of the Wasm module." required:"true"`
	RootID       string       `yaml:"root_id" doc:"Root context id handed to the module."`
	VMID         string       `yaml:"vm_id" doc:"VM id: filters with the same vm_id share shared data and queues, and, with the same module and vm_config, one VM (one proxy_on_vm_start; a root context each). The filter's name when empty."`
	VMConfig     *yaml.Node   `yaml:"vm_config" doc:"VM configuration: a string, or YAML handed to the filter as JSON."`
	Config       *yaml.Node   `yaml:"config" doc:"Plugin configuration: a string, or YAML handed to the filter as JSON."`
	Failure      string       `yaml:"failure" doc:"What a request gets when the filter fails: closed answers 503, open skips the filter." enum:"closed,open" default:"closed"`
	LogLevel     string       `yaml:"log_level" doc:"The filter's own log level: its proxy_log calls below it are dropped." enum:"trace,debug,info,warn,error,critical" default:"info"`
	Limits       FilterLimits `yaml:"limits" doc:"Resources one filter may use."`
	SharedData   string       `yaml:"shared_data" doc:"Where the filter's proxy_get_shared_data and proxy_set_shared_data keep their data: local, in this process; redis, in the redis: server, so that every replica sees it, with the same compare-and-swap semantics. Without redis: it stays local." enum:"local,redis" default:"local"`
	PullPolicy   string       `yaml:"pull_policy" doc:"For an oci:// module, as Istio's imagePullPolicy: IfNotPresent uses the cached digest of a tag, Always checks the tag every registry.refresh_interval and swaps in a new digest as a reload does. Default: Always for :latest, IfNotPresent otherwise (a digest reference never needs the registry once cached)." enum:"IfNotPresent,Always"`
	RedisFailure string       `yaml:"redis_failure" doc:"What the filter's calls get when Redis cannot answer: open allows rate-limit decisions (counted, and logged now and then) and returns an error to counter and shared-data calls; closed also answers the request with 503 and x-plexus-error." enum:"open,closed" default:"open"`
}

// FilterLimits bound a filter's instances.
type FilterLimits struct {
	Instances       int           `yaml:"instances" doc:"Instances at most, each serving one request at a time, made as concurrency needs them: the filter's concurrency limit, shared by every route that uses it. Requests beyond it wait for one (up to max_waiting). A request holds its instance until its last callback: a filter with no response phase and no proxy_on_log gives it back once the request is through, before the upstream answers." default:"64"`
	Memory          ByteSize      `yaml:"memory" doc:"Linear memory per instance (a Go-built filter needs a few MiB)." default:"64MiB"`
	CallbackTimeout time.Duration `yaml:"callback_timeout" doc:"Longest one callback may run before the instance is discarded." default:"100ms"`
	NoDeadline      bool          `yaml:"no_callback_deadline" doc:"Run callbacks without a deadline, for filters trusted not to loop (Envoy sets none): no interruption checks are rewritten into the module, which saves a few percent of a filter's time."`
	MaxWaiting      int           `yaml:"max_waiting" doc:"Requests that may wait for an instance when all of them are busy; one more gets 503 at once (response flag UO). A waiting request also gives up at its route's timeout, with 504." default:"1024"`
	HostMemory      ByteSize      `yaml:"host_memory" doc:"Memory one instance may make the host hold for it outside its linear memory: header fields and body bytes it adds, properties it sets, its callouts' requests and the responses waiting for it; a host call beyond it fails with the ABI's error status (BAD_ARGUMENT) and the filter carries on." default:"16MiB"`
	MaxCallouts     int           `yaml:"max_callouts" doc:"HTTP and gRPC callouts one instance may have in flight; one more fails with the ABI's error status (INTERNAL_FAILURE). Callouts also count against their backend's circuit_breaker.max_requests." default:"32"`
	SharedDataBytes ByteSize      `yaml:"shared_data_bytes" doc:"Bytes of shared data (keys and values) the filter's VM may hold; a proxy_set_shared_data beyond it fails." default:"64MiB"`
	QueueDepth      int           `yaml:"queue_depth" doc:"Messages one shared queue of the filter's VM may hold; proxy_enqueue_shared_queue beyond it fails." default:"10000"`
}

func (FilterLimits) YAMLKind() string { return "filter limits" }

// ConfigBytes is the plugin configuration as the filter receives it: a string as is, any
// other YAML value as JSON.
func (f *Filter) ConfigBytes() ([]byte, error) { return nodeBytes(f.Config) }

// VMConfigBytes is the VM configuration, like ConfigBytes.
func (f *Filter) VMConfigBytes() ([]byte, error) { return nodeBytes(f.VMConfig) }

// NodeJSON is a configuration value as a filter receives it: a string as is, any other
// YAML value as JSON; nil for none.
func NodeJSON(n *yaml.Node) ([]byte, error) { return nodeBytes(n) }

func nodeBytes(n *yaml.Node) ([]byte, error) {
	if n == nil || n.Tag == "!!null" {
		return nil, nil
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		return []byte(n.Value), nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(jsonable(v))
}

// jsonable turns what yaml.v3 decodes into values encoding/json accepts (maps with
// non-string keys become string-keyed).
func jsonable(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = jsonable(e)
		}
	case map[any]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range x {
			x[i] = jsonable(e)
		}
	}
	return v
}

func (Filter) YAMLKind() string { return "filter" }

// Route matches requests and says what to do with them: forward to a backend, answer
// directly, or redirect.
type Route struct {
	Name            string          `yaml:"name" doc:"Unique name of the route." required:"true"`
	Match           Match           `yaml:"match" doc:"Conditions a request must meet; all of them. Empty matches every request."`
	Filters         []string        `yaml:"filters" doc:"Names of filters the request passes through, in order."`
	Backend         string          `yaml:"backend" doc:"The backend to forward to."`
	Backends        []WeightedRef   `yaml:"backends" doc:"Split traffic over several backends by weight."`
	Rewrite         *Rewrite        `yaml:"rewrite" doc:"Change the path or host before forwarding."`
	RequestHeaders  *HeaderOps      `yaml:"request_headers" doc:"Headers changed on the way to the backend."`
	ResponseHeaders *HeaderOps      `yaml:"response_headers" doc:"Headers changed on the way back to the client."`
	DirectResponse  *DirectResponse `yaml:"direct_response" doc:"Answer without a backend."`
	Redirect        *Redirect       `yaml:"redirect" doc:"Answer with a redirect."`
	Timeout         *time.Duration  `yaml:"timeout" doc:"Time for the whole upstream exchange, retries included, until the response is complete; 0 disables. Not applied to upgraded connections." default:"15s"`
	Retry           *Retry          `yaml:"retry" doc:"Retry failed attempts."`
	Upgrade         *Upgrade        `yaml:"upgrade" doc:"Protocol upgrades (WebSocket) this route lets through; without it an Upgrade request is forwarded as a plain request, its Upgrade header dropped."`
	Metadata        *yaml.Node      `yaml:"metadata" doc:"Route metadata, which filters read as Envoy's (the route_metadata and xds.route_metadata properties): namespaces (a filter's name, envoy.filters.http.wasm, ...), each a map of values."`
	GRPC            *RouteGRPC      `yaml:"grpc" doc:"gRPC on this route: gRPC-Web translation, and REST+JSON to gRPC transcoding from .proto files."`
}

// RouteGRPC is what a route does for gRPC beyond proxying it (which every route does).
type RouteGRPC struct {
	Web       *bool      `yaml:"web" doc:"Translate gRPC-Web requests (application/grpc-web, application/grpc-web-text) to gRPC for the backend, and its responses back, as Envoy's grpc_web filter does." default:"true"`
	Transcode *Transcode `yaml:"transcode" doc:"Map REST+JSON requests to the backend's gRPC methods by their google.api.http annotations, as Envoy's grpc_json_transcoder does."`
}

func (RouteGRPC) YAMLKind() string { return "route grpc" }

// Transcode names the .proto files whose google.api.http annotations map REST+JSON
// requests to gRPC. They are compiled when the config loads, with no protoc.
type Transcode struct {
	Protos                       []string          `yaml:"protos" doc:".proto files (relative to this config, or to an import path) whose services are transcoded. They are compiled as the config loads; an error names the .proto's file:line:col. A change to one of them, or to a file it imports, reloads the config." required:"true"`
	ImportPaths                  []string          `yaml:"import_paths" doc:"Directories imports are looked up in (relative to this config); the config's own directory when empty. google/api/annotations.proto, google/api/http.proto, google/api/httpbody.proto and google/protobuf's are built in."`
	Services                     []string          `yaml:"services" doc:"The services transcoded, by full name (pkg.Service); every service of protos when empty."`
	PrintOptions                 TranscodePrinting `yaml:"print_options" doc:"How response messages are written as JSON."`
	IgnoreUnknownQueryParameters bool              `yaml:"ignore_unknown_query_parameters" doc:"A query parameter that names no field of the request message is ignored, rather than answered with 400."`
	RejectUnknownMethod          bool              `yaml:"reject_unknown_method" doc:"A request that matches no annotated method is answered with 404, rather than forwarded as it is."`
	MaxRequestBytes              int64             `yaml:"max_request_bytes" doc:"The largest JSON request body transcoded (the listener's body limit applies too)." default:"4194304"`
}

func (Transcode) YAMLKind() string { return "transcode" }

// TranscodePrinting is protojson's output options, named as Envoy's print_options.
type TranscodePrinting struct {
	AddWhitespace              bool `yaml:"add_whitespace" doc:"Indent the JSON."`
	AlwaysPrintPrimitiveFields bool `yaml:"always_print_primitive_fields" doc:"Write fields that hold their default value (0, \"\", false, empty lists) too."`
	AlwaysPrintEnumsAsInts     bool `yaml:"always_print_enums_as_ints" doc:"Write enums as numbers, not names."`
	PreserveProtoFieldNames    bool `yaml:"preserve_proto_field_names" doc:"Write fields under their .proto names (snake_case), not lowerCamelCase."`
}

func (TranscodePrinting) YAMLKind() string { return "transcode print options" }

func (Route) YAMLKind() string { return "route" }

// MetadataMap is the route's metadata by namespace; nil without any.
func (r *Route) MetadataMap() (map[string]map[string]any, error) { return metadataMap(r.Metadata) }

// MetadataMap is the listener's metadata by namespace, as Route.MetadataMap.
func (l *Listener) MetadataMap() (map[string]map[string]any, error) { return metadataMap(l.Metadata) }

// MetadataMap is the backend's metadata by namespace, as Route.MetadataMap.
func (b *Backend) MetadataMap() (map[string]map[string]any, error) { return metadataMap(b.Metadata) }

// MetadataStructs is metadata (a route's, a backend's) as filters read it: a
// google.protobuf.Struct per namespace; nil for none.
func MetadataStructs(md map[string]map[string]any) map[string]*structpb.Struct {
	if md == nil {
		return nil
	}
	out := make(map[string]*structpb.Struct, len(md))
	for ns, m := range md {
		if st, err := structpb.NewStruct(m); err == nil { // JSON values, as metadataMap leaves them
			out[ns] = st
		}
	}
	return out
}

// SameEndpoint reports whether a and b declare one endpoint: the same address, weight (0
// is 1) and metadata (by value).
func SameEndpoint(a, b Endpoint) bool {
	return a.Address == b.Address && max(a.Weight, 1) == max(b.Weight, 1) && SameMetadata(a.Metadata, b.Metadata)
}

// SameMetadata reports whether two metadata nodes hold the same values, wherever they
// stand in their files.
func SameMetadata(a, b *yaml.Node) bool {
	am, _ := metadataMap(a)
	bm, _ := metadataMap(b)
	return reflect.DeepEqual(am, bm)
}

func metadataMap(n *yaml.Node) (map[string]map[string]any, error) {
	if n == nil || n.Tag == "!!null" {
		return nil, nil
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return nil, err
	}
	top, ok := jsonable(v).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("metadata must be a map of namespaces")
	}
	out := make(map[string]map[string]any, len(top))
	for ns, e := range top {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("metadata namespace %q must be a map of values", ns)
		}
		out[ns] = m
	}
	return out, nil
}

// Upgrade opts a route in to protocol upgrades, as Envoy's upgrade_configs does.
type Upgrade struct {
	Protocols   []string      `yaml:"protocols" doc:"Upgrade tokens allowed, case-insensitive (websocket, h2c is never forwarded)." required:"true"`
	IdleTimeout time.Duration `yaml:"idle_timeout" doc:"An upgraded connection with no bytes either way for this long is closed." default:"1h"`
}

func (Upgrade) YAMLKind() string { return "upgrade" }

// Match is a set of conditions, all of which must hold.
type Match struct {
	Hosts      []string      `yaml:"hosts" doc:"Host names: exact (a port is ignored, as requests are matched without theirs), with one * at the start or the end (*.example.com, *-canary, api.*) that stands for one or more characters, or * for any host."`
	Path       string        `yaml:"path" doc:"Exact path."`
	PathPrefix string        `yaml:"path_prefix" doc:"Path prefix, on segment boundaries or not: /api matches /api, /api/x and /apix."`
	PathRegex  string        `yaml:"path_regex" doc:"RE2 regular expression that must match the whole path."`
	Methods    []string      `yaml:"methods" doc:"Request methods, any of."`
	Headers    []HeaderMatch `yaml:"headers" doc:"Header conditions, all of them."`
	Query      []QueryMatch  `yaml:"query" doc:"Query parameter conditions, all of them."`
	GRPC       *GRPCMatch    `yaml:"grpc" doc:"A gRPC call (content-type application/grpc, or gRPC-Web) to this service, and method if given: the path /SERVICE/METHOD."`
}

// GRPCMatch matches gRPC calls by service and method.
type GRPCMatch struct {
	Service string `yaml:"service" doc:"The service's full name, package included: shop.v1.Orders." required:"true"`
	Method  string `yaml:"method" doc:"The method's name (Get); any method of the service when empty."`
}

func (GRPCMatch) YAMLKind() string { return "grpc match" }

func (Match) YAMLKind() string { return "match" }

// HeaderMatch is one header condition. With none of exact, prefix, regex and present set,
// the header must be present.
type HeaderMatch struct {
	Name    string `yaml:"name" doc:"Header name, case-insensitive." required:"true"`
	Exact   string `yaml:"exact" doc:"The value equals this."`
	Prefix  string `yaml:"prefix" doc:"The value starts with this."`
	Regex   string `yaml:"regex" doc:"RE2 expression that must match the whole value."`
	Present *bool  `yaml:"present" doc:"true: the header is present; false: it is absent."`
	Invert  bool   `yaml:"invert" doc:"Match when the condition does not hold."`
}

func (HeaderMatch) YAMLKind() string { return "header match" }

// QueryMatch is one query parameter condition, like HeaderMatch.
type QueryMatch struct {
	Name    string `yaml:"name" doc:"Parameter name, case-sensitive." required:"true"`
	Exact   string `yaml:"exact" doc:"The value equals this."`
	Regex   string `yaml:"regex" doc:"RE2 expression that must match the whole value."`
	Present *bool  `yaml:"present" doc:"true: the parameter is present; false: it is absent."`
}

func (QueryMatch) YAMLKind() string { return "query match" }

// WeightedRef names a backend with its share of the traffic.
type WeightedRef struct {
	Name   string `yaml:"name" doc:"The backend." required:"true"`
	Weight uint32 `yaml:"weight" doc:"Relative share of requests." default:"1"`
}

func (WeightedRef) YAMLKind() string { return "weighted backend" }

// Rewrite changes the request before it is forwarded. At most one of strip_prefix, prefix,
// path and regex.
type Rewrite struct {
	StripPrefix bool          `yaml:"strip_prefix" doc:"Remove the matched path_prefix."`
	Prefix      string        `yaml:"prefix" doc:"Replace the matched path_prefix with this."`
	Path        string        `yaml:"path" doc:"Replace the whole path with this."`
	Regex       *RegexRewrite `yaml:"regex" doc:"Replace every match of pattern in the path."`
	Host        string        `yaml:"host" doc:"Send this Host to the backend."`
}

func (Rewrite) YAMLKind() string { return "rewrite" }

// RegexRewrite substitutes in the path; substitution may use $1, ${name}.
type RegexRewrite struct {
	Pattern      string `yaml:"pattern" doc:"RE2 expression." required:"true"`
	Substitution string `yaml:"substitution" doc:"Replacement; $1 and ${name} refer to groups."`
}

func (RegexRewrite) YAMLKind() string { return "regex rewrite" }

// HeaderOps change headers: remove first, then set (replacing), then add (appending).
type HeaderOps struct {
	Add    map[string]string `yaml:"add" doc:"Append a value to a header."`
	Set    map[string]string `yaml:"set" doc:"Replace a header's values with this one."`
	Remove []string          `yaml:"remove" doc:"Remove these headers."`
}

func (HeaderOps) YAMLKind() string { return "header operations" }

// DirectResponse is a fixed answer.
type DirectResponse struct {
	Status  int               `yaml:"status" doc:"HTTP status code." default:"200"`
	Body    string            `yaml:"body" doc:"Response body."`
	Headers map[string]string `yaml:"headers" doc:"Response headers."`
}

func (DirectResponse) YAMLKind() string { return "direct response" }

// Redirect answers with a Location built from the request and these replacements.
type Redirect struct {
	Status     int    `yaml:"status" doc:"301, 302, 303, 307 or 308." default:"301"`
	Scheme     string `yaml:"scheme" doc:"Replace the scheme (http or https)."`
	Host       string `yaml:"host" doc:"Replace the host."`
	Port       int    `yaml:"port" doc:"Replace the port."`
	Path       string `yaml:"path" doc:"Replace the path."`
	StripQuery bool   `yaml:"strip_query" doc:"Drop the query string."`
}

func (Redirect) YAMLKind() string { return "redirect" }

// Retry conditions.
const (
	Retry5xx            = "5xx"
	RetryGatewayError   = "gateway-error"
	RetryConnectFailure = "connect-failure"
	RetryReset          = "reset"

	// gRPC statuses, as Envoy's retry_on names them: a gRPC call whose response header
	// carries one of them (a trailers-only response: nothing of the answer is out yet) is
	// retried, whatever all_methods says.
	RetryCancelled         = "cancelled"
	RetryDeadlineExceeded  = "deadline-exceeded"
	RetryInternal          = "internal"
	RetryResourceExhausted = "resource-exhausted"
	RetryUnavailable       = "unavailable"
)

// Retry is a route's retry policy.
type Retry struct {
	Attempts      int           `yaml:"attempts" doc:"Tries in all, the first one included." default:"2"`
	RetryOn       []string      `yaml:"retry_on" doc:"5xx (any 5xx answer), gateway-error (502, 503, 504), connect-failure, reset (closed before a response); for gRPC calls, the statuses cancelled, deadline-exceeded, internal, resource-exhausted and unavailable, in a trailers-only response." enum:"5xx,gateway-error,connect-failure,reset,cancelled,deadline-exceeded,internal,resource-exhausted,unavailable"`
	PerTryTimeout time.Duration `yaml:"per_try_timeout" doc:"Time one attempt may take until the response header arrives; 0: only the route timeout."`
	Backoff       Backoff       `yaml:"backoff" doc:"Wait between attempts: full jitter over an exponential ceiling."`
	AllMethods    bool          `yaml:"all_methods" doc:"Retry non-idempotent methods (POST, PATCH) too."`
}

func (Retry) YAMLKind() string { return "retry" }

// Backoff is exponential with full jitter: attempt n waits rand(0, min(max, base*2^n)).
type Backoff struct {
	Base time.Duration `yaml:"base" doc:"Ceiling of the first wait." default:"25ms"`
	Max  time.Duration `yaml:"max" doc:"Largest ceiling." default:"250ms"`
}

func (Backoff) YAMLKind() string { return "backoff" }

// Redis modes.
const (
	RedisSingle   = "single"
	RedisSentinel = "sentinel"
	RedisCluster  = "cluster"
)

// Where a filter's shared data lives (Filter.SharedData).
const (
	SharedLocal = "local"
	SharedRedis = "redis"
)

// Redis is the Redis that replicas share. Its timeouts are short by default: a Redis call
// must never hold a request up by more than tens of milliseconds.
type Redis struct {
	Address      string        `yaml:"address" doc:"host:port of the Redis server (mode single)."`
	Addresses    []string      `yaml:"addresses" doc:"host:port of each cluster node (mode cluster) or sentinel (mode sentinel)."`
	Mode         string        `yaml:"mode" doc:"single, sentinel or cluster." enum:"single,sentinel,cluster" default:"single"`
	MasterName   string        `yaml:"master_name" doc:"The master's name, for mode sentinel."`
	Username     string        `yaml:"username" doc:"ACL user name (Redis 6 and later)."`
	Password     string        `yaml:"password" doc:"Password, or the ACL user's." secret:"true"`
	DB           int           `yaml:"db" doc:"Database number (mode single and sentinel)."`
	TLS          *BackendTLS   `yaml:"tls" doc:"Connect with TLS: ca, server_name, cert and key as a backend's tls."`
	PoolSize     int           `yaml:"pool_size" doc:"Connections per node at most; 0: 10 per CPU."`
	DialTimeout  time.Duration `yaml:"dial_timeout" doc:"Time allowed to connect." default:"100ms"`
	ReadTimeout  time.Duration `yaml:"read_timeout" doc:"Time allowed for a reply." default:"25ms"`
	WriteTimeout time.Duration `yaml:"write_timeout" doc:"Time allowed to send a command." default:"25ms"`
	Timeout      time.Duration `yaml:"timeout" doc:"Longest one call from a filter may take, waiting for a connection included; a call also ends before its filter's callback deadline." default:"50ms"`
	Breaker      RedisBreaker  `yaml:"breaker" doc:"The circuit breaker around the client: after this many failures in a row, calls fail at once, without Redis, until one trial call succeeds."`
}

// RedisBreaker is the circuit breaker around the Redis client.
type RedisBreaker struct {
	Failures int           `yaml:"failures" doc:"Failed calls in a row that open the breaker." default:"5"`
	Cooldown time.Duration `yaml:"cooldown" doc:"How long the breaker stays open before it lets one trial call through." default:"1s"`
}

func (RedisBreaker) YAMLKind() string { return "redis breaker" }

func (Redis) YAMLKind() string { return "redis" }

// Registry configures pulling oci:// modules.
type Registry struct {
	Credentials     []RegistryCredential `yaml:"credentials" doc:"Credentials per registry host; hosts without get docker's config.json's, if any."`
	Insecure        []string             `yaml:"insecure" doc:"Registry hosts (host or host:port) reached over plain HTTP; loopback ones are, without being listed, as docker does."`
	CA              []string             `yaml:"ca" doc:"PEM files of CA certificates trusted for registries, besides the system's."`
	Mirrors         map[string][]string  `yaml:"mirrors" doc:"Per registry host, mirrors (host:port) tried in order before it; a mirror's module is verified against the same digests."`
	Cache           RegistryCache        `yaml:"cache" doc:"The on-disk cache of pulled modules, by digest."`
	PullTimeout     time.Duration        `yaml:"pull_timeout" doc:"Time allowed for one pull (resolving the reference, the manifest and the module), retries included." default:"60s"`
	PullRetries     *int                 `yaml:"pull_retries" doc:"Pulls tried after the first fails, with exponential backoff from 1s." default:"3"`
	RefreshInterval time.Duration        `yaml:"refresh_interval" doc:"How often tags under pull_policy Always are resolved again, and filters whose pull failed retried." default:"1m"`
	Verify          []VerifyPolicy       `yaml:"verify" doc:"Signature policies: a module whose reference a policy matches loads only when signed (cosign's format) by one of the policy's keys; of several matches, the most specific applies. Modules no policy matches load unsigned."`
}

// VerifyPolicy names the keys that must have signed the modules of a registry or
// repository.
type VerifyPolicy struct {
	Match string   `yaml:"match" doc:"A registry (host:port), a repository (host:port/path), or repositories under a path (host:port/path/*)." required:"true"`
	Keys  []string `yaml:"keys" doc:"PEM public key files (cosign.pub, or openssl's): a signature by any one of them will do." required:"true"`
}

func (VerifyPolicy) YAMLKind() string { return "verify policy" }

func (Registry) YAMLKind() string { return "registry" }

// RegistryCredential is a user and password for one registry host.
type RegistryCredential struct {
	Host         string `yaml:"host" doc:"The registry, host or host:port as references name it." required:"true"`
	Username     string `yaml:"username" doc:"User name." required:"true"`
	Password     string `yaml:"password" doc:"Password or token." secret:"true"`
	PasswordFile string `yaml:"password_file" doc:"File holding the password, instead of password."`
}

func (RegistryCredential) YAMLKind() string { return "registry credential" }

// RegistryCache bounds the module cache.
type RegistryCache struct {
	Dir     string   `yaml:"dir" doc:"Directory of the cache; by default plexus's module cache (--module-cache-dir, PLEXUS_MODULE_CACHE_DIR)."`
	MaxSize ByteSize `yaml:"max_size" doc:"Size the cache is kept under, by evicting the least recently used modules no loaded config uses." default:"1GiB"`
}

func (RegistryCache) YAMLKind() string { return "registry cache" }

// Telemetry says where traces, metrics and access logs go.
type Telemetry struct {
	ServiceName string            `yaml:"service_name" doc:"service.name of the traces and metrics plexus exports." default:"plexus"`
	Resource    map[string]string `yaml:"resource" doc:"More OpenTelemetry resource attributes (deployment.environment, service.namespace, ...)."`
	Tracing     *Tracing          `yaml:"tracing" doc:"Traces: a server span per request, a client span per upstream attempt. None without it (trace headers still pass through untouched)."`
	Metrics     Metrics           `yaml:"metrics" doc:"Metrics, following the OpenTelemetry HTTP semantic conventions."`
	AccessLog   []AccessLog       `yaml:"access_log" doc:"Access logs: one line per request, to each of these."`
}

func (Telemetry) YAMLKind() string { return "telemetry" }

// Exporter kinds.
const (
	ExportOTLPGRPC = "otlp_grpc"
	ExportOTLPHTTP = "otlp_http"
	ExportStdout   = "stdout"
)

// Tracing is the tracing configuration.
type Tracing struct {
	Sampling    *float64 `yaml:"sampling" doc:"Fraction of requests that start a trace (0 to 1). A request that arrives with a traceparent follows its caller's decision (parent-based sampling)." default:"1"`
	FilterSpans bool     `yaml:"filter_spans" doc:"A span per filter callback (request headers, body, response headers...), under the request's server span."`
	Exporter    Exporter `yaml:"exporter" doc:"Where spans go." required:"true"`
}

func (Tracing) YAMLKind() string { return "tracing" }

// Exporter is an OpenTelemetry exporter.
type Exporter struct {
	Type     string            `yaml:"type" doc:"otlp_grpc, otlp_http or stdout." enum:"otlp_grpc,otlp_http,stdout" required:"true"`
	Endpoint string            `yaml:"endpoint" doc:"host:port of the collector (otlp_grpc, otlp_http), or an http(s):// URL (otlp_http): a base URL gets /v1/traces or /v1/metrics added, a URL with a path is used as it is. Default: the OTEL_EXPORTER_OTLP_* environment variables, else localhost:4317 (grpc) or localhost:4318 (http)."`
	Insecure bool              `yaml:"insecure" doc:"Plain text to a host:port endpoint, no TLS (with a URL, its scheme says)."`
	Headers  map[string]string `yaml:"headers" doc:"Headers sent with every export (an API key, say)." secret:"true"`
	Timeout  time.Duration     `yaml:"timeout" doc:"Time allowed for one export." default:"10s"`
}

func (Exporter) YAMLKind() string { return "exporter" }

// Metrics is the metrics configuration.
type Metrics struct {
	Enabled    *bool         `yaml:"enabled" doc:"Record metrics. false: nothing is recorded per request, and /metrics and /stats are gone (a gateway whose every microsecond counts, or a benchmark's baseline)." default:"true"`
	Prometheus *bool         `yaml:"prometheus" doc:"Serve the metrics as Prometheus text on the admin listener's /metrics." default:"true"`
	Exporter   *Exporter     `yaml:"exporter" doc:"Push the metrics to an OpenTelemetry collector too."`
	Interval   time.Duration `yaml:"interval" doc:"How often metrics are pushed to the exporter." default:"60s"`
	StatsTags  []StatsTag    `yaml:"stats_tags" doc:"Tags taken out of the names of the metrics filters define, as Envoy's stats_config.stats_tags: in order, each regex that matches a name has its first capture group cut from the name, and its second (else its first) becomes the tag's value. Istio's filters name their metrics like istio_requests_total_reporter=.=source;.;, which (_reporter=\\.=(.*?);\\.;) takes apart."`
}

func (Metrics) YAMLKind() string { return "metrics" }

// StatsTag is one tag taken out of the names of filters' metrics.
type StatsTag struct {
	TagName string `yaml:"tag_name" doc:"The tag's name: a Prometheus label, an OpenTelemetry attribute."`
	Regex   string `yaml:"regex" doc:"A regular expression over the metric's whole name, with one or two capture groups."`
}

func (StatsTag) YAMLKind() string { return "stats tag" }

// AccessLog is one access log sink.
type AccessLog struct {
	Path          string        `yaml:"path" doc:"stdout, stderr, or a file (appended to)." default:"stdout"`
	Format        string        `yaml:"format" doc:"json: an object per line; text: Envoy's default line, or key=value pairs when fields are given." enum:"json,text" default:"json"`
	Fields        []string      `yaml:"fields" doc:"What each line holds, in order: start_time, duration, method, authority, path, protocol, scheme, response_code, response_flags, bytes_received, bytes_sent, upstream_service_time, upstream_host, upstream_cluster, route_name, listener, attempts, request_id, trace_id, span_id, downstream_remote_address, user_agent, referer, x_forwarded_for, filter, grpc_status (a gRPC call's status, as its client got it), req.HEADER, resp.HEADER. Default: Istio's JSON fields."`
	Sample        *float64      `yaml:"sample" doc:"Fraction of requests logged: above 0, at most 1." default:"1"`
	Status        []string      `yaml:"status" doc:"Log only these statuses: classes (4xx), codes (404) or ranges (500-599)."`
	FlushInterval time.Duration `yaml:"flush_interval" doc:"Lines are written at least this often (and whenever 64 KiB are waiting)." default:"1s"`
}

func (AccessLog) YAMLKind() string { return "access log" }
