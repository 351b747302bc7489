package telemetry

// Instruments are the metrics recorded on the request path. They belong to the gateway,
// not to a snapshot: a reload keeps counting into the same series.
type Instruments struct {
	ServerDuration *HistogramVec // Key{A: method, B: route, C: protocol version, D: scheme, N: status}
	RequestSize    *HistogramVec // as serverDuration
	ResponseSize   *HistogramVec // as serverDuration
	Active         *CounterVec   // Key{A: method, D: scheme}
	ClientDuration *HistogramVec // Key{A: method, B: backend, C: endpoint, D: error type, N: status}
	Retries        *CounterVec   // Key{B: route, C: backend}
	LocalReplies   *CounterVec   // Key{B: route, C: cause, N: status}
	FilterDuration *HistogramVec // Key{A: filter, B: phase}
	RedisDuration  *HistogramVec // Key{A: command, D: outcome}
	RedisFailures  *CounterVec   // Key{A: filter, B: cause}
	Decisions      *CounterVec   // Key{A: filter, B: allowed or denied, C: source}
	Pulls          *HistogramVec // Key{A: filter, B: result}: pulls of oci:// modules, by duration
	PullBytes      *CounterVec   // Key{A: filter}
	Swaps          *CounterVec   // Key{A: filter}: a new digest of an oci:// module swapped in
}

// Bucket bounds. Durations follow the semantic conventions' advice, with sub-millisecond
// buckets in front: a gateway's own answers take microseconds.
var (
	durationBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}
	sizeBounds     = []float64{0, 64, 256, 1 << 10, 4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20}
	filterBounds   = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1}
)

// NewInstruments registers the request path's metrics in s.
func NewInstruments(s *Stats) *Instruments {
	return &Instruments{
		ServerDuration: s.Histogram("http.server.request.duration", "s", "Duration of HTTP server requests.", 1e-9, durationBounds),
		RequestSize:    s.Histogram("http.server.request.body.size", "By", "Size of HTTP server request bodies.", 1, sizeBounds),
		ResponseSize:   s.Histogram("http.server.response.body.size", "By", "Size of HTTP server response bodies.", 1, sizeBounds),
		Active:         s.UpDown("http.server.active_requests", "{request}", "Number of active HTTP server requests."),
		ClientDuration: s.Histogram("http.client.request.duration", "s", "Duration of HTTP client requests: each attempt to a backend endpoint.", 1e-9, durationBounds),
		Retries:        s.Counter("plexus.upstream.retries", "{retry}", "Upstream attempts made again after a failed one."),
		LocalReplies:   s.Counter("plexus.local_replies", "{response}", "Responses plexus made itself, by cause."),
		FilterDuration: s.Histogram("plexus.filter.duration", "s", "Time spent in a Wasm filter's callbacks, per callback.", 1e-9, filterBounds),
		RedisDuration:  s.Histogram("plexus.redis.duration", "s", "Redis calls (a pipeline is one), by command and outcome.", 1e-9, filterBounds),
		RedisFailures:  s.Counter("plexus.redis.failures", "{call}", "Filters' calls to shared counters or shared data that Redis did not serve, by filter and cause (timeout, unavailable, breaker_open)."),
		Pulls:          s.Histogram("plexus.registry.pull.duration", "s", "Pulls of filters' oci:// modules (resolving, manifest, module), by filter and result: ok, cached, failed, refused.", 1e-9, durationBounds),
		PullBytes:      s.Counter("plexus.registry.pull.size", "By", "Bytes of modules pulled from registries, by filter."),
		Swaps:          s.Counter("plexus.registry.swaps", "{swap}", "New digests of filters' oci:// modules swapped in, by filter."),
		Decisions:      s.Counter("plexus.ratelimit.decisions", "{decision}", "Rate-limit decisions, by filter, outcome and source: store (Redis, or in process), cache (a key known to be over its limit), fail_open (Redis failed and the filter's redis_failure is open)."),
	}
}
