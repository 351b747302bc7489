// Command tagged is a test filter on the upstream proxy-wasm-go-sdk that names its
// metrics with their tags in them, as Istio's filters do, for the host's stats_tags to
// take apart: each request counts in tagged_requests_method=.=METHOD;.;.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct {
	types.DefaultPluginContext
	counters map[string]proxywasm.MetricCounter
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p *plugin
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	if s.p.counters == nil {
		s.p.counters = map[string]proxywasm.MetricCounter{}
	}
	c, ok := s.p.counters[method]
	if !ok {
		c = proxywasm.DefineCounterMetric("tagged_requests_method=.=" + method + ";.;")
		s.p.counters[method] = c
	}
	c.Increment(1)
	return types.ActionContinue
}
