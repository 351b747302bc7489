//go:build wasip1

// Command vm_plugin_configuration reads the VM configuration in OnVMStart and the plugin
// configuration in OnPluginStart, logs both and echoes them into every response as
// x-vm-config and x-plugin-config.
package main

import (
	"strings"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetVMContext(&vm{})
}

type vm struct {
	types.DefaultVMContext
	config string
}

func (v *vm) OnVMStart(size int) types.OnVMStartStatus {
	if size > 0 {
		raw, err := proxywasm.GetVMConfiguration()
		if err != nil {
			proxywasm.LogCriticalf("vm_plugin_configuration: reading the VM configuration: %v", err)
			return types.OnVMStartStatusFailed
		}
		v.config = string(raw)
	}
	proxywasm.LogInfof("vm_plugin_configuration: VM configuration: %q", v.config)
	return types.OnVMStartStatusOK
}

func (v *vm) NewPluginContext(uint32) types.PluginContext { return &plugin{vm: v} }

type plugin struct {
	types.DefaultPluginContext
	vm     *vm
	config string
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if size > 0 {
		raw, err := proxywasm.GetPluginConfiguration()
		if err != nil {
			proxywasm.LogCriticalf("vm_plugin_configuration: reading the plugin configuration: %v", err)
			return types.OnPluginStartStatusFailed
		}
		p.config = string(raw)
	}
	proxywasm.LogInfof("vm_plugin_configuration: plugin configuration: %q", p.config)
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{plugin: p} }

type stream struct {
	types.DefaultHttpContext
	plugin *plugin
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-vm-config", headerSafe(s.plugin.vm.config))
	proxywasm.AddHttpResponseHeader("x-plugin-config", headerSafe(s.plugin.config))
	return types.ActionContinue
}

// headerSafe makes a configuration legal as a header value: line breaks and other control
// characters become spaces, and leading and trailing space goes.
func headerSafe(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}
