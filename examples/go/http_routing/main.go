//go:build wasip1

// Command http_routing sends canary traffic elsewhere: when a request carries the canary
// header with the canary value, it prefixes :path and sets a routing header, so that the
// gateway's route match picks a different route (and backend) for it.
package main

import (
	"encoding/json"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration; every field has a default (see README.md).
type config struct {
	Header      string `json:"header"`       // the request header to look at: "x-canary"
	Value       string `json:"value"`        // the value that means canary: "true"
	PathPrefix  string `json:"path_prefix"`  // put in front of :path for canary requests: "/canary"
	RouteHeader string `json:"route_header"` // set on every request to "canary" or "primary": "x-route-to"
}

type plugin struct {
	types.DefaultPluginContext
	cfg config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	p.cfg = config{Header: "x-canary", Value: "true", PathPrefix: "/canary", RouteHeader: "x-route-to"}
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(raw, &p.cfg)
		}
		if err != nil {
			proxywasm.LogCriticalf("http_routing: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Header == "" {
		proxywasm.LogCritical(`http_routing: plugin configuration: "header" must not be empty`)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{cfg: &p.cfg} }

type stream struct {
	types.DefaultHttpContext
	cfg   *config
	route string // "canary" or "primary"
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.route = "primary"
	if v, err := proxywasm.GetHttpRequestHeader(s.cfg.Header); err == nil && v == s.cfg.Value {
		s.route = "canary"
	}
	if s.route == "canary" && s.cfg.PathPrefix != "" {
		path, err := proxywasm.GetHttpRequestHeader(":path")
		if err != nil {
			proxywasm.LogErrorf("http_routing: reading :path: %v", err)
			return types.ActionContinue
		}
		if err := proxywasm.ReplaceHttpRequestHeader(":path", s.cfg.PathPrefix+path); err != nil {
			proxywasm.LogErrorf("http_routing: setting :path: %v", err)
		}
	}
	if s.cfg.RouteHeader != "" {
		if err := proxywasm.ReplaceHttpRequestHeader(s.cfg.RouteHeader, s.route); err != nil {
			proxywasm.LogErrorf("http_routing: setting %s: %v", s.cfg.RouteHeader, err)
		}
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-routed", s.route)
	return types.ActionContinue
}
