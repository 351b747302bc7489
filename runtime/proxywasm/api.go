// Package proxywasm hosts Proxy-Wasm filters (ABI 0.2.1, also 0.2.0 and 0.1.0) on wazero:
// every env.proxy_* host function, every proxy_on_* callback, WASI preview1 under both
// wasi_snapshot_preview1 and wasi_unstable, pools of instances, limits and failure policy.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
//
// The gateway loads a filter once (Runtime.Load → *Plugin) and, per request, opens a *Stream
// on it: one instance, held by that request alone until Stream.Close. The gateway drives the
// stream's phases (OnRequestHeaders, OnRequestBody, ...) from the request's goroutine; when a
// phase returns Pause, Stream.Wait delivers the filter's callouts and timers to it until the
// filter resumes the stream (proxy_continue_stream), answers locally
// (proxy_send_local_response) or fails.
//
// Host services beyond the ABI are foreign functions, called by name with
// proxy_call_foreign_function: Runtime.RegisterForeignFunction for one that answers within
// the call, Runtime.RegisterAsyncForeignFunction for one that answers later, through
// proxy_on_foreign_function on the calling instance's root context (see ForeignCall).
package proxywasm

import (
	"context"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// Action is what a filter's phase callback asks of the host: the ABI's two actions.
type Action int

const (
	Continue Action = iota // go on to the next filter, then upstream (or to the client)
	Pause                  // hold the stream: Wait until the filter resumes it
)

// Field is one header or trailer field. Keys are lower case. Request headers carry the
// pseudo-headers :method, :path, :authority and :scheme first; response headers carry
// :status first, as Envoy presents them to filters.
type Field struct{ Key, Value string }

// Headers is an ordered header (or trailer) map, edited in place by the filter through
// proxy_add/replace/remove_header_map_value and proxy_set_header_map_pairs. Those set
// Modified, so that the host can skip carrying back a map no filter changed, and Rewritten
// when a change did more than append fields at the end, so that the host can carry back
// just the appended ones otherwise.
type Headers struct {
	Fields    []Field
	Modified  bool
	Rewritten bool
}

// Body is the body data a phase sees: for a filter that paused to buffer, everything
// buffered so far. proxy_set_buffer_bytes edits Data in place (replace, prepend, append).
type Body struct{ Data []byte }

// LocalResponse is what a filter asked to answer with proxy_send_local_response.
type LocalResponse struct {
	Status     int
	Details    string // status_code_details
	Body       []byte
	Headers    []Field
	GRPCStatus int // -1 when not set
}

// StreamInfo is what the gateway knows about a request beyond its headers. Filters read it
// through properties (Envoy attribute paths): source.address, request.id, route_name, ...
// The gateway fills it before OnRequestHeaders and updates the upstream and response
// fields as they become known.
type StreamInfo struct {
	ID                string                      // request.id (x-request-id)
	Start             time.Time                   // request.time
	Protocol          string                      // request.protocol: "HTTP/1.1", "HTTP/2", "HTTP/3"
	Scheme            string                      // "http" or "https"
	SourceAddress     string                      // "ip:port"
	DestAddress       string                      // "ip:port" of the listener
	MTLS              bool                        // connection.mtls
	TLSVersion        string                      // connection.tls_version, "" without TLS
	ServerName        string                      // connection.requested_server_name: the SNI the client sent, "" without
	RouteName         string                      // route_name
	RouteMetadata     map[string]*structpb.Struct // route_metadata, xds.route_metadata: filter metadata by namespace
	ClusterName       string                      // cluster_name: the backend
	ClusterMetadata   map[string]*structpb.Struct // cluster_metadata, xds.cluster_metadata: the backend's, by namespace
	UpstreamAddress   string                      // upstream.address, once connected
	UpstreamMetadata  map[string]*structpb.Struct // upstream_host_metadata: the endpoint's, by namespace
	UpstreamConn      net.Conn                    // the connection to the backend: upstream.local_address, and over TLS (a *tls.Conn) upstream.tls_version and *_peer_certificate
	UpstreamLocalCert *x509.Certificate           // upstream.*_local_certificate: the client certificate plexus presented
	UpstreamFailure   string                      // upstream.transport_failure_reason: why connecting to the backend failed
	BackendLatency    time.Duration               // response.backend_latency: first byte to the backend to its last byte back; 0 until then
	ResponseCode      int                         // response.code, once known
	ResponseSize      int64                       // response.size: body bytes sent to the client, once the body is done; -1 before
	ConnectionID      uint64                      // connection.id: the client connection's, unique in the process; 0 for none
	ResponseFlags     uint64                      // response.flags: Envoy's response flag bits
	CodeDetails       string                      // response.code_details: Envoy's words for why the response is what it is; "" until known
	Attempts          int                         // upstream.request_attempt_count: attempts at the backend so far
	ListenerDirection int                         // listener_direction: 0 unspecified, 1 inbound, 2 outbound
	ListenerMetadata  map[string]*structpb.Struct // listener_metadata, xds.listener_metadata: the listener's, by namespace
	LocalCert         *x509.Certificate           // connection.*_local_certificate: the listener's, with TLS
	PeerCert          *x509.Certificate           // connection.*_peer_certificate: the client's, when it sent one
	State             *FilterState                // what the request's filters set (proxy_set_property), shared by them; nil: each its own
	Termination       string                      // connection.termination_details: why plexus closed the connection; "" while it is open or the peer closed it
	// Choice is what the request's filters chose of its routing through the host's own
	// services (the gateway's plexus.route.* foreign functions, which write it in their
	// callbacks through Caller.StreamInfo); the host reads it as it forwards the request.
	Choice RouteChoice
}

// RouteChoice is a request's routing as its filters chose it; each zero field leaves the
// route's own.
type RouteChoice struct {
	Backend string        // a backend of the gateway, by name
	Timeout time.Duration // the longest the request may take from now on, at most the route's
	Retry   *RetryChoice  // the request's retry policy, replacing the route's
}

// RetryChoice is a retry policy a filter chose for its request.
type RetryChoice struct {
	Attempts      int           // tries in all, the first one included
	RetryOn       []string      // as a route's retry_on: 5xx, gateway-error, connect-failure, reset
	Statuses      []int         // response codes retried on besides (429, 409, ...)
	PerTryTimeout time.Duration // 0: none
	AllMethods    bool          // retry non-idempotent methods too
}

// FilterState is what the filters of one request (or TCP connection) set with
// proxy_set_property, shared among them as Envoy's filter state is: a value one filter
// sets, the others read, by its path or as filter_state.wasm.PATH. The gateway gives
// each request's filters one (StreamInfo.State); its zero value is empty, ready to use.
type FilterState struct {
	mu sync.Mutex
	m  map[string][]byte
}

// HTTPCallResponse is the answer to a proxy_http_call.
type HTTPCallResponse struct {
	Headers  []Field // with :status first
	Body     []byte
	Trailers []Field
}

// Host is what the gateway provides to every filter.
//
// The ctx of a callout (HTTPCall, GRPCStream) says on whose behalf the filter calls out:
// for a call made while a stream's context is effective (in the stream's phase callbacks,
// or in a root callback after proxy_set_effective_context named the stream, as the SDKs do
// before handing a callout's response to the stream's context), it is the ctx the stream
// was created with (Plugin.NewStream); for a call made by the root context (in a tick,
// proxy_on_configure, a callout response, a queue item, a foreign function's answer), it
// is context.Background(). The host reads values from it, such as the request's trace to
// propagate (W3C traceparent), and nothing more: it must not bound the call's lifetime by
// it, neither by its cancellation nor by its deadline. A callout belongs to the root
// context and outlives the stream that made it (its response is still delivered after the
// stream closed; runtime/RATIONALE.md, "Callouts belong to the root context"), and the
// stream's ctx often ends as soon as the request does; the call keeps its own timeout.
type Host interface {
	// HTTPCall starts a request to the backend named cluster. headers carry :method,
	// :path and :authority. It must not block; done is called exactly once, from any
	// goroutine, with the response or an error (a timeout, no such backend, a connect
	// failure). An error returned at once means the call could not start (proxy_http_call
	// then returns BadArgument for an unknown cluster). ctx is read from only (see Host).
	HTTPCall(ctx context.Context, cluster string, headers []Field, body []byte, trailers []Field, timeout time.Duration,
		done func(*HTTPCallResponse, error)) error
	// GRPCStream starts an HTTP/2 request to the backend named cluster for a gRPC call or
	// stream (proxy_grpc_call, proxy_grpc_stream) and returns at once. headers carry
	// :method, :path, :authority and :scheme, then the gRPC request headers and the
	// filter's metadata. The request body is what the handle's Send is given, in order,
	// sent as it comes (the runtime does gRPC's message framing); the response is
	// reported to ev as it arrives. timeout bounds the whole exchange; 0 means none.
	// An error returned at once means the call could not start: one wrapping
	// ErrUnknownCluster for a name that is no backend, any other (a backend that does not
	// speak HTTP/2, say) is shown to the filter as a failure to open, and logged. ctx is
	// read from only (see Host).
	GRPCStream(ctx context.Context, cluster string, headers []Field, timeout time.Duration, ev GRPCEvents) (GRPCHandle, error)
	// NodeID is node.id for filters whose Config.Node names none.
	NodeID() string
}

// ErrUnknownCluster is what Host.GRPCStream wraps for a cluster that is no backend.
var ErrUnknownCluster = errors.New("proxywasm: unknown cluster")

// GRPCHandle is a request started with Host.GRPCStream. Its methods are called from the
// goroutine running the filter, and must not block.
type GRPCHandle interface {
	// Send queues data for the request body, and ends the body after it when end is set
	// (data may then be empty). An error means nothing was queued: the body was ended
	// already, the exchange is over, or the host's buffer is full.
	Send(data []byte, end bool) error
	// Cancel aborts the exchange: an HTTP/2 stream still open is reset (RST_STREAM
	// CANCEL). It may be called more than once, and after the exchange ended.
	Cancel()
}

// GRPCEvents receives the response to a Host.GRPCStream. The host calls its functions
// from one goroutine at a time, in this order: Headers at most once, Data any number of
// times, Trailers at most once, then Done exactly once, also after Cancel.
type GRPCEvents struct {
	Headers  func(fields []Field) // the response headers, :status first
	Data     func(chunk []byte)   // the next bytes of the response body; valid during the call only
	Trailers func(fields []Field) // the response trailers
	// Done ends the exchange: nil when the response ended, else why it did not (an error
	// wrapping context.DeadlineExceeded past the timeout; a reset; a connect failure).
	Done func(err error)
}

// Config is one filter as the config file declares it.
type Config struct {
	Name     string // the filter's name: plugin_name, and the name in logs and metrics
	VMID     string // vm_id: namespaces shared data and queues; Name when empty
	RootID   string // root_id: selects the root context in a module with several
	VMConfig []byte // handed to proxy_on_vm_start
	Plugin   []byte // handed to proxy_on_configure
	FailOpen bool   // a failing filter is skipped (true) or the request gets 503 (false)
	// Sum, when not zero, is the sha256 of the module, which the caller has already (the
	// gateway keys filters by it): Load then does not hash the module again.
	Sum [32]byte

	MaxInstances     int           // instances in the pool at most, created as requests need them; default DefaultMaxInstances
	MaxWaiting       int           // streams that may wait for an instance when all are busy; one more fails at once (see NewStream); default DefaultMaxWaiting; negative: none may wait
	MemoryLimitPages uint32        // linear memory per instance, in 64 KiB pages; default 1024 (64 MiB)
	CallbackTimeout  time.Duration // longest a single callback may run; default 100ms (vm_start and configure get 10× that); negative: no deadline, and no termination checks compiled in (faster; for filters trusted not to loop)
	DoneTimeout      time.Duration // how long a closing instance's root context may take to call proxy_done after its proxy_on_done returned false; default DefaultDoneTimeout
	LogLevel         slog.Level    // the filter's own log level: proxy_log below it is dropped
	Logger           *slog.Logger  // where proxy_log goes, tagged with the filter name

	// Limits on what one instance may make the host hold for it outside its linear memory
	// (runtime/RATIONALE.md, "Host memory"). A host call beyond one fails with an ABI error
	// status (BAD_ARGUMENT; INTERNAL_FAILURE for a callout), and the filter carries on.
	// Zero is the default; negative is no limit.
	//
	// HostMemory is one budget per instance, in bytes: body bytes it adds with
	// proxy_set_buffer_bytes, header map fields it adds or grows (add, replace,
	// set_header_map_pairs), properties it sets (proxy_set_property), the requests of its
	// HTTP callouts in flight, and the callout responses and gRPC stream messages queued
	// for it; each field, property and message counts HostEntryBytes beyond its bytes.
	// What a stream holds is released when the stream closes (body edits also at the next
	// body phase of their direction, when the gateway holds the bytes under its own
	// buffer limit), what a callback holds when it returns; root context properties stay
	// with the instance. A callout response past the budget reaches the filter as a
	// failed call, a gRPC message past it ends the stream with RESOURCE_EXHAUSTED.
	// Default DefaultHostMemory.
	HostMemory int64
	// MaxCallouts bounds the HTTP and gRPC callouts (calls and streams) one instance may
	// have in flight; one more fails with INTERNAL_FAILURE. Default DefaultMaxCallouts.
	MaxCallouts int
	// SharedDataBytes bounds the in-process shared data of the filter's vm_id: keys and
	// values, HostEntryBytes more per key (proxy_set_shared_data past it: BAD_ARGUMENT).
	// The items of each shared queue the filter registers first have a budget of the same
	// size of their own. It does not apply to Config.SharedData, which keeps the data
	// elsewhere. Default DefaultSharedDataBytes.
	SharedDataBytes int64
	// QueueDepth bounds the items of a shared queue the filter registers first
	// (proxy_enqueue_shared_queue past it: BAD_ARGUMENT). Default DefaultQueueDepth.
	QueueDepth int

	Node Node // the node properties: node.id, node.cluster, node.metadata...

	// SharedData keeps the filter's shared data (proxy_get_shared_data,
	// proxy_set_shared_data) somewhere other than in this process, such as a store every
	// replica of the gateway shares; nil keeps it in process, per vm_id.
	SharedData SharedData

	// Trace, when set, is told the name of every host function the filter's instances
	// call, and the status it returned, as the call returns (the conformance checker's
	// host-call traces); nil costs nothing.
	Trace func(call string, status uint32)
}

// SharedData is a filter's shared data outside the process (Config.SharedData). It must
// keep the compare-and-swap semantics of proxy-wasm-cpp-host that filters rely on: a cas
// of 0 sets unconditionally, as does a set of a key that does not exist; any other cas
// must equal the key's current one, or the set fails with ErrCasMismatch and changes
// nothing; every set gives the key a new cas, never 0. Keys are namespaced by
// Caller.VMID. Its methods run on the filter's goroutine, within its callback deadline
// (Caller.TimeLeft); their errors reach the filter as statuses (see RegisterForeignFunction).
type SharedData interface {
	// Get returns key's value and cas, or ErrNotFound.
	Get(c Caller, key []byte) (value []byte, cas uint32, err error)
	// Set stores value under key, given the cas the filter read (0: unconditionally).
	Set(c Caller, key, value []byte, cas uint32) error
}

// Node is what a filter reads as Envoy's node attributes (node.id, node.cluster,
// node.metadata and paths into it; also under xds.node), from the root context as from a
// stream. Metadata holds what YAML or JSON decode to: map[string]any, []any, string, bool,
// numbers; it is read, never changed.
//
// Serialized for the filter: a string as its bytes; a number or a boolean as its JSON text
// ("3", "0.5", "true"); a map or a list as JSON; node itself as a JSON object of id,
// cluster and metadata. (Envoy hands out protobuf for the node and its Struct metadata,
// which no SDK decodes; runtime/RATIONALE.md, "Node properties".)
type Node struct {
	ID       string // node.id; Host.NodeID() when empty
	Cluster  string
	Metadata map[string]any
}

// FailureKind says how a filter failed.
type FailureKind int

const (
	FailTrap        FailureKind = iota + 1 // the module trapped (unreachable, bad memory access, ...)
	FailTimeout                            // a callback ran past CallbackTimeout
	FailMemory                             // the module ran out of its memory limit
	FailABI                                // the module broke the ABI (bad pointer from malloc, ...)
	FailNoInstance                         // no instance could be had: restarts rate-limited (runtime.ErrNoInstance), or every instance busy and MaxWaiting streams waiting already (runtime.ErrPoolFull)
	FailUnavailable                        // the module could not be had (a failed pull): the filter has no instances at all
)

// Failure is a filter failure. The instance it happened on is discarded; the request gets
// the filter's failure policy.
type Failure struct {
	Filter string
	Kind   FailureKind
	Err    error
}

func (f *Failure) Error() string {
	return "filter " + f.Filter + ": " + f.Kind.String() + ": " + f.Err.Error()
}
func (f *Failure) Unwrap() error { return f.Err }

func (k FailureKind) String() string {
	switch k {
	case FailTrap:
		return "trap"
	case FailTimeout:
		return "timeout"
	case FailMemory:
		return "out of memory"
	case FailABI:
		return "ABI violation"
	case FailUnavailable:
		return "module unavailable"
	case FailNoInstance:
		return "no instance"
	}
	return "failure"
}

// PluginStats is a snapshot of a plugin's pool.
type PluginStats struct {
	Instances   int            // live instances (idle and in use)
	InUse       int            // instances held by streams now
	MemoryBytes int64          // linear memory of all live instances
	Failures    map[string]int // by FailureKind.String()
	Restarts    int            // instances created to replace failed ones
	Waiting     int            // streams waiting for an instance now
	HostBytes   int64          // host memory the live instances hold for their guests (Config.HostMemory)
}
