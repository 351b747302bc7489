package accesslog

// Flags are the response flags of a request, a set of reasons why it ended as it
// did, printed as Envoy prints %RESPONSE_FLAGS%: short codes joined by ",", or "-"
// when none is set.
//
// NR, UH, UO, UT, URX, UF, UC, UPE and DC mean what they mean in Envoy
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#command-operators),
// so that dashboards and habits carry over. FF and FL are plexus's own: Envoy has no
// generic code for a filter that failed or answered by itself (its filters each have
// their own, such as RL for the rate limiter). A route's direct response has no flag,
// as in Envoy (whose DR means something else: the client reset the stream).
type Flags uint32

const (
	NoRoute                Flags = 1 << iota // NR: no route matched (404).
	NoHealthyUpstream                        // UH: the backend has no healthy endpoint (503).
	UpstreamOverflow                         // UO: the circuit breaker is open (503).
	UpstreamTimeout                          // UT: the upstream request timed out (504).
	RetriesExhausted                         // URX: the retry or attempt limit was reached.
	UpstreamConnectFailure                   // UF: connecting to the endpoint failed (502 in plexus, 503 in Envoy).
	UpstreamReset                            // UC: the upstream connection was terminated.
	UpstreamProtocolError                    // UPE: the upstream response was malformed.
	DownstreamTerminated                     // DC: the client went away.
	FilterFailed                             // FF: a Wasm filter failed and the chain fails closed (plexus).
	FilterLocalReply                         // FL: a filter answered the request itself (plexus).
)

// flagInfo is indexed by bit number, in the order String prints.
var flagInfo = [...]struct{ code, name string }{
	{"NR", "no_route"},
	{"UH", "no_healthy_upstream"},
	{"UO", "upstream_overflow"},
	{"UT", "upstream_timeout"},
	{"URX", "retries_exhausted"},
	{"UF", "upstream_connect_failure"},
	{"UC", "upstream_reset"},
	{"UPE", "upstream_protocol_error"},
	{"DC", "downstream_terminated"},
	{"FF", "filter_failed"},
	{"FL", "filter_local_reply"},
}

// envoyBits are Envoy's bits for the flags it has (its StreamInfo response flags, as
// filters read them in response.flags); FF and FL have none.
var envoyBits = [...]uint64{
	1 << 8,  // NR: NoRouteFound
	1 << 1,  // UH: NoHealthyUpstream
	1 << 7,  // UO: UpstreamOverflow
	1 << 2,  // UT: UpstreamRequestTimeout
	1 << 15, // URX: UpstreamRetryLimitExceeded
	1 << 5,  // UF: UpstreamConnectionFailure
	1 << 6,  // UC: UpstreamConnectionTermination
	1 << 23, // UPE: UpstreamProtocolError
	1 << 14, // DC: DownstreamConnectionTermination
	0,       // FF
	0,       // FL
}

// Envoy returns the flags as Envoy's response flag bits, for response.flags.
func (f Flags) Envoy() uint64 {
	var bits uint64
	for i, b := range envoyBits {
		if f&(1<<i) != 0 {
			bits |= b
		}
	}
	return bits
}

// String returns the set codes joined by ",", or "-" when none is set.
func (f Flags) String() string { return string(f.append(nil)) }

// Each calls fn for each set flag, in the order String prints them, with its code
// ("UT") and a snake_case cause name ("upstream_timeout") fit for a metric label.
func (f Flags) Each(fn func(code, name string)) {
	for i, fi := range flagInfo {
		if f&(1<<i) != 0 {
			fn(fi.code, fi.name)
		}
	}
}

func (f Flags) append(dst []byte) []byte {
	n := len(dst)
	for i, fi := range flagInfo {
		if f&(1<<i) != 0 {
			if len(dst) > n {
				dst = append(dst, ',')
			}
			dst = append(dst, fi.code...)
		}
	}
	if len(dst) == n {
		dst = append(dst, '-')
	}
	return dst
}
