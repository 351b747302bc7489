package plexus

import (
	"fmt"
	"time"

	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// SetBackend sends the request to the gateway's backend name instead of the one its route
// picks (ErrBadArgument when the gateway has none by that name). Call it from
// OnHttpRequestHeaders: later, the request is on its way.
func SetBackend(name string) error {
	if len(name) < 1 || len(name) > wire.MaxNameLen {
		return fmt.Errorf("%w: %s: a name of %d bytes, want 1 to %d", ErrBadArgument, wire.FuncSetBackend, len(name), wire.MaxNameLen)
	}
	_, err := call(wire.FuncSetBackend, []byte(name))
	return err
}

// SetTimeout bounds the rest of the request (upstream attempts and retries included) by
// d, rounded up to whole milliseconds; the route's own timeout still stands when it is
// shorter. Call it from OnHttpRequestHeaders.
func SetTimeout(d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: %s: %v, want more than 0", ErrBadArgument, wire.FuncSetTimeout, d)
	}
	_, err := call(wire.FuncSetTimeout, wire.AppendTimeout(nil, d))
	return err
}

// RetryPolicy is a request's retry policy, as a route's retry: block says.
type RetryPolicy struct {
	Attempts      int           // tries in all, the first one included (1: no retry)
	RetryOn       []string      // 5xx, gateway-error, connect-failure, reset
	Statuses      []int         // response codes retried on besides (429, 409, ...); 16 at most
	PerTryTimeout time.Duration // until an attempt's response header; 0: none
	AllMethods    bool          // retry non-idempotent methods (POST, PATCH) too
}

// SetRetry replaces the route's retry policy for this request. Call it from
// OnHttpRequestHeaders.
func SetRetry(p RetryPolicy) error {
	r := wire.Retry{PerTryTimeout: p.PerTryTimeout}
	if p.Attempts < 1 || p.Attempts > 10 {
		return fmt.Errorf("%w: %s: %d attempts, want 1 to 10", ErrBadArgument, wire.FuncSetRetry, p.Attempts)
	}
	if p.PerTryTimeout < 0 || p.PerTryTimeout > 1<<31*time.Millisecond {
		return fmt.Errorf("%w: %s: per-try timeout %v", ErrBadArgument, wire.FuncSetRetry, p.PerTryTimeout)
	}
	r.Attempts = uint32(p.Attempts)
	for _, on := range p.RetryOn {
		switch on {
		case "5xx":
			r.On |= wire.RetryOn5xx
		case "gateway-error":
			r.On |= wire.RetryOnGatewayError
		case "connect-failure":
			r.On |= wire.RetryOnConnectFailure
		case "reset":
			r.On |= wire.RetryOnReset
		default:
			return fmt.Errorf("%w: %s: retry on %q: want 5xx, gateway-error, connect-failure or reset", ErrBadArgument, wire.FuncSetRetry, on)
		}
	}
	if p.AllMethods {
		r.Flags |= wire.RetryAllMethods
	}
	if len(p.Statuses) > wire.MaxStatuses {
		return fmt.Errorf("%w: %s: %d statuses, at most %d", ErrBadArgument, wire.FuncSetRetry, len(p.Statuses), wire.MaxStatuses)
	}
	for _, st := range p.Statuses {
		if st < 100 || st > 599 {
			return fmt.Errorf("%w: %s: status %d", ErrBadArgument, wire.FuncSetRetry, st)
		}
		r.Statuses = append(r.Statuses, uint32(st))
	}
	_, err := call(wire.FuncSetRetry, wire.AppendRetry(nil, r))
	return err
}
