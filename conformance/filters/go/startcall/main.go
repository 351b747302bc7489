// Command startcall is a test filter on the upstream proxy-wasm-go-sdk that calls out from
// proxy_on_plugin_start, while the gateway is still loading its config: it fetches
// /value from the cluster its configuration names ({"cluster": "..."}) and puts what it
// got on every request as x-fetched ("(none)" until the answer came, "(failed)" if the
// call could not be made).
package main

import (
	"encoding/json"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{value: "(none)"} })
}

type plugin struct {
	types.DefaultPluginContext
	value string
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	var cfg struct {
		Cluster string `json:"cluster"`
	}
	raw, err := proxywasm.GetPluginConfiguration()
	if err == nil {
		err = json.Unmarshal(raw, &cfg)
	}
	if err != nil {
		proxywasm.LogCriticalf("startcall: plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	headers := [][2]string{{":method", "GET"}, {":path", "/value"}, {":authority", cfg.Cluster}}
	_, err = proxywasm.DispatchHttpCall(cfg.Cluster, headers, nil, nil, 5000, func(_, bodySize, _ int) {
		body, err := proxywasm.GetHttpCallResponseBody(0, bodySize)
		if err != nil {
			p.value = "(failed)"
			return
		}
		p.value = string(body)
	})
	if err != nil {
		proxywasm.LogErrorf("startcall: callout to %s: %v", cfg.Cluster, err)
		p.value = "(failed)"
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p *plugin
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	proxywasm.AddHttpRequestHeader("x-fetched", s.p.value)
	return types.ActionContinue
}
