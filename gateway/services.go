package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/plexus-mesh/plexus/gateway/config"
	"github.com/plexus-mesh/plexus/gateway/internal/counters"
	"github.com/plexus-mesh/plexus/gateway/internal/telemetry"
	"github.com/plexus-mesh/plexus/runtime/proxywasm"
	"github.com/plexus-mesh/plexus/sdk/go/plexus/wire"
)

// services are the host services filters reach with proxy_call_foreign_function (counters
// and rate-limit decisions, sdk/go/plexus) and the shared data of filters declared
// shared_data: redis. Without redis: the store is in process and shared is nil.
type services struct {
	store   counters.Store      // the deny cache, over the breaker, over Redis; or Local
	local   counters.Store      // in this process always: plexus.rate_limit_local
	shared  counters.SharedData // nil without redis:
	breaker *counters.Breaker   // nil without redis:
	timeout time.Duration       // redis.timeout: the longest one call may take
	log     *slog.Logger
}

// register makes the services callable by every filter of rt.
func (sv *services) register(rt *proxywasm.Runtime) {
	rt.RegisterForeignFunction(wire.FuncIncr, sv.incr)
	rt.RegisterForeignFunction(wire.FuncGet, sv.get)
	rt.RegisterForeignFunction(wire.FuncRateLimit, sv.rateLimit)
	rt.RegisterForeignFunction(wire.FuncRateLimitLocal, sv.rateLimitLocal)
	rt.RegisterForeignFunction(wire.FuncSetBackend, sv.setBackend)
	rt.RegisterForeignFunction(wire.FuncSetTimeout, sv.setTimeout)
	rt.RegisterForeignFunction(wire.FuncSetRetry, sv.setRetry)
}

// choice is the routing choice of the calling filter's request, for the route services;
// an error when it calls from no request.
func (sv *services) choice(c proxywasm.Caller, fn string) (*proxywasm.RouteChoice, error) {
	info := c.StreamInfo()
	if info == nil {
		return nil, sv.badArgument(c, fmt.Errorf("%s: no request: call it from a request's callback (its request headers)", fn))
	}
	return &info.Choice, nil
}

// setBackend is plexus.route.set_backend: the request goes to that backend.
func (sv *services) setBackend(c proxywasm.Caller, args []byte) ([]byte, error) {
	name, err := wire.ParseBackend(args)
	if err != nil {
		return nil, sv.badArgument(c, err)
	}
	ch, err := sv.choice(c, wire.FuncSetBackend)
	if err != nil {
		return nil, err
	}
	if fh := of(c); fh.wasmHost != nil {
		if be, _ := fh.backend(name); be == nil {
			return nil, sv.badArgument(c, fmt.Errorf("%s: no backend named %q in the config", wire.FuncSetBackend, name))
		}
	}
	ch.Backend = name
	return nil, nil
}

// setTimeout is plexus.route.set_timeout: the rest of the request is bounded by it.
func (sv *services) setTimeout(c proxywasm.Caller, args []byte) ([]byte, error) {
	d, err := wire.ParseTimeout(args)
	if err != nil {
		return nil, sv.badArgument(c, err)
	}
	ch, err := sv.choice(c, wire.FuncSetTimeout)
	if err != nil {
		return nil, err
	}
	ch.Timeout = d
	return nil, nil
}

// setRetry is plexus.route.set_retry: the request's retry policy, instead of its route's.
func (sv *services) setRetry(c proxywasm.Caller, args []byte) ([]byte, error) {
	r, err := wire.ParseRetry(args)
	if err == nil && (r.Attempts < 1 || r.Attempts > maxChosenAttempts) {
		err = fmt.Errorf("%s: %d attempts, want 1 to %d", wire.FuncSetRetry, r.Attempts, maxChosenAttempts)
	}
	if err != nil {
		return nil, sv.badArgument(c, err)
	}
	ch, err := sv.choice(c, wire.FuncSetRetry)
	if err != nil {
		return nil, err
	}
	p := &proxywasm.RetryChoice{Attempts: int(r.Attempts), PerTryTimeout: r.PerTryTimeout, AllMethods: r.Flags&wire.RetryAllMethods != 0}
	for bit, on := range map[uint32]string{wire.RetryOn5xx: config.Retry5xx, wire.RetryOnGatewayError: config.RetryGatewayError,
		wire.RetryOnConnectFailure: config.RetryConnectFailure, wire.RetryOnReset: config.RetryReset} {
		if r.On&bit != 0 {
			p.RetryOn = append(p.RetryOn, on)
		}
	}
	for _, st := range r.Statuses {
		p.Statuses = append(p.Statuses, int(st))
	}
	ch.Retry = p
	return nil, nil
}

