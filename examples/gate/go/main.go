// Command gate is the gate example on the upstream Proxy-Wasm Go SDK alone: it counts every
// request in the metric gate_requests, answers one that carries x-deny: yes with 403
// itself, and marks the others, and their responses, with x-gate: go. See ../README.md.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
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
	p *plugin
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.p.requests.Increment(1)
	if deny, _ := proxywasm.GetHttpRequestHeader("x-deny"); deny == "yes" {
		proxywasm.SendHttpResponse(403, [][2]string{{"x-gate", "go"}}, []byte("denied by go\n"), -1)
		return types.ActionPause
	}
	proxywasm.AddHttpRequestHeader("x-gate", "go")
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-gate", "go")
	return types.ActionContinue
}
