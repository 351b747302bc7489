// Command declare is a test filter on the upstream proxy-wasm-go-sdk for Envoy's
// declare_property: it declares my_prop readonly (a string for the request's life) as it
// starts, then on each request sets it twice, and an undeclared free_prop twice, and tells
// the backend what came of it: x-declared and x-free ("first set, second set, value"), and
// x-bad-declare, what declaring with arguments that are not protobuf gave.
package main

import (
	"fmt"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

func init() {
	proxywasm.SetPluginContext(func(uint32) types.PluginContext { return &plugin{} })
}

type plugin struct{ types.DefaultPluginContext }

// declareArgs is Envoy's DeclarePropertyArguments{name, readonly: true, type: String,
// span: DownstreamRequest}, encoded by hand.
func declareArgs(name string) []byte {
	b := append([]byte{0x0a, byte(len(name))}, name...)
	return append(b, 0x10, 1, 0x18, 1, 0x28, 1)
}

func (*plugin) OnPluginStart(int) types.OnPluginStartStatus {
	if _, err := proxywasm.CallForeignFunction("declare_property", declareArgs("my_prop")); err != nil {
		proxywasm.LogCriticalf("declare: declare_property: %v", err)
		return types.OnPluginStartStatusFailed
	}
	return types.OnPluginStartStatusOK
}

func (*plugin) NewHttpContext(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	setTwice := func(name string) string {
		e1 := proxywasm.SetProperty([]string{name}, []byte("first"))
		e2 := proxywasm.SetProperty([]string{name}, []byte("second"))
		v, e3 := proxywasm.GetProperty([]string{name})
		return fmt.Sprintf("%v, %v, %s %v", e1, e2, v, e3)
	}
	proxywasm.AddHttpRequestHeader("x-declared", setTwice("my_prop"))
	proxywasm.AddHttpRequestHeader("x-free", setTwice("free_prop"))
	_, err := proxywasm.CallForeignFunction("declare_property", []byte{0xff})
	proxywasm.AddHttpRequestHeader("x-bad-declare", fmt.Sprint(err))
	return types.ActionContinue
}
