// Command headers is the host suite's header filter on the upstream proxy-wasm-go-sdk, the
// twin of filters/wat/headers.wat: on the request it adds x-conformance-added: yes,
// replaces x-replace with "replaced", removes x-remove and copies x-copy-from into
// x-copied; on the response it adds x-response-added: yes.
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
	proxywasm.AddHttpRequestHeader("x-conformance-added", "yes")
	proxywasm.ReplaceHttpRequestHeader("x-replace", "replaced")
	proxywasm.RemoveHttpRequestHeader("x-remove")
	if v, err := proxywasm.GetHttpRequestHeader("x-copy-from"); err == nil {
		proxywasm.AddHttpRequestHeader("x-copied", v)
	}
	return types.ActionContinue
}

func (*stream) OnHttpResponseHeaders(int, bool) types.Action {
	proxywasm.AddHttpResponseHeader("x-response-added", "yes")
	return types.ActionContinue
}
