//go:build wasip1

// Command ratelimit is plexus's global rate-limit filter: each request is decided on
// every configured limit it has a key for, in one call to the gateway
// (plexus.RateLimitMany), shared by every replica through Redis when the gateway has
// redis: and in process otherwise. A denied request gets a local reply (429 by default)
// with retry-after and x-ratelimit-* headers; an allowed one gets the x-ratelimit-*
// headers on its response. See README.md.
package main

import (
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/ratelimit/internal/policy"
	"github.com/plexus-mesh/plexus/sdk/go/plexus"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct {
	types.DefaultPluginContext
	policy *policy.Policy
	// failures throttles the log of failed calls to one line per 10s per instance.
	failures policy.Throttle
	// A request's limits, reused by the next: callbacks never overlap in an instance.
	limits []plexus.Limit
	local  []bool
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	var raw []byte
	var err error
	if size > 0 {
		if raw, err = proxywasm.GetPluginConfiguration(); err != nil {
			proxywasm.LogCriticalf("ratelimit: reading the plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	p.policy, err = policy.Parse(raw)
	if err != nil {
		proxywasm.LogCritical(err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.failures.Every = 10 * time.Second
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p       *plugin
	headers [][2]string // to set on the response
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	ls, local := s.p.policy.ScopedLimits(request{}, s.p.limits, s.p.local)
	s.p.limits, s.p.local = ls, local
	if len(ls) == 0 {
		return types.ActionContinue
	}
	ds, err := decide(ls, local)
	if err != nil {
		// The gateway could not decide. With redis_failure: closed and Redis down
		// (plexus.ErrUnavailable), it has already answered the request with 503 and
		// x-plexus-error: continuing lets that reply go out. With redis_failure: open,
		// the call does not fail: its decisions are allowed, marked FailOpen. Anything
		// else (a limit the gateway refuses, a host without plexus's functions) lets the
		// request pass: a rate limiter that cannot count does not stop traffic.
		if ok, more := s.p.failures.Allow(time.Now()); ok {
			proxywasm.LogWarnf("ratelimit: request not limited: %v (and %d more since the last such line)", err, more)
		}
		return types.ActionContinue
	}
	v := s.p.policy.Verdict(ls, ds)
	if !v.Denied {
		s.headers = v.Headers
		return types.ActionContinue
	}
	if err := proxywasm.SendHttpResponse(v.Status, v.Headers, []byte(policy.Body), -1); err != nil {
		proxywasm.LogErrorf("ratelimit: sending the %d reply: %v", v.Status, err)
		return types.ActionContinue
	}
	return types.ActionPause
}

// decide asks the gateway for the decisions on ls: the global ones in one call (one round
// trip to Redis), the local ones in another (in the gateway's process), in ls's order.
func decide(ls []plexus.Limit, local []bool) ([]plexus.Decision, error) {
	var g, l []plexus.Limit
	for i := range ls {
		if local[i] {
			l = append(l, ls[i])
		} else {
			g = append(g, ls[i])
		}
	}
	if len(l) == 0 {
		return plexus.RateLimitMany(ls)
	}
	if len(g) == 0 {
		return plexus.LocalRateLimitMany(ls)
	}
	gd, err := plexus.RateLimitMany(g)
	if err != nil {
		return nil, err
	}
	ld, err := plexus.LocalRateLimitMany(l)
	if err != nil {
		return nil, err
	}
	ds := make([]plexus.Decision, len(ls))
	for i := range ls {
		if local[i] {
			ds[i], ld = ld[0], ld[1:]
		} else {
			ds[i], gd = gd[0], gd[1:]
		}
	}
	return ds, nil
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	for _, h := range s.headers {
		if err := proxywasm.ReplaceHttpResponseHeader(h[0], h[1]); err != nil {
			proxywasm.LogErrorf("ratelimit: setting %s: %v", h[0], err)
		}
	}
	return types.ActionContinue
}

// request is the current request, as policy reads it.
type request struct{}

func (request) Header(name string) (string, bool) {
	v, err := proxywasm.GetHttpRequestHeader(name)
	return v, err == nil
}

func (request) SourceAddress() (string, bool) {
	v, err := proxywasm.GetProperty([]string{"source", "address"})
	return string(v), err == nil
}
