// Command emitter is a test filter on the upstream proxy-wasm-go-sdk that works with the
// singleton filter (same vm_id): each request's path goes into the singleton's queue
// "events", and the request tells the backend the singleton's tick count (x-ticks).
package main

import (
	"encoding/binary"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct{ types.DefaultPluginContext }

func (*plugin) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	vmID, _ := proxywasm.GetProperty([]string{"plugin_vm_id"})
	if q, err := proxywasm.ResolveSharedQueue(string(vmID), "events"); err == nil {
		path, _ := proxywasm.GetHttpRequestHeader(":path")
		if err := proxywasm.EnqueueSharedQueue(q, []byte(path)); err != nil {
			proxywasm.LogErrorf("emitter: enqueue: %v", err)
		}
	} else {
		proxywasm.LogErrorf("emitter: resolving the queue: %v", err)
	}
	ticks := "0"
	if v, _, err := proxywasm.GetSharedData("ticks"); err == nil && len(v) == 8 {
		ticks = strconv.FormatUint(binary.LittleEndian.Uint64(v), 10)
	}
	proxywasm.AddHttpRequestHeader("x-ticks", ticks)
	return types.ActionContinue
}
