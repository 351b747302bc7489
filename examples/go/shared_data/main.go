//go:build wasip1

// Command shared_data counts requests in shared data, which every VM (every instance of
// the filter, and with a Redis-backed host every replica) sees. It increments with a
// compare-and-swap retry loop and returns the value in x-shared-counter.
package main

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration: {"key": "shared_data.counter"} (the default).
type config struct {
	Key string `json:"key"`
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
			proxywasm.LogCriticalf("shared_data: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Key == "" {
		p.cfg.Key = "shared_data.counter"
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{key: p.cfg.Key} }

type stream struct {
	types.DefaultHttpContext
	key     string
	counter string // the value this request set, or "error"
	retries int    // CAS mismatches on the way
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	n, err := s.increment()
	if err != nil {
		proxywasm.LogErrorf("shared_data: incrementing %s: %v", s.key, err)
		s.counter = "error"
		return types.ActionContinue
	}
	s.counter = strconv.FormatUint(n, 10)
	return types.ActionContinue
}

// increment adds one to the decimal counter at s.key. A CAS mismatch means another VM
// wrote in between: read again and retry. A key not yet set reads as zero with CAS 0.
func (s *stream) increment() (uint64, error) {
	for range 100 {
		var n uint64
		raw, cas, err := proxywasm.GetSharedData(s.key)
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
			cas = 0
		case err != nil:
			return 0, err
		default:
			if n, err = strconv.ParseUint(string(raw), 10, 64); err != nil {
				return 0, err
			}
		}
		err = proxywasm.SetSharedData(s.key, []byte(strconv.FormatUint(n+1, 10)), cas)
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			s.retries++
			continue
		}
		return n + 1, err
	}
	return 0, errors.New("gave up after 100 CAS mismatches")
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-shared-counter", s.counter)
	proxywasm.AddHttpResponseHeader("x-shared-cas-retries", strconv.Itoa(s.retries))
	return types.ActionContinue
}
