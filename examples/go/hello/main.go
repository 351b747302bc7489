//go:build wasip1

// Command hello is the smallest useful Proxy-Wasm filter built with the upstream Go SDK:
// it adds one response header whose name and value come from the plugin configuration.
package main

import (
	"encoding/json"
	"fmt"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// main is never called: a -buildmode=c-shared module is a WASI reactor, and the SDK's
// exports run after init.
func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration, JSON: {"header": "x-hello", "value": "world"}.
type config struct {
	Header string `json:"header"`
	Value  string `json:"value"`
}

type plugin struct {
	types.DefaultPluginContext
	cfg config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	p.cfg = config{Header: "x-hello", Value: "world"}
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogCriticalf("hello: reading plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
		if err := json.Unmarshal(raw, &p.cfg); err != nil {
			proxywasm.LogCriticalf("hello: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Header == "" {
		proxywasm.LogCritical(`hello: plugin configuration: "header" must not be empty`)
		return types.OnPluginStartStatusFailed
	}
	proxywasm.LogInfo(fmt.Sprintf("hello: adding %s: %s to every response", p.cfg.Header, p.cfg.Value))
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{cfg: &p.cfg} }

type stream struct {
	types.DefaultHttpContext
	cfg *config
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.AddHttpResponseHeader(s.cfg.Header, s.cfg.Value); err != nil {
		proxywasm.LogErrorf("hello: adding response header: %v", err)
	}
	return types.ActionContinue
}
