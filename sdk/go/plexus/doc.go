// Package plexus is the Go SDK for the host services of the plexus gateway: shared
// counters and global rate limits, for Proxy-Wasm filters written with
// github.com/proxy-wasm/proxy-wasm-go-sdk and built with plain Go:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filter.wasm .
//
// Each function is one synchronous proxy_call_foreign_function (Proxy-Wasm ABI 0.2.1, the
// ABI's door for host extensions): the filter's callback waits for the answer, and gets
// it as a return value, not in a later callback. The byte format of those calls is in
// package [github.com/plexus-mesh/plexus/sdk/go/plexus/wire], whose types this package
// re-exports, and in sdk/go/README.md for filters in other languages. The functions may
// be called from any callback of a plugin or HTTP context (OnPluginStart, OnTick,
// OnHttpRequestHeaders, ...). Under another Proxy-Wasm host (Envoy, say) they return
// [ErrUnsupported], except [Get], which cannot tell a missing function from a missing
// key and reports not found.
//
// # Where the state lives
//
// When the gateway's configuration has a redis: section, counters and rate limits live
// in Redis, and every replica of the gateway sees the same ones: a limit of 100 requests
// per second is 100 for the whole fleet. Without redis:, they live in the gateway's
// process, with the same semantics, shared by every instance of every filter in that
// process but not with other replicas. Filters need no change between the two.
//
// Keys are namespaced per vm_id: a filter's "hits" is not another VM's "hits", so two
// filters share counters only when they share a vm_id. Counters and rate limits share one
// namespace: use distinct keys for the two (the ratelimit filter prefixes its keys with
// "ratelimit:"). Keys are 1 to [wire.MaxKeyLen] bytes of anything.
//
// # Counters
//
// [Incr] adds to a counter and returns the new value; a counter that does not exist starts
// at 0. A counter created with a window expires that long after its creation, a fixed
// window that later increments do not extend, so "requests of this client in the current
// minute" is one Incr with a one-minute window:
//
//	n, err := plexus.Incr("minute:"+client, 1, time.Minute)
//
// Windows are whole milliseconds (rounded up); 0 means the counter never expires. An
// increment that would overflow int64 fails. [Get] reads a counter without changing it.
//
// # Rate limits: GCRA
//
// [RateLimit] asks whether one request may pass on a key, limited to Rate requests per
// Period in bursts of up to Burst, and counts it when it may. The decision is made by
// the generic cell rate algorithm (GCRA, the algorithm of redis-cell and of the throttled
// library), which keeps one timestamp per key: requests are admitted at a steady Rate
// per Period, and an idle key admits a burst of up to Burst at once (Burst 0 means Burst
// = Rate). A request of Cost n counts as n requests; Cost 0 is always allowed, counts
// nothing, and reports the key's state. A Cost above Burst can never pass.
//
// A [Decision] says:
//
//   - Allowed: the request passes, and was counted. A denied request is not counted.
//   - Remaining: how many more requests of cost 1 would pass now.
//   - RetryAfter: how long until this request would pass: 0 when allowed, negative when
//     it never can (its Cost is above Burst). What a Retry-After header carries.
//   - ResetAfter: how long until the key is back to a full burst, as if idle.
//   - Cached: denied by the gateway's local cache of keys already over their limit,
//     without a round trip to Redis; the other fields are computed from what the
//     gateway last learned of the key, so RetryAfter may be a little short, never long.
//   - FailOpen: see below.
//
// [RateLimitMany] decides several keys (up to [wire.MaxKeys]) in one call, one
// pipelined round trip to Redis, the decisions in the order of the limits. Each key is
// decided on its own: a request allowed on one key and denied on another is counted on
// the first. Limits are whole milliseconds per Period, rounded up, and at least 1ms; one
// key admits at most 10⁶ requests per second.
//
// # One round trip, one clock
//
// Every call is one round trip to Redis (a Lua script, run with EVALSHA), so a decision is
// atomic: two replicas deciding on one key at once never both take its last token. The
// script reads the time on the Redis server, not on the gateway, so that replicas whose
// clocks drift or jump still share one limit. Without redis:, the gateway's monotonic
// clock is used. The call blocks the filter's callback for that round trip: its latency
// is Redis's, bounded by the redis: section's timeouts.
//
// # When Redis fails
//
// A filter's redis_failure setting in the gateway's configuration says what happens when
// Redis cannot be reached or answers with an error:
//
//   - open (fail open): rate-limit decisions come back allowed, with FailOpen set and the
//     other fields zero, and the call returns no error: traffic flows unlimited while
//     Redis is down. Counters cannot be faked, so [Incr] and [Get] return an error
//     wrapping [ErrUnavailable].
//   - closed (fail closed): the gateway answers the request itself with 503 and an
//     x-plexus-error header, and the call returns an error wrapping [ErrUnavailable]. A
//     filter may simply return types.ActionContinue then: the local reply the gateway
//     already sent is what the client gets. When there is no request (OnTick, say), the
//     call just fails.
//
// The gateway logs each failure; a filter need not.
//
// # Errors
//
// Every error wraps one of [ErrUnavailable], [ErrBadArgument], [ErrUnsupported] or
// [wire.ErrMalformed] (a result the SDK cannot read: a host speaking another version of
// the format), and names the function called. Arguments the format cannot carry (an
// empty key, a negative Period or Cost, more than [wire.MaxKeys] limits) are refused
// before any call, wrapping ErrBadArgument; arguments it carries but the host refuses
// (a Rate below 1, a limit that would take Redis beyond its exact integers) wrap
// ErrBadArgument too, and the gateway's log says why.
package plexus
