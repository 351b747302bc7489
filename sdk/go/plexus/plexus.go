package plexus

import (
	"errors"
	"fmt"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// Limit is one rate limit asked of [RateLimit] or [RateLimitMany]: may a request of Cost
// pass on Key, limited to Rate requests per Period in bursts of up to Burst (0: Burst =
// Rate)? Period is rounded up to whole milliseconds.
type Limit = wire.Limit

// Decision is the answer for one [Limit]; see the package documentation.
type Decision = wire.Decision

var (
	// ErrUnavailable is wrapped by the error of a call the gateway could not serve because
	// its shared store (Redis) could not be reached or failed; see "When Redis fails".
	ErrUnavailable = errors.New("plexus: shared store unavailable")
	// ErrBadArgument is wrapped by the error of a call with arguments the SDK or the host
	// refused.
	ErrBadArgument = errors.New("plexus: bad argument")
	// ErrUnsupported is wrapped by the error of a call the host does not offer: the filter
	// runs in a Proxy-Wasm host that is not plexus, or a plexus too old for the function.
	ErrUnsupported = errors.New("plexus: function not offered by the host")
)

// callForeign is proxywasm.CallForeignFunction; tests replace it.
var callForeign = proxywasm.CallForeignFunction

// maxPeriod is the longest Period the format carries: whole milliseconds that fit a
// time.Duration.
const maxPeriod = time.Duration(1<<63-1) / time.Millisecond * time.Millisecond

// Incr adds delta to the counter key, creating it at 0 first if it does not exist, and
// returns the new value. A counter created by Incr expires window after its creation
// (rounded up to whole milliseconds; later increments do not extend it); window 0 means
// it never expires, and the gateway refuses one over 100 years (ErrBadArgument), as it
// does an increment that would overflow. A negative delta subtracts.
func Incr(key string, delta int64, window time.Duration) (int64, error) {
	if err := checkKey(wire.FuncIncr, key); err != nil {
		return 0, err
	}
	if window < 0 || window > maxPeriod {
		return 0, fmt.Errorf("%w: %s: window %v, want 0 (never expires) or up to %v", ErrBadArgument, wire.FuncIncr, window, maxPeriod)
	}
	res, err := call(wire.FuncIncr, wire.AppendIncr(nil, wire.Incr{Key: key, Delta: delta, Window: window}))
	if err != nil {
		return 0, err
	}
	return valueOf(wire.FuncIncr, res)
}

// Get returns the value of the counter key, and found false (with no error) when it does
// not exist or has expired.
func Get(key string) (value int64, found bool, err error) {
	if err := checkKey(wire.FuncGet, key); err != nil {
		return 0, false, err
	}
	res, err := callForeign(wire.FuncGet, wire.AppendGet(nil, key))
	if errors.Is(err, types.ErrorStatusNotFound) {
		// The format's answer for a missing key. A host without the function says the
		// same, so Get cannot report ErrUnsupported.
		return 0, false, nil
	}
	if err != nil {
		return 0, false, statusError(wire.FuncGet, err)
	}
	v, err := valueOf(wire.FuncGet, res)
	return v, err == nil, err
}

// RateLimit decides one request on key: limit.Key is ignored, key is used. It is
// [RateLimitMany] with one limit.
func RateLimit(key string, limit Limit) (Decision, error) {
	limit.Key = key
	ds, err := RateLimitMany([]Limit{limit})
	if err != nil {
		return Decision{}, err
	}
	return ds[0], nil
}

// RateLimitMany decides one request on each of 1 to [wire.MaxKeys] limits in one call (one
// pipelined round trip to Redis) and returns the decisions in the order of the limits.
// Each key is decided on its own: the request is counted on every key that allows it,
// whatever the others decide.
func RateLimitMany(limits []Limit) ([]Decision, error) {
	return rateLimitMany(wire.FuncRateLimit, limits)
}

// LocalRateLimitMany is [RateLimitMany] decided in this gateway process alone, even when
// the gateway has Redis: limits per replica, as Envoy's local_ratelimit. Its keys are not
// [RateLimitMany]'s: the same key names two limits.
func LocalRateLimitMany(limits []Limit) ([]Decision, error) {
	return rateLimitMany(wire.FuncRateLimitLocal, limits)
}

func rateLimitMany(fn string, limits []Limit) ([]Decision, error) {
	if err := checkLimits(limits); err != nil {
		return nil, err
	}
	res, err := call(fn, wire.AppendLimits(nil, limits))
	if err != nil {
		return nil, err
	}
	ds, err := wire.ParseDecisions(res)
	if err != nil {
		return nil, fmt.Errorf("plexus: %s: the host's answer: %w", fn, err)
	}
	if len(ds) != len(limits) {
		return nil, fmt.Errorf("plexus: %s: the host answered %d decisions for %d limits: %w", wire.FuncRateLimit, len(ds), len(limits), wire.ErrMalformed)
	}
	return ds, nil
}

// call calls the foreign function fn with args.
func call(fn string, args []byte) ([]byte, error) {
	res, err := callForeign(fn, args)
	if err != nil {
		return nil, statusError(fn, err)
	}
	return res, nil
}

// statusError is the error for a call of fn the host answered with a status other than OK.
func statusError(fn string, err error) error {
	var kind error
	switch {
	case errors.Is(err, types.ErrorInternalFailure):
		kind = ErrUnavailable
	case errors.Is(err, types.ErrorStatusBadArgument):
		kind = ErrBadArgument
	case errors.Is(err, types.ErrorStatusNotFound), errors.Is(err, types.ErrorUnimplemented):
		kind = ErrUnsupported
	default:
		return fmt.Errorf("plexus: %s: %w", fn, err)
	}
	return fmt.Errorf("%w: %s: %w", kind, fn, err)
}

func valueOf(fn string, res []byte) (int64, error) {
	v, err := wire.ParseValue(res)
	if err != nil {
		return 0, fmt.Errorf("plexus: %s: the host's answer: %w", fn, err)
	}
	return v, nil
}

// checkKey refuses a key the format cannot carry.
func checkKey(fn, key string) error {
	if len(key) < 1 || len(key) > wire.MaxKeyLen {
		return fmt.Errorf("%w: %s: key of %d bytes, want 1 to %d", ErrBadArgument, fn, len(key), wire.MaxKeyLen)
	}
	return nil
}

// checkLimits refuses limits the format cannot carry: the structural rules of
// wire.ParseLimits, checked here so that the error names the problem without a round
// trip (a test keeps the two in step). Whether a limit makes sense is the host's to say.
func checkLimits(ls []Limit) error {
	if len(ls) < 1 || len(ls) > wire.MaxKeys {
		return fmt.Errorf("%w: %s: %d limits, want 1 to %d", ErrBadArgument, wire.FuncRateLimit, len(ls), wire.MaxKeys)
	}
	for i, l := range ls {
		var problem string
		switch {
		case len(l.Key) < 1 || len(l.Key) > wire.MaxKeyLen:
			problem = fmt.Sprintf("key of %d bytes, want 1 to %d", len(l.Key), wire.MaxKeyLen)
		case l.Rate < 0:
			problem = fmt.Sprintf("negative Rate %d", l.Rate)
		case l.Period <= 0 || l.Period > maxPeriod:
			problem = fmt.Sprintf("Period %v, want above 0 (rounded up to whole ms) and at most %v", l.Period, maxPeriod)
		case l.Burst < 0:
			problem = fmt.Sprintf("negative Burst %d", l.Burst)
		case l.Cost < 0:
			problem = fmt.Sprintf("negative Cost %d", l.Cost)
		default:
			continue
		}
		return fmt.Errorf("%w: %s: limit %d (key %.40q): %s", ErrBadArgument, wire.FuncRateLimit, i, l.Key, problem)
	}
	return nil
}
