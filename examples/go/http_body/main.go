//go:build wasip1

// Command http_body rewrites bodies. In buffered mode it waits for the whole request body
// (end_of_stream) and replaces it: upper-cased, or with text from the configuration. In
// streaming mode it lets every chunk through as it comes and appends a marker to each. In
// either mode it can replace the whole response body.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration; see README.md.
type config struct {
	Mode         string `json:"mode"`          // "buffered" (default) or "streaming"
	Request      string `json:"request"`       // buffered: "uppercase" (default), "replace" or "none"
	RequestBody  string `json:"request_body"`  // buffered, request "replace": the new request body
	ChunkSuffix  string `json:"chunk_suffix"`  // streaming: appended to every request body chunk
	ResponseBody string `json:"response_body"` // when set, replaces the whole response body
}

func (c *config) check() error {
	if c.Mode == "" {
		c.Mode = "buffered"
	}
	if c.Request == "" {
		c.Request = "uppercase"
	}
	if c.ChunkSuffix == "" {
		c.ChunkSuffix = "|"
	}
	switch c.Mode {
	case "buffered", "streaming":
	default:
		return fmt.Errorf(`"mode" is %q: want "buffered" or "streaming"`, c.Mode)
	}
	switch c.Request {
	case "uppercase", "replace", "none":
	default:
		return fmt.Errorf(`"request" is %q: want "uppercase", "replace" or "none"`, c.Request)
	}
	return nil
}

type plugin struct {
	types.DefaultPluginContext
	cfg config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(raw, &p.cfg)
		}
		if err != nil {
			proxywasm.LogCriticalf("http_body: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if err := p.cfg.check(); err != nil {
		proxywasm.LogCriticalf("http_body: plugin configuration: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{cfg: &p.cfg} }

type stream struct {
	types.DefaultHttpContext
	cfg    *config
	chunks int // request body chunks seen (streaming mode)
}

func (s *stream) rewritesRequest() bool {
	return s.cfg.Mode == "streaming" || s.cfg.Request != "none"
}

func (s *stream) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	// The body changes length, so the client's content-length would be wrong: the host
	// sends the new body with its own framing.
	if !endOfStream && s.rewritesRequest() {
		if err := proxywasm.RemoveHttpRequestHeader("content-length"); err != nil {
			proxywasm.LogErrorf("http_body: removing content-length: %v", err)
		}
	}
	return types.ActionContinue
}

func (s *stream) OnHttpRequestBody(size int, endOfStream bool) types.Action {
	if s.cfg.Mode == "streaming" {
		s.chunks++
		if err := proxywasm.AppendHttpRequestBody([]byte(s.cfg.ChunkSuffix)); err != nil {
			proxywasm.LogErrorf("http_body: appending to chunk %d: %v", s.chunks, err)
		}
		return types.ActionContinue
	}
	if !endOfStream {
		// Buffer: the host keeps the chunks and calls again with all of them.
		return types.ActionPause
	}
	var body []byte
	switch s.cfg.Request {
	case "none":
		return types.ActionContinue
	case "replace":
		body = []byte(s.cfg.RequestBody)
	case "uppercase":
		old, err := proxywasm.GetHttpRequestBody(0, size)
		if err != nil {
			proxywasm.LogErrorf("http_body: reading request body: %v", err)
			return types.ActionContinue
		}
		body = bytes.ToUpper(old)
	}
	if err := proxywasm.ReplaceHttpRequestBody(body); err != nil {
		proxywasm.LogErrorf("http_body: replacing request body: %v", err)
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(_ int, endOfStream bool) types.Action {
	if s.cfg.Mode == "streaming" {
		proxywasm.AddHttpResponseHeader("x-request-chunks", fmt.Sprint(s.chunks))
	}
	if s.cfg.ResponseBody != "" && !endOfStream {
		proxywasm.RemoveHttpResponseHeader("content-length")
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseBody(_ int, endOfStream bool) types.Action {
	if s.cfg.ResponseBody == "" {
		return types.ActionContinue
	}
	if !endOfStream {
		return types.ActionPause
	}
	if err := proxywasm.ReplaceHttpResponseBody([]byte(s.cfg.ResponseBody)); err != nil {
		proxywasm.LogErrorf("http_body: replacing response body: %v", err)
	}
	return types.ActionContinue
}
