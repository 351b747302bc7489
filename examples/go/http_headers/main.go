//go:build wasip1

// Command http_headers logs every request header, adds and removes request and response
// headers, and reports how many request headers it saw.
package main

import (
	"encoding/json"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration. Every field is optional; withDefaults has the
// defaults.
type config struct {
	AddRequest     map[string]string `json:"add_request"`     // added to the request before it goes upstream
	RemoveRequest  []string          `json:"remove_request"`  // removed from the request
	AddResponse    map[string]string `json:"add_response"`    // added to the response
	RemoveResponse []string          `json:"remove_response"` // removed from the response
}

// withDefaults fills the fields the configuration left out. A field given as empty ({} or
// []) stays empty: that turns the default off.
func (c *config) withDefaults() {
	if c.AddRequest == nil {
		c.AddRequest = map[string]string{"x-wasm-request": "http_headers"}
	}
	if c.RemoveRequest == nil {
		c.RemoveRequest = []string{"x-remove-me"}
	}
	if c.AddResponse == nil {
		c.AddResponse = map[string]string{"x-wasm-response": "http_headers"}
	}
	if c.RemoveResponse == nil {
		c.RemoveResponse = []string{"x-powered-by"}
	}
}

type plugin struct {
	types.DefaultPluginContext
	cfg config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	p.cfg = config{}
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogCriticalf("http_headers: reading plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
		if err := json.Unmarshal(raw, &p.cfg); err != nil {
			proxywasm.LogCriticalf("http_headers: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	p.cfg.withDefaults()
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(contextID uint32) types.HttpContext {
	return &stream{id: contextID, cfg: &p.cfg}
}

type stream struct {
	types.DefaultHttpContext
	id       uint32
	cfg      *config
	nRequest int // request headers seen, pseudo-headers included
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	hs, err := proxywasm.GetHttpRequestHeaders()
	if err != nil {
		proxywasm.LogErrorf("http_headers: reading request headers: %v", err)
		return types.ActionContinue
	}
	s.nRequest = len(hs)
	for _, h := range hs {
		proxywasm.LogInfof("http_headers: context %d: request header %s: %s", s.id, h[0], h[1])
	}
	for _, k := range s.cfg.RemoveRequest {
		if err := proxywasm.RemoveHttpRequestHeader(k); err != nil {
			proxywasm.LogErrorf("http_headers: removing request header %s: %v", k, err)
		}
	}
	for k, v := range s.cfg.AddRequest {
		if err := proxywasm.AddHttpRequestHeader(k, v); err != nil {
			proxywasm.LogErrorf("http_headers: adding request header %s: %v", k, err)
		}
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	hs, err := proxywasm.GetHttpResponseHeaders()
	if err == nil {
		for _, h := range hs {
			proxywasm.LogInfof("http_headers: context %d: response header %s: %s", s.id, h[0], h[1])
		}
	}
	for _, k := range s.cfg.RemoveResponse {
		if err := proxywasm.RemoveHttpResponseHeader(k); err != nil {
			proxywasm.LogErrorf("http_headers: removing response header %s: %v", k, err)
		}
	}
	for k, v := range s.cfg.AddResponse {
		if err := proxywasm.AddHttpResponseHeader(k, v); err != nil {
			proxywasm.LogErrorf("http_headers: adding response header %s: %v", k, err)
		}
	}
	if err := proxywasm.AddHttpResponseHeader("x-request-header-count", strconv.Itoa(s.nRequest)); err != nil {
		proxywasm.LogErrorf("http_headers: adding response header: %v", err)
	}
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	proxywasm.LogInfof("http_headers: context %d: done", s.id)
}
