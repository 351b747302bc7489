//go:build wasip1

// Command cors is plexus's CORS filter (the Fetch standard's CORS protocol, as Envoy's cors
// filter serves it): it answers the preflight of an allowed origin itself, and adds the
// Access-Control-* headers to the responses of its actual requests. A request from an
// origin it does not allow goes on untouched, its preflight too, as in Envoy: the browser
// then refuses the response. See README.md.
package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/internal/start"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type config struct {
	AllowOrigins        []string `json:"allow_origins"`         // exact origins, or "*"
	AllowOriginPatterns []string `json:"allow_origin_patterns"` // regular expressions, matched whole
	AllowMethods        []string `json:"allow_methods"`
	AllowHeaders        []string `json:"allow_headers"`
	ExposeHeaders       []string `json:"expose_headers"`
	MaxAge              *int     `json:"max_age"` // seconds
	AllowCredentials    bool     `json:"allow_credentials"`

	patterns  []*regexp.Regexp
	anyOrigin bool
}

type plugin struct {
	types.DefaultPluginContext
	c config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	return start.Configure("cors", size, p.c.parse)
}

func (c *config) parse(raw []byte) error {
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, c); err != nil {
			return err
		}
	}
	for _, p := range c.AllowOriginPatterns {
		re, err := regexp.Compile("^(?:" + p + ")$")
		if err != nil {
			return fmt.Errorf("allow_origin_patterns: %q: %v", p, err)
		}
		c.patterns = append(c.patterns, re)
	}
	c.anyOrigin = slices.Contains(c.AllowOrigins, "*")
	if c.anyOrigin && c.AllowCredentials {
		// The Fetch standard refuses "*" with credentials; echoing every origin instead
		// would hand any site the user's credentials.
		return fmt.Errorf(`allow_origins "*" cannot go with allow_credentials: name the origins`)
	}
	if len(c.AllowMethods) == 0 {
		c.AllowMethods = []string{"GET", "HEAD", "POST"}
	}
	return nil
}

// allows reports whether origin may read the responses.
func (c *config) allows(origin string) bool {
	if c.anyOrigin || slices.Contains(c.AllowOrigins, origin) {
		return true
	}
	for _, re := range c.patterns {
		if re.MatchString(origin) {
			return true
		}
	}
	return false
}

// allowOrigin is the Access-Control-Allow-Origin of an allowed origin.
func (c *config) allowOrigin(origin string) string {
	if c.anyOrigin {
		return "*"
	}
	return origin
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{c: &p.c} }

type stream struct {
	types.DefaultHttpContext
	c      *config
	origin string // of an allowed actual request, for its response
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	origin, err := proxywasm.GetHttpRequestHeader("origin")
	if err != nil || origin == "" || !s.c.allows(origin) {
		return types.ActionContinue
	}
	method, _ := proxywasm.GetHttpRequestHeader(":method")
	if _, err := proxywasm.GetHttpRequestHeader("access-control-request-method"); method != "OPTIONS" || err != nil {
		s.origin = origin // an actual request: its response gets the headers
		return types.ActionContinue
	}
	// A preflight: answered here.
	h := [][2]string{
		{"access-control-allow-origin", s.c.allowOrigin(origin)},
		{"access-control-allow-methods", strings.Join(s.c.AllowMethods, ", ")},
	}
	if len(s.c.AllowHeaders) > 0 {
		h = append(h, [2]string{"access-control-allow-headers", strings.Join(s.c.AllowHeaders, ", ")})
	}
	if s.c.MaxAge != nil {
		h = append(h, [2]string{"access-control-max-age", strconv.Itoa(*s.c.MaxAge)})
	}
	if s.c.AllowCredentials {
		h = append(h, [2]string{"access-control-allow-credentials", "true"})
	}
	if !s.c.anyOrigin {
		h = append(h, [2]string{"vary", "origin"})
	}
	if err := proxywasm.SendHttpResponse(200, h, nil, -1); err != nil {
		proxywasm.LogErrorf("cors: answering a preflight: %v", err)
		return types.ActionContinue
	}
	return types.ActionPause
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if s.origin == "" {
		return types.ActionContinue
	}
	proxywasm.ReplaceHttpResponseHeader("access-control-allow-origin", s.c.allowOrigin(s.origin))
	if s.c.AllowCredentials {
		proxywasm.ReplaceHttpResponseHeader("access-control-allow-credentials", "true")
	}
	if len(s.c.ExposeHeaders) > 0 {
		proxywasm.ReplaceHttpResponseHeader("access-control-expose-headers", strings.Join(s.c.ExposeHeaders, ", "))
	}
	if !s.c.anyOrigin {
		proxywasm.AddHttpResponseHeader("vary", "origin")
	}
	return types.ActionContinue
}
