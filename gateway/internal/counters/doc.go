// Package counters keeps the counters and rate-limit decisions that gateway
// replicas share: in Redis ([Redis]) when one is configured, in process
// ([Local]) when not, behind one [Store] interface with the same semantics,
// so the gateway needs no external service and a filter behaves the same on
// either.
//
// # Counters
//
// [Store.Incr] adds to a counter. A counter created by Incr with a window
// expires that long after its creation (a fixed window: later increments do
// not extend it), so "requests of this client in the current minute" is one
// Incr with a one-minute window. Keys of counters and of rate limits share
// one namespace: use distinct keys for the two.
//
// # Rate limits: GCRA
//
// [Store.Allow] decides by the generic cell rate algorithm (GCRA, ITU-T
// I.371; the algorithm of the redis-cell module and of the throttled
// library), which needs one integer per key, the theoretical arrival time
// TAT, and no background refill. All times are whole microseconds. For a
// [Limit] of Rate requests per Period with bursts of up to Burst:
//
//	T = ceil(Period / Rate)            emission interval, at least 1µs
//	L = Burst × T                      how far ahead of now TAT may run
//	                                   (the tolerance τ = (Burst−1)×T, plus T)
//
// A request of cost n at time now, with TAT the stored value (now when the
// key is missing or TAT is in the past):
//
//	TAT' = max(TAT, now) + n×T
//	allowed  iff  TAT' − now ≤ L       (so from idle, exactly Burst unit
//	                                   requests pass at once, the next is denied)
//
// When allowed, TAT' is stored, with an expiry of TAT' − now so that idle keys
// vanish; when denied, nothing changes. The [Decision] reports, with S the
// stored TAT after the decision:
//
//	Remaining  = max(0, floor((L − (S − now)) / T))  unit requests that would pass now
//	RetryAfter = TAT' − L − now if denied, else 0     when this request would pass
//	ResetAfter = S − now                              when the key is back to a full burst
//
// A cost above Burst can never pass: it is denied with RetryAfter −1. A cost of
// 0 is always allowed, records nothing, and reports the key's state.
// T is rounded up to a whole microsecond, so the rate admitted is never
// above Rate; it also means one key cannot admit more than 10⁶ requests/s.
//
// # Why the Redis server's clock
//
// The Redis script reads the time with TIME on the Redis server, not on the
// gateway: replicas' clocks drift and may jump, and a replica whose clock is
// ahead would see every TAT as in the past and admit a full burst. One clock
// for all replicas makes the limit global. [Local] uses the process's
// monotonic clock.
//
// # One round trip
//
// Each decision is one Lua script (KEYS[1] only, so it hashes to one slot
// of a Redis Cluster) run with EVALSHA: one request and one reply on one
// connection, once the script is in the server's cache. After SCRIPT FLUSH
// or a failover to a server without it, the reply is NOSCRIPT and the call
// is repeated once with EVAL, which loads it again. [Store.AllowMany] sends
// all of its decisions in one pipeline: one write and one read for N keys
// (on a cluster, one per node involved). Incr with a window is one script
// too (SET NX PX, then INCRBY). Nothing here retries: a Redis error is
// returned, wrapping [ErrRedis], and the caller decides whether to fail open
// or closed. Retries inside go-redis are the client's configuration, and
// the gateway should turn them off: Options.MaxRetries (−1), as a retried
// decision may be counted twice, and Options.DialerRetries (1), as by default
// a call to a Redis that is down waits through five dials 100ms apart.
// A new pooled connection's handshake (HELLO, CLIENT SETINFO) is a cost of
// dialing, not of a decision.
package counters
