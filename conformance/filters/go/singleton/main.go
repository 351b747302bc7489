// Command singleton is a test filter on the upstream proxy-wasm-go-sdk meant to run with no
// route, as an Envoy bootstrap extension does: its root context registers the queue
// "events", counts its ticks in the shared data key "ticks", and posts every item it
// dequeues to the cluster "sink" (POST /event).
package main

import (
	"encoding/binary"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct {
	types.DefaultPluginContext
	queue uint32
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	q, err := proxywasm.RegisterSharedQueue("events")
	if err != nil {
		proxywasm.LogCriticalf("singleton: register queue: %v", err)
		return types.OnPluginStartStatusFailed
	}
	p.queue = q
	if err := proxywasm.SetTickPeriodMilliSeconds(20); err != nil {
		proxywasm.LogCriticalf("singleton: tick: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() {
	for {
		v, cas, err := proxywasm.GetSharedData("ticks")
		var n uint64
		if err == nil && len(v) == 8 {
			n = binary.LittleEndian.Uint64(v)
		}
		if err := proxywasm.SetSharedData("ticks", binary.LittleEndian.AppendUint64(nil, n+1), cas); err != types.ErrorStatusCasMismatch {
			return
		}
	}
}

func (p *plugin) OnQueueReady(id uint32) {
	for {
		item, err := proxywasm.DequeueSharedQueue(id)
		if err != nil {
			return // empty
		}
		headers := [][2]string{{":method", "POST"}, {":path", "/event"}, {":authority", "sink"}}
		if _, err := proxywasm.DispatchHttpCall("sink", headers, item, nil, 5000, func(int, int, int) {}); err != nil {
			proxywasm.LogErrorf("singleton: posting an event: %v", err)
		}
	}
}
