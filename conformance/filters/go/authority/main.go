// Command authority is a test filter on the upstream proxy-wasm-go-sdk: a request with an
// x-authority header has its :authority replaced by that header's value (and the header
// removed), so that the gateway matches its route again by the new host, as Envoy does
// when a filter changes the host and clears the route cache.
package main

import (
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
	host, err := proxywasm.GetHttpRequestHeader("x-authority")
	if err != nil {
		return types.ActionContinue
	}
	if err := proxywasm.ReplaceHttpRequestHeader(":authority", host); err != nil {
		proxywasm.LogErrorf("authority: replacing :authority: %v", err)
	}
	if err := proxywasm.RemoveHttpRequestHeader("x-authority"); err != nil {
		proxywasm.LogErrorf("authority: removing x-authority: %v", err)
	}
	return types.ActionContinue
}
