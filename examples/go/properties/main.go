//go:build wasip1

// Command properties reads host properties (Envoy attribute paths such as request.path,
// source.address, route_name, plugin_name, node.id) with proxy_get_property and returns
// them as x-prop-* response headers. It also sets a property of its own with
// proxy_set_property and reads it back.
package main

import (
	"encoding/binary"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration; see README.md.
type config struct {
	Properties []string `json:"properties"` // dotted paths read per request
	Custom     string   `json:"custom"`     // the dotted path set and read back: "example.custom"
	Value      string   `json:"value"`      // the value set there: "hello"
}

var defaultProperties = []string{
	"request.path", "request.url_path", "request.host", "request.scheme", "request.method",
	"request.id", "request.protocol", "source.address", "destination.address",
	"route_name", "cluster_name", "plugin_name", "plugin_root_id", "node.id",
}

// integer are the properties whose value is an 8-byte little-endian integer, as Envoy
// encodes them.
var integer = map[string]bool{
	"source.port": true, "destination.port": true, "upstream.port": true,
	"request.size": true, "request.total_size": true, "response.code": true,
	"response.size": true, "response.total_size": true, "connection.id": true,
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
			proxywasm.LogCriticalf("properties: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Properties == nil {
		p.cfg.Properties = defaultProperties
	}
	if p.cfg.Custom == "" {
		p.cfg.Custom = "example.custom"
	}
	if p.cfg.Value == "" {
		p.cfg.Value = "hello"
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{cfg: &p.cfg} }

type stream struct {
	types.DefaultHttpContext
	cfg     *config
	headers [][2]string // to add to the response
	missing []string
}

// read gets one property and renders it as a header value.
func read(name string) (string, bool) {
	raw, err := proxywasm.GetProperty(strings.Split(name, "."))
	if err != nil {
		return "", false
	}
	if integer[name] && len(raw) == 8 {
		return strconv.FormatInt(int64(binary.LittleEndian.Uint64(raw)), 10), true
	}
	return headerSafe(string(raw)), true
}

// headerSafe keeps a value legal in a header field: no control characters.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func headerName(property string) string {
	return "x-prop-" + strings.NewReplacer(".", "-", "_", "-").Replace(property)
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	// Read in the request phase: request.* and the stream's identity are known here.
	for _, name := range s.cfg.Properties {
		if v, ok := read(name); ok {
			s.headers = append(s.headers, [2]string{headerName(name), v})
		} else {
			s.missing = append(s.missing, name)
		}
	}
	if err := proxywasm.SetProperty(strings.Split(s.cfg.Custom, "."), []byte(s.cfg.Value)); err != nil {
		proxywasm.LogErrorf("properties: setting %s: %v", s.cfg.Custom, err)
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	for _, h := range s.headers {
		proxywasm.AddHttpResponseHeader(h[0], h[1])
	}
	// Read back in a later phase: a property set by the filter lives as long as the stream.
	if v, ok := read(s.cfg.Custom); ok {
		proxywasm.AddHttpResponseHeader("x-prop-custom", v)
	} else {
		s.missing = append(s.missing, s.cfg.Custom)
	}
	if v, ok := read("response.code"); ok {
		proxywasm.AddHttpResponseHeader("x-prop-response-code", v)
	}
	if len(s.missing) > 0 {
		proxywasm.AddHttpResponseHeader("x-prop-missing", strings.Join(s.missing, ","))
	}
	return types.ActionContinue
}
