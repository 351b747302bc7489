// Command vmshare is a test filter on the upstream proxy-wasm-go-sdk for the VM a host
// gives filters that share a vm_id. Its VM context counts its starts in the shared data
// key "vm_starts" and keeps a mark in a Go variable; each plugin (configured with its
// name) ticks every 20 ms and counts its ticks in "ticks/NAME". Every response it sees
// tells, in headers named after the plugin (x-NAME-...): the VM's starts, whether the
// mark is there, the plugin's root context id, the instance it ran in (an id the
// instance picks at its first request), and the plugin's ticks.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() { proxywasm.SetVMContext(&vmContext{}) }

var (
	mark     string // set by OnVMStart
	instance string // picked at the instance's first request
)

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) OnVMStart(int) types.OnVMStartStatus {
	mark = "started"
	add("vm_starts")
	return types.OnVMStartStatusOK
}

func (*vmContext) NewPluginContext(id uint32) types.PluginContext { return &plugin{id: id} }

// add increments a counter in shared data, retrying on a compare-and-swap mismatch.
func add(key string) {
	for {
		v, cas, err := proxywasm.GetSharedData(key)
		n, _ := strconv.Atoi(string(v))
		if err != nil && err != types.ErrorStatusNotFound {
			proxywasm.LogCriticalf("vmshare: get %s: %v", key, err)
			return
		}
		if err := proxywasm.SetSharedData(key, []byte(strconv.Itoa(n+1)), cas); err != types.ErrorStatusCasMismatch {
			return
		}
	}
}

func read(key string) string {
	v, _, _ := proxywasm.GetSharedData(key)
	return string(v)
}

type plugin struct {
	types.DefaultPluginContext
	id   uint32
	name string
}

func (p *plugin) OnPluginStart(int) types.OnPluginStartStatus {
	conf, err := proxywasm.GetPluginConfiguration()
	if err != nil || len(conf) == 0 {
		proxywasm.LogCritical("vmshare: the plugin's configuration is its name")
		return types.OnPluginStartStatusFailed
	}
	p.name = string(conf)
	if err := proxywasm.SetTickPeriodMilliSeconds(20); err != nil {
		proxywasm.LogCriticalf("vmshare: tick: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (p *plugin) OnTick() { add("ticks/" + p.name) }

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{p: p} }

type stream struct {
	types.DefaultHttpContext
	p *plugin
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if instance == "" {
		var b [8]byte
		rand.Read(b[:])
		instance = hex.EncodeToString(b[:])
	}
	h := "x-" + s.p.name + "-"
	for _, kv := range [][2]string{
		{"vm-starts", read("vm_starts")},
		{"mark", mark},
		{"root", strconv.Itoa(int(s.p.id))},
		{"instance", instance},
		{"ticks", read("ticks/" + s.p.name)},
	} {
		proxywasm.AddHttpResponseHeader(h+kv[0], kv[1])
	}
	return types.ActionContinue
}
