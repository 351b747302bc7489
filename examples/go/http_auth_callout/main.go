//go:build wasip1

// Command http_auth_callout asks an auth service about every request: it sends the
// request's Authorization header to a cluster with proxy_http_call and holds the request
// until the answer comes. 200 lets the request through with x-auth: ok (and the user the
// service named, if any); anything else, or no answer, is a local 403.
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

// config is the plugin configuration; only "cluster" is required.
type config struct {
	Cluster   string `json:"cluster"`    // the backend the auth service is
	Path      string `json:"path"`       // the path asked: "/auth"
	Authority string `json:"authority"`  // its :authority: the cluster name
	TimeoutMS uint32 `json:"timeout_ms"` // how long to wait: 1000
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
			proxywasm.LogCriticalf("http_auth_callout: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Cluster == "" {
		proxywasm.LogCritical(`http_auth_callout: plugin configuration: "cluster" is required`)
		return types.OnPluginStartStatusFailed
	}
	if p.cfg.Path == "" {
		p.cfg.Path = "/auth"
	}
	if p.cfg.Authority == "" {
		p.cfg.Authority = p.cfg.Cluster
	}
	if p.cfg.TimeoutMS == 0 {
		p.cfg.TimeoutMS = 1000
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{cfg: &p.cfg} }

type stream struct {
	types.DefaultHttpContext
	cfg *config
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	// Only this filter may say who the caller is.
	proxywasm.RemoveHttpRequestHeader("x-auth")
	proxywasm.RemoveHttpRequestHeader("x-auth-user")
	headers := [][2]string{
		{":method", "GET"},
		{":path", s.cfg.Path},
		{":authority", s.cfg.Authority},
	}
	if auth, err := proxywasm.GetHttpRequestHeader("authorization"); err == nil {
		headers = append(headers, [2]string{"authorization", auth})
	}
	if _, err := proxywasm.DispatchHttpCall(s.cfg.Cluster, headers, nil, nil, s.cfg.TimeoutMS, s.onAuthResponse); err != nil {
		proxywasm.LogErrorf("http_auth_callout: calling %s: %v", s.cfg.Cluster, err)
		s.deny("auth service unavailable")
		return types.ActionPause
	}
	// Hold the request until onAuthResponse resumes it or answers it.
	return types.ActionPause
}

func (s *stream) onAuthResponse(numHeaders, _, _ int) {
	var hs [][2]string
	if numHeaders > 0 {
		hs, _ = proxywasm.GetHttpCallResponseHeaders()
	}
	status := header(hs, ":status")
	if status != "200" {
		if status == "" {
			s.deny("no answer from the auth service")
		} else {
			s.deny("the auth service said " + status)
		}
		return
	}
	proxywasm.AddHttpRequestHeader("x-auth", "ok")
	if user := header(hs, "x-auth-user"); user != "" {
		proxywasm.ReplaceHttpRequestHeader("x-auth-user", user)
	}
	if err := proxywasm.ResumeHttpRequest(); err != nil {
		proxywasm.LogErrorf("http_auth_callout: resuming: %v", err)
	}
}

func (s *stream) deny(reason string) {
	err := proxywasm.SendHttpResponse(403,
		[][2]string{{"content-type", "text/plain; charset=utf-8"}, {"x-auth", "denied"}},
		[]byte("forbidden: "+reason+"\n"), -1)
	if err != nil {
		proxywasm.LogErrorf("http_auth_callout: sending 403: %v", err)
	}
}

// header is the value of the first field named key (lower case), or "".
func header(hs [][2]string, key string) string {
	for _, h := range hs {
		if h[0] == key {
			return h[1]
		}
	}
	return ""
}
