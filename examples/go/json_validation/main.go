//go:build wasip1

// Command json_validation lets a request through only when its body is a JSON object with
// the keys the configuration requires. It buffers the whole body first; anything else is
// answered locally with 400 and a JSON reason.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration: {"required_keys": ["id", "name"]}.
type config struct {
	RequiredKeys []string `json:"required_keys"`
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
			proxywasm.LogCriticalf("json_validation: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{cfg: &p.cfg} }

type stream struct {
	types.DefaultHttpContext
	cfg *config
}

func (s *stream) OnHttpRequestHeaders(_ int, endOfStream bool) types.Action {
	if endOfStream {
		return s.reject("the request has no body: want a JSON object")
	}
	return types.ActionContinue
}

func (s *stream) OnHttpRequestBody(size int, endOfStream bool) types.Action {
	if !endOfStream {
		return types.ActionPause // buffer until the whole body is here
	}
	var body []byte
	if size > 0 {
		var err error
		if body, err = proxywasm.GetHttpRequestBody(0, size); err != nil {
			proxywasm.LogErrorf("json_validation: reading the body: %v", err)
			return s.reject("the body could not be read")
		}
	}
	if reason := s.validate(body); reason != "" {
		return s.reject(reason)
	}
	return types.ActionContinue
}

// validate returns why body is not acceptable, or "".
func (s *stream) validate(body []byte) string {
	if len(strings.TrimSpace(string(body))) == 0 {
		return "the body is empty: want a JSON object"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return "the body is a JSON " + typeErr.Value + ": want a JSON object"
		}
		return "the body is not valid JSON: " + err.Error()
	}
	if obj == nil {
		return "the body is null: want a JSON object"
	}
	var missing []string
	for _, k := range s.cfg.RequiredKeys {
		if _, ok := obj[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("missing required key(s): %s", strings.Join(missing, ", "))
	}
	return ""
}

func (s *stream) reject(reason string) types.Action {
	body, _ := json.Marshal(map[string]string{"error": reason})
	err := proxywasm.SendHttpResponse(400,
		[][2]string{{"content-type", "application/json"}, {"x-json-validation", "rejected"}},
		append(body, '\n'), -1)
	if err != nil {
		proxywasm.LogErrorf("json_validation: sending 400: %v", err)
	}
	return types.ActionPause
}
