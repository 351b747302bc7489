//go:build wasip1

// Command metrics defines the three Proxy-Wasm metric kinds and feeds them per request: a
// counter per value of a request header (the value is a tag in the metric's name), a gauge
// of requests in flight, and a histogram of the time from request headers to response
// headers. The response carries the counter's and the gauge's values.
package main

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

// config is the plugin configuration; see README.md.
type config struct {
	Header string `json:"header"` // the request header whose value tags the counter: "x-tenant"
	Prefix string `json:"prefix"` // the metric names' prefix: "example"
}

type plugin struct {
	types.DefaultPluginContext
	cfg      config
	counters map[string]proxywasm.MetricCounter // by header value
	inflight proxywasm.MetricGauge
	latency  proxywasm.MetricHistogram
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(raw, &p.cfg)
		}
		if err != nil {
			proxywasm.LogCriticalf("metrics: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Header == "" {
		p.cfg.Header = "x-tenant"
	}
	if p.cfg.Prefix == "" {
		p.cfg.Prefix = "example"
	}
	p.counters = map[string]proxywasm.MetricCounter{}
	p.inflight = proxywasm.DefineGaugeMetric(p.cfg.Prefix + "_requests_in_flight")
	p.latency = proxywasm.DefineHistogramMetric(p.cfg.Prefix + "_upstream_time_ms")
	return types.OnPluginStartStatusOK
}

// counter is the counter for one header value, defined on first use. Its name carries the
// tag Envoy-style: example_requests_total.x-tenant.acme, with "none" for a missing header.
func (p *plugin) counter(value string) proxywasm.MetricCounter {
	if value == "" {
		value = "none"
	}
	value = strings.Map(func(r rune) rune {
		if r == '.' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, value)
	c, ok := p.counters[value]
	if !ok {
		c = proxywasm.DefineCounterMetric(p.cfg.Prefix + "_requests_total." + p.cfg.Header + "." + value)
		p.counters[value] = c
	}
	return c
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{plugin: p} }

type stream struct {
	types.DefaultHttpContext
	plugin  *plugin
	counter proxywasm.MetricCounter
	start   time.Time
	counted bool
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	v, _ := proxywasm.GetHttpRequestHeader(s.plugin.cfg.Header)
	s.counter = s.plugin.counter(v)
	s.counter.Increment(1)
	s.plugin.inflight.Add(1)
	s.counted = true
	s.start = time.Now()
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if !s.counted {
		return types.ActionContinue
	}
	s.plugin.latency.Record(uint64(time.Since(s.start).Milliseconds()))
	proxywasm.AddHttpResponseHeader("x-metric-requests", strconv.FormatUint(s.counter.Value(), 10))
	proxywasm.AddHttpResponseHeader("x-metric-in-flight", strconv.FormatInt(s.plugin.inflight.Value(), 10))
	return types.ActionContinue
}

func (s *stream) OnHttpStreamDone() {
	if s.counted {
		s.plugin.inflight.Add(-1)
	}
}
