//go:build wasip1

// Command ext-authz is plexus's external authorization filter, as Envoy's ext_authz with an
// HTTP service: each request is first sent (its method, path and chosen header fields,
// without its body) to an authorization service, by an HTTP callout to one of the
// gateway's backends. A 200 lets the request go on, with the service's chosen headers
// added; any other answer is the client's (its status, body and chosen headers); a service
// that cannot be reached in time gets the request status_on_error (403), or lets it
// through with failure_mode_allow. See README.md.
package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/internal/start"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type config struct {
	Backend          string   `json:"backend"`
	Authority        string   `json:"authority"`
	PathPrefix       string   `json:"path_prefix"`
	Timeout          string   `json:"timeout"`
	AllowedHeaders   []string `json:"allowed_headers"`  // request fields sent to the service
	UpstreamHeaders  []string `json:"upstream_headers"` // fields of an allowing answer added to the request
	ClientHeaders    []string `json:"client_headers"`   // fields of a denying answer sent to the client
	FailureModeAllow bool     `json:"failure_mode_allow"`
	StatusOnError    int      `json:"status_on_error"`

	timeout time.Duration
}

type plugin struct {
	types.DefaultPluginContext
	c config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	return start.Configure("ext-authz", size, p.c.parse)
}

func (c *config) parse(raw []byte) error {
	if err := json.Unmarshal(raw, c); err != nil {
		return err
	}
	if c.Backend == "" {
		return fmt.Errorf("backend: none: the authorization service to ask")
	}
	if c.Authority == "" {
		c.Authority = c.Backend
	}
	c.timeout = 200 * time.Millisecond
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return fmt.Errorf("timeout %q: want a duration above 0", c.Timeout)
		}
		c.timeout = d
	}
	if c.StatusOnError == 0 {
		c.StatusOnError = 403
	}
	for _, l := range [][]string{c.AllowedHeaders, c.UpstreamHeaders, c.ClientHeaders} {
		for i := range l {
			l[i] = strings.ToLower(l[i])
		}
	}
	return nil
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{c: &p.c} }

type stream struct {
	types.DefaultHttpContext
	c *config
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	c := s.c
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	path, _ := proxywasm.GetHttpRequestHeader(":path")
	headers := [][2]string{{":method", method}, {":path", c.PathPrefix + path}, {":authority", c.Authority}}
	if host, err := proxywasm.GetHttpRequestHeader(":authority"); err == nil {
		headers = append(headers, [2]string{"x-forwarded-host", host})
	}
	all, _ := proxywasm.GetHttpRequestHeaders()
	for _, h := range all {
		if contains(c.AllowedHeaders, h[0]) {
			headers = append(headers, h)
		}
	}
	_, err := proxywasm.DispatchHttpCall(c.Backend, headers, nil, nil, uint32(c.timeout.Milliseconds()), s.answered)
	if err != nil {
		proxywasm.LogWarnf("ext-authz: asking backend %s: %v", c.Backend, err)
		return s.unavailable()
	}
	return types.ActionPause
}

// answered is the service's answer: no headers means it could not be had.
func (s *stream) answered(numHeaders, bodySize, _ int) {
	c := s.c
	hs, err := proxywasm.GetHttpCallResponseHeaders()
	if err != nil || numHeaders == 0 {
		if s.unavailable() == types.ActionContinue {
			proxywasm.ResumeHttpRequest()
		}
		return
	}
	status := 0
	for _, h := range hs {
		if h[0] == ":status" {
			status, _ = strconv.Atoi(h[1])
		}
	}
	if status == 200 {
		for _, h := range hs {
			if contains(c.UpstreamHeaders, h[0]) {
				proxywasm.ReplaceHttpRequestHeader(h[0], h[1])
			}
		}
		proxywasm.ResumeHttpRequest()
		return
	}
	var body []byte
	if bodySize > 0 {
		body, _ = proxywasm.GetHttpCallResponseBody(0, bodySize)
	}
	var out [][2]string
	for _, h := range hs {
		if contains(c.ClientHeaders, h[0]) || h[0] == "content-type" {
			out = append(out, h)
		}
	}
	if status < 200 || status > 599 {
		status = 403
	}
	if err := proxywasm.SendHttpResponse(uint32(status), out, body, -1); err != nil {
		proxywasm.LogErrorf("ext-authz: answering a denied request: %v", err)
	}
}

// unavailable is the outcome when the service cannot be asked: the request goes on under
// failure_mode_allow, or gets status_on_error.
func (s *stream) unavailable() types.Action {
	if s.c.FailureModeAllow {
		proxywasm.ReplaceHttpRequestHeader("x-ext-authz-check-result", "failure-mode-allowed")
		return types.ActionContinue
	}
	h := [][2]string{{"content-type", "text/plain"}}
	if err := proxywasm.SendHttpResponse(uint32(s.c.StatusOnError), h, []byte("authorization service unavailable\n"), -1); err != nil {
		proxywasm.LogErrorf("ext-authz: %v", err)
	}
	return types.ActionPause
}

func contains(list []string, name string) bool {
	for _, l := range list {
		if l == name {
			return true
		}
	}
	return false
}
