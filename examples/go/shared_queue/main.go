//go:build wasip1

// Command shared_queue passes work from requests to the plugin's root context: each HTTP
// context enqueues its request path; the root context, registered on the queue, is woken
// with proxy_on_queue_ready, dequeues everything, logs it and counts it in a metric and in
// shared data. Every response carries the count dequeued so far in x-queue-dequeued.
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

// config is the plugin configuration; see README.md.
type config struct {
	Queue string `json:"queue"` // the queue's name: "paths"
	VMID  string `json:"vm_id"` // the vm_id to resolve the queue in: "" (this VM's)
	Role  string `json:"role"`  // "both" (default), "producer" or "consumer"
}

const dequeuedKey = "shared_queue.dequeued"

type plugin struct {
	types.DefaultPluginContext
	cfg      config
	queueID  uint32 // the queue this root context registered (consumer)
	hasQueue bool
	dequeued proxywasm.MetricCounter
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err == nil {
			err = json.Unmarshal(raw, &p.cfg)
		}
		if err != nil {
			proxywasm.LogCriticalf("shared_queue: plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
	}
	if p.cfg.Queue == "" {
		p.cfg.Queue = "paths"
	}
	switch p.cfg.Role {
	case "":
		p.cfg.Role = "both"
	case "both", "producer", "consumer":
	default:
		proxywasm.LogCriticalf(`shared_queue: plugin configuration: "role" is %q: want "both", "producer" or "consumer"`, p.cfg.Role)
		return types.OnPluginStartStatusFailed
	}
	if p.cfg.Role != "producer" {
		id, err := proxywasm.RegisterSharedQueue(p.cfg.Queue)
		if err != nil {
			proxywasm.LogCriticalf("shared_queue: registering queue %q: %v", p.cfg.Queue, err)
			return types.OnPluginStartStatusFailed
		}
		p.queueID, p.hasQueue = id, true
		p.dequeued = proxywasm.DefineCounterMetric("shared_queue_dequeued_total")
		proxywasm.LogInfof("shared_queue: registered queue %q as %d", p.cfg.Queue, id)
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnQueueReady(queueID uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(queueID)
		if errors.Is(err, types.ErrorStatusEmpty) {
			return // another VM may have taken the item: that is fine
		}
		if err != nil {
			proxywasm.LogErrorf("shared_queue: dequeuing from %d: %v", queueID, err)
			return
		}
		p.dequeued.Increment(1)
		n, err := addShared(dequeuedKey, 1)
		if err != nil {
			proxywasm.LogErrorf("shared_queue: counting: %v", err)
		}
		proxywasm.LogInfof("shared_queue: dequeued %q (%d so far)", item, n)
	}
}

// addShared adds delta to the decimal counter at key, retrying on CAS mismatch.
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

func (p *plugin) NewHttpContext(uint32) types.HttpContext {
	if p.cfg.Role == "consumer" {
		return &stream{}
	}
	return &stream{plugin: p}
}

type stream struct {
	types.DefaultHttpContext
	plugin   *plugin // nil: consumer only, enqueue nothing
	enqueued string  // "ok", or what went wrong
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	if s.plugin == nil {
		return types.ActionContinue
	}
	path, err := proxywasm.GetHttpRequestHeader(":path")
	if err != nil || path == "" {
		s.enqueued = "no path"
		return types.ActionContinue
	}
	// A producer finds the queue by name; with this VM's own queue it could use the id
	// it registered, and does when the lookup fails.
	id, err := proxywasm.ResolveSharedQueue(s.plugin.cfg.VMID, s.plugin.cfg.Queue)
	if err != nil {
		if !s.plugin.hasQueue {
			proxywasm.LogErrorf("shared_queue: resolving queue %q: %v", s.plugin.cfg.Queue, err)
			s.enqueued = "no queue"
			return types.ActionContinue
		}
		id = s.plugin.queueID
	}
	if err := proxywasm.EnqueueSharedQueue(id, []byte(path)); err != nil {
		proxywasm.LogErrorf("shared_queue: enqueuing: %v", err)
		s.enqueued = "error"
		return types.ActionContinue
	}
	s.enqueued = "ok"
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if s.enqueued != "" {
		proxywasm.AddHttpResponseHeader("x-queue-enqueued", s.enqueued)
	}
	n := "0"
	if raw, _, err := proxywasm.GetSharedData(dequeuedKey); err == nil {
		n = string(raw)
	}
	proxywasm.AddHttpResponseHeader("x-queue-dequeued", n)
	return types.ActionContinue
}
