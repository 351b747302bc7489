// Command callout is a test filter on the upstream proxy-wasm-go-sdk: each request makes
// an HTTP callout to the cluster "auth" with the pseudo-headers its x-callout header asks
// for, and is answered locally with what came of it: 200 and the callout's status and
// body, or 500 and the error DispatchHttpCall returned.
//
// x-callout: "all" (:method, :path, :authority), "empty-authority", "no-authority",
// "no-path", "empty-path", "no-method", "empty-method".
package main

import (
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
	mode, _ := proxywasm.GetHttpRequestHeader("x-callout")
	hs := map[string]string{":method": "GET", ":path": "/check", ":authority": "auth.internal"}
	switch mode {
	case "empty-authority":
		hs[":authority"] = ""
	case "no-authority":
		delete(hs, ":authority")
	case "no-path":
		delete(hs, ":path")
	case "empty-path":
		hs[":path"] = ""
	case "no-method":
		delete(hs, ":method")
	case "empty-method":
		hs[":method"] = ""
	}
	var headers [][2]string
	for _, k := range []string{":method", ":path", ":authority"} {
		if v, ok := hs[k]; ok {
			headers = append(headers, [2]string{k, v})
		}
	}
	_, err := proxywasm.DispatchHttpCall("auth", headers, nil, nil, 5000, func(int, int, int) {
		var status string
		hs, _ := proxywasm.GetHttpCallResponseHeaders()
		for _, h := range hs {
			if h[0] == ":status" {
				status = h[1]
			}
		}
		body, _ := proxywasm.GetHttpCallResponseBody(0, 1<<16)
		proxywasm.SendHttpResponse(200, [][2]string{{"x-callout-status", status}}, body, -1)
	})
	if err != nil {
		proxywasm.SendHttpResponse(500, [][2]string{{"x-callout-error", strconv.Quote(err.Error())}}, []byte(err.Error()), -1)
	}
	return types.ActionPause
}
