// Command gate is the gate example on sdk/go: the upstream Proxy-Wasm Go SDK, with plexus's
// host services (sdk/go/plexus) besides. It counts every request in the metric
// gate_requests, answers one that carries x-deny: yes with 403 itself, and marks the
// others, and their responses, with x-gate: go-plexus; and it counts the allowed ones in a
// counter every replica of the gateway shares (through Redis, when the gateway has it),
// whose value the response carries as x-gate-count; and x-gate-backend: NAME sends the
// request to that backend (with a timeout and a retry policy). See ../README.md.
package main

import (
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/sdk/go/plexus"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext {
		return &plugin{requests: proxywasm.DefineCounterMetric("gate_requests")}
	})
}

type plugin struct {
	types.DefaultPluginContext
	requests proxywasm.MetricCounter
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p     *plugin
	count int64
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.p.requests.Increment(1)
	if deny, _ := proxywasm.GetHttpRequestHeader("x-deny"); deny == "yes" {
		proxywasm.SendHttpResponse(403, [][2]string{{"x-gate", "go-plexus"}}, []byte("denied by go-plexus\n"), -1)
		return types.ActionPause
	}
	proxywasm.AddHttpRequestHeader("x-gate", "go-plexus")
	s.count, _ = plexus.Incr("gate:allowed", 1, 0)
	if b, err := proxywasm.GetHttpRequestHeader("x-gate-backend"); err == nil {
		// The request's routing, through plexus: this backend, a 5s bound, one retry.
		plexus.SetBackend(b)
		plexus.SetTimeout(5 * time.Second)
		plexus.SetRetry(plexus.RetryPolicy{Attempts: 2, RetryOn: []string{"5xx"}})
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-gate", "go-plexus")
	proxywasm.AddHttpResponseHeader("x-gate-count", strconv.FormatInt(s.count, 10))
	return types.ActionContinue
}
