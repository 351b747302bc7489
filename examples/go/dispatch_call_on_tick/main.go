//go:build wasip1

// Command dispatch_call_on_tick calls a cluster from the plugin's root context on a timer,
// with no request involved, and counts the answers: in a counter metric and in shared
// data. Every response it passes carries the count so far in x-tick-responses.
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

// config is the plugin configuration; only "cluster" is required.
type config struct {
	Cluster   string `json:"cluster"`    // where the calls go
	Path      string `json:"path"`       // the path asked: "/"
	Authority string `json:"authority"`  // its :authority: the cluster name
	TickMS    uint32 `json:"tick_ms"`    // the period: 1000
	TimeoutMS uint32 `json:"timeout_ms"` // per call: 5000
	Key       string `json:"key"`        // the shared-data key of the count: "dispatch_call_on_tick.responses"
}

type plugin struct {
	types.DefaultPluginContext
	cfg       config
	responses proxywasm.MetricCounter
	calls     int
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(raw, &p.cfg)
		}
		if err != nil {
			proxywasm.LogCriticalf("dispatch_call_on_tick: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Cluster == "" {
		proxywasm.LogCritical(`dispatch_call_on_tick: plugin configuration: "cluster" is required`)
		return types.OnPluginStartStatusFailed
	}
	if p.cfg.Path == "" {
		p.cfg.Path = "/"
	}
	if p.cfg.Authority == "" {
		p.cfg.Authority = p.cfg.Cluster
	}
	if p.cfg.TickMS == 0 {
		p.cfg.TickMS = 1000
	}
	if p.cfg.TimeoutMS == 0 {
		p.cfg.TimeoutMS = 5000
	}
	if p.cfg.Key == "" {
		p.cfg.Key = "dispatch_call_on_tick.responses"
	}
	p.responses = proxywasm.DefineCounterMetric("dispatch_call_on_tick_responses_total")
	if err := proxywasm.SetTickPeriodMilliSeconds(p.cfg.TickMS); err != nil {
		proxywasm.LogCriticalf("dispatch_call_on_tick: setting the tick period: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() {
	p.calls++
	headers := [][2]string{
		{":method", "GET"},
		{":path", p.cfg.Path},
		{":authority", p.cfg.Authority},
		{"x-tick-call", strconv.Itoa(p.calls)},
	}
	if _, err := proxywasm.DispatchHttpCall(p.cfg.Cluster, headers, nil, nil, p.cfg.TimeoutMS, p.onResponse); err != nil {
		proxywasm.LogErrorf("dispatch_call_on_tick: calling %s: %v", p.cfg.Cluster, err)
	}
}

func (p *plugin) onResponse(numHeaders, bodySize, _ int) {
	if numHeaders == 0 {
		proxywasm.LogWarnf("dispatch_call_on_tick: no answer from %s", p.cfg.Cluster)
		return
	}
	status := ""
	if hs, err := proxywasm.GetHttpCallResponseHeaders(); err == nil {
		for _, h := range hs {
			if h[0] == ":status" {
				status = h[1]
			}
		}
	}
	p.responses.Increment(1)
	n, err := addShared(p.cfg.Key, 1)
	if err != nil {
		proxywasm.LogErrorf("dispatch_call_on_tick: counting in shared data: %v", err)
	}
	proxywasm.LogInfof("dispatch_call_on_tick: response %d from %s: status %s, %d body bytes", n, p.cfg.Cluster, status, bodySize)
}

// addShared adds delta to the decimal counter at key in shared data, retrying when another
// VM changed it in between (CAS mismatch), and returns the new value.
func addShared(key string, delta int) (int, error) {
	for range 64 {
		n := 0
		raw, cas, err := proxywasm.GetSharedData(key)
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
		case err != nil:
			return 0, err
		default:
			if n, err = strconv.Atoi(string(raw)); err != nil {
				return 0, err
			}
		}
		n += delta
		err = proxywasm.SetSharedData(key, []byte(strconv.Itoa(n)), cas)
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			continue
		}
		return n, err
	}
	return 0, errors.New("too many CAS mismatches")
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{key: p.cfg.Key} }

type stream struct {
	types.DefaultHttpContext
	key string
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	n := "0"
	if raw, _, err := proxywasm.GetSharedData(s.key); err == nil {
		n = string(raw)
	}
	proxywasm.AddHttpResponseHeader("x-tick-responses", n)
	return types.ActionContinue
}