// maxChosenAttempts bounds the attempts a filter may ask for one request.
const maxChosenAttempts = 10

// filterHost is the host one filter is loaded with: the gateway's, and what the services
// need to know of the filter: its namespace, its redis_failure policy, its series.
type filterHost struct {
	*wasmHost
	name       string
	ns         string // the prefix of its keys: its vm_id, escaped
	failClosed bool

	allowed, denied, cached, failOpen *telemetry.Counter // nil without metrics
	failures                          *telemetry.CounterVec

	// One throttle for the filter's mistakes, one for Redis's failures, so that a filter
	// that keeps getting its calls wrong does not hide an outage.
	badArgs, failed throttle
}

// throttle lets a line be logged at most once per failureLogEvery.
type throttle struct {
	mu      sync.Mutex
	logged  time.Time // when a line was last logged
	dropped int       // lines not logged since
}

// allow reports whether to log now, and how many lines were held back before it.
func (t *throttle) allow() (bool, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.logged) < failureLogEvery {
		t.dropped++
		return false, 0
	}
	n := t.dropped
	t.logged, t.dropped = now, 0
	return true, n
}

// failureLogEvery is how often a filter's failing calls are logged at most.
const failureLogEvery = 10 * time.Second

func newFilterHost(h *wasmHost, fc *config.Filter, inst *telemetry.Instruments) *filterHost {
	fh := &filterHost{wasmHost: h, name: fc.Name, ns: "c:" + escapeKey(fc.VMID) + ":", failClosed: fc.RedisFailure == "closed"}
	if inst != nil {
		fh.allowed = inst.Decisions.With(telemetry.Key{A: fc.Name, B: "allowed", C: "store"}, decisionAttrs)
		fh.denied = inst.Decisions.With(telemetry.Key{A: fc.Name, B: "denied", C: "store"}, decisionAttrs)
		fh.cached = inst.Decisions.With(telemetry.Key{A: fc.Name, B: "denied", C: "cache"}, decisionAttrs)
		fh.failOpen = inst.Decisions.With(telemetry.Key{A: fc.Name, B: "allowed", C: "fail_open"}, decisionAttrs)
		fh.failures = inst.RedisFailures
	}
	return fh
}

func decisionAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("plexus.filter", k.A), attribute.String("plexus.decision", k.B), attribute.String("plexus.decision.source", k.C)}
}

// escapeKey makes a vm_id part of a key, so that no two (vm_id, key) pairs make one.
func escapeKey(s string) string {
	return strings.NewReplacer("%", "%25", ":", "%3A").Replace(s)
}

func add(c *telemetry.Counter, n int64) {
	if c != nil {
		c.Add(n)
	}
}

// of is the filterHost of the calling filter. Every filter the gateway loads has one; a
// plugin loaded on the runtime otherwise gets its name and namespace, and the defaults.
func of(c proxywasm.Caller) *filterHost {
	if fh, ok := c.Host().(*filterHost); ok {
		return fh
	}
	return &filterHost{name: c.Filter(), ns: "c:" + escapeKey(c.VMID()) + ":"}
}

