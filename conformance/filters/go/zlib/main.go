// Command zlib is a test filter on the upstream proxy-wasm-go-sdk for Envoy's foreign
// functions: it answers every request locally, with the request's x-data header
// compressed by the host's "compress" as the body, or, with x-mode:
// uncompress, with the request body uncompressed by "uncompress". A failing call is
// answered 500 with the SDK's error; x-route-cache says what clear_route_cache returned.
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

func (*stream) OnHttpRequestHeaders(_ int, eos bool) types.Action {
	cache := "ok"
	if _, err := proxywasm.CallForeignFunction("clear_route_cache", nil); err != nil {
		cache = err.Error()
	}
	proxywasm.AddHttpRequestHeader("x-route-cache", cache)
	if mode, _ := proxywasm.GetHttpRequestHeader("x-mode"); mode == "uncompress" {
		return types.ActionContinue // to the body
	}
	data, _ := proxywasm.GetHttpRequestHeader("x-data")
	out, err := proxywasm.CallForeignFunction("compress", []byte(data))
	reply(out, err, cache)
	return types.ActionPause
}

func (*stream) OnHttpRequestBody(size int, eos bool) types.Action {
	if !eos {
		return types.ActionPause
	}
	cache, _ := proxywasm.GetHttpRequestHeader("x-route-cache")
	body, _ := proxywasm.GetHttpRequestBody(0, size)
	out, err := proxywasm.CallForeignFunction("uncompress", body)
	reply(out, err, cache)
	return types.ActionPause
}

func reply(out []byte, err error, cache string) {
	hs := [][2]string{{"x-route-cache", cache}}
	if err != nil {
		proxywasm.SendHttpResponse(500, hs, []byte(err.Error()), -1)
		return
	}
	proxywasm.SendHttpResponse(200, hs, out, -1)
}
