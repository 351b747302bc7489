// Package counters keeps the counters and rate-limit decisions that gateway
// replicas share: in Redis ([Redis]) when one is configured, in process
// ([Local]) when not, behind one [Store] interface with the same semantics,
// so the gateway needs no external service and a filter behaves the same on
// either. It also keeps the Proxy-Wasm shared data of filters that share it
// across replicas ([RedisShared]), and has the two wrappers a store in Redis
// wants: a circuit breaker ([NewGuarded]) and a cache of denials
// ([DenyCache]), composed as
//
//	NewDenyCache(NewGuarded(NewRedis(c, "plexus:"), NewBreaker(BreakerConfig{})), 0)
//
// # Counters
//
// [Store.Incr] adds to a counter. A counter created by Incr with a window
// expires that long after its creation (a fixed window: later increments do
// not extend it), so "requests of this client in the current minute" is one
// Incr with a one-minute window. Keys of counters and of rate limits share
// one namespace: use distinct keys for the two.
//
// [Local] bounds its memory: about 64 MiB of keys and entries (1 MiB in each
// of its 64 shards). Clients that make a new key with every request (a limit
// per header value) fill it; then a new key in a full shard, once nothing in
// it has expired, is refused with [ErrFull] (the caller's failure policy
// applies, as for a Redis that cannot be reached), while known keys go on.
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
//
// # Shared data
//
// [RedisShared] is proxy_get_shared_data and proxy_set_shared_data for the
// filters declared shared_data: redis, with the compare-and-swap semantics
// of Envoy's in-process shared data (proxy-wasm-cpp-host, SharedData in
// src/shared_data.cc) across every replica. Get returns a key's value and
// its cas. Set with cas 0, or of a key never set, writes unconditionally;
// with another cas it writes only if the key's cas is still that one, and
// otherwise returns [ErrCasMismatch] and changes nothing. Every successful
// set gives the key a new cas, never 0. So get, compute, set with the cas
// read, and again on ErrCasMismatch loses no update, whichever replicas
// make them. As in Envoy, creating a key is not conditional: two replicas
// that both find a key missing and set it with cas 0 both succeed, the
// second overwriting the first.
//
// A namespace (a plugin's vm_id) is one hash, named prefix + "sd:" + the
// namespace with ':' and '%' percent-escaped (so that a namespace is one
// level of the key tree and the naming stays injective). Its fields are
// "v:"+key, the value, and "c:"+key, its cas in decimal, and "#", a counter
// (HINCRBY) from which new cas values come, mapped onto 1..2³²−1 as
// ((n−1) mod (2³²−1)) + 1. Envoy draws cas values from one counter per
// process, here there is one per namespace: no filter can tell, as a cas is
// only compared with its own key's. Keys and values are any bytes,
// values maybe empty. Get is one HMGET, which reads the value and its cas
// together; Set is one script (shared.lua, by EVALSHA as above) that
// compares and writes. Shared data never expires, as in Envoy, where it
// lasts as long as the process; the hash of a namespace no longer used can
// be deleted by hand. A [Redis] store under the same prefix must not use
// counter or limit keys beginning with "sd:".
//
// # The circuit breaker
//
// A store in Redis fails when Redis does: a call to a Redis that is down
// costs a dial timeout, one that stalls a read timeout, on every request. A
// [Breaker] counts consecutive failures, the errors that wrap [ErrRedis];
// after [BreakerConfig].Failures of them it opens, and for Cooldown every
// call returns [ErrBreakerOpen] at once, without reaching Redis; then the
// next call is a trial (half open: the calls made meanwhile are refused too),
// whose success closes the breaker and whose failure opens it for another
// Cooldown. Every other result is a success, as Redis answered
// ([ErrCasMismatch]), except [ErrClosed], context.Canceled, [ErrInvalid] and
// [ErrOverflow], which count neither way: a caller that gave up, or that asked
// for what no store does (often refused before Redis is asked), says nothing
// about Redis. To the
// caller's failure policy ErrBreakerOpen means what ErrRedis means: the
// store is unavailable. [NewGuarded] puts a store's calls behind a breaker;
// closed, the breaker costs two atomic loads a call.
//
// # Denials cached in process
//
// A key under attack is denied on nearly every request, and each denial is a
// round trip to Redis. A [DenyCache] in front of the store answers those
// denials in process. A key's TAT only grows (an allowed request stores a
// later one, and the key expires only once its TAT is past), so after the
// store's decision start + ResetAfter, with start read on this replica's
// monotonic clock before asking, is at most the key's TAT, whatever the
// other replicas do. The cache keeps that bound for each key the store
// denied (raising it with later decisions on the key) and decides a request
// of cost 1..Burst by GCRA against it: when that denies the request, so
// would the store, with at least that RetryAfter, and the cache answers
// with GCRA's decision on the bound, marked [Decision].Cached. In particular
// the request the store denied is denied in process until its RetryAfter
// has passed, and then reaches the store again. Every other request goes to
// the store: one the bound allows, a cost of 0 (allowed, and a peek at the
// key's state) and a cost above Burst (denied forever, which the store
// says). A denial that can never pass is not cached. The bound is the key's,
// not a limit's, so it serves every limit asked on the key. [Store.AllowMany]
// sends the requests the cache cannot deny to the store in one call, and
// none when it can deny them all.
//
// The cache holds at most max keys (65536 by default); an entry expires
// when its key is back to a full burst. When it is full, a new denial first
// drops the expired entries, at most every 100ms and only when one may have
// expired, and is not cached if it is still full. A cached denial costs
// about 100ns and no allocation, against a round trip; it is also made when
// the breaker behind the cache is open. The price: a key Redis lost (deleted
// by hand to lift a limit, evicted, flushed, gone with a restart or a
// failover to a lagging replica) is still denied by each replica until the
// TAT it remembers has passed; [DenyCache.Forget] drops what it remembers,
// which the gateway does when its breaker closes after a failure.
package counters