// ctx bounds one call to Redis by redis.timeout and by three quarters of what the filter's
// callback has left (at least a watchdog tick less): the rest is for the filter to finish
// its callback, and for the goroutine to be scheduled again on a busy machine once the
// call gave up.
func (sv *services) ctx(c proxywasm.Caller) (context.Context, context.CancelFunc, error) {
	if sv.breaker == nil {
		return context.Background(), func() {}, nil // in process: nothing to wait for
	}
	d := sv.timeout
	if left, ok := c.TimeLeft(); ok {
		left = min(left*3/4, left-5*time.Millisecond)
		if left <= 0 {
			return nil, nil, fmt.Errorf("%w: the filter's callback has no time left for it", counters.ErrRedis)
		}
		d = min(d, left)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	return ctx, cancel, nil
}

// call runs f with a context bounded as ctx says.
func (sv *services) call(c proxywasm.Caller, f func(ctx context.Context) error) error {
	ctx, cancel, err := sv.ctx(c)
	if err != nil {
		return err
	}
	defer cancel()
	return f(ctx)
}

// outcome is what the filter gets for a store call's error: BAD_ARGUMENT for its own
// mistakes, CAS_MISMATCH, or for a failure of the store what failed makes of it (failure
// is then true).
func (sv *services) outcome(c proxywasm.Caller, fn string, err error) (out error, failure bool) {
	switch {
	case err == nil:
		return nil, false
	case errors.Is(err, counters.ErrInvalid), errors.Is(err, counters.ErrOverflow):
		return sv.badArgument(c, err), false // the filter's doing, not the store's
	case errors.Is(err, counters.ErrCasMismatch):
		return proxywasm.ErrCasMismatch, false
	}
	return sv.failed(c, fn, err), true
}

func (sv *services) incr(c proxywasm.Caller, args []byte) ([]byte, error) {
	in, err := wire.ParseIncr(args)
	if err != nil {
		return nil, sv.badArgument(c, err)
	}
	var v int64
	err = sv.call(c, func(ctx context.Context) (err error) {
		v, err = sv.store.Incr(ctx, of(c).ns+in.Key, in.Delta, in.Window)
		return err
	})
	if err, _ := sv.outcome(c, wire.FuncIncr, err); err != nil {
		return nil, err
	}
	return wire.AppendValue(nil, v), nil
}

func (sv *services) get(c proxywasm.Caller, args []byte) ([]byte, error) {
	key, err := wire.ParseGet(args)
	if err != nil {
		return nil, sv.badArgument(c, err)
	}
	var v int64
	var found bool
	err = sv.call(c, func(ctx context.Context) (err error) {
		v, found, err = sv.store.Get(ctx, of(c).ns+key)
		return err
	})
	if err, _ := sv.outcome(c, wire.FuncGet, err); err != nil {
		return nil, err
	}
	if !found {
		return nil, proxywasm.ErrNotFound
	}
	return wire.AppendValue(nil, v), nil
}

func (sv *services) rateLimit(c proxywasm.Caller, args []byte) ([]byte, error) {
	return sv.decide(c, args, sv.store, "", wire.FuncRateLimit)
}

// rateLimitLocal is plexus.rate_limit_local: the same, in this process alone, its keys
// apart from the shared ones.
func (sv *services) rateLimitLocal(c proxywasm.Caller, args []byte) ([]byte, error) {
	return sv.decide(c, args, sv.local, "local:", wire.FuncRateLimitLocal)
}

func (sv *services) decide(c proxywasm.Caller, args []byte, store counters.Store, prefix, fn string) ([]byte, error) {
	ls, err := wire.ParseLimits(args)
	if err != nil {
		return nil, sv.badArgument(c, err)
	}
	fh := of(c)
	reqs := make([]counters.Request, len(ls))
	for k, l := range ls {
		burst := l.Burst
		if burst == 0 {
			burst = l.Rate
		}
		reqs[k] = counters.Request{Key: fh.ns + prefix + l.Key, Limit: counters.Limit{Rate: l.Rate, Period: l.Period, Burst: burst}, Cost: l.Cost}
	}
	var one [1]counters.Decision // one decision, the common case, without a slice to allocate
	ds := one[:]
	err = sv.call(c, func(ctx context.Context) (err error) {
		if len(reqs) > 1 {
			ds, err = store.AllowMany(ctx, reqs)
		} else {
			ds[0], err = store.Allow(ctx, reqs[0].Key, reqs[0].Limit, reqs[0].Cost)
		}
		return err
	})
	out := make([]wire.Decision, len(ls))
	if err != nil {
		err, failure := sv.outcome(c, fn, err)
		if !failure || fh.failClosed {
			return nil, err
		}
		// Fail open: every request is allowed, and says why.
		for k := range out {
			out[k] = wire.Decision{Allowed: true, FailOpen: true}
		}
		add(fh.failOpen, int64(len(ls)))
		return wire.AppendDecisions(nil, out), nil
	}
	for k, d := range ds {
		out[k] = wire.Decision{Allowed: d.Allowed, Cached: d.Cached, Remaining: d.Remaining, RetryAfter: d.RetryAfter, ResetAfter: d.ResetAfter}
		switch {
		case d.Allowed:
			add(fh.allowed, 1)
		case d.Cached:
			add(fh.cached, 1)
		default:
			add(fh.denied, 1)
		}
	}
	return wire.AppendDecisions(nil, out), nil
}

// badArgument is a call the filter got wrong: BAD_ARGUMENT, and a line in the log now and
// then, for the filter's author.
func (sv *services) badArgument(c proxywasm.Caller, err error) error {
	fh := of(c)
	fh.logThrottled(&fh.badArgs, sv.log, "filter's host service call has bad arguments", err)
	return fmt.Errorf("%w: %w", proxywasm.ErrBadArgument, err)
}

// failed is a call the store could not serve: counted by cause, logged now and then, and,
// for a filter whose redis_failure is closed, the request it serves gets a 503.
func (sv *services) failed(c proxywasm.Caller, fn string, err error) error {
	fh := of(c)
	cause := failureCause(err)
	if fh.failures != nil {
		fh.failures.With(telemetry.Key{A: fh.name, B: cause}, failureAttrs).Add(1)
	}
	policy := "open: rate limits allow the request"
	if fh.failClosed {
		policy = "closed: the request gets 503"
		c.SendLocalResponse(proxywasm.LocalResponse{
			Status:     http.StatusServiceUnavailable,
			Details:    "redis_unavailable",
			Body:       []byte("shared store unavailable\n"),
			Headers:    []proxywasm.Field{{Key: strings.ToLower(HeaderError), Value: "filter " + fh.name + ": " + unavailable(cause)}},
			GRPCStatus: -1,
		})
	}
	fh.logThrottled(&fh.failed, sv.log, "shared store: a filter's call failed; its redis_failure is "+policy, fmt.Errorf("%s: %w", fn, err))
	return err
}

func failureAttrs(k telemetry.Key) []attribute.KeyValue {
	return []attribute.KeyValue{attribute.String("plexus.filter", k.A), attribute.String("error.type", k.B)}
}

// unavailable says why the store could not serve a call, for x-plexus-error.
func unavailable(cause string) string {
	if cause == "store_full" {
		return "in-process store full"
	}
	return "redis unavailable (" + cause + ")"
}

// failureCause names why a store call failed, for metrics and the x-plexus-error header:
// timeout, breaker_open, store_full (the in-process store's memory bound), closed, or
// unavailable.
func failureCause(err error) string {
	switch {
	case errors.Is(err, counters.ErrBreakerOpen):
		return "breaker_open"
	case errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timeout"
	case errors.Is(err, counters.ErrFull):
		return "store_full"
	case errors.Is(err, counters.ErrClosed):
		return "closed"
	}
	return "unavailable"
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// logThrottled logs err through t, at most once per failureLogEvery, with how many lines
// were held back since the last one.
func (fh *filterHost) logThrottled(t *throttle, log *slog.Logger, msg string, err error) {
	if ok, n := t.allow(); ok {
		log.Warn(msg, "filter", fh.name, "error", err, "unlogged_since_last", n)
	}
}

// sharedData is proxywasm.SharedData in Redis, for filters declared shared_data: redis.
type sharedData struct{ sv *services }

func (s sharedData) Get(c proxywasm.Caller, key []byte) ([]byte, uint32, error) {
	var v []byte
	var cas uint32
	var found bool
	err := s.sv.call(c, func(ctx context.Context) error {
		return s.sv.breaker.Do(func() (err error) {
			v, cas, found, err = s.sv.shared.Get(ctx, c.VMID(), key)
			return err
		})
	})
	if err, _ := s.sv.outcome(c, "proxy_get_shared_data", err); err != nil {
		return nil, 0, err
	}
	if !found {
		return nil, 0, proxywasm.ErrNotFound
	}
	return v, cas, nil
}

func (s sharedData) Set(c proxywasm.Caller, key, value []byte, cas uint32) error {
	err := s.sv.call(c, func(ctx context.Context) error {
		return s.sv.breaker.Do(func() error { return s.sv.shared.Set(ctx, c.VMID(), key, value, cas) })
	})
	err, _ = s.sv.outcome(c, "proxy_set_shared_data", err)
	return err
}
