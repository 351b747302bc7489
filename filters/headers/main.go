//go:build wasip1

// Command headers is plexus's header filter: on the request and on the response, it
// renames, removes, sets and adds header fields, in that order, as its configuration says.
// See README.md.
package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/plexus-mesh/plexus/filters/internal/field"
	"github.com/plexus-mesh/plexus/filters/internal/start"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// edits are what to do to one header map.
type edits struct {
	Rename map[string]string `json:"rename"` // old name -> new name; values kept, in order
	Remove []string          `json:"remove"`
	Set    map[string]string `json:"set"` // replaces every value, or adds
	Add    map[string]string `json:"add"` // one more value
}

type config struct {
	Request  edits `json:"request"`
	Response edits `json:"response"`
}

type plugin struct {
	types.DefaultPluginContext
	conf config
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	return start.Configure("headers", size, p.conf.parse)
}

// parse reads the configuration; the gateway checked it against schema.json already, and
// this keeps what it cannot say (names that are valid HTTP field names, in lower case).
func (c *config) parse(raw []byte) error {
	if err := json.Unmarshal(raw, c); err != nil {
		return err
	}
	for side, e := range map[string]*edits{"request": &c.Request, "response": &c.Response} {
		if err := e.normalize(); err != nil {
			return fmt.Errorf("%s: %w", side, err)
		}
	}
	return nil
}

func (e *edits) normalize() error {
	lower := func(what string, m map[string]string, values bool) (map[string]string, error) {
		out := make(map[string]string, len(m))
		for k, v := range m {
			if !field.IsToken(k) {
				return nil, fmt.Errorf("%s: %q is not a header name", what, k)
			}
			if values && !field.IsToken(v) {
				return nil, fmt.Errorf("%s: %q is not a header name", what, v)
			}
			if !values && strings.ContainsAny(v, "\r\n\x00") {
				return nil, fmt.Errorf("%s: the value of %s holds a line break or NUL", what, k)
			}
			if values {
				v = strings.ToLower(v)
			}
			out[strings.ToLower(k)] = v
		}
		return out, nil
	}
	var err error
	if e.Rename, err = lower("rename", e.Rename, true); err != nil {
		return err
	}
	if e.Set, err = lower("set", e.Set, false); err != nil {
		return err
	}
	if e.Add, err = lower("add", e.Add, false); err != nil {
		return err
	}
	for i, k := range e.Remove {
		if !field.IsToken(k) {
			return fmt.Errorf("remove: %q is not a header name", k)
		}
		e.Remove[i] = strings.ToLower(k)
	}
	return nil
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p *plugin
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.p.conf.Request.apply(request)
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	s.p.conf.Response.apply(response)
	return types.ActionContinue
}

// side is the SDK's functions for one header map.
type side struct {
	get     func(string) (string, error)
	all     func() ([][2]string, error)
	add     func(string, string) error
	replace func(string, string) error
	remove  func(string) error
}

var (
	request = side{proxywasm.GetHttpRequestHeader, proxywasm.GetHttpRequestHeaders,
		proxywasm.AddHttpRequestHeader, proxywasm.ReplaceHttpRequestHeader, proxywasm.RemoveHttpRequestHeader}
	response = side{proxywasm.GetHttpResponseHeader, proxywasm.GetHttpResponseHeaders,
		proxywasm.AddHttpResponseHeader, proxywasm.ReplaceHttpResponseHeader, proxywasm.RemoveHttpResponseHeader}
)

func (e *edits) apply(h side) {
	if len(e.Rename) > 0 {
		all, _ := h.all()
		for _, old := range sorted(e.Rename) {
			var values []string
			for _, kv := range all {
				if strings.EqualFold(kv[0], old) {
					values = append(values, kv[1])
				}
			}
			if len(values) == 0 {
				continue
			}
			h.remove(old)
			for _, v := range values {
				h.add(e.Rename[old], v)
			}
		}
	}
	for _, k := range e.Remove {
		h.remove(k)
	}
	for _, k := range sorted(e.Set) {
		h.replace(k, e.Set[k])
	}
	for _, k := range sorted(e.Add) {
		h.add(k, e.Add[k])
	}
}

// sorted is m's keys in order: the same config edits the same way every time.
func sorted(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
