// Command example is sdk/go/README.md's filter.
package main

import (
	"strconv"

	"github.com/plexus-mesh/plexus/sdk/go/plexus"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main()                                {}
func init()                                { proxywasm.SetPluginContext(newPlugin) }
func newPlugin(uint32) types.PluginContext { return &plugin{} }

type plugin struct{ types.DefaultPluginContext }
type stream struct{ types.DefaultHttpContext }

func (*plugin) NewHttpContext(uint32) types.HttpContext { return &stream{} }
func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	if v, _ := proxywasm.GetHttpRequestHeader("x-deny"); v == "yes" { // refused here
		proxywasm.SendHttpResponse(403, nil, []byte("denied\n"), -1)
		return types.ActionPause
	}
	n, _ := plexus.Incr("hello", 1, 0) // a counter every replica shares
	proxywasm.AddHttpRequestHeader("x-hello", "world")
	proxywasm.AddHttpRequestHeader("x-count", strconv.FormatInt(n, 10))
	return types.ActionContinue
}
