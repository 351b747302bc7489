//go:build wasip1

// Command postpone_requests holds every request on its headers and lets it go from the
// root context's timer once the configured delay has passed: the tick switches to the
// request's context with proxy_set_effective_context and resumes it with
// proxy_continue_stream. x-postponed-ms on the response says how long the request waited.
package main

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext {
		return &plugin{waiting: map[uint32]*stream{}}
	})
}

// config is the plugin configuration: {"delay_ms": 100, "tick_ms": 20} (the defaults).
type config struct {
	DelayMS uint32 `json:"delay_ms"` // how long each request is held at least
	TickMS  uint32 `json:"tick_ms"`  // how often the root context looks at the waiting ones
}

type plugin struct {
	types.DefaultPluginContext
	cfg     config
	waiting map[uint32]*stream // by context id
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	p.cfg = config{DelayMS: 100, TickMS: 20}
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(raw, &p.cfg)
		}
		if err != nil {
			proxywasm.LogCriticalf("postpone_requests: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.TickMS == 0 {
		p.cfg.TickMS = 20
	}
	if err := proxywasm.SetTickPeriodMilliSeconds(p.cfg.TickMS); err != nil {
		proxywasm.LogCriticalf("postpone_requests: setting the tick period: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() {
	now := time.Now()
	for id, s := range p.waiting {
		if now.Before(s.due) {
			continue
		}
		delete(p.waiting, id)
		if err := proxywasm.SetEffectiveContext(id); err != nil {
			proxywasm.LogErrorf("postpone_requests: switching to context %d: %v", id, err)
			continue
		}
		s.waited = now.Sub(s.start)
		if err := proxywasm.ResumeHttpRequest(); err != nil {
			proxywasm.LogErrorf("postpone_requests: resuming context %d: %v", id, err)
		}
	}
}

func (p *plugin) NewHttpContext(id uint32) types.HttpContext {
	return &stream{id: id, plugin: p}
}

type stream struct {
	types.DefaultHttpContext
	id         uint32
	plugin     *plugin
	start, due time.Time
	waited     time.Duration
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	s.start = time.Now()
	s.due = s.start.Add(time.Duration(s.plugin.cfg.DelayMS) * time.Millisecond)
	s.plugin.waiting[s.id] = s
	return types.ActionPause
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-postponed-ms", strconv.FormatInt(s.waited.Milliseconds(), 10))
	return types.ActionContinue
}

// OnHttpStreamDone forgets a request that ended (the client went away) while it waited.
func (s *stream) OnHttpStreamDone() {
	delete(s.plugin.waiting, s.id)
}
