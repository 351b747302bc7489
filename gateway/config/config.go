// Package config is the model of plexus's one YAML file: its types, strict decoding with
// file:line:col errors, defaults and validation of every reference. A loaded *Config is an
// immutable snapshot; a reload builds a new one.
//
// The file's top-level keys are admin, node, listeners, routes, backends and filters; the shape
// is the one ../shared/DESIGN.md shows. schema.json beside this file is generated from these types
// (go generate ./gateway/config) so that editors can validate the file.
package config

import (
	"encoding/json"
	"fmt"
	"time"

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

	file string               // the path it was loaded from
	pos  strictyaml.Positions // where each value path ("routes[2].backend") stands in file
	sum  [32]byte             // SHA-256 of the bytes it was parsed from
}

// Admin is the admin listener.
type Admin struct {
	Address string `yaml:"address" doc:"host:port of the admin listener." default:"127.0.0.1:9901"`
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
)

// Listener accepts client connections on one address.
type Listener struct {
	Name      string        `yaml:"name" doc:"Unique name of the listener." required:"true"`
	Address   string        `yaml:"address" doc:"host:port to listen on (TCP; UDP too for h3)." required:"true"`
	Protocols []string      `yaml:"protocols" doc:"http1 and h2c on plain TCP; http1, h2 and h3 with tls. Default [http1, h2c] without tls, [http1, h2] with it." enum:"http1,h2c,h2,h3"`
	TLS       *ListenerTLS  `yaml:"tls" doc:"Certificate and key; required for h2 and h3."`
	Limits    Limits        `yaml:"limits" doc:"Per-connection and per-request limits."`
	Drain     time.Duration `yaml:"drain_timeout" doc:"How long requests in flight may take to finish on shutdown." default:"15s"`
}

func (Listener) YAMLKind() string { return "listener" }

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
}

func (Limits) YAMLKind() string { return "limits" }

// Backend protocols.
const (
	UpstreamHTTP1 = "http1"
	UpstreamH2C   = "h2c"
	UpstreamH2    = "h2"
)

// Backend is an upstream service: a set of endpoints and how to reach them.
type Backend struct {
	Name           string        `yaml:"name" doc:"Unique name of the backend." required:"true"`
	Endpoints      []string      `yaml:"endpoints" doc:"host:port of each endpoint." required:"true"`
	Balance        string        `yaml:"balance" doc:"Load-balancing policy." enum:"round_robin" default:"round_robin"`
	Protocol       string        `yaml:"protocol" doc:"http1, h2c (HTTP/2 without TLS) or h2 (HTTP/2 over TLS)." enum:"http1,h2c,h2" default:"http1"`
	TLS            *BackendTLS   `yaml:"tls" doc:"Connect with TLS; implied by protocol h2."`
	ConnectTimeout time.Duration `yaml:"connect_timeout" doc:"Time allowed to open a connection to an endpoint." default:"2s"`
	MaxIdle        int           `yaml:"max_idle_per_endpoint" doc:"Idle keep-alive connections kept per endpoint." default:"128"`
	IdleTimeout    time.Duration `yaml:"idle_timeout" doc:"Idle upstream connections older than this are closed." default:"60s"`
}

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
	Name     string       `yaml:"name" doc:"Unique name of the filter: plugin_name, and its name in logs and metrics." required:"true"`
	Module   string       `yaml:"module" doc:"file:PATH or oci://REFERENCE of the Wasm module." required:"true"`
	RootID   string       `yaml:"root_id" doc:"Root context id handed to the module."`
	VMID     string       `yaml:"vm_id" doc:"VM id: filters with the same vm_id share shared data and queues. The filter's name when empty."`
	VMConfig *yaml.Node   `yaml:"vm_config" doc:"VM configuration: a string, or YAML handed to the filter as JSON."`
	Config   *yaml.Node   `yaml:"config" doc:"Plugin configuration: a string, or YAML handed to the filter as JSON."`
	Failure  string       `yaml:"failure" doc:"What a request gets when the filter fails: closed answers 503, open skips the filter." enum:"closed,open" default:"closed"`
	LogLevel string       `yaml:"log_level" doc:"The filter's own log level: its proxy_log calls below it are dropped." enum:"trace,debug,info,warn,error,critical" default:"info"`
	Limits   FilterLimits `yaml:"limits" doc:"Resources one filter may use."`
}

// FilterLimits bound a filter's instances.
type FilterLimits struct {
	Instances       int           `yaml:"instances" doc:"Instances at most, each serving one request at a time, made as concurrency needs them: the requests in flight on the filter's routes beyond it wait for one." default:"64"`
	Memory          ByteSize      `yaml:"memory" doc:"Linear memory per instance (a Go-built filter needs a few MiB)." default:"64MiB"`
	CallbackTimeout time.Duration `yaml:"callback_timeout" doc:"Longest one callback may run before the instance is discarded." default:"100ms"`
	NoDeadline      bool          `yaml:"no_callback_deadline" doc:"Run callbacks without a deadline, for filters trusted not to loop (Envoy sets none): no interruption checks are rewritten into the module, which saves a few percent of a filter's time."`
}

func (FilterLimits) YAMLKind() string { return "filter limits" }

// ConfigBytes is the plugin configuration as the filter receives it: a string as is, any
// other YAML value as JSON.
func (f *Filter) ConfigBytes() ([]byte, error) { return nodeBytes(f.Config) }

// VMConfigBytes is the VM configuration, like ConfigBytes.
func (f *Filter) VMConfigBytes() ([]byte, error) { return nodeBytes(f.VMConfig) }

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
}

func (Route) YAMLKind() string { return "route" }

// Match is a set of conditions, all of which must hold.
type Match struct {
	Hosts      []string      `yaml:"hosts" doc:"Host names, exact or *.suffix; the port is ignored."`
	Path       string        `yaml:"path" doc:"Exact path."`
	PathPrefix string        `yaml:"path_prefix" doc:"Path prefix, on segment boundaries or not: /api matches /api, /api/x and /apix."`
	PathRegex  string        `yaml:"path_regex" doc:"RE2 regular expression that must match the whole path."`
	Methods    []string      `yaml:"methods" doc:"Request methods, any of."`
	Headers    []HeaderMatch `yaml:"headers" doc:"Header conditions, all of them."`
	Query      []QueryMatch  `yaml:"query" doc:"Query parameter conditions, all of them."`
}

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
)

// Retry is a route's retry policy.
type Retry struct {
	Attempts      int           `yaml:"attempts" doc:"Tries in all, the first one included." default:"2"`
	RetryOn       []string      `yaml:"retry_on" doc:"5xx (any 5xx answer), gateway-error (502, 503, 504), connect-failure, reset (closed before a response)." enum:"5xx,gateway-error,connect-failure,reset"`
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
